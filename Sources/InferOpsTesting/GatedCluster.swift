import InferOpsCore

/// A cluster whose `workload` calls stop at a gate: holds whoever asks Kubernetes (a reconciler
/// pass, a registration) at that point while a test does something else, then lets it go on.
public struct GatedCluster: ClusterInspector {
    public let cluster: any ClusterInspector
    public let gate: Gate

    public init(cluster: any ClusterInspector, gate: Gate) {
        self.cluster = cluster
        self.gate = gate
    }

    public func gpuCapacity(kubeContext: String?) async throws -> GPUCapacity {
        try await cluster.gpuCapacity(kubeContext: kubeContext)
    }

    public func workload(_ target: ReleaseTarget) async throws -> WorkloadSnapshot {
        try await gate.pass()
        return try await cluster.workload(target)
    }

    public func rollout(_ target: ReleaseTarget, rendered: String) async throws -> Rollout? {
        try await cluster.rollout(target, rendered: rendered)
    }
}
