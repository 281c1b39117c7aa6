/// `remove`: frees a model's GPUs in an environment.
///
/// The router goes first, so no client is sent to an engine that is going away: a registered model
/// is recorded as removed (who, when, why) and the deny backend answers for it. Only then does
/// `helm uninstall --wait` delete the release, and the GPUs are checked free before it succeeds,
/// so "removed" in the thread means the next deploy can have them.
struct RemoveWorkflow: Sendable {
    let services: Services
    let model: ModelSpec
    let environment: EnvironmentSettings
    let reason: String?
    let reporter: OperationReporter
    /// The environment's router side; `nil` when it has no router.
    var registrar: Registrar? = nil
    /// How long pods may take to leave after Helm returned, and how often to look.
    var podsGoneBudget: Duration = .seconds(30)
    var pollInterval: Duration = .seconds(1)

    func run() async throws -> CommandOutcome {
        let target = environment.target(model: model.name)
        try await reporter.move(to: .prechecking, "Checking that \(model.name) is deployed in \(environment.name).")
        guard let current = try await services.releases.status(target), current.state != .uninstalled else {
            return try await refuse(Refusal(
                "\(model.name) is not deployed in \(environment.name), so there is nothing to remove.",
                hint: "`/infer status in \(environment.name)` shows what runs there."))
        }
        let before = try await services.cluster.gpuCapacity(kubeContext: target.kubeContext)
        let held = before.requestedByRelease[target.release] ?? 0

        if let registrar, let routed = try await routerStep(registrar) {
            return routed
        }

        try await reporter.move(
            to: .applying, "Running helm uninstall --wait of \(target.release) (revision \(current.revision), \(current.state)).",
            fields: [Reply.Field("release", target.release)])
        do {
            try await services.releases.uninstall(target, timeout: environment.readinessBudget)
        } catch let failure as ReleaseFailure where failure == .releaseNotFound {
            try await reporter.report(Reply(.warning, "Helm found no release \(target.release) any more; checking the GPUs."))
        } catch let failure as ReleaseFailure where failure != .cancelled {
            return try await fail(failure)
        }

        return try await verifyFreed(target, held: held)
    }

    /// After `helm uninstall`: the pods gone and the cluster counting no GPUs for the release.
    func verifyFreed(_ target: ReleaseTarget, held: Int, note: String = "") async throws -> CommandOutcome {
        let id = await reporter.operation.id
        try await reporter.move(to: .verifying, "Helm uninstalled \(target.release). Checking that its GPUs are free.")
        if let remaining = try await podsStillThere(target) {
            return try await fail(Refusal(
                "Helm uninstalled \(target.release), but \(remaining) of its pods \(remaining == 1 ? "is" : "are") "
                    + "still there after \(podsGoneBudget.spoken), so their GPUs are not free yet.",
                hint: "Look at the pods (`kubectl get pods -l app.kubernetes.io/instance=\(target.release)`); "
                    + "a finalizer or a stuck node can keep them."))
        }
        let after = try await services.cluster.gpuCapacity(kubeContext: target.kubeContext)
        if let still = after.requestedByRelease[target.release], still > 0 {
            return try await fail(Refusal(
                "Helm uninstalled \(target.release), but the cluster still counts \(still) GPU\(still == 1 ? "" : "s") for it.",
                hint: "Look at the pods of the release with `kubectl get pods -A`."))
        }
        let freed = held == 0 ? "it held no GPUs" : "\(held) GPU\(held == 1 ? "" : "s") freed"
        try await reporter.finish(.succeeded, Reply(
            .success, "Removed \(model.name) from \(environment.name): \(freed); \(after.free) of \(after.allocatable) GPUs are free now.\(note)",
            fields: [Reply.Field("release", "\(target.release) (uninstalled)")]))
        return .completed(id)
    }

    /// Goes on from where a stopped daemon left the remove: an uninstall Helm finished is not run
    /// again, only the GPUs are checked; otherwise it starts over (every step can be repeated).
    func resume() async throws -> CommandOutcome {
        let target = environment.target(model: model.name)
        let state = await reporter.operation.state
        guard state == .applying || state == .verifying else { return try await run() }
        try await ReleaseRecovery(services: services, reporter: reporter, target: target,
                                  budget: environment.readinessBudget).stopAbandonedHelm()
        if let status = try await services.releases.status(target), status.state != .uninstalled {
            try await reporter.move(to: .prechecking, "\(target.release) is still installed; removing it again.")
            return try await run()
        }
        try await reporter.move(to: .prechecking, "Helm had uninstalled \(target.release) before the restart.")
        try await reporter.move(to: .verifying, "Checking that its GPUs are free.")
        return try await verifyFreed(target, held: 0, note: " (finished after InferOps restarted)")
    }

    /// Takes a registered model out of the router, as removed by the requester. `nil` when the
    /// router is done (or had nothing to do); an outcome when it failed and nothing was uninstalled.
    func routerStep(_ registrar: Registrar) async throws -> CommandOutcome? {
        let previous = try await services.store.registration(model: model.name, environment: environment.name)
        guard let previous else { return nil }
        let requester = await reporter.operation.requester
        let next = Registration(
            model: model.name, environment: environment.name, state: .removed, endpoints: [], changedBy: requester,
            changedAt: services.time.now(), reason: reason ?? "removed with `/infer remove`")
        switch try await RegistrationStep(registrar: registrar, reporter: reporter).apply(next, previous: previous) {
        case .routed(let summary):
            try await reporter.report(Reply(.progress, summary))
            return nil
        case .failed(let failure):
            try await reporter.finish(.failed, Reply(
                .failure, failure.text + " Nothing was uninstalled: the engine still runs.", hint: failure.hint))
            return .failed(await reporter.operation.id, failure.message)
        }
    }

    /// How many of the release's pods are left once `podsGoneBudget` has passed; `nil` when none are.
    func podsStillThere(_ target: ReleaseTarget) async throws -> Int? {
        // Counted in looks rather than read from a clock, so a test's manual time ends it too.
        let looks = max(1, Int(podsGoneBudget / pollInterval))
        for look in 1...looks {
            let pods = try await services.cluster.workload(target).pods.count
            if pods == 0 { return nil }
            if look == looks { return pods }
            try await services.time.sleep(for: pollInterval)
        }
        return nil
    }

    func refuse(_ refusal: Refusal) async throws -> CommandOutcome {
        try await reporter.finish(.failed, .error(refusal))
        return .refused(refusal.message)
    }

    func fail(_ failure: any UserFacingError) async throws -> CommandOutcome {
        try await reporter.finish(.failed, .error(failure))
        return .failed(await reporter.operation.id, failure.message)
    }
}
