import Foundation

/// Reads what the cluster says: GPU capacity, and how a release's pods are doing.
public protocol ClusterInspector: Sendable {
    /// GPUs per node: allocatable `nvidia.com/gpu` and what bound, unfinished pods already request.
    func gpuCapacity(kubeContext: String?) async throws -> GPUCapacity
    /// The release's pods (label `app.kubernetes.io/instance={release}`), with why they are not ready.
    func workload(_ target: ReleaseTarget) async throws -> WorkloadSnapshot
    /// How applying `rendered` (the manifests of a dry run) would roll the release's Deployment out:
    /// its strategy, what runs now, and whether the pod template changes. `nil` when `rendered` has no
    /// Deployment to compare.
    func rollout(_ target: ReleaseTarget, rendered: String) async throws -> Rollout?
}

public struct NodeGPUs: Hashable, Sendable, Codable {
    public var node: String
    public var allocatable: Int
    public var requested: Int
    /// GPUs that each release's pods bound here hold: a redeploy can reuse its own, on this node only.
    public var requestedByRelease: [String: Int]
    public var free: Int { max(0, allocatable - requested) }

    public init(node: String, allocatable: Int, requested: Int, requestedByRelease: [String: Int] = [:]) {
        self.node = node
        self.allocatable = allocatable
        self.requested = requested
        self.requestedByRelease = requestedByRelease
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
    /// The scheduler found no node for it; `reason` is then the scheduler's message.
    public var unschedulable: Bool
    /// Of the revision being rolled out (the Deployment's current pod template); `false` for pods of
    /// an older ReplicaSet that still serve or are stopping during a rollout.
    public var current: Bool
    /// Its deletion has begun (a `deletionTimestamp`): it may still read Ready while it stops, but it
    /// must not be given new requests.
    public var terminating: Bool
    /// The engine container's waiting reason (`ImagePullBackOff`, `CrashLoopBackOff`, …), if waiting.
    public var waiting: String?
    /// Why the engine container last ended (`OOMKilled`, `Error`), if it has restarted.
    public var lastExit: String?
    public var restarts: Int
    /// When it was created, scheduled, started and became ready, as far as it got.
    public var timeline: PodTimeline?

    public init(
        name: String, phase: String, ready: Bool, node: String? = nil, address: String? = nil, reason: String? = nil,
        unschedulable: Bool = false, current: Bool = true, terminating: Bool = false, waiting: String? = nil,
        lastExit: String? = nil, restarts: Int = 0, timeline: PodTimeline? = nil
    ) {
        self.timeline = timeline
        self.name = name
        self.phase = phase
        self.ready = ready
        self.node = node
        self.address = address
        self.reason = reason
        self.unschedulable = unschedulable
        self.current = current
        self.terminating = terminating
        self.waiting = waiting
        self.lastExit = lastExit
        self.restarts = restarts
    }

    /// Ready and not stopping: a replica that may be given requests.
    public var serving: Bool { ready && !terminating }
}

/// A pod's way to serving: created, given a node (after waiting for free GPUs, if it had to), its
/// engine container started (the image pulled), ready (the weights loaded, readiness passed).
public struct PodTimeline: Hashable, Sendable, Codable {
    public var created: Date?
    public var scheduled: Date?
    public var started: Date?
    public var ready: Date?

    public init(created: Date? = nil, scheduled: Date? = nil, started: Date? = nil, ready: Date? = nil) {
        self.created = created
        self.scheduled = scheduled
        self.started = started
        self.ready = ready
    }
}

public struct WorkloadSnapshot: Hashable, Sendable, Codable {
    public var desiredReplicas: Int
    public var pods: [PodSnapshot]
    /// Every ready pod, of any revision: what serves now.
    public var readyReplicas: Int { pods.filter(\.ready).count }
    /// Ready pods of the revision being rolled out: the progress of a rollout.
    public var readyCurrentReplicas: Int { pods.filter { $0.current && $0.ready }.count }
    /// Pods of older ReplicaSets, still serving or stopping.
    public var oldPods: [PodSnapshot] { pods.filter { !$0.current } }

    public init(desiredReplicas: Int, pods: [PodSnapshot]) {
        self.desiredReplicas = desiredReplicas
        self.pods = pods
    }
}
