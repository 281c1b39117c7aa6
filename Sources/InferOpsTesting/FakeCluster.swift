import InferOpsCore

/// A cluster whose GPUs and pods the test sets; counts what the core asks.
public final class FakeCluster: ClusterInspector, Sendable {
    public struct State: Sendable {
        /// Answers for the next `gpuCapacity` calls, in order; the last one repeats.
        public var capacities: [GPUCapacity]
        /// Pods per release; a release without an entry has one ready pod.
        public var workloads: [String: WorkloadSnapshot] = [:]
        /// What `rollout` answers per release; `nil` (the default) means no Deployment to compare.
        public var rollouts: [String: Rollout] = [:]
        /// The manifests each `rollout` call was given, in order.
        public var renderedForRollout: [String] = []
        /// Thrown by `gpuCapacity` while set.
        public var capacityError: (any Error)?
        public var capacityCalls = 0
        public var workloadCalls = 0
    }

    private let observed: Observed<State>

    public init(capacity: GPUCapacity = FakeCluster.nodes(("gpu-a", 8, 0), ("gpu-b", 8, 0))) {
        observed = Observed(State(capacities: [capacity]))
    }

    /// A capacity from `(node, allocatable, requested)` triples.
    public static func nodes(_ nodes: (String, Int, Int)..., requestedByRelease: [String: Int] = [:]) -> GPUCapacity {
        GPUCapacity(
            nodes: nodes.map { NodeGPUs(node: $0.0, allocatable: $0.1, requested: $0.2) },
            requestedByRelease: requestedByRelease
        )
    }

    public func setCapacity(_ capacity: GPUCapacity) {
        observed.update { $0.capacities = [capacity] }
    }

    /// The next calls get these answers in order; the last one repeats.
    public func setCapacities(_ capacities: [GPUCapacity]) {
        precondition(!capacities.isEmpty, "give at least one capacity")
        observed.update { $0.capacities = capacities }
    }

    public func setWorkload(_ workload: WorkloadSnapshot, for release: String) {
        observed.update { $0.workloads[release] = workload }
    }

    public func setRollout(_ rollout: Rollout?, for release: String) {
        observed.update { $0.rollouts[release] = rollout }
    }

    public func failCapacity(with error: (any Error)?) {
        observed.update { $0.capacityError = error }
    }

    public var state: State { observed.value }
    public var capacityCalls: Int { observed.value.capacityCalls }
    public var workloadCalls: Int { observed.value.workloadCalls }

    public func waitFor(_ condition: @escaping @Sendable (State) -> Bool) async throws {
        try await observed.wait(until: condition)
    }

    public func gpuCapacity(kubeContext: String?) async throws -> GPUCapacity {
        let answer = observed.update { state -> Result<GPUCapacity, any Error> in
            state.capacityCalls += 1
            if let error = state.capacityError { return .failure(error) }
            let capacity = state.capacities[0]
            if state.capacities.count > 1 { state.capacities.removeFirst() }
            return .success(capacity)
        }
        return try answer.get()
    }

    public func workload(_ target: ReleaseTarget) async throws -> WorkloadSnapshot {
        observed.update { state in
            state.workloadCalls += 1
            return state.workloads[target.release]
                ?? WorkloadSnapshot(
                    desiredReplicas: 1,
                    pods: [PodSnapshot(name: "\(target.release)-0", phase: "Running", ready: true, node: "gpu-a")]
                )
        }
    }

    public func rollout(_ target: ReleaseTarget, rendered: String) async throws -> Rollout? {
        observed.update { state in
            state.renderedForRollout.append(rendered)
            return state.rollouts[target.release]
        }
    }
}
