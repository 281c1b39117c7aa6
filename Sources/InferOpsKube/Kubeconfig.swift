import Foundation
import InferOpsCore
import InferOpsHTTP
import Yams

/// A parsed kubeconfig: named clusters, users and contexts, and the current context.
///
/// Only what the daemon needs to reach an API server is kept. Relative file paths are resolved
/// against the kubeconfig's own directory, as kubectl does. Credentials stay in `Secret` or in
/// files, so printing a `Kubeconfig` never shows a token or a key.
public struct Kubeconfig: Sendable, Hashable {
    public struct Cluster: Sendable, Hashable {
        public var server: String
        public var certificateAuthority: TLSMaterial?
        public var insecureSkipTLSVerify: Bool

        public init(server: String, certificateAuthority: TLSMaterial? = nil, insecureSkipTLSVerify: Bool = false) {
            self.server = server
            self.certificateAuthority = certificateAuthority
            self.insecureSkipTLSVerify = insecureSkipTLSVerify
        }
    }

    public struct User: Sendable, Hashable {
        public var credential: BearerCredential?
        public var clientCertificate: TLSMaterial?
        public var clientKey: TLSMaterial?
        /// Set when the user authenticates in a way this client does not speak (`exec`, `auth-provider`,
        /// basic auth), so the error can name it instead of failing with a 401 later.
        public var unsupportedMethod: String?

        public init(
            credential: BearerCredential? = nil,
            clientCertificate: TLSMaterial? = nil,
            clientKey: TLSMaterial? = nil,
            unsupportedMethod: String? = nil
        ) {
            self.credential = credential
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
            self.unsupportedMethod = unsupportedMethod
        }
    }

    public struct Context: Sendable, Hashable {
        public var cluster: String
        public var user: String?
        public var namespace: String?

        public init(cluster: String, user: String? = nil, namespace: String? = nil) {
            self.cluster = cluster
            self.user = user
            self.namespace = namespace
        }
    }

    public var currentContext: String?
    public var clusters: [String: Cluster]
    public var users: [String: User]
    public var contexts: [String: Context]
    /// Where it was read from, for error messages.
    public var source: String

    public init(
        currentContext: String? = nil,
        clusters: [String: Cluster] = [:],
        users: [String: User] = [:],
        contexts: [String: Context] = [:],
        source: String = "kubeconfig"
    ) {
        self.currentContext = currentContext
        self.clusters = clusters
        self.users = users
        self.contexts = contexts
        self.source = source
    }

    public var contextNames: [String] { contexts.keys.sorted() }

    /// Parses kubeconfig YAML.
    /// - Parameters:
    ///   - yaml: the document.
    ///   - directory: where relative `certificate-authority`, `client-*` and `tokenFile` paths start;
    ///     the kubeconfig's own directory.
    ///   - source: a name for messages, usually the path.
    /// - Throws: `KubeconfigError` for YAML that is not a kubeconfig or `*-data` that is not base64.
    public static func parse(_ yaml: String, directory: String, source: String = "kubeconfig") throws -> Kubeconfig {
        let raw: RawKubeconfig
        do {
            raw = try YAMLDecoder().decode(RawKubeconfig.self, from: yaml)
        } catch let error as DecodingError {
            // Only the key path: YAML error text can quote the offending line, which may hold a token.
            throw KubeconfigError.invalid(source: source, detail: error.keyPathDescription)
        } catch {
            throw KubeconfigError.invalid(source: source, detail: "not valid YAML")
        }
        func path(_ value: String) -> String {
            value.hasPrefix("/") ? value : URL(fileURLWithPath: directory).appendingPathComponent(value).path
        }
        func material(data: String?, file: String?, field: String) throws -> TLSMaterial? {
            if let data, !data.isEmpty {
                guard let bytes = Data(base64Encoded: data, options: .ignoreUnknownCharacters) else {
                    throw KubeconfigError.invalid(source: source, detail: "\(field)-data is not base64")
                }
                return .pem(Array(bytes))
            }
            if let file, !file.isEmpty { return .file(path(file)) }
            return nil
        }

        var config = Kubeconfig(source: source)
        config.currentContext = raw.currentContext.flatMap { $0.isEmpty ? nil : $0 }
        for entry in raw.clusters ?? [] {
            let cluster = entry.cluster
            config.clusters[entry.name] = Cluster(
                server: cluster.server ?? "",
                certificateAuthority: try material(
                    data: cluster.certificateAuthorityData,
                    file: cluster.certificateAuthority,
                    field: "certificate-authority"
                ),
                insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false
            )
        }
        for entry in raw.users ?? [] {
            let user = entry.user ?? RawKubeconfig.RawUser()
            var parsed = User(
                clientCertificate: try material(
                    data: user.clientCertificateData,
                    file: user.clientCertificate,
                    field: "client-certificate"
                ),
                clientKey: try material(data: user.clientKeyData, file: user.clientKey, field: "client-key")
            )
            if let token = user.token, !token.isEmpty {
                parsed.credential = .token(Secret(token))
            } else if let file = user.tokenFile, !file.isEmpty {
                parsed.credential = .tokenFile(path(file))
            }
            if user.exec != nil {
                parsed.unsupportedMethod = "exec credential plugins"
            } else if user.authProvider != nil {
                parsed.unsupportedMethod = "auth-provider plugins"
            } else if user.username != nil || user.password != nil {
                parsed.unsupportedMethod = "basic authentication"
            }
            config.users[entry.name] = parsed
        }
        for entry in raw.contexts ?? [] {
            config.contexts[entry.name] = Context(
                cluster: entry.context.cluster,
                user: entry.context.user,
                namespace: entry.context.namespace.flatMap { $0.isEmpty ? nil : $0 }
            )
        }
        return config
    }

    /// Reads and parses one kubeconfig file.
    /// - Throws: `KubeconfigError.unreadable` when the file cannot be read, or a parse error.
    public static func load(path: String) throws -> Kubeconfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KubeconfigError.unreadable(path: path)
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, directory: directory, source: path)
    }

    /// Reads several files and merges them as kubectl does for `KUBECONFIG=a:b`: the first file to
    /// name a cluster, user or context wins, and so does the first `current-context`.
    /// Files that do not exist are skipped; at least one must exist.
    public static func load(paths: [String]) throws -> Kubeconfig {
        var merged: Kubeconfig?
        for path in paths where FileManager.default.fileExists(atPath: path) {
            let next = try load(path: path)
            guard var current = merged else {
                merged = next
                continue
            }
            current.currentContext = current.currentContext ?? next.currentContext
            current.clusters.merge(next.clusters) { first, _ in first }
            current.users.merge(next.users) { first, _ in first }
            current.contexts.merge(next.contexts) { first, _ in first }
            current.source += ":" + path
            merged = current
        }
        guard let merged else { throw KubeconfigError.unreadable(path: paths.joined(separator: ":")) }
        return merged
    }

    /// The files kubectl would read: `$KUBECONFIG` (colon-separated), else `~/.kube/config`.
    public static func defaultPaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return list.split(separator: ":").map(String.init)
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return ["\(home)/.kube/config"]
    }

    /// Everything needed to call the API server as `context` (or the current context).
    /// - Throws: `KubeconfigError` when the context, its cluster or its user is missing or unusable.
    public func connection(context name: String? = nil) throws -> ClusterConnection {
        guard let contextName = name ?? currentContext else {
            throw KubeconfigError.noCurrentContext(source: source, available: contextNames)
        }
        guard let context = contexts[contextName] else {
            throw KubeconfigError.contextNotFound(contextName, source: source, available: contextNames)
        }
        guard let cluster = clusters[context.cluster] else {
            throw KubeconfigError.clusterNotFound(context.cluster, context: contextName, source: source)
        }
        guard !cluster.server.isEmpty else {
            throw KubeconfigError.missingServer(cluster: context.cluster, source: source)
        }
        var user = User()
        if let userName = context.user, !userName.isEmpty {
            guard let found = users[userName] else {
                throw KubeconfigError.userNotFound(userName, context: contextName, source: source)
            }
            user = found
        }
        if user.credential == nil, user.clientCertificate == nil, let method = user.unsupportedMethod {
            throw KubeconfigError.unsupportedAuthentication(method, context: contextName)
        }
        let tls = TLSOptions(
            certificateAuthority: cluster.certificateAuthority,
            clientCertificate: user.clientCertificate,
            clientKey: user.clientKey,
            insecureSkipVerify: cluster.insecureSkipTLSVerify
        )
        return ClusterConnection(
            contextName: contextName,
            server: cluster.server,
            tls: tls,
            credential: user.credential,
            namespace: context.namespace
        )
    }
}

/// How requests prove who they are, besides a client certificate.
public enum BearerCredential: Sendable, Hashable, CustomStringConvertible {
    /// A token written in the kubeconfig.
    case token(Secret)
    /// A file holding the token, read again for every request because service-account tokens rotate.
    case tokenFile(String)

    /// The current token.
    /// - Throws: `KubeconfigError.unreadable` when the token file cannot be read.
    public func token() throws -> Secret {
        switch self {
        case .token(let secret): return secret
        case .tokenFile(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw KubeconfigError.unreadable(path: path)
            }
            return Secret(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    public var description: String {
        switch self {
        case .token: "token <redacted>"
        case .tokenFile(let path): "token file \(path)"
        }
    }
}

/// One API server and the credentials for it: a resolved kubeconfig context or the pod's
/// service account.
public struct ClusterConnection: Sendable, Hashable, CustomStringConvertible {
    public var contextName: String
    /// The API server's base URL, without a trailing slash.
    public var server: String
    public var tls: TLSOptions
    public var credential: BearerCredential?
    /// The context's default namespace, if it names one.
    public var namespace: String?

    public init(
        contextName: String,
        server: String,
        tls: TLSOptions = TLSOptions(),
        credential: BearerCredential? = nil,
        namespace: String? = nil
    ) {
        self.contextName = contextName
        var server = server
        while server.hasSuffix("/") { server.removeLast() }
        self.server = server
        self.tls = tls
        self.credential = credential
        self.namespace = namespace
    }

    /// The context name used for the in-cluster service account.
    public static let inClusterContextName = "in-cluster"

    /// The pod's own service account, as client-go's `rest.InClusterConfig` finds it.
    /// - Parameters:
    ///   - environment: must hold `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    ///   - directory: the mounted service account (token, ca.crt, namespace).
    /// - Throws: `KubeconfigError.notInCluster` outside a pod, `.unreadable` without a token.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) throws -> ClusterConnection {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else { throw KubeconfigError.notInCluster }
        let tokenPath = "\(directory)/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubeconfigError.unreadable(path: tokenPath)
        }
        let caPath = "\(directory)/ca.crt"
        let namespace = (try? String(contentsOfFile: "\(directory)/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return ClusterConnection(
            contextName: inClusterContextName,
            server: "https://\(hostPart):\(port)",
            tls: TLSOptions(certificateAuthority: FileManager.default.fileExists(atPath: caPath) ? .file(caPath) : nil),
            credential: .tokenFile(tokenPath),
            namespace: namespace
        )
    }

    /// Context and server only: credentials never appear.
    public var description: String { "\(contextName) (\(server))" }
}

/// A kubeconfig that cannot be used, said so that an operator can fix it.
public enum KubeconfigError: UserFacingError, Equatable, CustomStringConvertible {
    case unreadable(path: String)
    case invalid(source: String, detail: String)
    case noCurrentContext(source: String, available: [String])
    case contextNotFound(String, source: String, available: [String])
    case clusterNotFound(String, context: String, source: String)
    case userNotFound(String, context: String, source: String)
    case missingServer(cluster: String, source: String)
    case unsupportedAuthentication(String, context: String)
    case notInCluster

    public var message: String {
        switch self {
        case .unreadable(let path): "Cannot read \(path)."
        case .invalid(let source, let detail): "The kubeconfig \(source) is not usable: \(detail)."
        case .noCurrentContext(let source, _): "The kubeconfig \(source) has no current context and none was named."
        case .contextNotFound(let name, let source, _): "There is no context `\(name)` in the kubeconfig \(source)."
        case .clusterNotFound(let cluster, let context, let source):
            "Context `\(context)` names cluster `\(cluster)`, which \(source) does not define."
        case .userNotFound(let user, let context, let source):
            "Context `\(context)` names user `\(user)`, which \(source) does not define."
        case .missingServer(let cluster, let source): "Cluster `\(cluster)` in \(source) has no server URL."
        case .unsupportedAuthentication(let method, let context):
            "Context `\(context)` authenticates with \(method), which InferOps does not support."
        case .notInCluster:
            "No kubeconfig was found and this is not a pod (KUBERNETES_SERVICE_HOST is not set)."
        }
    }

    public var hint: String? {
        switch self {
        case .unreadable: "Check the path and its permissions (KUBECONFIG, or ~/.kube/config)."
        case .invalid: "Compare it with the output of `kubectl config view --raw`."
        case .noCurrentContext(_, let available), .contextNotFound(_, _, let available):
            available.isEmpty
                ? "The kubeconfig defines no contexts."
                : "Known contexts: \(available.map { "`\($0)`" }.joined(separator: ", "))."
        case .clusterNotFound, .userNotFound, .missingServer: "Fix the kubeconfig entry, then try again."
        case .unsupportedAuthentication:
            "Use a service-account token (`token` or `tokenFile`) or a client certificate for this context."
        case .notInCluster: "Set KUBECONFIG, or run the daemon in the cluster with a service account."
        }
    }

    public var description: String { message }
}

extension DecodingError {
    /// Where decoding failed, as `clusters[0].cluster.server`, without any value from the document.
    fileprivate var keyPathDescription: String {
        let (context, problem): (DecodingError.Context?, String) =
            switch self {
            case .typeMismatch(_, let context): (context, "has the wrong type")
            case .valueNotFound(_, let context): (context, "is missing")
            case .keyNotFound(let key, let context): (context, "lacks `\(key.stringValue)`")
            case .dataCorrupted(let context): (context, "is not valid YAML")
            @unknown default: (nil, "is not valid")
            }
        let path = (context?.codingPath ?? []).map { key in
            key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)"
        }.joined()
        let trimmed = path.hasPrefix(".") ? String(path.dropFirst()) : path
        return trimmed.isEmpty ? "the document \(problem)" : "`\(trimmed)` \(problem)"
    }
}

/// The kubeconfig file as written, before names are resolved.
private struct RawKubeconfig: Decodable {
    struct NamedCluster: Decodable {
        var name: String
        var cluster: RawCluster
    }
    struct RawCluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }
    struct NamedUser: Decodable {
        var name: String
        var user: RawUser?
    }
    struct RawUser: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var username: String?
        var password: String?
        var exec: Ignored?
        var authProvider: Ignored?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, username, password, exec
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }
    struct NamedContext: Decodable {
        var name: String
        var context: RawContext
    }
    struct RawContext: Decodable {
        var cluster: String
        var user: String?
        var namespace: String?
    }
    /// Present or not is all that matters.
    struct Ignored: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    var currentContext: String?
    var clusters: [NamedCluster]?
    var users: [NamedUser]?
    var contexts: [NamedContext]?

    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }
}
