/// Derives every name the product shows or creates from a model and an environment, in one place.
public enum Naming {
    /// The Helm release: `{model}-{env}`.
    public static func release(model: String, environment: String) -> String {
        "\(model)-\(environment)"
    }

    /// The in-cluster endpoint: `{release}.{namespace}.svc.cluster.local:{port}`.
    public static func endpoint(model: String, environment: String, namespace: String, port: Int = 8000) -> String {
        "\(release(model: model, environment: environment)).\(namespace).svc.cluster.local:\(port)"
    }
}

/// Where a release lives: the Kubernetes context, the namespace and the release name.
public struct ReleaseTarget: Hashable, Sendable, Codable, CustomStringConvertible {
    public var release: String
    public var namespace: String
    /// The kubeconfig context; `nil` means the kubeconfig's current context.
    public var kubeContext: String?

    public init(release: String, namespace: String, kubeContext: String? = nil) {
        self.release = release
        self.namespace = namespace
        self.kubeContext = kubeContext
    }

    public var description: String { "\(namespace)/\(release)" }
}
