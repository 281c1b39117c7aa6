import Foundation
import InferOpsCore

/// Warm pools the test sets and reads: what `capture` finds, the pools kept, and every change asked.
public final class FakeWarmPools: WarmPools, Sendable {
    public struct Kept: Hashable, Sendable {
        public var release: String
        public var revision: Int
        public var until: Date
        public var replicas: Int
    }

    public struct State: Sendable {
        /// What `capture` answers per release (the Deployment that runs now).
        public var running: [String: WarmTemplate] = [:]
        public var pools: [String: WarmPool] = [:]
        public var kept: [Kept] = []
        public var released: [String] = []
        public var served: [String] = []
    }

    private let observed = Observed(State())

    public init() {}

    public var state: State { observed.value }

    public func setRunning(_ template: WarmTemplate?, for release: String) {
        observed.update { $0.running[release] = template }
    }

    public func setPool(_ pool: WarmPool?, for release: String) {
        observed.update { $0.pools[release] = pool }
    }

    public func waitFor(_ condition: @escaping @Sendable (State) -> Bool) async throws {
        try await observed.wait(until: condition)
    }

    public func capture(_ target: ReleaseTarget) async throws -> WarmTemplate? {
        observed.value.running[target.release]
    }

    /// Keeps a pool with no pods yet (the test adds them, as the cluster would start them).
    public func keep(_ template: WarmTemplate, revision: Int, until: Date, for target: ReleaseTarget) async throws -> Bool {
        observed.update { state in
            state.kept.append(Kept(release: target.release, revision: revision, until: until, replicas: template.replicas))
            state.pools[target.release] = WarmPool(
                revision: revision, desiredReplicas: template.replicas, gpusPerReplica: template.gpusPerReplica, until: until,
                serving: false, pods: [])
        }
        return true
    }

    public func pool(_ target: ReleaseTarget) async throws -> WarmPool? {
        observed.value.pools[target.release]
    }

    public func serve(_ target: ReleaseTarget, since: Date) async throws {
        observed.update { state in
            state.served.append(target.release)
            state.pools[target.release]?.serving = true
            state.pools[target.release]?.servingSince = since
        }
    }

    public func release(_ target: ReleaseTarget) async throws {
        observed.update { state in
            if state.pools.removeValue(forKey: target.release) != nil { state.released.append(target.release) }
        }
    }

    public func pools(namespace: String, kubeContext: String?) async throws -> [String: WarmPool] {
        observed.value.pools
    }
}
