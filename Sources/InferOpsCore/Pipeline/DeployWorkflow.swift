import Foundation

/// Runs a deploy from plan to verification (DESIGN §3), and rolls back when the environment says so.
struct DeployWorkflow: Sendable {
    let services: Services
    var plan: DeployPlan
    let environment: EnvironmentSettings
    let reporter: OperationReporter
    /// The environment's router side, when it has a router.
    var registrar: Registrar? = nil
    /// Register the model once verified (`--register`, or the environment registers automatically).
    var registers = false
    /// Set when the requester may not change the router here: the registration and the routing
    /// refresh are skipped, and the thread says so.
    var routingDenial: Denial? = nil

    var verifier: EngineVerifier {
        EngineVerifier(engines: services.engines, time: services.time, settings: environment.verification)
    }

    /// - Returns: the outcome; failures are reported in the thread before returning.
    func run() async throws -> CommandOutcome {
        // Prechecking: a stuck release or missing GPUs stop the deploy before Helm runs.
        try await reporter.move(to: .prechecking, "Checking the release and GPU capacity.")
        let current = try await services.releases.status(plan.target)
        if let current, current.state.isPending {
            return try await fail(ReleaseFailure.stuckPending(current.state))
        }
        let lastGood = try await lastGoodRevision()
        let fitted: DeployPlan
        switch try await checkCapacity() {
        case .refused(let refusal):
            // Nothing was applied: a refusal, recorded as a failed operation with the numbers.
            _ = try await fail(refusal)
            return .refused(refusal.message)
        case .fits(let plan):
            fitted = plan
        }
        // From here on, the plan as it fits: fewer replicas, or one at a time, when the GPUs said so.
        var workflow = self
        workflow.plan = fitted
        return try await workflow.apply(current: current, lastGood: lastGood)
    }

    /// Helm, then the rest, from a plan that fits.
    func apply(current: ReleaseStatus?, lastGood: Int?) async throws -> CommandOutcome {

        // What runs now, to keep warm for a rollback once the upgrade has replaced it (`keepPrevious`).
        var previous: KeptRevision?
        if environment.keepPrevious != nil, let current, current.state == .deployed {
            do {
                previous = try await services.warmPools.capture(plan.target).map { KeptRevision(template: $0, revision: current.revision) }
            } catch let failure as any UserFacingError {
                try await reporter.report(Reply(.warning, "Revision \(current.revision) will not be kept warm: reading it failed (\(failure.text))."))
            }
        }
        // Recorded before helm runs: a resumed deploy compares the release with it.
        var checkpoint = await reporter.operation.checkpoint
        checkpoint.revisionBefore = current?.revision
        checkpoint.applyStarted = true
        checkpoint.lastGood = lastGood
        try await reporter.setCheckpoint(checkpoint)
        try await reporter.move(
            to: .applying,
            "Running helm upgrade --install (waits up to \(plan.readinessBudget.spoken) for readiness).",
            fields: [Reply.Field("release", plan.target.release), Reply.Field("revision before", current.map { "\($0.revision)" } ?? "none")]
        )
        let applied: ReleaseStatus
        do {
            applied = try await withProgress { try await services.releases.upgrade(plan.upgrade) }
        } catch let failure as ReleaseFailure where failure != .cancelled {
            try await recordFailedRevision(after: current?.revision)
            return try await recover(from: await explained(failure), lastGood: lastGood, before: current?.revision)
        }
        // A cancelled upgrade (`ReleaseFailure.cancelled`) goes up to the runner, which records the
        // revision Helm marked failed once it is out of the cancelled task.
        try await reporter.setRevision(applied.revision)
        try await reporter.report(
            Reply(.progress, "Helm finished: revision \(applied.revision) \(applied.state), after \(await reporter.stepDuration().spoken).")
        )
        return try await afterApply(applied, lastGood: lastGood, before: current?.revision, previous: previous)
    }

    /// From a deployed revision: readiness, warm-up, the test completion, the router.
    /// - Parameter previous: the revision the upgrade replaced, to keep warm (`keepPrevious`).
    func afterApply(_ applied: ReleaseStatus, lastGood: Int?, before: Int?, previous: KeptRevision? = nil) async throws -> CommandOutcome {
        let id = await reporter.operation.id
        do {
            let latency = try await verify()
            try await services.store.recordVerification(
                Verification(
                    model: plan.model.name, environment: plan.environment, operation: id, at: services.time.now(),
                    latency: latency, revision: applied.revision
                )
            )
            if let previous { try await keepWarm(previous) }
            return try await finishVerified(applied, latency: latency)
        } catch let failure as VerificationFailure {
            return try await recover(from: failure, lastGood: lastGood, before: before)
        }
    }

    func finishVerified(_ applied: ReleaseStatus, latency: Duration?, note: String = "") async throws -> CommandOutcome {
        let slow = latency.map { $0 > environment.verification.latencyTarget } ?? false
        let verified = latency.map { ", verified in \($0.spoken)" } ?? ", verified"
        let summary = "Deployed \(plan.model.name) to \(plan.environment): revision \(applied.revision)\(verified)"
            + (slow ? " (over the \(environment.verification.latencyTarget.spoken) target)." : ".") + note
        return try await RoutingRefresh.finish(
            registrar: registrar, reporter: reporter, model: plan.model.name, target: plan.target, register: registers,
            denial: routingDenial,
            success: Reply(
                slow ? .warning : .success, summary,
                fields: [Reply.Field("endpoint", plan.endpoint.description), Reply.Field("digest", plan.shortDigest)]
            ))
    }

    /// Goes on from where a stopped daemon left the deploy, after checking the release: what Helm
    /// finished is not applied again, and what it left pending is recovered first.
    func resume() async throws -> CommandOutcome {
        let record = await reporter.operation
        let checkpoint = record.checkpoint
        let recovery = ReleaseRecovery(services: services, reporter: reporter, target: plan.target, budget: plan.readinessBudget)
        switch record.state {
        case .applying, .rollingBack:
            try await recovery.stopAbandonedHelm()
            let now = try await services.releases.status(plan.target)
            if record.state == .rollingBack, let lastGood = checkpoint.rollbackTarget ?? checkpoint.lastGood {
                let failure = Refusal("The deploy had failed, and InferOps stopped while rolling it back.")
                if let now, now.state == .deployed, now.revision > (checkpoint.rollbackFrom ?? Int.max) {
                    try await reporter.setRevision(now.revision)
                    return try await verifyRollback(restored: now, lastGood: lastGood, failure: failure)
                }
                return try await recover(from: failure, lastGood: lastGood, before: checkpoint.revisionBefore)
            }
            if let now, checkpoint.applyStarted, now.revision > (checkpoint.revisionBefore ?? 0) {
                if now.state == .failed, now.revision == checkpoint.stoppedRevision {
                    let message = "Helm was stopped at revision \(now.revision) when InferOps stopped; applying again."
                    try await reporter.report(Reply(.progress, message))
                    return try await run()
                }
                if now.state == .deployed {
                    try await reporter.setRevision(now.revision)
                    try await reporter.report(Reply(.progress, "Helm had finished before the restart: revision \(now.revision) is deployed."))
                    return try await afterApply(now, lastGood: checkpoint.lastGood, before: checkpoint.revisionBefore)
                }
                if now.state == .failed {
                    try await reporter.recordFailedRevision(now.revision)
                    return try await recover(
                        from: Refusal("Helm marked revision \(now.revision) failed while InferOps was stopped."),
                        lastGood: checkpoint.lastGood, before: checkpoint.revisionBefore)
                }
            }
            if let now, now.state.isPending {
                try await reporter.move(to: .prechecking, "Recovering \(plan.target.release) from \(now.state) before applying again.")
                _ = try await recovery.recoverPending(lastGood: checkpoint.lastGood)
            }
            return try await run()
        case .waitingReady, .warming, .verifying, .registering:
            guard let now = try await services.releases.status(plan.target), now.state == .deployed,
                  now.revision > (checkpoint.revisionBefore ?? 0) || !checkpoint.applyStarted
            else { return try await run() }
            try await reporter.move(to: .prechecking, "Helm had applied revision \(now.revision); checking the engines again.")
            if record.state == .registering {
                return try await finishVerified(now, latency: nil, note: " (finished after InferOps restarted)")
            }
            return try await afterApply(now, lastGood: checkpoint.lastGood, before: checkpoint.revisionBefore)
        default:
            return try await run()
        }
    }

    /// The revision an upgrade replaced, as it ran.
    struct KeptRevision: Sendable {
        var template: WarmTemplate
        var revision: Int
    }

    /// Keeps the replaced revision running, unrouted, for `keepPrevious` (see `WarmPools`), when the
    /// cluster has the GPUs for it; says in the thread what it holds and until when, or why not.
    func keepWarm(_ previous: KeptRevision) async throws {
        guard let keep = environment.keepPrevious else { return }
        let replicas = previous.template.replicas
        let needed = replicas * previous.template.gpusPerReplica
        do {
            // A pool kept from an earlier deploy is replaced: its GPUs come back.
            let held = try await services.warmPools.pool(plan.target)?.gpusHeld ?? 0
            let free = try await services.cluster.gpuCapacity(kubeContext: plan.target.kubeContext).free + held
            guard free >= needed else {
                try await reporter.report(Reply(
                    .warning, "Not keeping revision \(previous.revision) warm: its \(replicas) replica\(replicas == 1 ? " needs" : "s need") "
                        + "\(needed) GPU\(needed == 1 ? "" : "s") and \(free) \(free == 1 ? "is" : "are") free. A rollback to it starts it cold."))
                return
            }
            let until = services.time.now().addingTimeInterval(keep.seconds)
            guard try await services.warmPools.keep(previous.template, revision: previous.revision, until: until, for: plan.target)
            else { return }
            try await reporter.report(Reply(
                .progress, "Keeping revision \(previous.revision) warm until \(Reports.timestamp(until)) (keepPrevious \(keep.spoken)): "
                    + "\(replicas) replica\(replicas == 1 ? "" : "s"), \(needed) GPU\(needed == 1 ? "" : "s"), unrouted. "
                    + "`/infer rollback \(plan.model.name) in \(environment.name)` before then only switches the router."))
        } catch let failure as any UserFacingError {
            try await reporter.report(Reply(.warning, "Revision \(previous.revision) is not kept warm: \(failure.text)"))
        }
    }

    /// Waits for readiness, warms up and sends the test completion; returns its latency.
    func verify() async throws -> Duration {
        try await reporter.move(to: .waitingReady, "Waiting for \(plan.endpoint) to answer /health and list \(plan.model.name).")
        try await verifier.waitReady(plan.endpoint, servedName: plan.model.name, budget: plan.readinessBudget)
        if environment.verification.warmupRequests > 0 {
            try await reporter.move(to: .warming, "Engine ready. Sending \(environment.verification.warmupRequests) warm-up requests.")
            _ = try await verifier.warmUp(plan.endpoint, servedName: plan.model.name)
        }
        try await reporter.move(to: .verifying, "Sending a test completion.")
        let (latency, text) = try await verifier.verify(plan.endpoint, servedName: plan.model.name)
        try await reporter.report(Reply(.progress, "Test completion answered in \(latency.spoken): “\(user: text)”"))
        return latency
    }

    /// The newest revision that was deployed successfully, for automatic rollback.
    func lastGoodRevision() async throws -> Int? {
        let history = try await services.releases.history(plan.target)
        return history.last { $0.state == .deployed || $0.state == .superseded }?.revision
    }

    enum CapacityOutcome {
        /// Go on with this plan: the one asked for, or as adapted to the free GPUs.
        case fits(DeployPlan)
        case refused(Refusal)
    }

    /// Refuses, or waits for GPUs when the environment allows, before Helm runs. When the plan does
    /// not fit as asked, an upgrade replaces its replicas one at a time instead of by surge, and a
    /// deploy with `--min-replicas` runs fewer replicas, whichever fits first (`CapacityCheck.adapt`).
    func checkCapacity() async throws -> CapacityOutcome {
        let rollout = try await plannedRollout()
        let capacity = try await services.cluster.gpuCapacity(kubeContext: plan.target.kubeContext)
        let verdict = CapacityCheck.evaluate(plan, capacity: capacity, rollout: rollout)
        if verdict.fits {
            try await reporter.report(Reply(.progress, "GPU capacity is enough: \(verdict.summary)."))
            if let replacement = rollout?.replacement(replicas: plan.replicas, gpusPerReplica: plan.gpusPerReplica) {
                try await reporter.report(Reply(.progress, RichText(replacement)))
            }
            return .fits(plan)
        }
        if let adapted = try await adapted(capacity: capacity, rollout: rollout, asked: verdict) { return .fits(adapted) }
        guard case .wait(let patience) = environment.capacity else {
            return .refused(Refusal(
                "Not enough free GPUs for \(plan.target.release): \(verdict.summary).",
                hint: verdict.hint
                    ?? (verdict.suggestion ?? "Free GPUs, or ask for the deploy to wait.")
                    + " `/infer remove <model> from \(environment.name)` uninstalls a model and frees its GPUs."
            ))
        }
        try await reporter.report(Reply(.warning, "Waiting up to \(patience.spoken) for GPUs: \(verdict.summary)."))
        // On the clock the steps are timed with, so it is said apart from the checks it is part of.
        let waitStarted = ContinuousClock.now
        let outcome = try await waitForGPUs(patience: patience, rollout: rollout, verdict: verdict)
        await reporter.waitedForGPUs(waitStarted.duration(to: .now))
        return outcome
    }

    /// Checks the capacity again every 2 s for up to `patience`, saying the numbers when they change.
    func waitForGPUs(patience: Duration, rollout: Rollout?, verdict first: CapacityCheck.Verdict) async throws -> CapacityOutcome {
        let deadline = services.time.now().addingTimeInterval(patience.seconds)
        var verdict = first
        var waitingFor = verdict.summary
        while services.time.now() < deadline {
            try await services.time.sleep(for: .seconds(2))
            let capacity = try await services.cluster.gpuCapacity(kubeContext: plan.target.kubeContext)
            verdict = CapacityCheck.evaluate(plan, capacity: capacity, rollout: rollout)
            if verdict.fits {
                try await reporter.report(Reply(.progress, "GPUs are free now: \(verdict.summary)."))
                return .fits(plan)
            }
            if let adapted = try await adapted(capacity: capacity, rollout: rollout, asked: verdict) { return .fits(adapted) }
            // The numbers as they change (GPUs freed or taken by others), so the thread shows what it waits for.
            if verdict.summary != waitingFor {
                waitingFor = verdict.summary
                try await reporter.report(Reply(.progress, "Still waiting for GPUs: \(verdict.summary)."))
            }
        }
        return .refused(Refusal("Still not enough free GPUs after \(patience.spoken): \(verdict.summary)."))
    }

    /// The plan adapted to `capacity` when it does not fit as asked, said in the thread; `nil` when
    /// no adaptation allowed fits either.
    func adapted(capacity: GPUCapacity, rollout: Rollout?, asked: CapacityCheck.Verdict) async throws -> DeployPlan? {
        guard let fit = CapacityCheck.adapt(plan, capacity: capacity, rollout: rollout) else { return nil }
        var changes: [String] = []
        if fit.plan.replicas < plan.replicas {
            changes.append("deploying \(fit.plan.replicas) of the \(plan.replicas) replicas asked for "
                           + "(`--min-replicas \(plan.minReplicas ?? fit.plan.replicas)` allows down to \(plan.minReplicas ?? fit.plan.replicas))")
        }
        if fit.oneAtATime {
            changes.append("replacing the running replicas one at a time instead of by surge: no extra GPUs, one replica "
                           + "fewer serving while each is replaced")
        }
        try await reporter.report(Reply(
            .warning, "Not enough free GPUs for the deploy as asked (\(asked.summary)); "
                + changes.joined(separator: ", and ") + ": \(fit.verdict.summary)."))
        return fit.plan
    }

    /// Runs `body` while reporting what the cluster says about the release's pods, on change only.
    func withProgress<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                var last = ""
                var pending = PendingPods()
                while !Task.isCancelled {
                    try? await services.time.sleep(for: .seconds(2))
                    guard !Task.isCancelled, let workload = try? await services.cluster.workload(plan.target) else { continue }
                    let summary = ProgressSummary.describe(workload)
                    if summary != last {
                        last = summary
                        try? await reporter.report(Reply(.progress, "\(user: summary)"), journal: true)
                    }
                    let waiting = workload.pods.filter { $0.current && $0.unschedulable }.map(\.name)
                    if !waiting.isEmpty { await reporter.sawUnschedulable(waiting) }
                    for pod in pending.overdue(workload.pods, now: services.time.now()) {
                        try? await reporter.report(Reply(
                            .warning,
                            "\(pod.name) has waited over \(PendingPods.patience.spoken) for a node: \(user: pod.reason ?? "unschedulable")",
                            hint: "It starts when a node has room (free GPUs with `/infer remove <model> from \(environment.name)`, "
                                + "or add nodes); the deploy fails if it is not ready within \(plan.readinessBudget.spoken)."))
                    }
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw CancellationError()
        }
    }

    /// After a failure: roll back automatically when configured and possible, else report and stop.
    /// - Parameter before: the release's revision before this deploy, to tell which revisions it made.
    func recover(from failure: any UserFacingError, lastGood: Int?, before: Int?) async throws -> CommandOutcome {
        try await reporter.report(.error(failure))
        guard environment.autoRollback else { return try await fail(failure, reported: true) }
        guard let lastGood else {
            return try await fail(
                Refusal("There is no earlier good revision to roll back to; the failed release stays as it is.",
                        hint: "Fix the values and deploy again, or free its GPUs with "
                            + "`/infer remove \(plan.model.name) from \(environment.name)`."),
                reported: false
            )
        }
        var checkpoint = await reporter.operation.checkpoint
        checkpoint.rollbackTarget = lastGood
        checkpoint.rollbackFrom = try? await services.releases.status(plan.target)?.revision
        try await reporter.setCheckpoint(checkpoint)
        try await reporter.move(to: .rollingBack, "Rolling back automatically to revision \(lastGood).")
        do {
            let restored = try await services.releases.rollback(plan.target, to: lastGood, timeout: plan.readinessBudget)
            try await reporter.setRevision(restored.revision)
            return try await verifyRollback(restored: restored, lastGood: lastGood, failure: failure)
        } catch let rollbackFailure as any UserFacingError {
            // A failed `helm rollback` also leaves a revision behind.
            try await recordFailedRevision(after: max(await reporter.operation.revisions.max() ?? 0, before ?? 0))
            try await reporter.finish(
                .failed,
                Reply(.failure, "The automatic rollback failed too: \(rollbackFailure.text)", hint: rollbackFailure.hint)
            )
            return .failed(await reporter.operation.id, rollbackFailure.message)
        }
    }

    func verifyRollback(restored: ReleaseStatus, lastGood: Int, failure: any UserFacingError) async throws -> CommandOutcome {
        let id = await reporter.operation.id
        try await verifier.waitReady(plan.endpoint, servedName: plan.model.name, budget: plan.readinessBudget)
        let (latency, _) = try await verifier.verify(plan.endpoint, servedName: plan.model.name)
        try await services.store.recordVerification(
            Verification(model: plan.model.name, environment: plan.environment, operation: id, at: services.time.now(),
                         latency: latency, revision: restored.revision)
        )
        try await reporter.finish(
            .rolledBack,
            Reply(.warning, "The deploy failed and was rolled back: revision \(lastGood) restored as revision \(restored.revision) and verified in \(latency.spoken).",
                  hint: failure.hint)
        )
        return .failed(id, failure.message)
    }

    /// Helm records a failed upgrade as a new revision; find it, so history attributes it to this
    /// operation. A failure before Helm wrote anything leaves the release at `before`.
    func recordFailedRevision(after before: Int?) async throws {
        guard let now = try? await services.releases.status(plan.target), now.revision > (before ?? 0) else { return }
        try await reporter.recordFailedRevision(now.revision)
    }

    func fail(_ failure: any UserFacingError, reported: Bool = false) async throws -> CommandOutcome {
        let id = await reporter.operation.id
        try await reporter.finish(.failed, Reply(.failure, reported ? "The deploy failed." : failure.text, hint: failure.hint))
        return .failed(id, failure.message)
    }
}

/// Turns the pods' state into one line: "1 of 2 replicas ready; llama-…-x7k Pending: 0/3 nodes…", and
/// during a rollout "1 of 2 new replicas ready; 1 old still serving": old pods never count as progress.
/// Pods the scheduler has found no node for, and since when: each is reported once it has waited
/// longer than `patience`, with the scheduler's message.
struct PendingPods {
    static let patience = Duration.seconds(60)
    var firstSeen: [String: Date] = [:]
    var reported: Set<String> = []

    /// The unschedulable pods of `pods` that have now waited longer than `patience` and were not
    /// reported yet.
    mutating func overdue(_ pods: [PodSnapshot], now: Date) -> [PodSnapshot] {
        var overdue: [PodSnapshot] = []
        for pod in pods where pod.unschedulable {
            let since = pod.timeline?.created ?? firstSeen[pod.name] ?? now
            firstSeen[pod.name] = since
            if now.timeIntervalSince(since) > Self.patience.seconds, reported.insert(pod.name).inserted {
                overdue.append(pod)
            }
        }
        return overdue
    }
}

public enum ProgressSummary {
    public static func describe(_ workload: WorkloadSnapshot) -> String {
        let old = workload.oldPods
        var parts = [
            "\(workload.readyCurrentReplicas) of \(workload.desiredReplicas) \(old.isEmpty ? "" : "new ")replicas ready"
        ]
        if !old.isEmpty {
            let serving = old.filter(\.ready).count
            let stopping = old.count - serving
            if serving > 0 { parts.append("\(serving) old still serving") }
            if stopping > 0 { parts.append("\(stopping) old not ready (stopping)") }
        }
        let reasons = workload.pods.filter { $0.current && !$0.ready }.map { pod in
            "\(pod.name) \(pod.phase)" + (pod.reason.map { ": \($0)" } ?? "")
        }
        parts.append(contentsOf: reasons.prefix(3))
        if reasons.count > 3 { parts.append("and \(reasons.count - 3) more pods not ready") }
        return parts.joined(separator: "; ")
    }
}
