/// Reads what the cluster says: GPU capacity, and how a release's pods are doing.
public protocol ClusterInspector: Sendable {
    /// GPUs per node: allocatable `nvidia.com/gpu` and what bound, unfinished pods already request.
    func gpuCapacity(kubeContext: String?) async throws -> GPUCapacity
    /// The release's pods (label `app.kubernetes.io/instance={release}`), with why they are not ready.
    func workload(_ target: ReleaseTarget) async throws -> WorkloadSnapshot
}

public struct NodeGPUs: Hashable, Sendable, Codable {
    public var node: String
    public var allocatable: Int
    public var requested: Int
    public var free: Int { max(0, allocatable - requested) }

    public init(node: String, allocatable: Int, requested: Int) {
        self.node = node
        self.allocatable = allocatable
        self.requested = requested
    }
}

public struct GPUCapacity: Hashable, Sendable, Codable {
    public var nodes: [NodeGPUs]
    /// GPUs requested per release (`app.kubernetes.io/instance`), bound or pending, so a redeploy
    /// can count what its own pods will give back.
    public var requestedByRelease: [String: Int]

    public init(nodes: [NodeGPUs], requestedByRelease: [String: Int] = [:]) {
        self.nodes = nodes
        self.requestedByRelease = requestedByRelease
    }

    public var allocatable: Int { nodes.reduce(0) { $0 + $1.allocatable } }
    public var requested: Int { nodes.reduce(0) { $0 + $1.requested } }
    public var free: Int { nodes.reduce(0) { $0 + $1.free } }
}

public struct PodSnapshot: Hashable, Sendable, Codable {
    public var name: String
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    public var phase: String
    public var ready: Bool
    public var node: String?
    /// The pod's IP address, once it has one: what the router reaches a replica at.
    public var address: String?
    /// Why it is not ready: the scheduler's message, a container waiting reason, or `nil`.
    public var reason: String?

    public init(name: String, phase: String, ready: Bool, node: String? = nil, address: String? = nil, reason: String? = nil) {
        self.name = name
        self.phase = phase
        self.ready = ready
        self.node = node
        self.address = address
        self.reason = reason
    }
}

public struct WorkloadSnapshot: Hashable, Sendable, Codable {
    public var desiredReplicas: Int
    public var pods: [PodSnapshot]
    public var readyReplicas: Int { pods.filter(\.ready).count }

    public init(desiredReplicas: Int, pods: [PodSnapshot]) {
        self.desiredReplicas = desiredReplicas
        self.pods = pods
    }
}
