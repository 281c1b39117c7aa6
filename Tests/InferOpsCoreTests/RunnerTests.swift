import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Operations left behind by a daemon that stopped, as the store holds them.
extension Harness {
    /// An owner that stopped renewing its heartbeat a minute ago.
    var deadOwner: OperationOwner {
        OperationOwner(instance: "dead-daemon", host: "ops-2", pid: 4242, heartbeat: time.now().addingTimeInterval(-60))
    }

    /// Records `text` as an operation in `state` owned by `owner`, with the request the intake would
    /// have stored (and for a deploy, today's plan and digest unless `digest` says otherwise).
    @discardableResult
    func plant(
        _ text: String, in state: OperationState, checkpoint: Checkpoint = Checkpoint(), owner: OperationOwner? = nil,
        id: OperationID = .random(), requester: UserID = Fixtures.deployer, digest: String? = nil,
        createdAt: Date? = nil
    ) async throws -> OperationRecord {
        let parsed = try Fixtures.parser.parse(text)
        let spec = try #require(Fixtures.catalog.spec(named: parsed.verb))
        let model = try #require(parsed.arguments["model"])
        let environment = try #require(parsed.arguments["environment"])
        var record = OperationRecord(
            id: id, kind: try #require(OperationKind(rawValue: parsed.verb)), requester: requester,
            environment: environment, model: model, target: target(model, in: environment), state: state,
            command: parsed.canonical(spec: spec), createdAt: createdAt ?? time.now(),
            request: OperationRequest(parsed, requester: requester, channel: "C0OPS"), checkpoint: checkpoint,
            owner: owner ?? deadOwner)
        if parsed.verb == "deploy", let modelSpec = configuration.models[model],
           let settings = configuration.environments[environment] {
            var plan = try DeployPlanner.plan(model: modelSpec, environment: settings, chartVersion: nil, overrides: [])
            plan.contents = try fakes.planContents.contents(
                chart: plan.chart, chartVersion: plan.chartVersion, valuesFiles: plan.valuesFiles)
            record.plan = plan.canonical
            record.planDigest = digest ?? plan.digest
        }
        try await store.insert(record)
        return record
    }

    /// Waits until this daemon's runner has ended `id` (its last reply posted), and returns its record.
    func waitUntilFinished(_ id: OperationID, by daemon: TestDaemon? = nil) async throws -> OperationRecord {
        _ = await (daemon ?? self.daemon).runner.outcome(of: id)
        return try #require(await record(id))
    }

    func thread(_ id: OperationID) -> [String] { chat.posts(for: id).map(\.title) }
}

/// The runner takes over operations whose owner stopped and goes on from where they were, after
/// checking reality: nothing Helm finished is applied again, nothing left pending stays pending.
@Suite(.timeLimit(.minutes(1))) struct RunnerTakeoverTests {
    static let deploy = "deploy llama-3-8b to staging"

    @Test func deployWhoseHelmHadFinishedIsNotAppliedAgain() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        // Revision 1 was there before; revision 2 is the one the stopped daemon's helm wrote.
        h.releases.seed(target, [.superseded, .deployed])
        let left = try await h.plant(
            Self.deploy, in: .applying, checkpoint: Checkpoint(revisionBefore: 1, applyStarted: true, lastGood: 1))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(record.revision == 2)
        #expect(record.owner?.instance != "dead-daemon")
        #expect(record.checkpoint.resumptions == 1)
        #expect(h.releases.calls(.upgrade).isEmpty)
        #expect(h.releases.changingCalls.isEmpty)
        let thread = h.thread(left.id)
        #expect(containsInOrder(thread, prefixes: [
            "Resuming after InferOps restarted: it was applying.",
            "Helm had finished before the restart: revision 2 is deployed.",
            "Deployed llama-3-8b to staging: revision 2",
        ]))
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func releaseLeftPendingUpgradeIsRolledBackThenAppliedAgain() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed, .pendingUpgrade])
        let left = try await h.plant(
            Self.deploy, in: .applying, checkpoint: Checkpoint(revisionBefore: 1, applyStarted: true, lastGood: 1))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(h.releases.rollbacks == [1])
        #expect(h.releases.calls.filter(\.changes).map(\.method) == [.rollback, .upgrade])
        let revisions = h.releases.revisions(of: target)
        #expect(!revisions.contains { $0.state.isPending })
        #expect(revisions.last?.state == .deployed)
        #expect(record.revision == revisions.last?.revision)
        #expect(containsInOrder(h.thread(left.id), prefixes: [
            "Resuming after InferOps restarted: it was applying.",
            "Recovering llama-3-8b-staging from pending-upgrade before applying again.",
            "llama-3-8b-staging is stuck in pending-upgrade (revision 2); rolling back to revision 1.",
            "Running helm upgrade --install",
            "Deployed llama-3-8b to staging",
        ]))
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func releaseLeftPendingInstallIsUninstalledThenInstalledAgain() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.pendingInstall])
        let left = try await h.plant(
            Self.deploy, in: .applying, checkpoint: Checkpoint(revisionBefore: nil, applyStarted: true))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(h.releases.calls.filter(\.changes).map(\.method) == [.uninstall, .upgrade])
        #expect(h.releases.revisions(of: target).map(\.state) == [.deployed])
        #expect(containsInOrder(h.thread(left.id), prefixes: [
            "Resuming after InferOps restarted: it was applying.",
            "llama-3-8b-staging is stuck in pending-install (revision 1); removing it with helm uninstall.",
            "Deployed llama-3-8b to staging: revision 1",
        ]))
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func deployLeftWaitingForReadinessIsVerifiedWithoutApplying() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.superseded, .deployed])
        let left = try await h.plant(
            Self.deploy, in: .waitingReady, checkpoint: Checkpoint(revisionBefore: 1, applyStarted: true, lastGood: 1))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(h.releases.changingCalls.isEmpty)
        // The test completion ran again, after the restart.
        #expect(h.engines.requests(to: "/v1/completions") > 0)
        #expect(await h.store.lastVerification(model: "llama-3-8b", environment: "staging")?.operation == left.id)
        #expect(containsInOrder(h.thread(left.id), prefixes: [
            "Resuming after InferOps restarted: it was waiting ready.",
            "Helm had applied revision 2; checking the engines again.",
            "Deployed llama-3-8b to staging: revision 2",
        ]))
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func deployWhoseHelmNeverWroteIsAppliedOnce() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let left = try await h.plant(
            Self.deploy, in: .applying, checkpoint: Checkpoint(revisionBefore: 1, applyStarted: true, lastGood: 1))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(h.releases.calls(.upgrade).count == 1)
        #expect(h.releases.changingCalls.count == 1)
        #expect(record.revision == 2)
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func rollbackWhoseHelmHadFinishedIsNotRunAgain() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        // 1 and 2 deployed in turn; the stopped daemon's rollback to 1 wrote revision 3.
        h.releases.seed(target, [.superseded, .deployed])
        _ = try await h.releases.rollback(target, to: 1, timeout: .seconds(1))
        let callsBefore = h.releases.calls(.rollback).count
        let left = try await h.plant(
            "rollback llama-3-8b in staging", in: .applying,
            checkpoint: Checkpoint(rollbackTarget: 1, rollbackFrom: 2))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(record.revision == 3)
        #expect(h.releases.calls(.rollback).count == callsBefore)
        #expect(h.releases.calls(.upgrade).isEmpty)
        #expect(containsInOrder(h.thread(left.id), prefixes: [
            "Resuming after InferOps restarted: it was applying.",
            "Helm had rolled back before the restart (revision 3)",
        ]))
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func disableWhoseRegistrationWasRecordedIsCompletedWithoutANewVersion() async throws {
        let h = Harness(routers: false)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        try await h.register("llama-3-8b", in: "staging", .enabled, at: "10.0.0.1")
        let createdAt = h.time.now()
        // The stopped daemon recorded the disable, and stopped before it changed the router.
        let disabled = try #require(await h.store.updateRegistration(
            Registration(model: "llama-3-8b", environment: "staging", state: .disabled, endpoints: [],
                         changedBy: Fixtures.admin, changedAt: createdAt, reason: "INC-4711"),
            expectedVersion: 1))
        #expect(!h.router.denies("llama-3-8b"))
        let left = try await h.plant(
            "disable llama-3-8b in staging --reason INC-4711", in: .registering, requester: Fixtures.admin,
            createdAt: createdAt)

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .succeeded)
        #expect(await h.registration("llama-3-8b", in: "staging") == disabled)
        #expect(h.router.denies("llama-3-8b"))
        #expect(containsInOrder(h.thread(left.id), prefixes: [
            "Resuming after InferOps restarted: it was registering.",
            "The change was recorded before InferOps stopped; bringing the router in line.",
        ]))
        #expect(illegalMoves(await h.store.stateHistory(of: left.id)) == [])
    }

    @Test func requestThatNoLongerValidatesIsInterruptedAndItsThreadTold() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let parsed = try Fixtures.parser.parse(Self.deploy)
        var request = OperationRequest(parsed, requester: Fixtures.deployer, channel: "C0OPS")
        // The model was taken out of the configuration while the daemon was stopped.
        request.arguments["model"] = "retired-model"
        let left = OperationRecord(
            id: .random(), kind: .deploy, requester: Fixtures.deployer, environment: "staging", model: "retired-model",
            target: h.target("retired-model", in: "staging"), state: .applying,
            command: "deploy retired-model to staging",
            createdAt: h.time.now(), request: request, owner: h.deadOwner)
        try await h.store.insert(left)

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .interrupted)
        let outcome = try #require(record.outcome)
        #expect(outcome.hasPrefix("Interrupted: the configuration changed since it was accepted:"))
        #expect(outcome.contains("retired-model"))
        #expect(h.thread(left.id).last == outcome)
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func deployWhosePlanChangedIsInterruptedWithoutHelm() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let left = try await h.plant(
            Self.deploy, in: .queued, digest: "sha256:" + String(repeating: "0", count: 64))

        let record = try await h.waitUntilFinished(left.id)

        #expect(record.state == .interrupted)
        #expect(record.outcome?.hasPrefix("Interrupted: the plan changed since it was accepted") == true)
        #expect(h.thread(left.id).last == record.outcome)
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func operationOfALiveOwnerIsLeftAloneUntilItsLeaseExpires() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.superseded, .deployed])
        h.releases.seed(h.target("llama-3-8b", in: "dev"), [.deployed])
        let alive = OperationOwner(instance: "live-daemon", host: "ops-2", pid: 4242, heartbeat: h.time.now())
        let held = try await h.plant(
            Self.deploy, in: .applying, checkpoint: Checkpoint(revisionBefore: 1, applyStarted: true, lastGood: 1),
            owner: alive)
        // Planted after, so the round that takes this one over has seen the live one too.
        let abandoned = try await h.plant(
            "deploy llama-3-8b to dev", in: .applying, checkpoint: Checkpoint(revisionBefore: 1, applyStarted: true))

        #expect(try await h.waitUntilFinished(abandoned.id).state == .succeeded)
        let untouched = try #require(await h.record(held.id))
        #expect(untouched.owner == alive)
        #expect(untouched.state == .applying)
        #expect(h.chat.posts(for: held.id).isEmpty)
        #expect(await h.store.journal(of: held.id).isEmpty)

        // The live owner stops renewing: past the lease, it is taken over.
        h.time.advance(by: OperationRunner.Settings().lease + .seconds(1))
        let record = try await h.waitUntilFinished(held.id)
        #expect(record.state == .succeeded)
        #expect(record.owner?.instance != "live-daemon")
        #expect(h.thread(held.id).contains { $0.hasPrefix("Resuming after InferOps restarted: it was applying.") })
    }
}

/// Cancels from another process and graceful stops, carried out by the runner that owns the operation.
@Suite(.timeLimit(.minutes(1))) struct RunnerOwnershipTests {
    static let deploy = "deploy llama-3-8b to staging"

    /// Another process only writes the cancel to the store; this daemon's heartbeat finds it and
    /// stops helm (the fake's upgrade is cancelled the way Helm ends on SIGTERM).
    @Test func cancelRecordedByAnotherProcessIsCarriedOutByTheOwner() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let running = h.start(Self.deploy)
        try await gate.waitUntilReached()
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")

        _ = await h.store.requestCancel(id, by: Fixtures.deployer, at: h.time.now())

        #expect(await running.value == .failed(id, "cancelled"))
        let record = try #require(await h.record(id))
        #expect(record.state == .cancelled)
        #expect(record.outcome?.hasPrefix("Cancelled by @U0DEPLOYER.") == true)
        #expect(h.thread(id).last == record.outcome)
        // Helm was stopped inside the upgrade, not let finish, and nothing is left pending.
        let upgrade = try #require(h.releases.calls(.upgrade).first)
        #expect(h.releases.events.contains(.ended(upgrade, failed: true)))
        #expect(h.releases.state.inFlight.isEmpty)
        #expect(!gate.isOpen)
        #expect(h.releases.revisions(of: target).map(\.state) == [.deployed, .failed])
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
    }

    /// A stop while helm runs: past the bound, the step is given up where it is, the operation
    /// keeps its state with no owner, and the next daemon finishes it.
    @Test func deployStoppedGracefullyIsResumedByTheNextDaemon() async throws {
        let h = Harness()
        await h.daemon.stop()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let first = h.anotherDaemon(shutdownBound: .milliseconds(200))
        let event = ChatEvent(id: "console:1", kind: .command(Self.deploy), user: Fixtures.admin, channel: "C0OPS")
        guard case .accepted(let id) = await first.intake.accept(event) else {
            Issue.record("the deploy was not accepted")
            return
        }
        try await gate.waitUntilReached()

        await first.stop()

        let stopped = try #require(await h.record(id))
        #expect(!stopped.state.isFinished)
        #expect(stopped.owner == nil)
        #expect(h.thread(id).last?.hasPrefix("InferOps is stopping: this operation pauses while applying") == true)

        let second = h.anotherDaemon()
        let record = try await h.waitUntilFinished(id, by: second)
        #expect(record.state == .succeeded)
        #expect(record.checkpoint.resumptions == 1)
        #expect(containsInOrder(h.thread(id), prefixes: [
            "Resuming after InferOps restarted: it was applying.",
            "Helm was stopped at revision 2 when InferOps stopped; applying again.",
            "Deployed llama-3-8b to staging: revision 3",
        ]))
        #expect(h.releases.calls(.upgrade).count == 2)
        #expect(!h.releases.revisions(of: target).contains { $0.state.isPending })
        #expect(h.releases.revisions(of: target).last?.state == .deployed)
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
        await second.stop()
    }

    @Test func operationQueuedBehindOnePausedByAStopPausesToo() async throws {
        let h = Harness()
        await h.daemon.stop()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        // The first is held while it reads the release, between two safe points.
        let gate = Gate()
        h.releases.script(.status, .hold(gate))
        let first = h.anotherDaemon(shutdownBound: .seconds(30))
        var ids: [OperationID] = []
        for number in 1...2 {
            let event = ChatEvent(id: "console:\(number)", kind: .command(Self.deploy), user: Fixtures.admin, channel: "C0OPS")
            guard case .accepted(let id) = await first.intake.accept(event) else {
                Issue.record("deploy \(number) was not accepted")
                return
            }
            ids.append(id)
        }
        try await gate.waitUntilReached()
        try await h.waitUntil(ids[1], is: .queued)

        // Stopped while the first reads: it pauses at its next move, and lets the release go.
        first.runner.stop()
        gate.open()
        await first.stop()

        // The one behind it gets the release as the first lets go, and pauses instead of finding
        // the paused one in its way.
        for id in ids {
            let stopped = try #require(await h.record(id))
            // Ended here, it would never be run by the next daemon: stop rather than wait for it.
            try #require(!stopped.state.isFinished, "\(id): \(h.thread(id))")
            #expect(stopped.owner == nil)
            #expect(h.thread(id).last?.hasPrefix("InferOps is stopping: this operation pauses while") == true, "\(h.thread(id))")
        }

        let second = h.anotherDaemon()
        for id in ids {
            let record = try await h.waitUntilFinished(id, by: second)
            #expect(record.state == .succeeded, "\(id): \(h.thread(id))")
        }
        await second.stop()
    }
}

/// The intake: one operation per chat event however often it is delivered, and a status card
/// posted at acceptance and edited in place.
@Suite(.timeLimit(.minutes(1))) struct IntakeTests {
    @Test func redeliveredEventStartsOneOperationAlsoAfterARestart() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let event = ChatEvent(
            id: "Ev0DEPLOY1", kind: .command("/infer deploy llama-3-8b to staging"), user: Fixtures.admin,
            channel: "C0OPS")

        let answers = [
            await h.daemon.intake.accept(event), await h.daemon.intake.accept(event),
            await h.daemon.intake.accept(event),
        ]

        guard case .accepted(let id) = answers[0] else {
            Issue.record("first delivery: \(answers[0])")
            return
        }
        #expect(Array(answers.dropFirst()) == [.duplicate, .duplicate])
        #expect(await h.daemon.runner.outcome(of: id) == .completed(id))

        let restarted = h.anotherDaemon()
        #expect(await restarted.intake.accept(event) == .duplicate)
        #expect(await h.store.allOperations().map(\.id) == [id])
        #expect(h.releases.calls(.upgrade).count == 1)
        #expect(h.chat.posts.filter { $0.operation == nil }.isEmpty)
        await restarted.stop()
    }

    @Test func redeliveredStatusIsAnsweredOnce() async throws {
        let h = Harness()
        let event = ChatEvent(id: "Ev0STATUS1", kind: .command("/infer status"), user: Fixtures.admin, channel: "C0OPS")

        guard case .answered = await h.daemon.intake.accept(event) else {
            Issue.record("status was not answered")
            return
        }
        let posts = h.chat.events.count
        #expect(posts >= 1)
        #expect(await h.daemon.intake.accept(event) == .duplicate)
        #expect(await h.daemon.intake.accept(event) == .duplicate)
        let restarted = h.anotherDaemon()
        #expect(await restarted.intake.accept(event) == .duplicate)
        #expect(h.chat.events.count == posts)
        #expect(await h.store.allOperations().isEmpty)
        await restarted.stop()
    }

    @Test func statusCardIsPostedAtAcceptanceAndEditedInPlace() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])

        let outcome = await h.run("deploy llama-3-8b to staging")

        let id = try #require(outcome.operation)
        #expect(outcome == .completed(id))
        let card = try #require(h.chat.posts(for: id).first)
        #expect(card.title == "Deploy llama-3-8b to staging, requested by @U0ADMIN")
        #expect(Self.field("state", of: card) == "planned")
        #expect(Self.field("operation", of: card) == id.rawValue)
        #expect(await h.record(id)?.card == card.message)
        let edits = h.chat.updates.filter { $0.operation == id }
        #expect(!edits.isEmpty)
        #expect(edits.allSatisfy { $0.message == card.message })
        #expect(Self.field("state", of: try #require(edits.last)) == "succeeded")
        #expect(edits.last?.reply.tone == .success)
    }

    static func field(_ label: String, of event: RecordingChat.Event) -> String? {
        event.reply.fields.first { $0.label == label }?.value.plainText
    }
}
