import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `rollback`, one operation per release at a time, and `cancel`.
@Suite(.timeLimit(.minutes(1))) struct RollbackAndQueueTests {
    @Test func rollbackToThePreviousRevision() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.superseded, .superseded, .deployed])

        let outcome = await h.run("rollback llama-3-8b in staging")

        let id = try #require(outcome.operation)
        #expect(outcome == .completed(id))
        #expect(h.releases.rollbacks == [2])
        #expect(
            await h.store.stateHistory(of: id)
                == [.planned, .queued, .prechecking, .applying, .waitingReady, .verifying, .succeeded]
        )
        #expect(await h.record(id)?.revision == 4)
        #expect(h.releases.revisions(of: target).last?.description == "Rollback to 2")
        #expect(await h.store.lastVerification(model: "llama-3-8b", environment: "staging")?.revision == 4)
        #expect(await h.store.auditLog().map(\.outcome) == ["accepted", "succeeded"])
        #expect(h.chat.posts(for: id).first?.title == "Roll back llama-3-8b in staging, requested by @U0ADMIN")
    }

    @Test func rollbackToANamedRevision() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.superseded, .superseded, .deployed])
        let outcome = await h.run("rollback llama-3-8b in staging --to 1")
        #expect(outcome.succeeded)
        #expect(h.releases.rollbacks == [1])
        #expect(
            h.chat.posts(for: try #require(outcome.operation)).first?.title
                == "Roll back llama-3-8b in staging to revision 1, requested by @U0ADMIN")
    }

    @Test func rollbackToAMissingRevisionSaysSo() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.superseded, .deployed])

        let outcome = await h.run("rollback llama-3-8b in staging --to 99")

        #expect(
            outcome.message
                == "llama-3-8b-staging has no revision 99; it has revisions 2 (deployed, current), 1 (superseded)."
        )
        #expect(
            h.chat.posts.last?.reply.hint?.plainText
                == "Pick one of them: `/infer rollback llama-3-8b in staging --to N`; "
                + "`/infer history llama-3-8b in staging` shows what each one was."
        )
        #expect(h.releases.changingCalls.isEmpty)
        #expect(await h.record(try #require(outcome.operation))?.state == .failed)
    }

    @Test func rollbackToTheDeployedRevisionIsRefused() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.superseded, .deployed])
        let outcome = await h.run("rollback llama-3-8b in staging --to 2")
        #expect(outcome.message == "Revision 2 is already the deployed revision.")
        #expect(h.chat.posts.last?.reply.hint == "`/infer history llama-3-8b in staging` lists the others.")
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func rollbackWithoutAnEarlierRevision() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let outcome = await h.run("rollback llama-3-8b in staging")
        #expect(
            outcome.message
                == "llama-3-8b-staging has nothing earlier to roll back to: it has revision 1 (deployed, current), "
                + "and no revision before 1 was deployed successfully."
        )
        #expect(
            h.chat.posts.last?.reply.hint
                == "To change what runs, deploy again: `/infer deploy llama-3-8b to staging` (with `--set` for other values)."
        )
        #expect(h.releases.changingCalls.isEmpty)
        #expect(await h.record(try #require(outcome.operation))?.state == .failed)
    }

    /// Earlier revisions that failed are not a way back; the refusal shows them, so the reader sees why.
    @Test func rollbackWhenEveryEarlierRevisionFailedListsThem() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.failed, .failed, .deployed])
        let outcome = await h.run("rollback llama-3-8b in staging")
        #expect(
            outcome.message
                == "llama-3-8b-staging has nothing earlier to roll back to: it has revisions 3 (deployed, current), "
                + "2 (failed), 1 (failed), and no revision before 3 was deployed successfully."
        )
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func rollbackOfAReleaseThatDoesNotExist() async throws {
        let h = Harness()
        let outcome = await h.run("rollback llama-3-8b in staging")
        #expect(outcome.message == "There is no such release.")
        #expect(h.chat.posts.last?.reply.hint == "Check the model and environment, or deploy it first.")
        #expect(h.releases.changingCalls.isEmpty)
    }

    /// The second deploy of a release waits for the first to end; their Helm calls never overlap.
    @Test func concurrentDeploysOfOneReleaseRunOneAfterTheOther() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))

        let first = h.start("deploy llama-3-8b to staging")
        try await gate.waitUntilReached()
        let firstID = try await h.operation(titled: "Deploy llama-3-8b to staging")
        let second = h.start("deploy llama-3-8b to staging --set replicaCount=2", as: Fixtures.deployer)
        let queued = try await h.chat.waitForEvent { $0.title.hasPrefix("Queued behind") }
        let secondID = try #require(queued.operation)

        // While the first is in Helm, the second waits in `queued` and Helm has seen one upgrade.
        #expect(secondID != firstID)
        #expect(queued.title == "Queued behind \(firstID) on llama-3-8b-staging; it starts when that one ends.")
        #expect(await h.record(secondID)?.state == .queued)
        #expect(await h.record(firstID)?.state == .applying)
        #expect(h.releases.upgrades.count == 1)
        #expect(h.releases.state.inFlight.map(\.method) == [.upgrade])

        gate.open()
        let firstOutcome = await first.value
        let secondOutcome = await second.value

        #expect(firstOutcome == .completed(firstID))
        #expect(secondOutcome == .completed(secondID))
        // Helm calls: everything of the first, then everything of the second, never overlapping.
        let release = "llama-3-8b-staging"
        let oneDeploy = [
            "began status \(release)", "ended status \(release)", "began history \(release)",
            "ended history \(release)", "began render \(release)", "ended render \(release)",
            "began upgrade \(release)", "ended upgrade \(release)",
        ]
        #expect(h.releases.events.map(\.description) == oneDeploy + oneDeploy)
        #expect(h.releases.upgrades.map { $0.values["replicaCount"] } == [.number(1), .number(2)])
        // Journals: nothing of the second after `queued` is written before the first has ended.
        let journal = await h.store.allJournalEntries()
        let firstEnded = try #require(journal.firstIndex { $0.operation == firstID && $0.state == .succeeded })
        let secondStarted = try #require(journal.firstIndex { $0.operation == secondID && $0.state == .prechecking })
        #expect(firstEnded < secondStarted)
        #expect(journal[secondStarted...].allSatisfy { $0.operation == secondID })
        #expect(
            await h.store.stateHistory(of: secondID) == [
                .planned, .queued, .prechecking, .applying, .waitingReady, .warming, .verifying, .succeeded,
            ])
        #expect(h.releases.revisions(of: target).map(\.state) == [.superseded, .superseded, .deployed])
    }

    @Test func deploysOfDifferentReleasesDoNotWaitForEachOther() async throws {
        let h = Harness()
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let held = h.start("deploy llama-3-8b to staging")
        try await gate.waitUntilReached()
        // Another model in the same environment goes straight through while the first is in Helm.
        let other = await h.run("deploy qwen-2-72b to staging")
        #expect(other.succeeded)
        gate.open()
        #expect(await held.value.succeeded)
    }

    @Test func statusShowsTheOperationInFlight() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let deploy = h.start("deploy llama-3-8b to staging")
        try await gate.waitUntilReached()
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")

        #expect(await h.run("status in staging", as: Fixtures.viewer) == .completed(nil))

        let row = try #require(h.chat.posts.last?.reply.table?.rows.first)
        #expect(row.first == "llama-3-8b")
        #expect(row.last == "\(id) deploy (applying)")
        gate.open()
        _ = await deploy.value
    }

    @Test func cancelWhileWaitingForReadiness() async throws {
        let h = Harness()
        h.engines.script("llama-3-8b-staging", EngineScript(healthStatuses: [503], servedModels: ["llama-3-8b"]))
        let deploy = h.start("deploy llama-3-8b to staging")
        try await h.engines.waitFor { ($0.counts["llama-3-8b-staging"]?["/health"] ?? 0) >= 3 }
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")
        #expect(await h.record(id)?.state == .waitingReady)

        let cancel = await h.run("cancel \(id)")

        #expect(cancel == .completed(id))
        #expect(
            h.chat.posts.contains {
                $0.title == "Cancelling \(id); its thread reports when it has stopped." && $0.operation == nil
            })
        let outcome = await deploy.value
        #expect(outcome == .failed(id, "cancelled"))
        #expect(await h.record(id)?.state == .cancelled)
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
        #expect(
            h.chat.posts(for: id).last?.title
                == "Cancelled by @U0ADMIN. Helm was stopped cleanly; `/infer status` shows where the release stands.")
        let audit = await h.store.auditLog()
        #expect(audit.contains { $0.action == "cancel" && $0.outcome == "accepted" && $0.operation == id })
        #expect(audit.last?.action == "deploy")
        #expect(audit.last?.outcome == "cancelled")
        #expect(h.releases.rollbacks.isEmpty)
    }

    /// Cancelling while Helm runs: the engine stops Helm (SIGTERM) and throws `ReleaseFailure.cancelled`,
    /// as `ReleaseEngine.upgrade` documents. The operation should end `cancelled`, with no rollback.
    @Test(arguments: ["staging", "production"])
    func cancelWhileHelmRuns(environment: String) async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: environment)
        h.releases.seed(target, [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let deploy = h.start("deploy llama-3-8b to \(environment)")
        try await gate.waitUntilReached()
        let id = try await h.operation(titled: "Deploy llama-3-8b to \(environment)")

        #expect(await h.run("cancel \(id)") == .completed(id))
        let outcome = await deploy.value

        // The fake did what Helm does on SIGTERM: the new revision is marked failed.
        #expect(h.releases.revisions(of: target).first { $0.revision == 2 }?.state == .failed)
        // A cancel is not a failure to recover from: no automatic rollback, the record ends cancelled.
        #expect(outcome == .failed(id, "cancelled"))
        #expect(h.releases.rollbacks.isEmpty)
        #expect(await h.store.stateHistory(of: id).suffix(2) == [.applying, .cancelled])
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
    }

    /// A cancel that arrives between the operation being recorded and its task being registered.
    @Test func cancelRightAfterTheRequestStopsTheOperation() async throws {
        let h = Harness()
        // Hold the deploy just after it is recorded as queued, before it is registered as running.
        let hold = h.chat.holdPost { reply, _, _ in reply.title == "Queued." }
        let deploy = h.start("deploy llama-3-8b to staging")
        try await hold.waitUntilReached()
        let id = try #require(await h.store.allOperations().first?.id)
        #expect(await h.record(id)?.state == .queued)

        let cancel = await h.run("cancel \(id)")

        #expect(cancel == .completed(id))
        #expect(h.chat.posts.last?.title == "Cancelling \(id); its thread reports when it has stopped.")
        hold.open()
        let outcome = await deploy.value
        // The cancel was remembered until the task existed: nothing was upgraded.
        let journal = await h.store.allJournalEntries().map { "\($0.operation) \($0.state) \($0.message)" }
        #expect(h.releases.upgrades.isEmpty, "\(journal)")
        #expect(await h.record(id)?.state == .cancelled)
        #expect(outcome != .completed(id))
    }

    /// Another daemon runs it: the cancel is recorded for that daemon to carry out, nothing here acts.
    @Test func cancelOfAnOperationAnotherDaemonRunsIsRecordedForIt() async throws {
        let h = Harness()
        let owner = OperationOwner(instance: "other-daemon", host: "ops-2", pid: 4242, heartbeat: h.time.now())
        let running = OperationRecord(
            id: OperationID("op-0000beef"), kind: .deploy, requester: Fixtures.deployer, environment: "staging",
            model: "llama-3-8b", target: h.target("llama-3-8b", in: "staging"), state: .applying,
            command: "deploy llama-3-8b to staging", createdAt: h.time.now(), owner: owner
        )
        try await h.store.insert(running)

        #expect(await h.run("cancel op-0000beef", as: Fixtures.deployer) == .completed(running.id))

        let record = try #require(await h.record(running.id))
        #expect(record.state == .applying)
        #expect(record.cancelRequest?.by == Fixtures.deployer)
        #expect(record.owner?.instance == "other-daemon")
        #expect(h.chat.posts.last?.title.contains("the daemon running it (ops-2 pid 4242") == true)
        #expect(h.releases.calls.isEmpty)
    }

    /// Its daemon is gone (heartbeat expired) and a cancel waits for it: this daemon takes it over,
    /// puts the release in order (nothing to do here) and closes it in its own thread.
    @Test func cancelOfAnOperationLeftBehindIsTakenOverAndClosed() async throws {
        let h = Harness()
        let gone = OperationOwner(instance: "dead-daemon", host: "ops-2", pid: 4242,
                                  heartbeat: h.time.now().addingTimeInterval(-60))
        let orphan = OperationRecord(
            id: OperationID("op-0000beef"), kind: .deploy, requester: Fixtures.deployer, environment: "staging",
            model: "llama-3-8b", target: h.target("llama-3-8b", in: "staging"), state: .applying,
            command: "deploy llama-3-8b to staging", createdAt: h.time.now(), owner: gone,
            cancelRequest: CancelRequest(by: Fixtures.deployer, at: h.time.now())
        )
        try await h.store.insert(orphan)

        try await h.waitUntil(orphan.id, is: .cancelled)

        let record = try #require(await h.record(orphan.id))
        #expect(record.outcome == "Cancelled by @U0DEPLOYER after the daemon that ran it stopped.")
        #expect(record.owner?.instance != "dead-daemon")
        let thread = h.chat.posts(for: orphan.id).map(\.title)
        #expect(thread.first == "Deploy llama-3-8b to staging, requested by @U0DEPLOYER")
        #expect(thread.contains { $0.hasPrefix("Resuming after InferOps restarted: it was applying.") })
        #expect(thread.last == "Cancelled by @U0DEPLOYER after the daemon that ran it stopped.")
        #expect(h.releases.calls(.upgrade).isEmpty && h.releases.calls(.rollback).isEmpty)
    }

    @Test func cancelOfAFinishedOrUnknownOperation() async throws {
        let h = Harness()
        let done = await h.run("deploy llama-3-8b to staging")
        let id = try #require(done.operation)
        #expect(await h.run("cancel \(id)") == .refused("\(id) has already ended: succeeded."))
        #expect(await h.run("cancel op-00000000") == .refused("There is no operation op-00000000."))
        #expect(h.chat.posts.last?.reply.hint == "`/infer status` lists the operations in flight.")
    }

    @Test func cancelNeedsThePermissionInTheOperationsEnvironment() async throws {
        let h = Harness()
        let done = await h.run("deploy llama-3-8b to production")
        let id = try #require(done.operation)
        let outcome = await h.run("cancel \(id)", as: Fixtures.deployer)
        #expect(
            outcome
                == .refused(
                    "@U0DEPLOYER may not `cancel` in `production`: the permission `cancel` on `production` is missing."
                ))
        #expect(await h.store.auditLog().last?.outcome == "denied")
    }

    /// Another daemon holds the release in the store: the operation is refused, not run.
    @Test func releaseClaimedByAnotherDaemonIsRefused() async throws {
        let h = Harness()
        let other = OperationRecord(
            id: OperationID("op-0000cafe"), kind: .rollback, requester: Fixtures.deployer, environment: "staging",
            model: "llama-3-8b", target: h.target("llama-3-8b", in: "staging"), state: .applying,
            command: "rollback llama-3-8b in staging", createdAt: h.time.now(),
            owner: OperationOwner(instance: "other-daemon", host: "ops-2", pid: 4242, heartbeat: h.time.now())
        )
        try await h.store.insert(other)

        let outcome = await h.run("deploy llama-3-8b to staging")

        #expect(
            outcome
                == .refused(
                    "op-0000cafe (rollback by @U0DEPLOYER, applying) is already working on llama-3-8b-staging.")
        )
        #expect(
            h.chat.posts.last?.reply.hint
                == "Wait for it to end, or `/infer cancel op-0000cafe`.")
        #expect(h.releases.calls.isEmpty)
        let id = try #require(await h.store.allOperations().last?.id)
        #expect(await h.record(id)?.state == .failed)
    }
}
