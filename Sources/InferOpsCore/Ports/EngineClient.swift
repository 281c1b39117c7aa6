import Foundation

/// Talks HTTP to a model engine's OpenAI-compatible API, wherever the environment says it is reached:
/// through the Kubernetes API server's service proxy, or a direct endpoint template.
public protocol EngineClient: Sendable {
    func get(_ endpoint: EngineEndpoint, path: String, timeout: Duration) async throws -> EngineResponse
    func post(_ endpoint: EngineEndpoint, path: String, json: Data, timeout: Duration) async throws -> EngineResponse
}

/// A model engine's service.
public struct EngineEndpoint: Hashable, Sendable, Codable, CustomStringConvertible {
    public var target: ReleaseTarget
    /// The Service name; the chart names it after the release.
    public var service: String
    public var port: Int

    public init(target: ReleaseTarget, service: String, port: Int = 8000) {
        self.target = target
        self.service = service
        self.port = port
    }

    /// The in-cluster address users see in reports.
    public var description: String { "\(service).\(target.namespace).svc.cluster.local:\(port)" }
}

public struct EngineResponse: Sendable, Hashable {
    public var status: Int
    public var body: Data
    public init(status: Int, body: Data) {
        self.status = status
        self.body = body
    }
}

/// The engine could not be reached at all (connection refused, timeout, DNS).
public struct EngineUnreachable: Error, Sendable, Equatable, CustomStringConvertible {
    public var detail: String
    public init(_ detail: String) { self.detail = detail }
    public var description: String { detail }
}
