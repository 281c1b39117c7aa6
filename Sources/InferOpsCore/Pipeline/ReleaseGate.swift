import Synchronization

/// One operation per release at a time inside one daemon, in the order they were started. The
/// second waits; it never interleaves. An operation reserves its place when the runner starts it
/// (`reserve`), before any of its steps, so the order does not depend on how fast each one plans;
/// one that ends before it acquires withdraws (`withdraw`). A waiter whose task is cancelled leaves
/// the queue at once.
public final class ReleaseGate: Sendable {
    struct Waiter {
        var operation: OperationID
        var continuation: CheckedContinuation<Bool, Never>
    }

    struct State {
        var holders: [String: OperationID] = [:]
        /// Operations with a place for each release, in order; the holder is not among them.
        var places: [String: [OperationID]] = [:]
        var waiters: [String: [Waiter]] = [:]

        /// Gives a free `release` to the first operation in line if it is waiting; returns it.
        mutating func handOver(_ release: String) -> Waiter? {
            guard holders[release] == nil, let first = places[release]?.first,
                  let index = waiters[release]?.firstIndex(where: { $0.operation == first })
            else { return nil }
            let waiter = waiters[release]!.remove(at: index)
            if waiters[release]!.isEmpty { waiters[release] = nil }
            places[release]!.removeFirst()
            if places[release]!.isEmpty { places[release] = nil }
            holders[release] = first
            return waiter
        }

        mutating func removePlace(_ release: String, _ operation: OperationID) {
            places[release]?.removeAll { $0 == operation }
            if places[release]?.isEmpty == true { places[release] = nil }
        }
    }

    let state = Mutex(State())

    public init() {}

    /// The operation holding `release`, if any.
    public func holder(of release: String) -> OperationID? { state.withLock { $0.holders[release] } }

    /// Takes `operation`'s place in line for `release`, once.
    public func reserve(_ release: String, for operation: OperationID) {
        state.withLock { state in
            if state.holders[release] != operation, state.places[release]?.contains(operation) != true {
                state.places[release, default: []].append(operation)
            }
        }
    }

    /// Gives up `operation`'s place for `release` (it ended before acquiring); the next in line may go.
    public func withdraw(_ release: String, for operation: OperationID) {
        let next = state.withLock { state -> Waiter? in
            state.removePlace(release, operation)
            return state.handOver(release)
        }
        next?.continuation.resume(returning: true)
    }

    /// Waits until `operation` holds `release`: when it is first in line and the release is free.
    /// An operation without a place takes the last one.
    /// - Returns: `false` when the task was cancelled while waiting (it then does not hold it).
    public func acquire(_ release: String, for operation: OperationID) async -> Bool {
        if Task.isCancelled {
            withdraw(release, for: operation)
            return false
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let granted = state.withLock { state -> Waiter? in
                    if state.places[release]?.contains(operation) != true {
                        state.places[release, default: []].append(operation)
                    }
                    state.waiters[release, default: []].append(Waiter(operation: operation, continuation: continuation))
                    return state.handOver(release)
                }
                granted?.continuation.resume(returning: true)
                if Task.isCancelled { abandon(release, operation) }
            }
        } onCancel: {
            abandon(release, operation)
        }
    }

    func abandon(_ release: String, _ operation: OperationID) {
        let (waiter, next) = state.withLock { state -> (Waiter?, Waiter?) in
            guard let index = state.waiters[release]?.firstIndex(where: { $0.operation == operation }) else { return (nil, nil) }
            let waiter = state.waiters[release]!.remove(at: index)
            if state.waiters[release]!.isEmpty { state.waiters[release] = nil }
            state.removePlace(release, operation)
            return (waiter, state.handOver(release))
        }
        waiter?.continuation.resume(returning: false)
        next?.continuation.resume(returning: true)
    }

    /// Hands `release` to the next in line if it is waiting, or frees it.
    public func release(_ release: String) {
        let next = state.withLock { state -> Waiter? in
            state.holders[release] = nil
            return state.handOver(release)
        }
        next?.continuation.resume(returning: true)
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
        /// What would make it fit, for this case: only what applies (no "lower `replicaCount`" at 1
        /// replica; the node to free GPUs on when free GPUs are split over nodes). `nil` when it fits.
        public var suggestion: String? = nil
    }

    /// - Parameter rollout: how the update rolls out; `nil` when unknown, and then the release's own
    ///   GPUs count as given back (right for a replica change, optimistic for a template change).
    public static func evaluate(_ plan: DeployPlan, capacity: GPUCapacity, rollout: Rollout? = nil) -> Verdict {
        let release = plan.target.release
        let reclaimable = capacity.requestedByRelease[release] ?? 0
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
        // The blocks a new replica could use, and how many replicas must find one.
        var blocks = capacity.nodes.map { ($0.node, $0.free + ($0.requestedByRelease[release] ?? 0)) }
        var needed = plan.replicas
        if let rollout, perReplica > 0 {
            let fit = rolloutFit(plan, capacity: capacity, rollout: rollout)
            fits = fit.fits
            summary += "; " + fit.explanation
            hint = fit.hint
            if let placing = fit.placing { (blocks, needed) = placing }
        }
        guard !fits else { return Verdict(fits: true, summary: summary, hint: hint) }
        guard needed > 0, perReplica > 0,
            let placing = shortfall(needed: needed, of: plan.replicas, perReplica: perReplica, blocks: blocks)
        else {
            let suggestion = "Free GPUs, or ask for the deploy to wait."
            return Verdict(fits: false, summary: summary, hint: hint, suggestion: suggestion)
        }
        summary += "; " + placing.reason
        return Verdict(fits: false, summary: summary, hint: hint, suggestion: placing.suggestion)
    }

    /// The plan made to fit `capacity`, when it does not as asked, in this order: replacing the
    /// running replicas one at a time instead of by surge (an upgrade of at least 2 replicas, so one
    /// still serves while another is replaced); then fewer replicas, down to `plan.minReplicas`,
    /// each count by surge first. `nil` when nothing allowed fits.
    public static func adapt(
        _ plan: DeployPlan, capacity: GPUCapacity, rollout: Rollout?
    ) -> (plan: DeployPlan, rollout: Rollout?, verdict: Verdict, oneAtATime: Bool)? {
        let fewest = plan.minReplicas ?? plan.replicas
        for replicas in stride(from: plan.replicas, through: max(1, fewest), by: -1) {
            var sized = plan
            if replicas != plan.replicas {
                sized.replicas = replicas
                sized.values = sized.values.setting(path: ["replicaCount"], to: .number(Double(replicas)))
                let verdict = evaluate(sized, capacity: capacity, rollout: rollout)
                if verdict.fits { return (sized, rollout, verdict, false) }
            }
            if let rollout, let oneByOne = oneAtATime(rollout, replicas: replicas) {
                var stepped = sized
                stepped.values = stepped.values.setting(path: ["strategy"], to: oneAtATimeStrategy)
                let verdict = evaluate(stepped, capacity: capacity, rollout: oneByOne)
                if verdict.fits { return (stepped, oneByOne, verdict, true) }
            }
        }
        return nil
    }

    /// The chart's `strategy` value for one replica at a time: none added, one stopped first.
    static let oneAtATimeStrategy = JSONValue.object([
        "type": .string("RollingUpdate"),
        "rollingUpdate": .object(["maxSurge": .number(0), "maxUnavailable": .number(1)]),
    ])

    /// `rollout` replacing one replica at a time, when that is a different way that keeps one serving:
    /// an upgrade of running replicas by surge, to at least 2 replicas with at least 2 running.
    static func oneAtATime(_ rollout: Rollout, replicas: Int) -> Rollout? {
        guard rollout.templateChanges, let running = rollout.running, running.replicas >= 2, replicas >= 2,
              case .rollingUpdate(let maxSurge, _) = rollout.strategy, maxSurge.resolve(replicas: replicas, roundUp: true) > 0
        else { return nil }
        var stepped = rollout
        stepped.strategy = .rollingUpdate(maxSurge: .count(0), maxUnavailable: .count(1))
        return stepped
    }

    /// Why `needed` of the plan's `replicas`, `perReplica` GPUs each, do not fit in `blocks` (free
    /// GPUs per node), in terms a reader can check against the numbers: free GPUs split over nodes do
    /// not add up to a replica. And what to do about it, only what applies. `nil` when they fit.
    static func shortfall(
        needed: Int,
        of replicas: Int,
        perReplica: Int,
        blocks: [(String, Int)]
    ) -> (reason: String, suggestion: String)? {
        let placeable = blocks.reduce(0) { $0 + $1.1 / perReplica }
        guard placeable < needed else { return nil }
        let totalFree = blocks.reduce(0) { $0 + $1.1 }
        // The first node with the most free GPUs: the one closest to taking a replica.
        let largest = blocks.reduce(nil as (String, Int)?) { best, block in
            best.map { block.1 > $0.1 ? block : $0 } ?? block
        }
        let each = perReplica.counting("GPU") + " each"
        var reason: String
        var options: [String] = []
        if placeable > 0 {
            reason = "room for \(placeable) of \(needed) replicas (\(each), all on one node)"
            options.append("free \(perReplica.counting("GPU")) on one node for each replica that does not fit")
        } else if let (node, free) = largest, free > 0 {
            reason = "no node has \(perReplica) free; largest free block is \(free) on \(node)"
            if totalFree >= perReplica {
                reason += " (the \(totalFree) free GPUs are split over nodes; a replica's GPUs must be on one node)"
            }
            options.append(
                "free \((perReplica - free).counting("more GPU", plural: "more GPUs")) on \(node) "
                    + "(roll back or remove a model there)"
            )
        } else {
            reason = "no GPU is free on any node"
            options.append("free \(perReplica.counting("GPU")) on one node")
        }
        let smaller = replicas - (needed - placeable)
        if smaller >= 1 { options.append("lower `replicaCount` to \(smaller)") }
        options.append("ask for the deploy to wait")
        let suggestion = listed(options)
        return (reason, suggestion.prefix(1).uppercased() + suggestion.dropFirst() + ".")
    }

    /// `a`, `a or b`, `a, b, or c`.
    static func listed(_ options: [String]) -> String {
        switch options.count {
        case 0: ""
        case 1: options[0]
        case 2: options[0] + " or " + options[1]
        default: options.dropLast().joined(separator: ", ") + ", or " + options[options.count - 1]
        }
    }

    /// The Deployment controller's side of the arithmetic (pods per node, `perReplica` > 0):
    /// - nothing runs yet: every replica needs free GPUs;
    /// - same pod template: running pods stay, only the replicas added need free GPUs;
    /// - new template: every pod is replaced, so in the end the release's own GPUs are reusable on
    ///   their nodes; but a rolling update that may not stop an old pod first (`maxUnavailable`
    ///   resolving to 0, or too few replicas running to spare one) must start a surge pod beside all
    ///   the old ones, which needs `perReplica` free GPUs on one node. One such pod is enough for the
    ///   rollout to progress: each one that becomes ready lets an old pod stop and frees its GPUs.
    /// `placing` is what must find room: the free GPUs per node and how many replicas.
    static func rolloutFit(
        _ plan: DeployPlan,
        capacity: GPUCapacity,
        rollout: Rollout
    ) -> (fits: Bool, explanation: String, hint: String?, placing: (blocks: [(String, Int)], needed: Int)?) {
        let perReplica = plan.gpusPerReplica
        let replicas = plan.replicas
        let freeSlots = capacity.nodes.reduce(0) { $0 + $1.free / perReplica }
        let freeBlocks = capacity.nodes.map { ($0.node, $0.free) }
        guard let running = rollout.running else {
            let all = replicas == 1 ? "the 1 replica needs" : "all \(replicas) replicas need"
            return (freeSlots >= replicas, "nothing runs yet, so \(all) free GPUs", nil, (freeBlocks, replicas))
        }
        guard rollout.templateChanges else {
            let added = max(0, replicas - running.replicas)
            let stay = running.replicas.counting("running replica") + (running.replicas == 1 ? " stays" : " stay")
            return (
                freeSlots >= added,
                "the pod template is unchanged: \(stay), \(added) added need free GPUs",
                nil,
                (freeBlocks, added)
            )
        }
        let release = plan.target.release
        let finalBlocks = capacity.nodes.map { ($0.node, $0.free + ($0.requestedByRelease[release] ?? 0)) }
        let finalSlots = finalBlocks.reduce(0) { $0 + $1.1 / perReplica }
        let finalFits = finalSlots >= replicas
        switch rollout.strategy {
        case .recreate:
            return (
                finalFits,
                "Recreate stops the \(running.replicas.counting("old pod")) before new ones start",
                nil,
                (finalBlocks, replicas)
            )
        case .rollingUpdate(let maxSurge, let maxUnavailable):
            let surge = maxSurge.resolve(replicas: replicas, roundUp: true)
            var unavailable = maxUnavailable.resolve(replicas: replicas, roundUp: false)
            if surge == 0 && unavailable == 0 { unavailable = 1 }  // the controller's own fencepost rule
            let stoppedFirst = min(running.replicas, max(0, running.replicas - (replicas - unavailable)))
            let strategy =
                "the pod template changes; rolling update with maxSurge \(maxSurge) (\(surge.counting("pod"))) "
                + "and maxUnavailable \(maxUnavailable) (\(unavailable.counting("pod"))) of \(replicas)"
            if stoppedFirst > 0 || running.replicas == 0 {
                return (
                    finalFits,
                    strategy + " stops \(stoppedFirst.counting("old pod")) before new ones need their GPUs",
                    nil,
                    (finalBlocks, replicas)
                )
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
                        + "replacement starts (one replica fewer serves meanwhile).",
                startFits ? (finalBlocks, replicas) : nil
            )
        }
    }
}
