import InferOpsCore
import InferOpsTesting
import Synchronization
import Testing

/// Identical reads in flight share one call; nothing is kept once it has answered.
@Suite(.timeLimit(.minutes(1))) struct SharedReadsTests {
    struct Refused: Error, Equatable {}

    final class Counter: Sendable {
        let count = Mutex(0)
        func add() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    @Test func readsInFlightShareOneCallAndALaterReadCallsAgain() async throws {
        let reads = SharedReads()
        let calls = Counter()
        let gate = Gate()
        let answers = try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask {
                try await reads.read("release-status|staging") {
                    calls.add()
                    try await gate.pass()
                    return 42
                }
            }
            try await gate.waitUntilReached()
            // Joined while the first is held: these wait for its answer.
            for _ in 1...5 {
                group.addTask { try await reads.read("release-status|staging") { calls.add(); return 0 } }
            }
            // Another key is read on its own.
            group.addTask { try await reads.read("release-history|staging") { 7 } }
            try await waitForFollowers(reads, key: "release-status|staging", count: 5)
            gate.open()
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(answers.sorted() == [7, 42, 42, 42, 42, 42, 42])
        #expect(calls.value == 1)

        #expect(try await reads.read("release-status|staging") { 43 } == 43)
    }

    @Test func aFailedReadFailsEveryoneWaitingForIt() async throws {
        let reads = SharedReads()
        let gate = Gate()
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                (try? await reads.read("workload|staging") { () async throws -> Int in
                    try await gate.pass()
                    throw Refused()
                }) == nil
            }
            try? await gate.waitUntilReached()
            for _ in 1...3 {
                group.addTask { (try? await reads.read("workload|staging") { 1 }) == nil }
            }
            try? await waitForFollowers(reads, key: "workload|staging", count: 3)
            gate.open()
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes == [true, true, true, true])
    }

    @Test func aCancelledReaderDoesNotFailThoseWaitingForItsRead() async throws {
        let reads = SharedReads()
        let gate = Gate()
        let calls = Counter()
        let leader = Task {
            try await reads.read("revision-makers|staging") { () async throws -> Int in
                calls.add()
                try await gate.pass()
                return 1
            }
        }
        try await gate.waitUntilReached()
        let followers = (1...3).map { _ in
            Task { try await reads.read("revision-makers|staging") { () async throws -> Int in calls.add(); return 2 } }
        }
        try await waitForFollowers(reads, key: "revision-makers|staging", count: 3)
        leader.cancel()
        await #expect(throws: CancellationError.self) { try await leader.value }
        // They read again (sharing whichever read of theirs is then in flight).
        for follower in followers { #expect(try await follower.value == 2) }
        #expect((2...4).contains(calls.value))
    }

    /// Waits until `count` callers wait for the read of `key` in flight.
    func waitForFollowers(_ reads: SharedReads, key: String, count: Int) async throws {
        while reads.followers(of: key) < count {
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
