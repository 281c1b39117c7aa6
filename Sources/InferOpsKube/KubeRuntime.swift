import InferOpsCore
import InferOpsHTTP

/// The Kubernetes side of the daemon, built once at start-up: the credentials, one libcurl client
/// shared by every context, and the adapters behind `ClusterInspector` and `EngineClient`.
///
/// The kubeconfig is read here (a missing or broken file stops start-up with a clear message), or,
/// with `.onFirstUse`, by the first call that needs the cluster, which then fails with that message.
public final class KubeRuntime: Sendable {
    public let http: CurlHTTPClient
    public let contexts: KubeContexts

    /// When the credentials are read.
    public enum CredentialReading: Sendable {
        case atStart
        /// Commands that never reach the cluster (help, refusals) then work without one.
        case onFirstUse
    }

    /// - Parameters:
    ///   - kubeconfig: a kubeconfig file; `nil` means what kubectl would use (`$KUBECONFIG`, then
    ///     `~/.kube/config`), and the pod's service account when there is neither.
    ///   - reading: when the kubeconfig is read.
    ///   - requestTimeout: for Kubernetes API calls.
    /// - Throws: `KubeconfigError` (a `UserFacingError`) when no usable credentials are found at
    ///   start, `HTTPTransportError` when libcurl cannot start.
    public init(
        kubeconfig: String?, reading: CredentialReading = .atStart, requestTimeout: Duration = .seconds(30)
    ) throws {
        let read: @Sendable () throws -> KubeContexts.Source = {
            if let kubeconfig {
                .kubeconfig(try Kubeconfig.load(path: kubeconfig))
            } else {
                try KubeContexts.Source.detect()
            }
        }
        let source: KubeContexts.Source =
            switch reading {
            case .atStart: try read()
            case .onFirstUse: .onFirstUse(read)
            }
        http = try CurlHTTPClient()
        contexts = KubeContexts(source: source, http: http, requestTimeout: requestTimeout)
    }

    /// For tests and embedders that already hold credentials and a client.
    public init(contexts: KubeContexts, http: CurlHTTPClient) {
        self.http = http
        self.contexts = contexts
    }

    /// The credentials the kubeconfig holds (tokens, client keys, with each key's base64 lines), so
    /// the redactor can remove them should an error or a reply ever quote one.
    public var credentialLiterals: [String] {
        guard case .kubeconfig(let kubeconfig) = contexts.source else { return [] }
        var found: [String] = []
        for user in kubeconfig.users.values {
            if let credential = user.credential, let token = try? credential.token(), !token.isEmpty {
                found.append(token.reveal())
            }
            let key: String? =
                switch user.clientKey {
                case .pem(let bytes): String(decoding: bytes, as: UTF8.self)
                case .file(let path): try? String(contentsOfFile: path, encoding: .utf8)
                case nil: nil
                }
            if let key {
                // As written, so its base64 is the kubeconfig's `client-key-data`, and trimmed.
                found += [key, key.trimmingCharacters(in: .whitespacesAndNewlines)]
                found += key.split(whereSeparator: \.isNewline).map(String.init)
                    .filter { !$0.hasPrefix("-----") && $0.count >= 16 }
            }
        }
        return found
    }

    public func clusterInspector() -> KubernetesClusterInspector {
        KubernetesClusterInspector(contexts: contexts)
    }

    /// - Parameters:
    ///   - access: how engines in each namespace are reached, as the environments configure it.
    ///   - fallback: for namespaces not listed.
    public func engineClient(
        access: [String: EngineAccess],
        fallback: EngineAccess = .serviceProxy
    ) -> KubernetesEngineClient {
        KubernetesEngineClient(contexts: contexts) { endpoint in
            access[endpoint.target.namespace] ?? fallback
        }
    }

    /// Stops the HTTP loop; requests still running fail. Call once the daemon has drained.
    public func shutdown() async {
        await http.shutdown()
    }
}
