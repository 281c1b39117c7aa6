import Foundation
import InferOpsCore
import InferOpsHTTP

/// The Kubernetes API of one cluster as one identity: a resolved kubeconfig context.
///
/// A value type holding the connection and the shared HTTP client, so it can be copied into any
/// task. Every call adds the bearer token (re-read from its file each time, because projected
/// service-account tokens rotate) and maps failures to `KubeAPIError`.
public struct KubeContext: Sendable, CustomStringConvertible {
    public let connection: ClusterConnection
    let http: any HTTPClient
    let timeout: Duration

    public init(connection: ClusterConnection, http: any HTTPClient, timeout: Duration = .seconds(30)) {
        self.connection = connection
        self.http = http
        self.timeout = timeout
    }

    public var name: String { connection.contextName }
    public var description: String { connection.description }

    /// Sends one request to the API server and returns whatever it answered.
    /// - Parameters:
    ///   - path: starts with `/`, already percent-encoded, may carry a query.
    /// - Throws: `KubeAPIError.unreachable`/`.tls` when there was no answer, `.credentials` when the
    ///   token file cannot be read, `CancellationError` when cancelled. Statuses are not checked.
    public func send(
        _ method: HTTPMethod,
        _ path: String,
        body: [UInt8]? = nil,
        contentType: String? = nil,
        accept: String? = "application/json",
        timeout: Duration? = nil
    ) async throws -> HTTPResponse {
        var request = HTTPRequest(
            method: method,
            url: connection.server + path,
            body: body,
            timeout: timeout ?? self.timeout,
            tls: connection.tls
        )
        if let accept { request.headers.add("Accept", accept) }
        if let contentType { request.headers.add("Content-Type", contentType) }
        if let credential = connection.credential {
            let token: Secret
            do {
                token = try credential.token()
            } catch let error as KubeconfigError {
                throw KubeAPIError.credentials(context: name, underlying: error.message)
            }
            if !token.isEmpty { request.setBearerToken(token.reveal()) }
        }
        do {
            return try await http.send(request)
        } catch let error as HTTPTransportError {
            if error.isTLSFailure {
                throw KubeAPIError.tls(context: name, server: connection.server, detail: error.message)
            }
            throw KubeAPIError.unreachable(context: name, server: connection.server, detail: error.message)
        }
    }

    /// GETs `path` and decodes the JSON answer.
    /// - Throws: `KubeAPIError` for transport failures and non-2xx statuses (401, 403 and 404 by name).
    public func get<T: Decodable>(_ path: String, as type: T.Type = T.self) async throws -> T {
        let response = try await send(.get, path)
        return try decode(response, path: path)
    }

    /// POSTs JSON to `path` (creating an object) and decodes the answer.
    public func create<T: Decodable>(_ path: String, json: [UInt8], as type: T.Type = T.self) async throws -> T {
        let response = try await send(.post, path, body: json, contentType: "application/json")
        return try decode(response, path: path)
    }

    /// All items of a list, following `continue` tokens so large clusters come back in pages.
    /// - Parameters:
    ///   - path: a collection, already percent-encoded, possibly with a query (`?labelSelector=…`).
    public func list<Item: Decodable>(_ path: String, of type: Item.Type) async throws -> [Item] {
        var items: [Item] = []
        var token: String?
        repeat {
            var page = path + (path.contains("?") ? "&" : "?") + "limit=500"
            if let token { page += "&continue=" + percentEncoded(token) }
            let list: KubeList<Item> = try await get(page)
            items += list.items ?? []
            token = list.metadata?.continue.flatMap { $0.isEmpty ? nil : $0 }
        } while token != nil
        return items
    }

    func decode<T: Decodable>(_ response: HTTPResponse, path: String) throws -> T {
        try checkStatus(response, path: path)
        do {
            // Untyped objects are read by JSONValue's own parser: through Decodable, each of their
            // values costs thrown errors (see `JSONValue(parsing:)`), and a ReplicaSet has hundreds.
            if T.self == JSONValue.self || T.self == JSONValue?.self,
               let value = try JSONValue(parsing: response.bodyData) as? T { return value }
            if T.self == KubeList<JSONValue>.self {
                let list = try JSONValue(parsing: response.bodyData)
                let items: [JSONValue]
                switch list["items"] {
                case .array(let found)?: items = found
                case nil, .null?: items = []
                default:
                    throw KubeAPIError.invalidResponse(context: name, path: pathWithoutQuery(path), detail: "items is not a list")
                }
                let page = KubeList<JSONValue>(items: items, metadata: .init(continue: list["metadata"]?["continue"]?.stringValue))
                if let value = page as? T { return value }
            }
            return try JSONDecoder().decode(T.self, from: response.bodyData)
        } catch let error as KubeAPIError {
            throw error
        } catch {
            throw KubeAPIError.invalidResponse(context: name, path: pathWithoutQuery(path), detail: "\(error)")
        }
    }

    /// Throws the named error for a non-2xx status; returns for 2xx.
    func checkStatus(_ response: HTTPResponse, path: String) throws {
        guard !response.isSuccess else { return }
        let status = try? JSONDecoder().decode(KubeStatus.self, from: response.bodyData)
        let message = status?.message ?? response.text.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines)
        let what = pathWithoutQuery(path)
        switch response.status {
        case 401: throw KubeAPIError.unauthorized(context: name, server: connection.server)
        case 403: throw KubeAPIError.forbidden(context: name, message: message)
        case 404: throw KubeAPIError.notFound(context: name, path: what, message: message)
        default: throw KubeAPIError.status(context: name, code: response.status, path: what, message: message)
        }
    }
}

/// Why a call to the Kubernetes API failed, worded for the chat thread.
public enum KubeAPIError: UserFacingError, Equatable, CustomStringConvertible {
    case unreachable(context: String, server: String, detail: String)
    case tls(context: String, server: String, detail: String)
    case credentials(context: String, underlying: String)
    case unauthorized(context: String, server: String)
    case forbidden(context: String, message: String)
    case notFound(context: String, path: String, message: String)
    case status(context: String, code: Int, path: String, message: String)
    case invalidResponse(context: String, path: String, detail: String)

    public var message: String {
        switch self {
        case .unreachable(let context, let server, let detail):
            "The Kubernetes API of `\(context)` at \(server) is unreachable: \(detail)."
        case .tls(let context, let server, let detail):
            "The TLS connection to the Kubernetes API of `\(context)` at \(server) failed: \(detail)."
        case .credentials(let context, let underlying):
            "The credentials for `\(context)` cannot be read: \(underlying)"
        case .unauthorized(let context, _):
            "The Kubernetes API of `\(context)` rejected our credentials (401 Unauthorized)."
        case .forbidden(let context, let message):
            "The Kubernetes API of `\(context)` refused the request (403 Forbidden): \(message)"
        case .notFound(let context, let path, let message):
            "Not found in `\(context)`: \(path)\(message.isEmpty ? "" : " (\(message))")."
        case .status(let context, let code, let path, let message):
            "The Kubernetes API of `\(context)` answered \(code) for \(path)\(message.isEmpty ? "" : ": \(message)")."
        case .invalidResponse(let context, let path, _):
            "The Kubernetes API of `\(context)` sent an answer for \(path) that could not be read."
        }
    }

    public var hint: String? {
        switch self {
        case .unreachable:
            "Check that the cluster is up and that the kubeconfig's server URL is reachable from the daemon."
        case .tls:
            "Check the context's certificate-authority(-data); the server's certificate must chain to it."
        case .credentials: "Check that the token file exists and is readable by the daemon."
        case .unauthorized:
            "The token or client certificate is expired or wrong: refresh the kubeconfig or the service-account token."
        case .forbidden:
            "Grant the daemon's identity this permission with a Role or ClusterRole binding."
        case .notFound: "Check the namespace and the name."
        case .status(_, let code, _, _):
            code >= 500 ? "The API server has a problem; try again shortly." : nil
        case .invalidResponse: "Check that the server URL points at a Kubernetes API server."
        }
    }

    public var description: String { message }
}

/// Creates one `KubeContext` per context name the first time it is asked for, and keeps it.
///
/// Credentials are resolved once per context, so a broken context fails the commands that use it
/// and no others. The kubeconfig itself is read once: at start-up by whoever builds the `Source`,
/// or at the first call that needs a context with `Source.onFirstUse`.
public actor KubeContexts {
    public enum Source: Sendable {
        case kubeconfig(Kubeconfig)
        /// The pod's service account; it answers to `nil` and to `ClusterConnection.inClusterContextName`.
        case inCluster(ClusterConnection)
        /// Read when a context is first asked for, so commands that never reach a cluster (help,
        /// refusals, locks) work without one. A failed read is tried again at the next call, and
        /// each call that needs the cluster fails with the read's own error until then.
        case onFirstUse(@Sendable () throws -> Source)

        /// The kubeconfig kubectl would use if one exists, else the pod's service account.
        /// - Throws: `KubeconfigError` when neither is available or the kubeconfig is broken.
        public static func detect(
            environment: [String: String] = ProcessInfo.processInfo.environment,
            serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
        ) throws -> Source {
            let paths = Kubeconfig.defaultPaths(environment: environment)
            if paths.contains(where: { FileManager.default.fileExists(atPath: $0) }) {
                return .kubeconfig(try Kubeconfig.load(paths: paths))
            }
            if environment["KUBERNETES_SERVICE_HOST"] != nil {
                return .inCluster(
                    try ClusterConnection.inCluster(environment: environment, directory: serviceAccountDirectory)
                )
            }
            throw KubeconfigError.notInCluster
        }
    }

    public nonisolated let source: Source
    public nonisolated let http: any HTTPClient
    public nonisolated let requestTimeout: Duration
    private var cache: [String: KubeContext] = [:]
    private var loaded: Source?

    /// - Parameters:
    ///   - source: where credentials come from.
    ///   - http: shared by every context; one libcurl loop serves them all.
    ///   - requestTimeout: for API calls that do not say otherwise.
    public init(source: Source, http: any HTTPClient, requestTimeout: Duration = .seconds(30)) {
        self.source = source
        self.http = http
        self.requestTimeout = requestTimeout
    }

    /// The context called `name`, or the current context for `nil`.
    /// - Throws: `KubeconfigError` when the kubeconfig cannot provide it.
    public func context(_ name: String?) throws -> KubeContext {
        let key = name ?? ""
        if let cached = cache[key] { return cached }
        let connection: ClusterConnection
        switch try loadedSource() {
        case .onFirstUse:
            throw KubeconfigError.notInCluster  // `loadedSource()` never returns one.
        case .kubeconfig(let config):
            connection = try config.connection(context: name)
        case .inCluster(let inCluster):
            guard name == nil || name == inCluster.contextName else {
                throw KubeconfigError.contextNotFound(
                    name ?? "",
                    source: "the in-cluster service account",
                    available: [inCluster.contextName]
                )
            }
            connection = inCluster
        }
        let context = KubeContext(connection: connection, http: http, timeout: requestTimeout)
        cache[key] = context
        if name == nil { cache[connection.contextName] = context }
        return context
    }

    /// The source, read now if it is read on first use; kept once read.
    private func loadedSource() throws -> Source {
        if let loaded { return loaded }
        var source = self.source
        while case .onFirstUse(let read) = source { source = try read() }
        loaded = source
        return source
    }
}

// MARK: - Shared wire types and helpers

struct KubeList<Item: Decodable>: Decodable {
    struct Meta: Decodable {
        var `continue`: String?
    }
    var items: [Item]?
    var metadata: Meta?
}

/// The API server's error body (`kind: Status`).
struct KubeStatus: Decodable {
    struct Details: Decodable {
        var name: String?
        var kind: String?
    }
    var kind: String?
    var status: String?
    var message: String?
    var reason: String?
    var code: Int?
    var details: Details?
}

/// Percent-encodes everything but RFC 3986 unreserved characters: safe for a query value or a path segment.
public func percentEncoded(_ value: String) -> String {
    let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
}

func pathWithoutQuery(_ path: String) -> String {
    path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
}
