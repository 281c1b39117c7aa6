import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `whenLocked: queue`: an operation in an environment someone else has locked waits, saying who
/// holds the lock and why, and starts when it is released; `cancel` takes it out of the queue.
@Suite(.timeLimit(.minutes(1))) struct LockQueueTests {
    static func harness() -> Harness {
        Harness { $0.environments["staging"]!.whenLocked = .queue }
    }

    @Test func anOperationWaitsForTheLockThenRunsWhenItIsReleased() async throws {
        let h = Self.harness()
        #expect(await h.run("/infer lock staging --reason \"load test\"").operation == nil)
        #expect(h.chat.transcript.contains("changes there by anyone else are queued"))

        let deploy = h.start("/infer deploy llama-3-8b to staging", as: Fixtures.deployer)
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")
        let said = try await h.chat.waitForEvent { $0.operation == id && $0.title.hasPrefix("Queued: `staging` is locked by") }
        #expect(said.title == "Queued: `staging` is locked by @U0ADMIN: load test. It starts when the lock is released.")
        #expect(await h.record(id)?.state == .queued)
        #expect(h.releases.changingCalls.isEmpty)
        // `status` lists it in flight.
        _ = await h.run("/infer status in staging")
        #expect(h.chat.posts.last?.text.contains("\(id) deploy (queued)") == true)

        #expect(await h.run("/infer unlock staging").operation == nil)

        #expect(await deploy.value == .completed(id))
        #expect(await h.record(id)?.state == .succeeded)
        #expect(containsInOrder(h.thread(id), prefixes: ["Queued: `staging` is locked", "`staging` is unlocked: starting."]))
    }

    @Test func aLockReleasedByAnotherProcessIsNoticedAtTheNextHeartbeat() async throws {
        let h = Self.harness()
        _ = await h.run("/infer lock staging")
        let deploy = h.start("/infer deploy llama-3-8b to staging", as: Fixtures.deployer)
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")
        _ = try await h.chat.waitForEvent { $0.operation == id && $0.title.hasPrefix("Queued: `staging` is locked") }

        // `inferops exec "/infer unlock staging"`: the store changes, this runner is not told.
        #expect(await h.store.releaseLock(environment: "staging") != nil)

        #expect(await deploy.value == .completed(id))
    }

    @Test func aQueuedOperationIsCancelledWithoutRunning() async throws {
        let h = Self.harness()
        _ = await h.run("/infer lock staging")
        let deploy = h.start("/infer deploy llama-3-8b to staging", as: Fixtures.deployer)
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")
        _ = try await h.chat.waitForEvent { $0.operation == id && $0.title.hasPrefix("Queued: `staging` is locked") }

        #expect(await h.run("/infer cancel \(id)", as: Fixtures.deployer) == .completed(id))

        #expect(await deploy.value == .failed(id, "cancelled"))
        #expect(await h.record(id)?.state == .cancelled)
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func theLockHoldersOwnOperationsAndRefusingEnvironmentsAreUnchanged() async throws {
        let h = Self.harness()
        _ = await h.run("/infer lock staging")
        let own = try #require(await h.run("/infer deploy llama-3-8b to staging").operation)
        #expect(await h.record(own)?.state == .succeeded)
        // Production refuses (the default), saying who holds the lock and why.
        _ = await h.run("/infer lock production --reason freeze")
        let refused = await h.run("/infer rollback llama-3-8b in production", as: Fixtures.releaser)
        #expect(refused.message?.contains("may not") == true)  // releaser may not roll back there
        let deployer = await h.run("/infer lock dev --reason drill")
        #expect(deployer.operation == nil)
        let devRefused = await h.run("/infer deploy llama-3-8b to dev", as: Fixtures.releaser)
        #expect(devRefused.message == "`dev` is locked by @U0ADMIN: drill.", "\(devRefused)")
    }
}
