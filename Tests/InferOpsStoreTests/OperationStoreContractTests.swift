import Foundation
import InferOpsCore
import Testing

/// The behaviour every `OperationStore` promises, run on each implementation (`ContractStore`).
/// What only SQLite does (files, migrations, the audit chain, millisecond precision) is tested in
/// `SQLiteStoreTests`.
@Suite("OperationStore contract")
struct OperationStoreContractTests {
    // MARK: Operations, journal, audit, verifications, registrations and locks

    @Test("An operation reads back exactly as inserted and as updated", arguments: ContractStore.allCases)
    func operationRoundTrip(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let plan: JSONValue = .object([
                "chart": .string("vllm"),
                "replicas": .number(2),
                "gpuMemoryUtilization": .number(0.85),
                "enabled": .bool(true),
                "extra": .null,
                "args": .array([.string("--max-model-len"), .number(8192)]),
                "note": .string("quotes \" and \\ and\nnewlines, ünïcødé"),
                "engine": .object(["image": .string("vllm/vllm-openai:v0.6.3")]),
            ])
            var operation = OperationRecord(
                id: OperationID("op-0000abcd"),
                kind: .deploy,
                requester: UserID("U024BE7LH"),
                environment: "prod",
                model: "llama-3-8b",
                target: ReleaseTarget(release: "llama-3-8b-prod", namespace: "inference", kubeContext: "gke-prod"),
                state: .planned,
                plan: plan,
                planDigest: "sha256:1234",
                command: "deploy llama-3-8b to prod",
                thread: "C1/1700000000.000100",
                outcome: nil,
                createdAt: moment(123),
                updatedAt: moment(456)
            )
            try await store.insert(operation)
            #expect(try await store.operation(operation.id) == operation)

            operation.state = .applying
            operation.plan = .object(["replicas": .number(3)])
            operation.planDigest = "sha256:5678"
            operation.target = ReleaseTarget(release: "llama-3-8b-prod", namespace: "inference")
            operation.outcome = "Applying revision 4"
            operation.revision = 4
            // A failed upgrade (3) and the automatic rollback that restored the release (4).
            operation.revisions = [3, 4]
            operation.updatedAt = moment(999)
            try await store.update(operation, from: .planned)
            #expect(try await store.operation(operation.id) == operation)

            operation.plan = nil
            operation.planDigest = nil
            operation.target = nil
            operation.thread = nil
            operation.outcome = nil
            try await store.update(operation, from: .applying)
            #expect(try await store.operation(operation.id) == operation)
        }
    }

    @Test("An operation's end is its state, journal entry and audit row together, or nothing", arguments: ContractStore.allCases)
    func endIsOneStep(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var running = makeOperation("op-00000001", state: .verifying)
            try await store.insert(running)
            running.state = .succeeded
            running.outcome = "Deployed."
            let at = running.createdAt
            let journal = JournalEntry(operation: running.id, at: at, state: .succeeded, message: "Deployed.")
            let audit = AuditEntry(at: at, actor: running.requester, action: "deploy", outcome: "succeeded",
                                   operation: running.id)
            try await store.recordEnd(running, from: .verifying, journal: journal, audit: audit)
            #expect(try await store.operation(running.id)?.state == .succeeded)
            #expect(try await store.journal(of: running.id).last?.message == "Deployed.")
            #expect(try await store.auditLog().last?.outcome == "succeeded")

            // From a stale state nothing of it is written.
            var other = makeOperation("op-00000002", state: .applying)
            try await store.insert(other)
            other.state = .failed
            await #expect(throws: OperationStateConflict(operation: other.id, expected: .verifying, found: .applying)) {
                try await store.recordEnd(
                    other, from: .verifying,
                    journal: JournalEntry(operation: other.id, at: at, state: .failed, message: "Failed."),
                    audit: AuditEntry(at: at, actor: other.requester, action: "deploy", outcome: "failed",
                                      operation: other.id))
            }
            #expect(try await store.operation(other.id)?.state == .applying)
            #expect(try await store.journal(of: other.id).isEmpty)
            #expect(try await store.auditLog().count == 1)
        }
    }

    @Test("Only one operation at a time may claim a release", arguments: ContractStore.allCases)
    func releaseClaim(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let target = ReleaseTarget(release: "llama-staging", namespace: "inference")
            var first = makeOperation("op-00000001")
            first.target = target
            var second = makeOperation("op-00000002")
            second.target = target
            var other = makeOperation("op-00000003")
            other.target = ReleaseTarget(release: "mistral-staging", namespace: "inference")
            for operation in [first, second, other] { try await store.insert(operation) }

            #expect(try await store.claimRelease(for: first.id, release: target.release, at: moment(5)) == nil)
            #expect(try await store.operation(first.id)?.state == .prechecking)
            let holder = try await store.claimRelease(for: second.id, release: target.release, at: moment(6))
            #expect(holder?.id == first.id)
            #expect(try await store.operation(second.id)?.state == .requested)
            // Another release is not affected.
            #expect(try await store.claimRelease(for: other.id, release: "mistral-staging", at: moment(6)) == nil)

            first.state = .succeeded
            try await store.update(first, from: .prechecking)
            #expect(try await store.claimRelease(for: second.id, release: target.release, at: moment(7)) == nil)
            #expect(try await store.operation(second.id)?.state == .prechecking)
        }
    }

    @Test(
        "A registration reads back as recorded, with a version that each write moves on",
        arguments: ContractStore.allCases
    )
    func registrationRoundTrip(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var llama = Registration(
                model: "llama-3-8b", environment: "staging", state: .enabled,
                endpoints: ["http://10.0.0.7:8000", "http://10.0.0.8:8000"], changedBy: UserID("U1"),
                changedAt: moment(1)
            )
            var mistral = Registration(
                model: "mistral-7b", environment: "production", state: .removed, endpoints: [], changedBy: UserID("U2"),
                changedAt: moment(2), reason: "replaced by llama"
            )
            llama = try #require(try await store.updateRegistration(llama, expectedVersion: nil))
            mistral = try #require(try await store.updateRegistration(mistral, expectedVersion: nil))
            #expect(llama.version == 1)
            #expect(try await store.registration(model: "llama-3-8b", environment: "staging") == llama)
            #expect(try await store.registration(model: "llama-3-8b", environment: "production") == nil)

            llama.state = .disabled
            llama.endpoints = []
            llama.reason = "bad answers \"quoted\""
            llama.changedAt = moment(3)
            let disabled = try #require(try await store.updateRegistration(llama, expectedVersion: 1))
            #expect(disabled.version == 2)
            llama.version = 2
            #expect(disabled == llama)
            #expect(try await store.registration(model: "llama-3-8b", environment: "staging") == llama)
            #expect(try await store.registrations() == [mistral, llama])
        }
    }

    /// The lost update the reconciler used to make: it read a row, waited on the cluster, and wrote
    /// the whole row back over a `disable` made meanwhile.
    @Test("A registration write from a stale read changes nothing", arguments: ContractStore.allCases)
    func registrationCompareAndSet(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let read = try #require(try await store.updateRegistration(
                Registration(model: "llama-3-8b", environment: "staging", state: .enabled,
                             endpoints: ["http://10.0.0.7:8000"],
                             changedBy: UserID("U1"), changedAt: moment(1)),
                expectedVersion: nil))
            var disable = read
            disable.state = .disabled
            disable.endpoints = []
            disable.changedBy = UserID("U2")
            let disabled = try #require(try await store.updateRegistration(disable, expectedVersion: read.version))

            var moved = read
            moved.endpoints = ["http://10.0.0.9:8000"]
            #expect(try await store.updateRegistration(moved, expectedVersion: read.version) == nil)
            // Nor may a stale writer create a row that exists, or remove one that changed.
            #expect(try await store.updateRegistration(moved, expectedVersion: nil) == nil)
            #expect(
                try await store.removeRegistration(
                    model: "llama-3-8b", environment: "staging", expectedVersion: read.version) == false)
            #expect(try await store.registration(model: "llama-3-8b", environment: "staging") == disabled)

            #expect(
                try await store.removeRegistration(
                    model: "llama-3-8b", environment: "staging", expectedVersion: disabled.version))
            #expect(try await store.registration(model: "llama-3-8b", environment: "staging") == nil)
        }
    }

    @Test("Of concurrent writers from one read, exactly one wins", arguments: ContractStore.allCases)
    func concurrentRegistrationWrites(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let read = try #require(try await store.updateRegistration(
                Registration(model: "llama-3-8b", environment: "staging", state: .enabled, endpoints: [],
                             changedBy: UserID("U1"), changedAt: moment(1)),
                expectedVersion: nil))
            let winners = try await withThrowingTaskGroup(of: String?.self) { group in
                for writer in 1...12 {
                    group.addTask {
                        var next = read
                        next.changedBy = UserID("U\(writer)")
                        let written = try await store.updateRegistration(next, expectedVersion: read.version)
                        return written?.changedBy.rawValue
                    }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(winners.count == 1)
            let stored = try await store.registration(model: "llama-3-8b", environment: "staging")
            #expect(stored?.changedBy.rawValue == winners.first)
            #expect(stored?.version == 2)
        }
    }

    /// A `cancel` from another process closed the record; the daemon running it must not write it
    /// back to a running state.
    @Test(
        "An operation update names the state it expects, and never reopens a finished one",
        arguments: ContractStore.allCases
    )
    func operationCompareAndSet(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var running = makeOperation("op-00000001", state: .applying)
            try await store.insert(running)
            var cancelled = running
            cancelled.state = .cancelled
            cancelled.outcome = "Cancelled by <@U2>: no daemon was running it."
            try await store.update(cancelled, from: .applying)

            running.state = .waitingReady
            await #expect(throws: OperationAlreadyEnded(operation: running.id, state: .cancelled)) {
                try await store.update(running, from: .applying)
            }
            running.state = .succeeded
            await #expect(throws: OperationAlreadyEnded(operation: running.id, state: .cancelled)) {
                try await store.update(running, from: .waitingReady)
            }
            #expect(try await store.operation(running.id) == cancelled)

            var other = makeOperation("op-00000002", state: .verifying)
            try await store.insert(other)
            other.state = .succeeded
            await #expect(throws: OperationStateConflict(operation: other.id, expected: .applying, found: .verifying)) {
                try await store.update(other, from: .applying)
            }
            #expect(try await store.operation(other.id)?.state == .verifying)
        }
    }

    @Test("Concurrent claims of one release have exactly one winner", arguments: ContractStore.allCases)
    func concurrentReleaseClaims(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let ids = (1...12).map { OperationID("op-\(String(format: "%08x", $0))") }
            for id in ids {
                var operation = makeOperation(id.rawValue)
                operation.target = ReleaseTarget(release: "llama-staging", namespace: "inference")
                try await store.insert(operation)
            }
            let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
                for id in ids {
                    group.addTask {
                        try await store.claimRelease(for: id, release: "llama-staging", at: moment(1)) == nil
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(winners == 1)
        }
    }

    @Test("An operation with only the required fields reads back with nils", arguments: ContractStore.allCases)
    func minimalOperation(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let operation = makeOperation("op-00000001", kind: .unlock, model: nil)
            try await store.insert(operation)
            #expect(try await store.operation(operation.id) == operation)
            #expect(try await store.operation(OperationID("op-ffffffff")) == nil)
        }
    }

    @Test("Updating an operation that was never inserted throws", arguments: ContractStore.allCases)
    func updateUnknown(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let operation = makeOperation("op-00000404")
            await #expect(throws: (any Error).self) {
                try await store.update(operation, from: .requested)
            }
            #expect(try await store.operation(operation.id) == nil)
        }
    }

    @Test("Inserting the same id twice throws", arguments: ContractStore.allCases)
    func duplicateInsert(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            try await store.insert(makeOperation("op-00000001"))
            await #expect(throws: (any Error).self) {
                try await store.insert(makeOperation("op-00000001"))
            }
        }
    }

    @Test("Unfinished operations are listed oldest first, finished ones left out", arguments: ContractStore.allCases)
    func unfinished(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            // Inserted out of time order; two share a creation time and keep insertion order.
            let operations = [
                makeOperation("op-00000003", state: .applying, createdAt: moment(3000)),
                makeOperation("op-00000001", state: .requested, createdAt: moment(1000)),
                makeOperation("op-00000009", state: .succeeded, createdAt: moment(500)),
                makeOperation("op-00000002", state: .queued, createdAt: moment(2000)),
                makeOperation("op-00000004", state: .rollingBack, createdAt: moment(2000)),
                makeOperation("op-0000000a", state: .failed, createdAt: moment(4000)),
                makeOperation("op-0000000b", state: .rolledBack, createdAt: moment(4000)),
                makeOperation("op-0000000c", state: .cancelled, createdAt: moment(4000)),
                makeOperation("op-00000005", state: .waitingReady, createdAt: moment(5000)),
            ]
            for operation in operations { try await store.insert(operation) }

            let ids = try await store.unfinishedOperations().map(\.id.rawValue)
            #expect(ids == ["op-00000001", "op-00000002", "op-00000004", "op-00000003", "op-00000005"])
            // The summaries list the same operations in the same order, with the same fields.
            #expect(try await store.unfinishedSummaries() == store.unfinishedOperations().map(OperationSummary.init))

            var finishing = operations[1]
            finishing.state = .cancelled
            try await store.update(finishing, from: .requested)
            #expect(try await store.unfinishedOperations().map(\.id.rawValue).first == "op-00000002")
        }
    }

    @Test(
        "Recent operations are newest first, filtered by model and environment, and limited",
        arguments: ContractStore.allCases
    )
    func recent(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let operations = [
                makeOperation("op-00000001", environment: "staging", model: "llama", createdAt: moment(1000)),
                makeOperation("op-00000002", environment: "prod", model: "llama", createdAt: moment(2000)),
                makeOperation("op-00000003", environment: "staging", model: "qwen", createdAt: moment(3000)),
                makeOperation("op-00000004", environment: "prod", model: "qwen", createdAt: moment(4000)),
                makeOperation("op-00000005", kind: .lock, environment: "prod", model: nil, createdAt: moment(5000)),
                makeOperation("op-00000006", environment: "staging", model: "llama", createdAt: moment(6000)),
            ]
            for operation in operations { try await store.insert(operation) }

            func ids(model: String?, environment: String?, limit: Int) async throws -> [String] {
                try await store.recentOperations(model: model, environment: environment, limit: limit)
                    .map(\.id.rawValue)
            }
            #expect(
                try await ids(model: nil, environment: nil, limit: 10) == [
                    "op-00000006", "op-00000005", "op-00000004", "op-00000003", "op-00000002", "op-00000001",
                ]
            )
            #expect(try await ids(model: nil, environment: nil, limit: 2) == ["op-00000006", "op-00000005"])
            #expect(
                try await ids(model: "llama", environment: nil, limit: 10)
                    == ["op-00000006", "op-00000002", "op-00000001"]
            )
            #expect(
                try await ids(model: nil, environment: "prod", limit: 10)
                    == ["op-00000005", "op-00000004", "op-00000002"]
            )
            #expect(try await ids(model: "qwen", environment: "staging", limit: 10) == ["op-00000003"])
            #expect(try await ids(model: "llama", environment: "prod", limit: 1) == ["op-00000002"])
            #expect(try await ids(model: "mistral", environment: nil, limit: 10).isEmpty)
            #expect(try await ids(model: nil, environment: nil, limit: 0).isEmpty)
            #expect(try await ids(model: nil, environment: nil, limit: -1).isEmpty)
        }
    }

    @Test(
        "Revision makers are the operations of one release that made Helm revisions, newest first",
        arguments: ContractStore.allCases
    )
    func revisionMakers(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var deployed = makeOperation("op-00000001", createdAt: moment(1000))
            deployed.revision = 1
            let disabled = makeOperation("op-00000002", kind: .disable, createdAt: moment(2000))
            var retried = makeOperation("op-00000003", createdAt: moment(3000))
            retried.revisions = [2, 3]
            var elsewhere = makeOperation("op-00000004", environment: "prod", createdAt: moment(4000))
            elsewhere.revision = 1
            var other = makeOperation("op-00000005", model: "qwen", createdAt: moment(5000))
            other.revision = 1
            var rolledBack = makeOperation("op-00000006", kind: .rollback, createdAt: moment(6000))
            rolledBack.revision = 4
            rolledBack.revisions = [4]
            for operation in [deployed, disabled, retried, elsewhere, other, rolledBack] {
                try await store.insert(operation)
            }
            func ids(limit: Int) async throws -> [String] {
                try await store.revisionMakers(model: "llama", environment: "staging", limit: limit).map(\.id.rawValue)
            }
            #expect(try await ids(limit: 10) == ["op-00000006", "op-00000003", "op-00000001"])
            #expect(try await ids(limit: 2) == ["op-00000006", "op-00000003"])
            #expect(try await ids(limit: 0).isEmpty)
            #expect(try await store.revisionMakers(model: "llama", environment: "prod", limit: 10).map(\.id.rawValue) == ["op-00000004"])
        }
    }

    @Test("The journal of an operation comes back in the order it was written", arguments: ContractStore.allCases)
    func journalOrder(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let first = OperationID("op-00000001")
            let second = OperationID("op-00000002")
            try await store.insert(makeOperation(first.rawValue))
            try await store.insert(makeOperation(second.rawValue))

            // The same timestamp on purpose: the order is the order of writing, not of time.
            let entries = [
                JournalEntry(operation: first, at: moment(10), state: .requested, message: "requested"),
                JournalEntry(operation: second, at: moment(10), state: .requested, message: "other"),
                JournalEntry(
                    operation: first,
                    at: moment(10),
                    state: .planned,
                    message: "planned",
                    duration: .milliseconds(1500)
                ),
                JournalEntry(
                    operation: first,
                    at: moment(20),
                    state: .applying,
                    message: "helm upgrade",
                    duration: .seconds(42)
                ),
                JournalEntry(
                    operation: first,
                    at: moment(15),
                    state: .failed,
                    message: "timed out",
                    duration: .zero
                ),
            ]
            for entry in entries { try await store.appendJournal(entry) }

            #expect(try await store.journal(of: first) == entries.filter { $0.operation == first })
            #expect(try await store.journal(of: second) == [entries[1]])
            #expect(try await store.journal(of: OperationID("op-ffffffff")).isEmpty)
        }
    }

    @Test("A journal entry for an operation that does not exist is refused", arguments: ContractStore.allCases)
    func journalForeignKey(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let entry = JournalEntry(
                operation: OperationID("op-ffffffff"),
                at: moment(),
                state: .requested,
                message: "orphan"
            )
            await #expect(throws: (any Error).self) { try await store.appendJournal(entry) }
        }
    }

    @Test("The audit log comes back in the order it was appended", arguments: ContractStore.allCases)
    func auditOrder(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let entries = sampleAudit()
            for entry in entries { try await store.appendAudit(entry) }
            #expect(try await store.auditLog() == entries)
        }
    }

    @Test("The latest verification wins, per model and environment", arguments: ContractStore.allCases)
    func verifications(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            #expect(try await store.lastVerification(model: "llama", environment: "prod") == nil)

            let older = Verification(
                model: "llama",
                environment: "prod",
                operation: OperationID("op-00000001"),
                at: moment(1000),
                latency: .milliseconds(840),
                revision: 3
            )
            let newer = Verification(
                model: "llama",
                environment: "prod",
                operation: OperationID("op-00000002"),
                at: moment(2000),
                latency: .milliseconds(612),
                revision: 4
            )
            let late = Verification(
                model: "llama",
                environment: "prod",
                operation: OperationID("op-00000003"),
                at: moment(1500),
                latency: .milliseconds(700),
                revision: nil
            )
            let elsewhere = Verification(
                model: "llama",
                environment: "staging",
                operation: OperationID("op-00000004"),
                at: moment(9000),
                latency: .milliseconds(100),
                revision: 1
            )
            let otherModel = Verification(
                model: "qwen",
                environment: "prod",
                operation: OperationID("op-00000005"),
                at: moment(9000),
                latency: .milliseconds(100),
                revision: nil
            )

            try await store.recordVerification(older)
            #expect(try await store.lastVerification(model: "llama", environment: "prod") == older)
            try await store.recordVerification(newer)
            // Recorded after `newer` but completed before it: time decides, not arrival.
            try await store.recordVerification(late)
            try await store.recordVerification(elsewhere)
            try await store.recordVerification(otherModel)
            #expect(try await store.lastVerification(model: "llama", environment: "prod") == newer)
            #expect(try await store.lastVerification(model: "llama", environment: "staging") == elsewhere)
            #expect(try await store.lastVerification(model: "qwen", environment: "prod") == otherModel)

            // Two at the same millisecond: the one recorded last wins.
            var again = newer
            again.operation = OperationID("op-00000006")
            again.revision = 5
            try await store.recordVerification(again)
            #expect(try await store.lastVerification(model: "llama", environment: "prod") == again)
        }
    }

    @Test("A lock is taken once, reported to the next taker, and released", arguments: ContractStore.allCases)
    func locks(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let alice = EnvironmentLock(environment: "prod", holder: UserID("U1"), reason: "freeze", since: moment(5))
            let bob = EnvironmentLock(environment: "prod", holder: UserID("U2"), reason: nil, since: moment(9))
            let staging = EnvironmentLock(environment: "staging", holder: UserID("U2"), reason: nil, since: moment(7))

            #expect(try await store.locks().isEmpty)
            #expect(try await store.acquireLock(alice) == nil)
            #expect(try await store.acquireLock(bob) == alice)
            #expect(try await store.acquireLock(alice) == alice)
            #expect(try await store.acquireLock(staging) == nil)
            #expect(try await store.locks() == [alice, staging])

            #expect(try await store.releaseLock(environment: "prod") == alice)
            #expect(try await store.releaseLock(environment: "prod") == nil)
            #expect(try await store.releaseLock(environment: "dev") == nil)
            #expect(try await store.locks() == [staging])

            #expect(try await store.acquireLock(bob) == nil)
            #expect(try await store.locks() == [bob, staging])
        }
    }

    @Test("Of many concurrent takers exactly one gets the lock", arguments: ContractStore.allCases)
    func concurrentLocks(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let results = try await withThrowingTaskGroup(of: (UserID, EnvironmentLock?).self) { group in
                for index in 0..<20 {
                    let lock = EnvironmentLock(
                        environment: "prod",
                        holder: UserID("U\(index)"),
                        reason: nil,
                        since: moment(Int64(index))
                    )
                    group.addTask { (lock.holder, try await store.acquireLock(lock)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let winners = results.filter { $0.1 == nil }.map(\.0)
            #expect(winners.count == 1)
            let winner = try #require(winners.first)
            #expect(results.allSatisfy { $0.1 == nil || $0.1?.holder == winner })
            #expect(try await store.locks().map(\.holder) == [winner])
        }
    }

    @Test("Every operation state can be stored and read back", arguments: ContractStore.allCases)
    func everyState(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var inserted: [OperationRecord] = []
            for (index, state) in OperationState.allCases.enumerated() {
                let operation = makeOperation(
                    String(format: "op-%08x", index), state: state, createdAt: moment(Int64(index)))
                try await store.insert(operation)
                try await store.appendJournal(
                    JournalEntry(operation: operation.id, at: moment(), state: state, message: state.rawValue))
                #expect(try await store.operation(operation.id) == operation)
                #expect(try await store.journal(of: operation.id).map(\.state) == [state])
                inserted.append(operation)
            }
            #expect(try await store.unfinishedOperations() == inserted.filter { !$0.state.isFinished })
            #expect(
                try await store.unfinishedSummaries() == inserted.filter { !$0.state.isFinished }.map(OperationSummary.init)
            )
        }
    }

    // MARK: Intake and ownership

    @Test("An operation's request, card, checkpoint, owner and cancel request read back as written",
          arguments: ContractStore.allCases)
    func intakeFieldsRoundTrip(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let request = OperationRequest(
                verb: "deploy",
                arguments: ["model": "llama-3-8b", "environment": "prod"],
                options: [
                    "reason": ["hotfix \"quoted\", ünïcødé\nsecond line"], "force": [""], "set": ["a=1", "b=2"],
                ],
                requester: UserID("U024BE7LH"),
                channel: "C0INFER",
                thread: "1700000000.000100",
                osUser: "alice",
                event: "Ev0PV52K25"
            )
            var operation = makeOperation("op-0000abcd", state: .awaitingApproval)
            operation.request = request
            operation.card = MessageRef(channel: "C0INFER", id: "1700000000.000200")
            operation.checkpoint = Checkpoint(
                revisionBefore: 3, applyStarted: true, lastGood: 2, rollbackTarget: 2, resumptions: 1)
            operation.owner = owner("9f2c0e4a-instance", heartbeat: moment(50))
            operation.cancelRequest = CancelRequest(by: UserID("U2"), at: moment(60))
            try await store.insert(operation)
            #expect(try await store.operation(operation.id) == operation)

            operation.state = .approved
            operation.request?.options["reason"] = ["approved by U3"]
            operation.request?.thread = nil
            operation.card = MessageRef(channel: "C0OTHER", id: "1700000000.000300")
            operation.checkpoint = Checkpoint(revisionBefore: nil, applyStarted: true, resumptions: 2)
            try await store.update(operation, from: .awaitingApproval)
            #expect(try await store.operation(operation.id) == operation)

            operation.state = .queued
            operation.request = nil
            operation.card = nil
            operation.checkpoint = Checkpoint()
            try await store.update(operation, from: .approved)
            #expect(try await store.operation(operation.id) == operation)
        }
    }

    /// A runner writes state from its own copy of the record; the owner's heartbeat and a cancel
    /// asked for from another process meanwhile must survive that write.
    @Test("An update keeps the owner, its heartbeat and a cancel request as stored", arguments: ContractStore.allCases)
    func updateKeepsOwnership(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let read = makeOperation("op-00000001", state: .queued)
            try await store.insert(read)
            let alive = owner("instance-a", heartbeat: moment(10))
            #expect(try await store.claimOwnership(of: read.id, by: alive, staleBefore: moment(0))?.owner == alive)
            #expect(try await store.heartbeat(instance: "instance-a", at: moment(20)).map(\.id) == [read.id])
            let cancel = CancelRequest(by: UserID("U2"), at: moment(30))
            #expect(try await store.requestCancel(read.id, by: cancel.by, at: cancel.at)?.cancelRequest == cancel)

            var stale = read
            stale.state = .prechecking
            stale.outcome = "checking the release"
            try await store.update(stale, from: .queued)
            var stored = try #require(try await store.operation(read.id))
            #expect(stored.state == .prechecking)
            #expect(stored.outcome == "checking the release")
            #expect(stored.owner == owner("instance-a", heartbeat: moment(20)))
            #expect(stored.cancelRequest == cancel)
            // Its summary carries the owner and heartbeat too: the runner's rounds judge staleness by it.
            #expect(try await store.unfinishedSummaries().map(\.owner) == [owner("instance-a", heartbeat: moment(20))])

            // Nor can an update set them.
            var forged = stored
            forged.state = .applying
            forged.owner = owner("instance-b", heartbeat: moment(99))
            forged.cancelRequest = CancelRequest(by: UserID("U9"), at: moment(99))
            try await store.update(forged, from: .prechecking)
            stored = try #require(try await store.operation(read.id))
            #expect(stored.state == .applying)
            #expect(stored.owner == owner("instance-a", heartbeat: moment(20)))
            #expect(stored.cancelRequest == cancel)
        }
    }

    @Test("An accepted event records its operation, journal entry and audit line; a redelivered one records nothing", arguments: ContractStore.allCases)
    func redeliveredEvent(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var first = makeOperation("op-00000001")
            first.owner = owner("instance-a", heartbeat: moment(1))
            let accepted = Acceptance(
                first,
                journal: JournalEntry(operation: first.id, at: moment(1), state: .planned, message: "deploy requested"),
                audit: AuditEntry(at: moment(1), actor: first.requester, action: "deploy", outcome: "accepted",
                                  operation: first.id))
            #expect(try await store.accept(event: "Ev01", at: moment(1), starting: accepted))
            #expect(try await store.operation(first.id) == first)
            #expect(try await store.journal(of: first.id).map(\.message) == ["deploy requested"])
            #expect(try await store.auditLog().map(\.outcome) == ["accepted"])

            let second = makeOperation("op-00000002")
            #expect(try await store.accept(event: "Ev01", at: moment(2), starting: Acceptance(second)) == false)
            #expect(try await store.accept(event: "Ev01", at: moment(3), starting: accepted) == false)
            #expect(try await store.accept(event: "Ev01", at: moment(3), starting: nil) == false)
            #expect(try await store.operation(second.id) == nil)
            #expect(try await store.recentOperations(model: nil, environment: nil, limit: 10) == [first])
            #expect(try await store.journal(of: first.id).count == 1)
            #expect(try await store.auditLog().count == 1)

            // An event that starts nothing (a status query) is still kept.
            #expect(try await store.accept(event: "Ev02", at: moment(4), starting: nil))
            #expect(try await store.accept(event: "Ev02", at: moment(5), starting: Acceptance(second)) == false)
            #expect(try await store.operation(second.id) == nil)

            // When the operation cannot be recorded, neither is the event: it can be accepted again.
            await #expect(throws: (any Error).self) {
                try await store.accept(event: "Ev03", at: moment(6), starting: Acceptance(first))
            }
            #expect(try await store.accept(event: "Ev03", at: moment(7), starting: Acceptance(second)))
            #expect(try await store.operation(second.id) == second)
        }
    }

    @Test("An acceptance that respects locks is refused in an environment someone else locked, and records nothing", arguments: ContractStore.allCases)
    func acceptanceInALockedEnvironment(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var bobs = makeOperation("op-000000b1")
            bobs.requester = UserID("bob")
            let environment = bobs.environment
            let lock = EnvironmentLock(environment: environment, holder: UserID("alice"), reason: "migration", since: moment(1))
            #expect(try await store.acquireLock(lock) == nil)

            await #expect(throws: EnvironmentLocked(lock: lock)) {
                try await store.accept(event: "Ev-bob", at: moment(2), starting: Acceptance(bobs, respectsLocks: true))
            }
            #expect(try await store.operation(bobs.id) == nil)
            #expect(try await store.auditLog().isEmpty)
            // Nothing was recorded, the event id included.
            #expect(try await store.accept(event: "Ev-bob", at: moment(3), starting: nil))

            // The holder's own operations go through; so does one that does not ask about locks.
            var alices = makeOperation("op-000000a1")
            alices.requester = UserID("alice")
            #expect(try await store.accept(event: "Ev-alice", at: moment(4), starting: Acceptance(alices, respectsLocks: true)))
            #expect(try await store.accept(event: "Ev-other", at: moment(5), starting: Acceptance(makeOperation("op-000000c1"))))

            // Unlocked, bob's is accepted.
            #expect(try await store.releaseLock(environment: environment) == lock)
            #expect(try await store.accept(event: "Ev-bob-2", at: moment(6), starting: Acceptance(bobs, respectsLocks: true)))
            #expect(try await store.operation(bobs.id) == bobs)
        }
    }

    @Test("Of 12 concurrent deliveries of one event exactly one is accepted", arguments: ContractStore.allCases)
    func concurrentDeliveries(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let accepted = try await withThrowingTaskGroup(of: OperationID?.self) { group in
                for delivery in 1...12 {
                    group.addTask {
                        let operation = makeOperation(String(format: "op-%08x", delivery))
                        let started = try await store.accept(event: "Ev0PV52K25", at: moment(), starting: Acceptance(operation))
                        return started ? operation.id : nil
                    }
                }
                return try await group.reduce(into: [OperationID]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(accepted.count == 1)
            #expect(try await store.unfinishedOperations().map(\.id) == accepted)
        }
    }

    @Test("Of 24 events accepted at once, each is recorded on its own: one that cannot be recorded takes no other with it",
          arguments: ContractStore.allCases)
    func concurrentEventsAreRecordedEachOnItsOwn(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let existing = makeOperation("op-00000000")
            try await store.insert(existing)
            let outcomes = await withTaskGroup(of: (Int, Bool?).self) { group in
                for event in 1...24 {
                    group.addTask {
                        // Event 7 starts an operation whose id is taken: it fails, alone.
                        let operation = makeOperation(event == 7 ? "op-00000000" : String(format: "op-%08x", event))
                        let journal = JournalEntry(operation: operation.id, at: moment(Int64(event)), state: .planned,
                                                   message: "event \(event)")
                        let started = try? await store.accept(
                            event: "Ev\(event)", at: moment(Int64(event)), starting: Acceptance(operation, journal: journal))
                        return (event, started)
                    }
                }
                return await group.reduce(into: [Int: Bool?]()) { $0[$1.0] = $1.1 }
            }
            for event in 1...24 where event != 7 {
                #expect(outcomes[event] == .some(true), "event \(event)")
                #expect(try await store.journal(of: OperationID(String(format: "op-%08x", event))).map(\.message)
                        == ["event \(event)"])
            }
            #expect(outcomes[7] == .some(nil))
            #expect(try await store.journal(of: existing.id).isEmpty)
            // Its event was not recorded either, so a redelivery can still start it.
            #expect(try await store.accept(event: "Ev7", at: moment(30), starting: Acceptance(makeOperation("op-00000007"))))
        }
    }

    @Test("Forgotten event ids can be accepted again; newer ones cannot", arguments: ContractStore.allCases)
    func forgetEvents(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            #expect(try await store.accept(event: "Ev-old", at: moment(0), starting: nil))
            #expect(try await store.accept(event: "Ev-edge", at: moment(600_000), starting: nil))
            #expect(try await store.accept(event: "Ev-new", at: moment(900_000), starting: nil))

            try await store.forgetEvents(before: moment(600_000))
            let again = makeOperation("op-00000001")
            #expect(try await store.accept(event: "Ev-old", at: moment(1_000_000), starting: Acceptance(again)))
            #expect(try await store.operation(OperationID("op-00000001")) != nil)
            #expect(try await store.accept(event: "Ev-edge", at: moment(1_000_000), starting: nil) == false)
            #expect(try await store.accept(event: "Ev-new", at: moment(1_000_000), starting: nil) == false)
        }
    }

    @Test("Ownership is claimed when free, stale or already ours, never from a live owner or when finished",
          arguments: ContractStore.allCases)
    func claimOwnership(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let operation = makeOperation("op-00000001", state: .applying)
            try await store.insert(operation)
            #expect(try await store.claimOwnership(
                of: OperationID("op-ffffffff"), by: owner("a", heartbeat: moment(10)), staleBefore: moment(0)) == nil)

            // Free: claimed.
            var expected = operation
            expected.owner = owner("a", heartbeat: moment(10))
            #expect(try await store.claimOwnership(
                of: operation.id, by: owner("a", heartbeat: moment(10)), staleBefore: moment(0)) == expected)
            #expect(try await store.operation(operation.id) == expected)

            // A live owner (heartbeat at or after staleBefore) keeps it.
            for staleBefore in [moment(5), moment(10)] {
                #expect(try await store.claimOwnership(
                    of: operation.id, by: owner("b", heartbeat: moment(11)), staleBefore: staleBefore) == nil)
            }
            #expect(try await store.operation(operation.id)?.owner == owner("a", heartbeat: moment(10)))

            // The same instance (a daemon resuming its own work) may claim again.
            expected.owner = owner("a", heartbeat: moment(12))
            #expect(try await store.claimOwnership(
                of: operation.id, by: owner("a", heartbeat: moment(12)), staleBefore: moment(100)) == expected)

            // A stale owner is taken over.
            expected.owner = owner("b", heartbeat: moment(20))
            #expect(try await store.claimOwnership(
                of: operation.id, by: owner("b", heartbeat: moment(20)), staleBefore: moment(13)) == expected)
            #expect(try await store.operation(operation.id) == expected)

            // A finished operation is never claimed, owned or not.
            var finished = try #require(try await store.operation(operation.id))
            finished.state = .succeeded
            try await store.update(finished, from: .applying)
            #expect(try await store.claimOwnership(
                of: operation.id, by: owner("c", heartbeat: moment(30)), staleBefore: moment(100)) == nil)
            let free = makeOperation("op-00000002", state: .cancelled)
            try await store.insert(free)
            #expect(try await store.claimOwnership(
                of: free.id, by: owner("c", heartbeat: moment(30)), staleBefore: moment(100)) == nil)
            #expect(try await store.operation(operation.id)?.owner == owner("b", heartbeat: moment(20)))
            #expect(try await store.operation(free.id)?.owner == nil)
        }
    }

    @Test("Concurrent takeovers of one stale operation have exactly one winner", arguments: ContractStore.allCases)
    func concurrentTakeovers(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            var dead = makeOperation("op-00000001", state: .waitingReady)
            dead.owner = owner("dead", heartbeat: moment(0))
            try await store.insert(dead)
            let operation = dead
            let winners = try await withThrowingTaskGroup(of: String?.self) { group in
                for instance in 1...12 {
                    group.addTask {
                        let claimed = try await store.claimOwnership(
                            of: operation.id, by: owner("i\(instance)", heartbeat: moment(100)),
                            staleBefore: moment(50))
                        return claimed?.owner?.instance
                    }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(winners.count == 1)
            #expect(try await store.operation(operation.id)?.owner?.instance == winners.first)
        }
    }

    @Test("A heartbeat renews only its instance's unfinished operations and returns their cancel requests",
          arguments: ContractStore.allCases)
    func heartbeat(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            func claimed(_ id: String, by instance: String, state: OperationState = .applying, at: Int64) async throws {
                try await store.insert(makeOperation(id, state: state, createdAt: moment(at)))
                _ = try #require(try await store.claimOwnership(
                    of: OperationID(id), by: owner(instance, heartbeat: moment(10)), staleBefore: moment(0)))
            }
            try await claimed("op-00000001", by: "a", at: 1)
            try await claimed("op-00000002", by: "a", state: .awaitingApproval, at: 2)
            try await claimed("op-00000003", by: "a", at: 3)
            try await claimed("op-00000004", by: "b", at: 4)
            try await store.insert(makeOperation("op-00000005", state: .applying, createdAt: moment(5)))
            // Owned by `a` but finished: not renewed, not returned.
            var finished = try #require(try await store.operation(OperationID("op-00000003")))
            finished.state = .failed
            try await store.update(finished, from: .applying)
            let cancel = CancelRequest(by: UserID("U2"), at: moment(15))
            _ = try await store.requestCancel(OperationID("op-00000002"), by: cancel.by, at: cancel.at)

            let renewed = try await store.heartbeat(instance: "a", at: moment(20)).sorted { $0.id < $1.id }
            #expect(renewed.map(\.id.rawValue) == ["op-00000001", "op-00000002"])
            #expect(renewed.map(\.cancelRequest) == [nil, cancel])
            #expect(try await store.operation(OperationID("op-00000001"))?.owner == owner("a", heartbeat: moment(20)))
            #expect(try await store.operation(OperationID("op-00000002"))?.owner == owner("a", heartbeat: moment(20)))
            #expect(try await store.operation(OperationID("op-00000003"))?.owner == owner("a", heartbeat: moment(10)))
            #expect(try await store.operation(OperationID("op-00000004"))?.owner == owner("b", heartbeat: moment(10)))
            #expect(try await store.operation(OperationID("op-00000005"))?.owner == nil)
            #expect(try await store.heartbeat(instance: "c", at: moment(20)).isEmpty)
        }
    }

    @Test("Releasing ownership clears the owner only for the instance that owns it", arguments: ContractStore.allCases)
    func releaseOwnership(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let operation = makeOperation("op-00000001", state: .warming)
            try await store.insert(operation)
            _ = try #require(try await store.claimOwnership(
                of: operation.id, by: owner("a", heartbeat: moment(10)), staleBefore: moment(0)))

            try await store.releaseOwnership(of: operation.id, instance: "b")
            #expect(try await store.operation(operation.id)?.owner == owner("a", heartbeat: moment(10)))

            try await store.releaseOwnership(of: operation.id, instance: "a")
            #expect(try await store.operation(operation.id) == operation)
            #expect(try await store.heartbeat(instance: "a", at: moment(20)).isEmpty)
            // Free again: the next start claims it at once, however fresh the old heartbeat was.
            #expect(try await store.claimOwnership(
                of: operation.id, by: owner("b", heartbeat: moment(21)), staleBefore: moment(0))?.owner
                == owner("b", heartbeat: moment(21)))
            try await store.releaseOwnership(of: OperationID("op-ffffffff"), instance: "b")
        }
    }

    @Test("A cancel request is recorded once for an unfinished operation, and never for a finished one",
          arguments: ContractStore.allCases)
    func requestCancel(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            #expect(try await store.requestCancel(OperationID("op-ffffffff"), by: UserID("U2"), at: moment(1)) == nil)

            var running = makeOperation("op-00000001", state: .applying)
            running.owner = owner("a", heartbeat: moment(1))
            try await store.insert(running)
            var expected = running
            expected.cancelRequest = CancelRequest(by: UserID("U2"), at: moment(5))
            #expect(try await store.requestCancel(running.id, by: UserID("U2"), at: moment(5)) == expected)
            #expect(try await store.operation(running.id) == expected)
            // The first request stands.
            #expect(try await store.requestCancel(running.id, by: UserID("U3"), at: moment(6)) == expected)
            #expect(try await store.operation(running.id) == expected)

            let finished = makeOperation("op-00000002", state: .succeeded)
            try await store.insert(finished)
            #expect(try await store.requestCancel(finished.id, by: UserID("U2"), at: moment(7)) == finished)
            #expect(try await store.operation(finished.id) == finished)
        }
    }

    // MARK: Approvals

    @Test("Approvals are counted once per person, only for the digest awaited and before the expiry, each with its audit line",
          arguments: ContractStore.allCases)
    func recordApproval(_ kind: ContractStore) async throws {
        try await kind.withStore { store throws in
            let audit = { @Sendable (who: String) in
                AuditEntry(at: moment(2), actor: UserID(who), action: "approve", outcome: "counted", channel: "C1")
            }
            let unknown = try await store.recordApproval(
                Approval(by: UserID("U2"), at: moment(1)), of: OperationID("op-ffffffff"), digest: "sha256:aa", audit: audit("U2"))
            #expect(unknown == .unknown)

            var waiting = makeOperation("op-00000001", state: .awaitingApproval)
            waiting.approval = ApprovalRequest(digest: "sha256:aa", required: 2, requestedAt: moment(0), expiresAt: moment(100))
            try await store.insert(waiting)
            #expect(try await store.operation(waiting.id) == waiting)

            let first = Approval(by: UserID("U2"), at: moment(2), reason: "read the plan")
            guard case .counted(let counted) = try await store.recordApproval(first, of: waiting.id, digest: "sha256:aa", audit: audit("U2"))
            else { Issue.record("not counted"); return }
            #expect(counted.approval?.approvals == [first])
            #expect(counted.state == .awaitingApproval)
            #expect(try await store.operation(waiting.id) == counted)

            let again = try await store.recordApproval(
                Approval(by: UserID("U2"), at: moment(3)), of: waiting.id, digest: "sha256:aa", audit: audit("U2"))
            #expect(again == .alreadyApproved(counted))
            let otherPlan = try await store.recordApproval(
                Approval(by: UserID("U3"), at: moment(3)), of: waiting.id, digest: "sha256:bb", audit: audit("U3"))
            #expect(otherPlan == .notAwaiting(counted))
            let late = try await store.recordApproval(
                Approval(by: UserID("U3"), at: moment(100)), of: waiting.id, digest: "sha256:aa", audit: audit("U3"))
            #expect(late == .expired(counted))
            #expect(try await store.operation(waiting.id) == counted)
            #expect(try await store.auditLog().map(\.actor) == [UserID("U2")])

            // Two approvers at once are both counted.
            var second = makeOperation("op-00000002", state: .awaitingApproval)
            second.approval = ApprovalRequest(digest: "sha256:cc", required: 3, requestedAt: moment(0), expiresAt: moment(100))
            try await store.insert(second)
            let secondID = second.id
            try await withThrowingTaskGroup(of: Void.self) { group in
                for who in ["U4", "U5", "U6"] {
                    group.addTask {
                        _ = try await store.recordApproval(
                            Approval(by: UserID(who), at: moment(5)), of: secondID, digest: "sha256:cc", audit: audit(who))
                    }
                }
                try await group.waitForAll()
            }
            let stored = try #require(try await store.operation(second.id)?.approval)
            #expect(Set(stored.approvals.map(\.by.rawValue)) == ["U4", "U5", "U6"])
            #expect(stored.isSatisfied)

            var running = makeOperation("op-00000003", state: .approved)
            running.approval = ApprovalRequest(digest: "sha256:dd", required: 1, requestedAt: moment(0), expiresAt: moment(100))
            try await store.insert(running)
            let decided = try await store.recordApproval(
                Approval(by: UserID("U7"), at: moment(5)), of: running.id, digest: "sha256:dd", audit: audit("U7"))
            #expect(decided == .notAwaiting(running))
        }
    }
}
