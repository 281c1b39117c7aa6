import InferOpsCore

/// Reads GPU capacity and workload state from the Kubernetes API.
///
/// Read-only: it needs `list` on nodes and pods (cluster-wide, for capacity), `get` on deployments
/// and `list` on pods and events in the release namespaces.
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
        let desired: Int
        do {
            let deployment: KubeDeployment = try await api.get(
                "/apis/apps/v1/namespaces/\(namespace)/deployments/\(percentEncoded(target.release))"
            )
            desired = deployment.spec?.replicas ?? 0
        } catch KubeAPIError.notFound {
            desired = 0  // not installed yet, or already removed: no replicas are wanted
        }
        let snapshots = try await pods.map(PodDiagnosis.snapshot).sorted { $0.name < $1.name }
        return WorkloadSnapshot(desiredReplicas: desired, pods: snapshots)
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
