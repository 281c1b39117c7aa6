import Foundation
import InferOpsCore

/// Warm pools as Deployments named `{release}-warm` beside the release (see `WarmPools`).
///
/// Needs, in the release namespaces: `get` on deployments, `create`, `patch` and `delete` on
/// deployments labelled `inferops.dev/warm-for`, `list` on pods.
public struct KubernetesWarmPools: WarmPools {
    public let contexts: KubeContexts

    public init(contexts: KubeContexts) {
        self.contexts = contexts
    }

    static let poolLabel = "inferops.dev/warm-for"
    static let revisionLabel = "inferops.dev/warm-revision"
    static let untilAnnotation = "inferops.dev/keep-until"
    static let servingAnnotation = "inferops.dev/serving"
    static let servingSinceAnnotation = "inferops.dev/serving-since"

    static func name(_ target: ReleaseTarget) -> String { "\(target.release)-warm" }

    func deployments(_ target: ReleaseTarget) -> String {
        "/apis/apps/v1/namespaces/\(percentEncoded(target.namespace))/deployments"
    }

    public func capture(_ target: ReleaseTarget) async throws -> WarmTemplate? {
        let api = try await contexts.context(target.kubeContext)
        let deployment: JSONValue
        do {
            deployment = try await api.get("\(deployments(target))/\(percentEncoded(target.release))")
        } catch KubeAPIError.notFound {
            return nil
        }
        guard let template = deployment["spec"]?["template"] else { return nil }
        return WarmTemplate(
            template: template, replicas: deployment["spec"]?["replicas"]?.intValue ?? 1,
            gpusPerReplica: RolloutReading.gpus(ofTemplate: template))
    }

    public func keep(_ template: WarmTemplate, revision: Int, until: Date, for target: ReleaseTarget) async throws -> Bool {
        if let now = try await capture(target),
           RolloutReading.withoutHash(now.template) == RolloutReading.withoutHash(template.template) {
            return false
        }
        try await release(target)
        let api = try await contexts.context(target.kubeContext)
        let body = Self.deployment(template, revision: revision, until: until, for: target)
        let _: JSONValue = try await api.create(deployments(target), json: Array(body.canonical.utf8))
        return true
    }

    /// The pool's Deployment: the captured pod template, relabelled out of the release.
    static func deployment(_ template: WarmTemplate, revision: Int, until: Date, for target: ReleaseTarget) -> JSONValue {
        let selector: [String: JSONValue] = [poolLabel: .string(target.release), revisionLabel: .string("\(revision)")]
        var pod = template.template
        var labels: [String: JSONValue] = [:]
        if case .object(let existing)? = pod["metadata"]?["labels"] { labels = existing }
        // Out of the release: its Service, its Deployment's selector and GPU accounting by release
        // all go by the instance label, and the hash belongs to the release's ReplicaSet.
        labels[GPUAccounting.releaseLabel] = nil
        labels[RolloutReading.hashLabel] = nil
        labels.merge(selector) { _, new in new }
        pod = pod.setting(path: ["metadata", "labels"], to: .object(labels))
        return .object([
            "apiVersion": .string("apps/v1"),
            "kind": .string("Deployment"),
            "metadata": .object([
                "name": .string(name(target)),
                "namespace": .string(target.namespace),
                "labels": .object(selector.merging(["app.kubernetes.io/managed-by": .string("inferops")]) { old, _ in old }),
                "annotations": .object([
                    untilAnnotation: .string(until.formatted(.iso8601)),
                    servingAnnotation: .string("false"),
                ]),
            ]),
            "spec": .object([
                "replicas": .number(Double(template.replicas)),
                "selector": .object(["matchLabels": .object(selector)]),
                "template": pod,
            ]),
        ])
    }

    public func pool(_ target: ReleaseTarget) async throws -> WarmPool? {
        try await pools(namespace: target.namespace, kubeContext: target.kubeContext, release: target.release)[target.release]
    }

    public func pools(namespace: String, kubeContext: String?) async throws -> [String: WarmPool] {
        try await pools(namespace: namespace, kubeContext: kubeContext, release: nil)
    }

    func pools(namespace: String, kubeContext: String?, release: String?) async throws -> [String: WarmPool] {
        let api = try await contexts.context(kubeContext)
        let selector = percentEncoded(release.map { "\(Self.poolLabel)=\($0)" } ?? Self.poolLabel)
        let base = "/namespaces/\(percentEncoded(namespace))"
        async let found = api.list("/apis/apps/v1\(base)/deployments?labelSelector=\(selector)", of: JSONValue.self)
        async let pods = api.list("/api/v1\(base)/pods?labelSelector=\(selector)", of: KubePod.self)
        var pools: [String: WarmPool] = [:]
        let allPods = try await pods
        for deployment in try await found {
            let labels = deployment["metadata"]?["labels"]
            guard let owner = labels?[Self.poolLabel]?.stringValue,
                  let revision = labels?[Self.revisionLabel]?.stringValue.flatMap(Int.init),
                  deployment["metadata"]?["deletionTimestamp"]?.stringValue == nil
            else { continue }
            let annotations = deployment["metadata"]?["annotations"]
            let template = deployment["spec"]?["template"]
            let members = allPods.filter {
                $0.metadata.labels?[Self.poolLabel] == owner && $0.metadata.labels?[Self.revisionLabel] == "\(revision)"
            }
            pools[owner] = WarmPool(
                revision: revision,
                desiredReplicas: deployment["spec"]?["replicas"]?.intValue ?? 1,
                gpusPerReplica: RolloutReading.gpus(ofTemplate: template),
                until: annotations?[Self.untilAnnotation]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) } ?? .distantPast,
                serving: annotations?[Self.servingAnnotation]?.stringValue == "true",
                servingSince: annotations?[Self.servingSinceAnnotation]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) },
                pods: members.map(PodDiagnosis.snapshot).sorted { $0.name < $1.name })
        }
        return pools
    }

    public func serve(_ target: ReleaseTarget, since: Date) async throws {
        let api = try await contexts.context(target.kubeContext)
        let patch = JSONValue.object(["metadata": .object(["annotations": .object([
            Self.servingAnnotation: .string("true"), Self.servingSinceAnnotation: .string(since.formatted(.iso8601)),
        ])])])
        let path = "\(deployments(target))/\(percentEncoded(Self.name(target)))"
        let response = try await api.send(.patch, path, body: Array(patch.canonical.utf8), contentType: "application/merge-patch+json")
        try api.checkStatus(response, path: path)
    }

    public func release(_ target: ReleaseTarget) async throws {
        let api = try await contexts.context(target.kubeContext)
        let path = "\(deployments(target))/\(percentEncoded(Self.name(target)))?propagationPolicy=Background"
        let response = try await api.send(.delete, path)
        if response.status == 404 { return }
        try api.checkStatus(response, path: path)
    }
}
