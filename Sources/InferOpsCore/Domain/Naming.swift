/// Derives every name the product shows or creates from a model and an environment, in one place.
public enum Naming {
    /// The Helm release: `{model}-{env}`.
    public static func release(model: String, environment: String) -> String {
        "\(model)-\(environment)"
    }

    /// Helm refuses longer release names: it derives label values and object names from them, and
    /// those are limited to 63 characters with room kept for suffixes.
    public static let maxReleaseLength = 53

    /// Why `name` cannot name an environment or a model, or `nil` when it can. Both become parts of
    /// Kubernetes object names and label values (the release, the Service, the router's worker
    /// path), so they must be RFC 1123 DNS labels: lower-case letters, digits and `-`, starting and
    /// ending with a letter or digit, at most 63 characters.
    public static func dnsLabelProblem(_ name: String) -> String? {
        func alphanumeric(_ scalar: Unicode.Scalar) -> Bool {
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar)
        }
        let scalars = name.unicodeScalars
        guard let first = scalars.first, let last = scalars.last else { return "it is empty" }
        if scalars.count > 63 { return "it is \(scalars.count) characters long; at most 63 are allowed" }
        if !scalars.allSatisfy({ alphanumeric($0) || $0 == "-" }) {
            return "it may contain only lower-case letters, digits and `-`"
        }
        if !alphanumeric(first) || !alphanumeric(last) { return "it must start and end with a letter or a digit" }
        return nil
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

    /// The release named whole, its cluster included: the key of reads of it shared while in flight.
    public var readKey: String { "\(kubeContext ?? "")|\(namespace)|\(release)" }
}
