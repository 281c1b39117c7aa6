import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// The fakes keep Helm's and the store's bookkeeping; the end-to-end tests rely on it.
@Suite(.timeLimit(.minutes(1))) struct FakesTests {
    let target = ReleaseTarget(release: "llama-3-8b-staging", namespace: "inferops-staging")

    func upgrade(values: JSONValue = .object(["image": .object(["tag": .string("v0.6.3")])])) -> ReleaseUpgrade {
        ReleaseUpgrade(target: target, chart: "charts/vllm-engine", values: values, timeout: .seconds(60))
    }

    @Test func upgradesAndRollbacksKeepHelmsHistory() async throws {
        let engine = FakeReleaseEngine()
        #expect(try await engine.status(target) == nil)
        #expect(try await engine.upgrade(upgrade()).revision == 1)
        #expect(try await engine.upgrade(upgrade()).revision == 2)
        engine.script(
            .upgrade, .fail(.readinessTimeout(detail: "timed out")), .fail(.chartError(detail: "bad template")))
        await #expect(throws: ReleaseFailure.readinessTimeout(detail: "timed out")) {
            try await engine.upgrade(upgrade())
        }
        // A chart that does not render never becomes a revision.
        await #expect(throws: ReleaseFailure.chartError(detail: "bad template")) { try await engine.upgrade(upgrade()) }
        #expect(engine.revisions(of: target).map(\.state) == [.superseded, .deployed, .failed])
        #expect(try await engine.status(target)?.state == .failed)

        let restored = try await engine.rollback(target, to: 1, timeout: .seconds(60))
        #expect(restored.revision == 4)
        #expect(restored.state == .deployed)
        let history = try await engine.history(target)
        #expect(history.map(\.state) == [.superseded, .superseded, .failed, .deployed])
        #expect(history.last?.description == "Rollback to 1")
        #expect(history.last?.appVersion == "v0.6.3")
        #expect(history.first?.chart == "vllm-engine-0.1.0")

        await #expect(throws: ReleaseFailure.missingRevision(9)) {
            try await engine.rollback(target, to: 9, timeout: .seconds(1))
        }
        try await engine.uninstall(target, timeout: .seconds(1))
        #expect(try await engine.history(target).isEmpty)
        await #expect(throws: ReleaseFailure.releaseNotFound) {
            try await engine.uninstall(target, timeout: .seconds(1))
        }
        #expect(engine.calls(.upgrade).count == 4)
    }

    @Test func upgradeOfAPendingReleaseIsRefusedLikeHelm() async throws {
        let engine = FakeReleaseEngine()
        engine.seed(target, [.deployed, .pendingUpgrade])
        await #expect(throws: ReleaseFailure.operationInProgress) { try await engine.upgrade(upgrade()) }
        #expect(engine.revisions(of: target).count == 2)
    }

    @Test func heldCallsWaitForTheGateAndCancelLikeHelm() async throws {
        let engine = FakeReleaseEngine()
        let gate = Gate()
        engine.script(.upgrade, .hold(gate), .hold(gate, then: .fail(.rolloutFailed(detail: "CrashLoopBackOff"))))

        let first = Task { try await engine.upgrade(upgrade()) }
        try await gate.waitUntilReached()
        #expect(engine.state.inFlight.count == 1)
        first.cancel()
        await #expect(throws: ReleaseFailure.cancelled) { try await first.value }
        #expect(engine.revisions(of: target).map(\.state) == [.failed])

        let second = Task { try await engine.upgrade(upgrade()) }
        try await gate.waitUntilReached(count: 2)
        gate.open()
        await #expect(throws: ReleaseFailure.rolloutFailed(detail: "CrashLoopBackOff")) { try await second.value }
        #expect(engine.state.inFlight.isEmpty)
        #expect(engine.events.count == 4)
    }

    @Test func claimReleaseIsAtomic() async throws {
        let store = InMemoryOperationStore()
        let now = ManualTime().now()
        let ids = (0..<50).map { OperationID(String(format: "op-%08x", $0)) }
        for id in ids {
            try await store.insert(
                OperationRecord(
                    id: id, kind: .deploy, requester: Fixtures.admin, environment: "staging", model: "llama-3-8b",
                    target: target, state: .queued, command: "deploy llama-3-8b to staging", createdAt: now
                )
            )
        }
        let winners = try await withThrowingTaskGroup(of: OperationID?.self) { group in
            for id in ids {
                group.addTask {
                    try await store.claimRelease(for: id, release: target.release, at: now) == nil ? id : nil
                }
            }
            return try await group.reduce(into: [OperationID]()) { if let id = $1 { $0.append(id) } }
        }
        #expect(winners.count == 1)
        let holder = try #require(winners.first)
        #expect(await store.operation(holder)?.state == .prechecking)
        // Another release is free, and a finished holder no longer holds.
        var done = try #require(await store.operation(holder))
        done.state = .succeeded
        try await store.update(done, from: .prechecking)
        #expect(
            try await store.claimRelease(for: ids[ids[0] == holder ? 1 : 0], release: target.release, at: now) == nil)
        await #expect(throws: InMemoryOperationStore.StoreError.unknownOperation(OperationID("op-ffffffff"))) {
            try await store.claimRelease(for: OperationID("op-ffffffff"), release: "other", at: now)
        }
    }

    @Test func storeOrdersAndLocks() async throws {
        let store = InMemoryOperationStore()
        let time = ManualTime()
        for (index, state) in [OperationState.succeeded, .applying, .queued].enumerated() {
            try await store.insert(
                OperationRecord(
                    id: OperationID("op-0000000\(index)"), kind: .deploy, requester: Fixtures.admin,
                    environment: "staging",
                    model: "llama-3-8b", state: state, command: "deploy", createdAt: time.now()
                )
            )
            time.advance(by: .seconds(1))
        }
        #expect(await store.unfinishedOperations().map(\.id.rawValue) == ["op-00000001", "op-00000002"])
        #expect(
            await store.recentOperations(model: "llama-3-8b", environment: nil, limit: 2).map(\.id.rawValue) == [
                "op-00000002", "op-00000001",
            ])
        #expect(await store.recentOperations(model: "qwen-2-72b", environment: nil, limit: 9).isEmpty)
        let lock = EnvironmentLock(environment: "staging", holder: Fixtures.admin, reason: nil, since: time.now())
        #expect(await store.acquireLock(lock) == nil)
        #expect(
            await store.acquireLock(
                EnvironmentLock(environment: "staging", holder: Fixtures.deployer, reason: nil, since: time.now()))
                == lock)
        #expect(await store.releaseLock(environment: "staging") == lock)
        #expect(await store.releaseLock(environment: "staging") == nil)
        await #expect(throws: InMemoryOperationStore.StoreError.self) {
            try await store.insert(
                OperationRecord(
                    id: OperationID("op-00000000"), kind: .lock, requester: Fixtures.admin, environment: "dev",
                    command: "lock dev", createdAt: time.now()))
        }
    }

    @Test func manualTimeKeepsWholeMillisecondsAndNeverWaits() async throws {
        let time = ManualTime(now: Date(timeIntervalSince1970: 1_750_000_000.123_456))
        #expect(time.now().timeIntervalSince1970 == 1_750_000_000.123)
        time.advance(by: .milliseconds(1_500))
        #expect(time.now().timeIntervalSince1970 == 1_750_000_001.623)
        try await time.sleep(for: .seconds(3_600))
        #expect(time.now().timeIntervalSince1970 == 1_750_000_001.623)
        #expect(time.sleepCount == 1 && time.slept == .seconds(3_600))
        let moving = ManualTime(advancesOnSleep: true)
        try await moving.sleep(for: .seconds(2))
        #expect(moving.now() == ManualTime.start.addingTimeInterval(2))
        let cancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await moving.sleep(for: .seconds(1))
        }
        await #expect(throws: CancellationError.self) { try await cancelled.value }
    }

    @Test func engineScriptsAnswerInOrder() async throws {
        let engines = FakeEngineClient()
        engines.script("svc", EngineScript(healthStatuses: [503, 200], servedModels: ["m"]))
        let endpoint = EngineEndpoint(target: target, service: "svc")
        #expect(try await engines.get(endpoint, path: "/health", timeout: .seconds(1)).status == 503)
        #expect(try await engines.get(endpoint, path: "/health", timeout: .seconds(1)).status == 200)
        #expect(try await engines.get(endpoint, path: "/health", timeout: .seconds(1)).status == 200)
        #expect(try await engines.get(endpoint, path: "/metrics", timeout: .seconds(1)).status == 404)
        await #expect(throws: EngineUnreachable.self) {
            try await engines.get(
                EngineEndpoint(target: target, service: "nobody"), path: "/health", timeout: .seconds(1))
        }
        #expect(engines.requests(to: "/health") == 4)
        #expect(engines.requests(to: "/health", service: "svc") == 3)
    }

    @Test func chatRecordsAndWaits() async throws {
        let chat = RecordingChat()
        let waiter = Task { try await chat.waitForEvent { $0.title == "second" } }
        let first = try await chat.post(Reply(.info, "first"), in: Conversation(channel: "C"), operation: nil)
        try await chat.post(Reply(.info, "second"), in: Conversation(channel: "C", thread: first.id), operation: nil)
        try await chat.update(first, with: Reply(.success, "first, edited"), operation: nil)
        let second = try await waiter.value
        #expect(second.conversation.thread == first.id)
        #expect(chat.posts.map(\.title) == ["first", "second"])
        #expect(chat.updates.map(\.title) == ["first, edited"])
        // A waiter gives up when its task is cancelled, so a test time limit never hangs on it.
        let never = Task { try await chat.waitFor { $0.count > 99 } }
        never.cancel()
        await #expect(throws: CancellationError.self) { try await never.value }
    }
}
