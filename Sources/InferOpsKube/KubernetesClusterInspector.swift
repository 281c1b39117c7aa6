import InferOpsCore

/// Reads GPU capacity and workload state from the Kubernetes API.
///
/// Read-only: it needs `list` on nodes and pods (cluster-wide, for capacity), `get` on deployments
/// and `list` on pods, replicasets and events in the release namespaces.
public struct KubernetesClusterInspector: ClusterInspector {
    public let contexts: KubeContexts

    public init(contexts: KubeContexts) {
        self.contexts = contexts
    }

    public func gpuCapacity(kubeContext: String?) async throws -> GPUCapacity {
        let api = try await contexts.context(kubeContext)
        async let nodes = api.list("/api/v1/nodes", of: KubeNode.self)
        async let pods = api.list("/api/v1/pods", of: KubePod.self)
        return GPUAccounting.capacity(nodes: try await nodes, pods: try await pods)
    }

    public func workload(_ target: ReleaseTarget) async throws -> WorkloadSnapshot {
        let api = try await contexts.context(target.kubeContext)
        let namespace = percentEncoded(target.namespace)
        let selector = percentEncoded("\(GPUAccounting.releaseLabel)=\(target.release)")
        async let pods = api.list("/api/v1/namespaces/\(namespace)/pods?labelSelector=\(selector)", of: KubePod.self)
        async let replicaSets = api.list(
            "/apis/apps/v1/namespaces/\(namespace)/replicasets?labelSelector=\(selector)", of: JSONValue.self)
        let deployment: JSONValue?
        do {
            deployment = try await api.get(
                "/apis/apps/v1/namespaces/\(namespace)/deployments/\(percentEncoded(target.release))"
            )
        } catch KubeAPIError.notFound {
            deployment = nil  // not installed yet, or already removed: no replicas are wanted
        }
        // During a rollout only the pods of the current template's ReplicaSet are progress; until the
        // controller has created that ReplicaSet, every pod with a hash is old.
        var currentHash: String?
        if let deployment {
            currentHash = RolloutReading.currentHash(deployment: deployment, replicaSets: try await replicaSets)
        }
        var snapshots: [PodSnapshot] = []
        for pod in try await pods {
            var snapshot = PodDiagnosis.snapshot(pod)
            if deployment != nil, let hash = pod.metadata.labels?[RolloutReading.hashLabel] {
                snapshot.current = hash == currentHash
            }
            snapshots.append(snapshot)
        }
        return WorkloadSnapshot(
            desiredReplicas: deployment?["spec"]?["replicas"]?.intValue ?? (deployment == nil ? 0 : 1),
            pods: snapshots.sorted { $0.name < $1.name }
        )
    }

    public func rollout(_ target: ReleaseTarget, rendered: String) async throws -> Rollout? {
        guard let wanted = RolloutReading.deployment(in: rendered, release: target.release),
            let name = wanted["metadata"]?["name"]?.stringValue
        else { return nil }
        let api = try await contexts.context(target.kubeContext)
        let live: JSONValue?
        do {
            live = try await api.get(
                "/apis/apps/v1/namespaces/\(percentEncoded(target.namespace))/deployments/\(percentEncoded(name))"
            )
        } catch KubeAPIError.notFound {
            live = nil
        }
        return RolloutReading.rollout(rendered: wanted, live: live)
    }

    /// The events about one pod, oldest first: the scheduler's attempts, image pulls, probe failures.
    public func events(forPod pod: String, namespace: String, kubeContext: String?) async throws -> [PodEvent] {
        let api = try await contexts.context(kubeContext)
        let selector = percentEncoded("involvedObject.name=\(pod)")
        let events = try await api.list(
            "/api/v1/namespaces/\(percentEncoded(namespace))/events?fieldSelector=\(selector)",
            of: KubeEvent.self
        )
        return
            events
            .filter { $0.involvedObject?.name == nil || $0.involvedObject?.name == pod }
            .map { event in
                PodEvent(
                    type: event.type ?? "Normal",
                    reason: event.reason ?? "",
                    message: event.message ?? "",
                    count: event.count ?? 1,
                    lastSeen: event.lastTimestamp ?? event.eventTime ?? event.firstTimestamp,
                    source: event.source?.component
                )
            }
            .sorted { ($0.lastSeen ?? "") < ($1.lastSeen ?? "") }
    }
}

/// One Kubernetes event about a pod, as `kubectl describe pod` lists them.
public struct PodEvent: Hashable, Sendable, Codable {
    /// `Normal` or `Warning`.
    public var type: String
    public var reason: String
    public var message: String
    public var count: Int
    /// RFC 3339 time of the last occurrence, when the API gave one.
    public var lastSeen: String?
    /// The component that reported it (`default-scheduler`, `kubelet`).
    public var source: String?

    public init(
        type: String,
        reason: String,
        message: String,
        count: Int = 1,
        lastSeen: String? = nil,
        source: String? = nil
    ) {
        self.type = type
        self.reason = reason
        self.message = message
        self.count = count
        self.lastSeen = lastSeen
        self.source = source
    }
}
