/// One operation per release at a time, in arrival order. The second waits; it never interleaves.
public actor ReleaseGate {
    var holders: [String: OperationID] = [:]
    var waiters: [String: [(OperationID, CheckedContinuation<Void, Never>)]] = [:]

    public init() {}

    /// The operation holding `release`, if any.
    public func holder(of release: String) -> OperationID? { holders[release] }

    /// Waits until `operation` holds `release`.
    public func acquire(_ release: String, for operation: OperationID) async {
        if holders[release] == nil {
            holders[release] = operation
            return
        }
        await withCheckedContinuation { continuation in
            waiters[release, default: []].append((operation, continuation))
        }
    }

    /// Hands `release` to the next waiter, or frees it.
    public func release(_ release: String) {
        guard var queue = waiters[release], !queue.isEmpty else {
            holders[release] = nil
            return
        }
        let (next, continuation) = queue.removeFirst()
        waiters[release] = queue.isEmpty ? nil : queue
        holders[release] = next
        continuation.resume()
    }
}

/// Fits a plan's replicas onto the nodes' free GPUs: each replica needs all its GPUs on one node.
public enum CapacityCheck {
    public struct Verdict: Hashable, Sendable {
        public var fits: Bool
        public var summary: String
    }

    /// - Parameter reclaimable: GPUs the release's own pods hold now and give back on redeploy.
    public static func evaluate(_ plan: DeployPlan, capacity: GPUCapacity) -> Verdict {
        let reclaimable = capacity.requestedByRelease[plan.target.release] ?? 0
        let perReplica = plan.gpusPerReplica
        var slots = 0
        if perReplica > 0 {
            slots = capacity.nodes.reduce(0) { $0 + $1.free / perReplica } + reclaimable / perReplica
        }
        let fits = perReplica == 0 || slots >= plan.replicas
        let nodes = capacity.nodes.map { "\($0.node) \($0.free)/\($0.allocatable) free" }.joined(separator: ", ")
        var summary =
            "needs \(plan.replicas) × \(perReplica) = \(plan.gpusNeeded) nvidia.com/gpu; "
            + "free \(capacity.free) of \(capacity.allocatable) allocatable"
        if reclaimable > 0 { summary += " (+\(reclaimable) held by this release)" }
        summary += nodes.isEmpty ? "; no GPU nodes" : " (\(nodes))"
        return Verdict(fits: fits, summary: summary)
    }
}
