/// Rolls a release back, waits for readiness and verifies it. Also the documented way out of a
/// release stuck in `pending-*`: `helm rollback` for a pending upgrade or rollback, `helm uninstall`
/// for a pending first install.
struct RollbackWorkflow: Sendable {
    let services: Services
    let model: ModelSpec
    let environment: EnvironmentSettings
    var requestedRevision: Int?
    let reporter: OperationReporter
    /// The environment's router side, so an enabled registration follows the restored engines.
    var registrar: Registrar? = nil
    /// Set when the requester may not change the router here: the routing refresh is skipped.
    var routingDenial: Denial? = nil

    func run() async throws -> CommandOutcome {
        let id = await reporter.operation.id
        let target = environment.target(model: model.name)
        try await reporter.move(to: .prechecking, "Reading the release's history.")
        guard let current = try await services.releases.status(target) else {
            return try await fail(ReleaseFailure.releaseNotFound)
        }
        if current.state == .pendingInstall {
            try await reporter.move(
                to: .applying, "Revision \(current.revision) is stuck in pending-install; removing it with helm uninstall.")
            try await services.releases.uninstall(target, timeout: environment.readinessBudget)
            try await reporter.finish(
                .succeeded,
                Reply(.success, "Recovered \(target.release): the stuck first install was removed. Deploy again when ready.")
            )
            return .completed(id)
        }
        let history = try await services.releases.history(target)
        let revision: Int
        if let requestedRevision {
            guard history.contains(where: { $0.revision == requestedRevision }) else {
                return try await fail(
                    Refusal(
                        "\(target.release) has no revision \(requestedRevision); "
                            + "it has \(Self.listing(history, current: current)).",
                        hint: "Pick one of them: `/infer rollback \(model.name) in \(environment.name) --to N`; "
                            + "`/infer history \(model.name) in \(environment.name)` shows what each one was."
                    )
                )
            }
            guard requestedRevision != current.revision || current.state != .deployed else {
                return try await fail(Refusal("Revision \(requestedRevision) is already the deployed revision.",
                                              hint: "`/infer history \(model.name) in \(environment.name)` lists the others."))
            }
            revision = requestedRevision
        } else {
            guard let previous = history.last(where: {
                $0.revision < current.revision && ($0.state == .superseded || $0.state == .deployed)
            }) else {
                return try await fail(
                    Refusal(
                        "\(target.release) has nothing earlier to roll back to: it has "
                            + "\(Self.listing(history, current: current)), and no revision before \(current.revision) "
                            + "was deployed successfully.",
                        hint: "To change what runs, deploy again: `/infer deploy \(model.name) to \(environment.name)` "
                            + "(with `--set` for other values)."
                    )
                )
            }
            revision = previous.revision
        }
        let stuck = current.state.isPending ? " (recovering from \(current.state))" : ""
        var checkpoint = await reporter.operation.checkpoint
        checkpoint.rollbackTarget = revision
        checkpoint.rollbackFrom = current.revision
        try await reporter.setCheckpoint(checkpoint)
        if current.state == .deployed, let outcome = try await warmRollback(to: revision, from: current) {
            return outcome
        }
        try await reporter.move(
            to: .applying, "Running helm rollback to revision \(revision)\(stuck).",
            fields: [Reply.Field("release", target.release), Reply.Field("from revision", "\(current.revision)")]
        )
        let restored: ReleaseStatus
        do {
            restored = try await services.releases.rollback(target, to: revision, timeout: environment.readinessBudget)
        } catch let failure as ReleaseFailure where failure != .cancelled {
            // Helm records a failed rollback as a new revision; it is this operation's too.
            if let now = try? await services.releases.status(target), now.revision > current.revision {
                try await reporter.recordFailedRevision(now.revision)
            }
            return try await fail(failure)
        }
        try await reporter.setRevision(restored.revision)
        // The release runs the kept revision again: a pool of it holds GPUs for nothing.
        if environment.keepPrevious != nil, let pool = try? await services.warmPools.pool(target), pool.revision == revision,
           !pool.serving {
            try? await services.warmPools.release(target)
        }
        return try await afterRollback(restored: restored, revision: revision)
    }

    /// From the restored revision: readiness, the test completion, the router.
    func afterRollback(restored: ReleaseStatus, revision: Int, note: String = "") async throws -> CommandOutcome {
        let id = await reporter.operation.id
        let target = environment.target(model: model.name)
        let endpoint = EngineEndpoint(target: target, service: target.release)
        let verifier = EngineVerifier(engines: services.engines, time: services.time, settings: environment.verification)
        do {
            try await reporter.move(to: .waitingReady, "Helm rolled back (revision \(restored.revision)). Waiting for the engine.")
            try await verifier.waitReady(endpoint, servedName: model.name, budget: environment.readinessBudget)
            try await reporter.move(to: .verifying, "Engine ready. Sending a test completion.")
            let (latency, text) = try await verifier.verify(endpoint, servedName: model.name)
            try await services.store.recordVerification(
                Verification(model: model.name, environment: environment.name, operation: id, at: services.time.now(),
                             latency: latency, revision: restored.revision)
            )
            try await reporter.report(Reply(.progress, "Test completion answered in \(latency.spoken): “\(user: text)”"))
            let summary = "Rolled \(model.name) in \(environment.name) back to revision \(revision) (now revision \(restored.revision)), verified in \(latency.spoken)." + note
            return try await RoutingRefresh.finish(
                registrar: registrar, reporter: reporter, model: model.name, target: endpoint.target, register: false,
                denial: routingDenial,
                success: Reply(.success, summary, fields: [Reply.Field("endpoint", endpoint.description)]))
        } catch let failure as VerificationFailure {
            return try await fail(failure)
        }
    }

    /// Warm rollback: when the deploy that replaced `revision` kept it running (`keepPrevious`), its
    /// replicas are checked and routed in place of the release's, and Helm rolls the release back
    /// without waiting; the release's own replicas of `revision` take over when ready and the pool
    /// is released then (by the routing repair's passes).
    /// - Returns: `nil` when there is no usable pool: the rollback goes on cold.
    func warmRollback(to revision: Int, from current: ReleaseStatus) async throws -> CommandOutcome? {
        let target = environment.target(model: model.name)
        guard environment.keepPrevious != nil, routingDenial == nil, let registrar,
              try await services.store.registration(model: model.name, environment: environment.name)?.state == .enabled
        else { return nil }
        let pool: WarmPool
        do {
            guard let found = try await services.warmPools.pool(target) else { return nil }
            pool = found
        } catch let failure as any UserFacingError {
            try await reporter.report(Reply(.warning, "The warm replicas could not be read (\(failure.text)); rolling back cold."))
            return nil
        }
        guard pool.revision == revision, !pool.serving, pool.until > services.time.now() else {
            if pool.revision == revision, pool.until <= services.time.now() {
                try await reporter.report(Reply(.progress, "Revision \(revision)'s warm replicas were kept until \(Reports.timestamp(pool.until)); rolling back cold."))
            }
            return nil
        }
        // Checked with the release's replicas listed too, so the checks of those are kept.
        let release = try await services.cluster.workload(target)
        let standIns = WorkloadSnapshot(desiredReplicas: pool.desiredReplicas, pods: pool.pods)
        let checked = await registrar.checkedURLs(of: standIns, model: model.name, checkNew: true, standby: release.pods)
        guard let first = pool.pods.first(where: { pod in pod.serving && pod.address.map { checked.contains(registrar.settings.workerURL(podIP: $0)) } == true }),
              let address = first.address
        else {
            try await reporter.report(Reply(
                .warning, "Revision \(revision) is kept warm, but none of its \(pool.desiredReplicas) replicas serves and "
                    + "answered a test completion (\(pool.servingReplicas) ready); rolling back cold."))
            return nil
        }
        try await reporter.move(
            to: .applying,
            "Revision \(revision) is kept warm (\(checked.count) of \(pool.desiredReplicas) replicas serving and checked): "
                + "switching the router to them, and running helm rollback without waiting.",
            fields: [Reply.Field("release", target.release), Reply.Field("from revision", "\(current.revision)")])
        try await services.warmPools.serve(target, since: services.time.now())
        let restored: ReleaseStatus
        do {
            restored = try await services.releases.rollback(target, to: revision, timeout: environment.readinessBudget, wait: false)
        } catch let failure as ReleaseFailure where failure != .cancelled {
            // The release stays as it was: the pool stops standing in, the router follows the release again.
            try? await services.warmPools.release(target)
            if let now = try? await services.releases.status(target), now.revision > current.revision {
                try await reporter.recordFailedRevision(now.revision)
            }
            return try await fail(failure)
        }
        try await reporter.setRevision(restored.revision)
        try await reporter.move(to: .verifying, "Helm rolled back (revision \(restored.revision)). Sending a test completion to a warm replica.")
        let verifier = EngineVerifier(engines: services.engines, time: services.time, settings: environment.verification)
        let endpoint = EngineEndpoint(target: target, service: target.release)
        let latency: Duration
        do {
            (latency, _) = try await verifier.verify(endpoint.replica(.init(name: first.name, address: address)), servedName: model.name)
        } catch let failure as VerificationFailure {
            return try await fail(failure)
        }
        try await services.store.recordVerification(
            Verification(model: model.name, environment: environment.name, operation: await reporter.operation.id,
                         at: services.time.now(), latency: latency, revision: restored.revision))
        let summary = "Rolled \(model.name) in \(environment.name) back to revision \(revision) (now revision \(restored.revision)) "
            + "by routing its \(checked.count) warm replica\(checked.count == 1 ? "" : "s"), verified in \(latency.spoken). "
            + "The release's own replicas of revision \(revision) are starting; they take over once ready and checked, "
            + "and the warm ones are released then."
        return try await RoutingRefresh.finish(
            registrar: registrar, reporter: reporter, model: model.name, target: target, register: false, denial: nil,
            success: Reply(.success, RichText(summary), fields: [Reply.Field("endpoint", endpoint.description)]),
            replicasWaitedFor: false)
    }

    /// Goes on from where a stopped daemon left the rollback: a rollback Helm finished is not run
    /// again; one it left pending is run again (rolling back is itself the way out of `pending-*`).
    func resume() async throws -> CommandOutcome {
        let record = await reporter.operation
        let checkpoint = record.checkpoint
        let target = environment.target(model: model.name)
        guard !Self.beforeHelm.contains(record.state) else { return try await run() }
        try await ReleaseRecovery(services: services, reporter: reporter, target: target,
                                  budget: environment.readinessBudget).stopAbandonedHelm()
        if let now = try await services.releases.status(target), now.state == .deployed,
           let from = checkpoint.rollbackFrom, now.revision > from, let revision = checkpoint.rollbackTarget {
            try await reporter.setRevision(now.revision)
            try await reporter.move(to: .prechecking, "Helm had rolled back before the restart (revision \(now.revision)); checking the engine again.")
            return try await afterRollback(restored: now, revision: revision, note: " (finished after InferOps restarted)")
        }
        // Again to the revision it chose then: recomputed now, "the previous good revision" of a
        // release left `pending-rollback` would be the one the rollback was leaving.
        var again = self
        again.requestedRevision = checkpoint.rollbackTarget ?? requestedRevision
        try await reporter.move(
            to: .prechecking,
            "The rollback had not finished when InferOps stopped; running it again"
                + (again.requestedRevision.map { " to revision \($0)." } ?? "."))
        return try await again.run()
    }

    static let beforeHelm: Set<OperationState> = [.requested, .planned, .approved, .queued, .prechecking]

    /// The revisions that exist, newest first, each with its state, so a refusal names what to pick
    /// from: `revision 1 (deployed)`, `revisions 3 (deployed, current), 2 (failed), 1 (superseded)`.
    static func listing(_ history: [ReleaseRevision], current: ReleaseStatus) -> String {
        var revisions = history.sorted { $0.revision > $1.revision }.map { revision in
            "\(revision.revision) (\(revision.state)\(revision.revision == current.revision ? ", current" : ""))"
        }
        if revisions.isEmpty { revisions = ["\(current.revision) (\(current.state), current)"] }
        return (revisions.count == 1 ? "revision " : "revisions ") + revisions.joined(separator: ", ")
    }

    func fail(_ failure: any UserFacingError) async throws -> CommandOutcome {
        try await reporter.finish(.failed, .error(failure))
        return .failed(await reporter.operation.id, failure.message)
    }
}
