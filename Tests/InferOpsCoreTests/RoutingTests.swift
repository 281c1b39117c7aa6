import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Routing settings for every environment of the fixture, with the fake router behind them.
extension Harness {
    static let denyBackend = "http://inferops:8470"

    init(routers autoRegister: Bool, separate: Bool = false) {
        self.init(fakes: FakeServices(separateRouters: separate)) { configuration in
            for name in configuration.environmentNames {
                configuration.environments[name]!.router = RouterSettings(
                    url: "http://router.\(name)", autoRegister: autoRegister, denyBackendURL: Harness.denyBackend)
            }
        }
    }

    var router: FakeRouter { fakes.router }

    func settings(_ environment: String) -> RouterSettings { configuration.environments[environment]!.router! }

    /// The model's release is deployed, with one ready replica at `address`.
    func serve(_ model: String, in environment: String, at address: String, deployed: [ReleaseState] = [.deployed]) {
        let target = target(model, in: environment)
        releases.seed(target, deployed)
        cluster.setWorkload(
            WorkloadSnapshot(
                desiredReplicas: 1,
                pods: [PodSnapshot(name: "\(target.release)-0", phase: "Running", ready: true, node: "gpu-a", address: address)]),
            for: target.release)
    }

    /// Records a registration as an earlier command would have, and puts its workers in the router.
    @discardableResult
    func register(
        _ model: String, in environment: String, _ state: RegistrationState, at address: String? = nil,
        by user: UserID = UserID("U0ALICE"), reason: String? = nil
    ) async throws -> Registration {
        let registration = Registration(
            model: model, environment: environment, state: state,
            endpoints: state == .enabled ? [settings(environment).workerURL(podIP: address!)] : [],
            changedBy: user, changedAt: Date(timeIntervalSince1970: 1_764_612_000), reason: reason)
        let recorded = try #require(await store.updateRegistration(registration, expectedVersion: nil))
        router.seed(router.state.workers + RouterReconciler.desiredWorkers(recorded, settings: settings(environment)))
        return recorded
    }

    func registration(_ model: String, in environment: String) async -> Registration? {
        await store.registration(model: model, environment: environment)
    }
}

@Suite(.timeLimit(.minutes(1))) struct RoutingTests {
    static let engine1 = "http://10.0.0.1:8000"
    static let engine2 = "http://10.0.0.2:8000"

    // MARK: a disabled model stays disabled

    @Test func registerRefusesADisabledModelAndNamesWhoWhenWhyAndTheWayBack() async throws {
        let h = Harness(routers: false)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        let disabled = try await h.register("llama-3-8b", in: "staging", .disabled, reason: "wrong answers, INC-4711")

        let outcome = await h.run("/infer register llama-3-8b in staging")

        guard case .refused(let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(
            message
                == "llama-3-8b is disabled in staging by @U0ALICE since 2025-12-01T18:00:00Z: wrong answers, INC-4711. "
                + "`register` does not switch a disabled model back on.")
        #expect(h.chat.transcript.contains(
            "`/infer enable llama-3-8b in staging` routes it again; it takes the `disable` permission, like `disable`."))
        #expect(await h.registration("llama-3-8b", in: "staging") == disabled)
        #expect(h.router.state.changes.isEmpty)
        #expect(h.router.denies("llama-3-8b"))

        // The verb it names does route it again.
        #expect(await h.run("/infer enable llama-3-8b in staging --reason \"fixed\"").succeeded)
        #expect(await h.registration("llama-3-8b", in: "staging")?.state == .enabled)
        #expect(h.router.workers(of: "llama-3-8b") == [RouterWorker(url: Self.engine1, model: "llama-3-8b")])
    }

    @Test func registerIsStillTheWayBackForADeregisteredModel() async throws {
        let h = Harness(routers: false)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        try await h.register("llama-3-8b", in: "staging", .removed, reason: "replaced")

        #expect(await h.run("/infer register llama-3-8b in staging").succeeded)

        let registration = try #require(await h.registration("llama-3-8b", in: "staging"))
        #expect(registration.state == .enabled && registration.changedBy == Fixtures.admin)
        #expect(h.router.workers(of: "llama-3-8b") == [RouterWorker(url: Self.engine1, model: "llama-3-8b")])
    }

    /// `deploy --register` and `router.autoRegister` register after a deploy; neither may change a
    /// model someone disabled or deregistered, and the deploy itself still succeeds.
    @Test(arguments: [
        (RegistrationState.disabled, "deploy llama-3-8b to staging --register", false),
        (.disabled, "deploy llama-3-8b to staging", true),
        (.removed, "deploy llama-3-8b to staging --register", false),
        (.removed, "deploy llama-3-8b to staging", true),
    ])
    func registeringAfterADeployLeavesDisabledAndDeregisteredModelsAlone(
        state: RegistrationState, command: String, autoRegister: Bool
    ) async throws {
        let h = Harness(routers: autoRegister)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        let before = try await h.register("llama-3-8b", in: "staging", state, reason: "bad answers")
        let workers = h.router.state.workers

        let outcome = await h.run("/infer " + command)

        #expect(outcome.succeeded, "\(outcome)")
        #expect(await h.registration("llama-3-8b", in: "staging") == before)
        #expect(h.router.state.workers == workers)
        #expect(h.router.state.changes.isEmpty)
        let described = state == .disabled ? "disabled in staging" : "deregistered from staging"
        #expect(h.chat.transcript.contains(
            "Not registering llama-3-8b: it is \(described) by @U0ALICE since 2025-12-01T18:00:00Z: bad answers."),
            "\(h.chat.transcript)")
        #expect(h.chat.transcript.contains(state == .disabled ? "/infer enable llama-3-8b in staging" : "/infer register llama-3-8b in staging"))
    }

    // MARK: no lost updates

    /// The reconciler reads the registrations, asks Kubernetes where the replicas are (held here),
    /// and used to write the whole row back afterwards: a `disable` made meanwhile was undone, in the
    /// store and in the router.
    @Test func disableDuringAReconcilerPassStaysDisabled() async throws {
        let h = Harness(routers: false)
        try await h.register("llama-3-8b", in: "staging", .enabled, at: "10.0.0.1")
        // A rollout moved the replica, so the pass has an endpoint change to write.
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.2")
        let gate = Gate()
        var services = h.fakes.services
        services.cluster = GatedCluster(cluster: h.cluster, gate: gate)
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: services)
        let pass = Task { await reconciliation.reconcileOnce() }
        try await gate.waitUntilReached()

        let disable = await h.run("/infer disable llama-3-8b in staging --reason \"wrong answers\"")
        #expect(disable.succeeded, "\(disable)")
        gate.open()
        let passes = await pass.value

        #expect(passes.map(\.failure) == [nil, nil, nil])
        let registration = try #require(await h.registration("llama-3-8b", in: "staging"))
        #expect(registration.state == .disabled)
        #expect(registration.reason == "wrong answers")
        #expect(registration.endpoints.isEmpty)
        #expect(h.router.denies("llama-3-8b"), "\(h.router.workers(of: "llama-3-8b"))")
        #expect(h.router.workers(of: "llama-3-8b")
            == [RouterWorker(url: "\(Harness.denyBackend)/deny/staging/llama-3-8b", model: "llama-3-8b")])
        let answer = try await h.router.complete(model: "llama-3-8b", prompt: "hi", maxTokens: 1, timeout: .seconds(1))
        #expect(answer.status == 403)
    }

    /// The other side of the same race: another process disables the model while a `register` here
    /// waits on Kubernetes; the register's write, made from its stale read, must not undo it.
    @Test func registerFromAStaleReadChangesNothing() async throws {
        let h = Harness(routers: false)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        let enabled = try await h.register("llama-3-8b", in: "staging", .enabled, at: "10.0.0.1")
        let gate = Gate()
        var services = h.fakes.services
        services.cluster = GatedCluster(cluster: h.cluster, gate: gate)
        let daemon = TestDaemon(configuration: h.configuration, catalog: Fixtures.catalog, services: services)
        let register = Task {
            await daemon.handle(IncomingCommand(user: Fixtures.admin, text: "register llama-3-8b in staging", channel: "C0OPS"))
        }
        try await gate.waitUntilReached()

        var disabled = enabled
        disabled.state = .disabled
        disabled.endpoints = []
        disabled.changedBy = UserID("U0ALICE")
        disabled.reason = "wrong answers"
        let recorded = try #require(await h.store.updateRegistration(disabled, expectedVersion: enabled.version))
        gate.open()
        let outcome = await register.value

        #expect(outcome.message == RegistrationChanged(model: "llama-3-8b", environment: "staging").message, "\(outcome)")
        #expect(await h.registration("llama-3-8b", in: "staging") == recorded)
        #expect(h.router.state.changes.isEmpty)
    }

    /// Without a concurrent change the reconciler still follows a rollout, through the same
    /// conditional write.
    @Test func reconcilerFollowsARolloutOfAnEnabledModel() async throws {
        let h = Harness(routers: false)
        let before = try await h.register("llama-3-8b", in: "staging", .enabled, at: "10.0.0.1")
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.2")

        let passes = await RouterReconciliation(configuration: h.configuration, services: h.fakes.services).reconcileOnce()

        #expect(passes.map(\.failure) == [nil, nil, nil])
        let after = try #require(await h.registration("llama-3-8b", in: "staging"))
        #expect(after.endpoints == [Self.engine2])
        #expect(after.version == before.version + 1)
        #expect(after.changedBy == before.changedBy && after.state == .enabled)
        #expect(h.router.workers(of: "llama-3-8b") == [RouterWorker(url: Self.engine2, model: "llama-3-8b")])
    }

    /// A model an operation is changing now is left to that operation: the repair neither races it
    /// nor reports its change as drift, and repairs what is still off once it has ended.
    @Test func theRepairLeavesAModelToTheOperationChangingIt() async throws {
        let h = Harness(routers: false)
        let enabled = try await h.register("llama-3-8b", in: "staging", .enabled, at: "10.0.0.1")
        // A `disable` has recorded its new state and not yet changed the router.
        var disabled = enabled
        disabled.state = .disabled
        disabled.endpoints = []
        _ = try #require(await h.store.updateRegistration(disabled, expectedVersion: enabled.version))
        var operation = OperationRecord(
            id: OperationID("op-00000001"), kind: .disable, requester: UserID("U0ALICE"), environment: "staging",
            model: "llama-3-8b", target: ReleaseTarget(release: "llama-3-8b-staging", namespace: "inference"),
            state: .registering, command: "disable llama-3-8b in staging", createdAt: Date(timeIntervalSince1970: 0))
        try await h.store.insert(operation)
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        let during = await reconciliation.reconcileOnce()

        #expect(during.allSatisfy { $0.actions.isEmpty && $0.failure == nil }, "\(during)")
        #expect(h.router.workers(of: "llama-3-8b") == [RouterWorker(url: Self.engine1, model: "llama-3-8b")])

        // The operation ended without changing the router (it failed there): the next pass repairs it.
        operation.state = .failed
        try await h.store.update(operation, from: .registering)
        let after = await reconciliation.reconcileOnce()

        #expect(after.contains { !$0.actions.isEmpty }, "\(after)")
        #expect(h.router.workers(of: "llama-3-8b") != [RouterWorker(url: Self.engine1, model: "llama-3-8b")])
    }

    /// A `cancel` from another process closes a record this daemon is running; the daemon's next
    /// step must not write it back to running, and the workflow stops there.
    @Test func anOperationClosedElsewhereIsNotReopened() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let held = Gate()
        h.releases.script(.upgrade, .hold(held))
        let deploy = h.start("/infer deploy llama-3-8b to staging")
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")
        try await held.waitUntilReached()

        // What `inferops exec "/infer cancel …"` does to a record no daemon of its own runs.
        var closed = try #require(await h.record(id))
        closed.state = .cancelled
        closed.outcome = "Cancelled by <@U0ADMIN>: no daemon was running it."
        try await h.store.update(closed, from: .applying)
        held.open()
        _ = await deploy.value

        #expect(await h.record(id)?.state == .cancelled)
        #expect(await h.record(id)?.outcome == closed.outcome)
        #expect(await h.store.stateHistory(of: id).last == .cancelled)
    }
}
