import Foundation
import InferOpsCore
import InferOpsHTTP

/// Reaches a model engine's HTTP API the way the environment allows.
///
/// Through the API server's service proxy by default, because the daemon usually runs outside the
/// cluster network and the proxy needs nothing but the kubeconfig. Directly, through an address
/// template, when the daemon runs in the cluster or a port-forward is in place.
public struct KubernetesEngineClient: EngineClient {
    public let contexts: KubeContexts
    private let access: @Sendable (EngineEndpoint) -> EngineAccess

    /// One way of access for every engine.
    public init(contexts: KubeContexts, access: EngineAccess = .serviceProxy) {
        self.contexts = contexts
        self.access = { _ in access }
    }

    /// A way of access per engine, so each environment can choose its own.
    public init(contexts: KubeContexts, access: @escaping @Sendable (EngineEndpoint) -> EngineAccess) {
        self.contexts = contexts
        self.access = access
    }

    public func get(_ endpoint: EngineEndpoint, path: String, timeout: Duration) async throws -> EngineResponse {
        try await send(.get, endpoint, path: path, body: nil, timeout: timeout)
    }

    public func post(_ endpoint: EngineEndpoint, path: String, json: Data, timeout: Duration) async throws
        -> EngineResponse
    {
        try await send(.post, endpoint, path: path, body: Array(json), timeout: timeout)
    }

    /// The URL a request for `path` goes to in direct mode: the template for the service, the pod's
    /// own address for one replica (a daemon that reaches services directly reaches pods too).
    public static func directURL(template: String, endpoint: EngineEndpoint, path: String) -> String {
        if let pod = endpoint.pod {
            let host = pod.address.contains(":") ? "[\(pod.address)]" : pod.address
            return "http://\(host):\(endpoint.port)" + normalized(path)
        }
        var base =
            template
            .replacingOccurrences(of: "{service}", with: endpoint.service)
            .replacingOccurrences(of: "{namespace}", with: endpoint.target.namespace)
            .replacingOccurrences(of: "{port}", with: String(endpoint.port))
            .replacingOccurrences(of: "{release}", with: endpoint.target.release)
        while base.hasSuffix("/") { base.removeLast() }
        return base + normalized(path)
    }

    /// The API-server path of the service proxy (or, for one replica, the pod proxy) for `path`.
    public static func proxyPath(endpoint: EngineEndpoint, path: String) -> String {
        let namespace = "/api/v1/namespaces/\(percentEncoded(endpoint.target.namespace))"
        if let pod = endpoint.pod {
            return namespace + "/pods/\(percentEncoded(pod.name)):\(endpoint.port)/proxy\(normalized(path))"
        }
        return namespace + "/services/\(percentEncoded(endpoint.service)):\(endpoint.port)/proxy\(normalized(path))"
    }

    private static func normalized(_ path: String) -> String {
        path.hasPrefix("/") ? path : "/" + path
    }

    private func send(
        _ method: HTTPMethod,
        _ endpoint: EngineEndpoint,
        path: String,
        body: [UInt8]?,
        timeout: Duration
    ) async throws -> EngineResponse {
        let contentType = body == nil ? nil : "application/json"
        switch access(endpoint) {
        case .direct(let template):
            let url = Self.directURL(template: template, endpoint: endpoint, path: path)
            var request = HTTPRequest(method: method, url: url, body: body, timeout: timeout)
            if let contentType { request.headers.add("Content-Type", contentType) }
            do {
                let response = try await contexts.http.send(request)
                return EngineResponse(status: response.status, body: response.bodyData)
            } catch let error as HTTPTransportError {
                throw EngineUnreachable("\(endpoint) is unreachable at \(url): \(error.message)")
            }
        case .serviceProxy:
            let api = try await contexts.context(endpoint.target.kubeContext)
            let response: HTTPResponse
            do {
                response = try await api.send(
                    method,
                    Self.proxyPath(endpoint: endpoint, path: path),
                    body: body,
                    contentType: contentType,
                    accept: nil,
                    timeout: timeout
                )
            } catch let error as KubeAPIError {
                switch error {
                case .unreachable(_, _, let detail), .tls(_, _, let detail):
                    throw EngineUnreachable(
                        "\(endpoint) is unreachable: the Kubernetes API is not answering (\(detail))"
                    )
                default: throw error
                }
            }
            if let reason = Self.proxyFailure(response) {
                throw EngineUnreachable("\(endpoint) is unreachable through the API server: \(reason)")
            }
            if response.status == 401 || response.status == 403 {
                // The engine has no auth of its own here: these come from the API server.
                try api.checkStatus(response, path: Self.proxyPath(endpoint: endpoint, path: path))
            }
            return EngineResponse(status: response.status, body: response.bodyData)
        }
    }

    /// The API server's own failure to reach the service (no endpoints, connection refused, no
    /// such service), told apart from the engine's answers by the `kind: Status` body.
    static func proxyFailure(_ response: HTTPResponse) -> String? {
        guard [404, 500, 502, 503, 504].contains(response.status),
            let status = try? JSONDecoder().decode(KubeStatus.self, from: response.bodyData),
            status.kind == "Status"
        else { return nil }
        if response.status == 404 {
            // Only "the service (or pod) does not exist", not the engine's own 404 for an unknown path.
            guard status.details?.kind == "services" || status.details?.kind == "pods" else { return nil }
        }
        return status.message ?? "HTTP \(response.status)"
    }
}
