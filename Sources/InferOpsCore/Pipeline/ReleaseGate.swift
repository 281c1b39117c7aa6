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
/// With the rollout known, it also accounts for how the Deployment controller replaces pods.
public enum CapacityCheck {
    public struct Verdict: Hashable, Sendable {
        public var fits: Bool
        public var summary: String
        /// What to change when the rollout, not the final size, is what does not fit.
        public var hint: String? = nil
    }

    /// - Parameter rollout: how the update rolls out; `nil` when unknown, and then the release's own
    ///   GPUs count as given back (right for a replica change, optimistic for a template change).
    public static func evaluate(_ plan: DeployPlan, capacity: GPUCapacity, rollout: Rollout? = nil) -> Verdict {
        let reclaimable = capacity.requestedByRelease[plan.target.release] ?? 0
        let perReplica = plan.gpusPerReplica
        var slots = 0
        if perReplica > 0 {
            slots = capacity.nodes.reduce(0) { $0 + $1.free / perReplica } + reclaimable / perReplica
        }
        var fits = perReplica == 0 || slots >= plan.replicas
        let nodes = capacity.nodes.map { "\($0.node) \($0.free)/\($0.allocatable) free" }.joined(separator: ", ")
        var summary =
            "needs \(plan.replicas) × \(perReplica) = \(plan.gpusNeeded) nvidia.com/gpu; "
            + "free \(capacity.free) of \(capacity.allocatable) allocatable"
        if reclaimable > 0 { summary += " (+\(reclaimable) held by this release)" }
        summary += nodes.isEmpty ? "; no GPU nodes" : " (\(nodes))"
        var hint: String?
        if let rollout, perReplica > 0 {
            let fit = rolloutFit(plan, capacity: capacity, rollout: rollout)
            fits = fit.fits
            summary += "; " + fit.explanation
            hint = fit.hint
        }
        return Verdict(fits: fits, summary: summary, hint: hint)
    }

    /// The Deployment controller's side of the arithmetic (pods per node, `perReplica` > 0):
    /// - nothing runs yet: every replica needs free GPUs;
    /// - same pod template: running pods stay, only the replicas added need free GPUs;
    /// - new template: every pod is replaced, so in the end the release's own GPUs are reusable on
    ///   their nodes; but a rolling update that may not stop an old pod first (`maxUnavailable`
    ///   resolving to 0, or too few replicas running to spare one) must start a surge pod beside all
    ///   the old ones, which needs `perReplica` free GPUs on one node. One such pod is enough for the
    ///   rollout to progress: each one that becomes ready lets an old pod stop and frees its GPUs.
    static func rolloutFit(
        _ plan: DeployPlan,
        capacity: GPUCapacity,
        rollout: Rollout
    ) -> (fits: Bool, explanation: String, hint: String?) {
        let perReplica = plan.gpusPerReplica
        let replicas = plan.replicas
        let freeSlots = capacity.nodes.reduce(0) { $0 + $1.free / perReplica }
        guard let running = rollout.running else {
            return (freeSlots >= replicas, "nothing runs yet, so all \(replicas) replicas need free GPUs", nil)
        }
        guard rollout.templateChanges else {
            let added = max(0, replicas - running.replicas)
            return (
                freeSlots >= added,
                "the pod template is unchanged: \(running.replicas) running replicas stay, \(added) added need free GPUs",
                nil
            )
        }
        let release = plan.target.release
        let finalSlots = capacity.nodes.reduce(0) {
            $0 + ($1.free + ($1.requestedByRelease[release] ?? 0)) / perReplica
        }
        let finalFits = finalSlots >= replicas
        switch rollout.strategy {
        case .recreate:
            return (finalFits, "Recreate stops the \(running.replicas) old pods before new ones start", nil)
        case .rollingUpdate(let maxSurge, let maxUnavailable):
            let surge = maxSurge.resolve(replicas: replicas, roundUp: true)
            var unavailable = maxUnavailable.resolve(replicas: replicas, roundUp: false)
            if surge == 0 && unavailable == 0 { unavailable = 1 }  // the controller's own fencepost rule
            let stoppedFirst = min(running.replicas, max(0, running.replicas - (replicas - unavailable)))
            let strategy =
                "the pod template changes; rolling update with maxSurge \(maxSurge) (\(surge) pods) "
                + "and maxUnavailable \(maxUnavailable) (\(unavailable) pods) of \(replicas)"
            if stoppedFirst > 0 || running.replicas == 0 {
                return (finalFits, strategy + " stops \(stoppedFirst) old pods before new ones need their GPUs", nil)
            }
            let mostFree = capacity.nodes.map(\.free).max() ?? 0
            let startFits = freeSlots >= 1
            return (
                finalFits && startFits,
                strategy + " starts a new pod before any old pod stops: it needs \(perReplica) free GPUs on one node "
                    + "besides those the release holds (most free on one node: \(mostFree))",
                startFits
                    ? nil
                    : "Free \(perReplica) GPUs on one node, or set the chart's `strategy` to "
                        + "`{rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}` so an old pod stops before its "
                        + "replacement starts (one replica fewer serves meanwhile)."
            )
        }
    }
}
