import Foundation

/// Talks HTTP to a model engine's OpenAI-compatible API, wherever the environment says it is reached:
/// through the Kubernetes API server's service proxy, or a direct endpoint template.
public protocol EngineClient: Sendable {
    func get(_ endpoint: EngineEndpoint, path: String, timeout: Duration) async throws -> EngineResponse
    func post(_ endpoint: EngineEndpoint, path: String, json: Data, timeout: Duration) async throws -> EngineResponse
}

/// A model engine's service, or one replica of it.
public struct EngineEndpoint: Hashable, Sendable, Codable, CustomStringConvertible {
    public var target: ReleaseTarget
    /// The Service name; the chart names it after the release.
    public var service: String
    public var port: Int
    /// One replica (its pod) rather than whichever the Service picks: to check that replica itself.
    public var pod: Replica?

    public struct Replica: Hashable, Sendable, Codable {
        public var name: String
        /// The pod's IP address.
        public var address: String
        public init(name: String, address: String) {
            self.name = name
            self.address = address
        }
    }

    public init(target: ReleaseTarget, service: String, port: Int = 8000, pod: Replica? = nil) {
        self.target = target
        self.service = service
        self.port = port
        self.pod = pod
    }

    /// This endpoint's replica `pod`.
    public func replica(_ pod: Replica) -> EngineEndpoint {
        EngineEndpoint(target: target, service: service, port: port, pod: pod)
    }

    /// The in-cluster address users see in reports.
    public var description: String {
        if let pod { return "\(pod.name) (\(pod.address):\(port))" }
        return "\(service).\(target.namespace).svc.cluster.local:\(port)"
    }
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
