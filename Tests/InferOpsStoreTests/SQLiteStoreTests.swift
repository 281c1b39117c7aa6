import Foundation
import InferOpsCore
import Testing

@testable import InferOpsStore

@Suite("SQLiteStore")
struct SQLiteStoreTests {
    // MARK: Operations

    @Test("An operation reads back exactly as inserted and as updated", arguments: StoreKind.allCases)
    func operationRoundTrip(_ kind: StoreKind) async throws {
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

    @Test("Only one operation at a time may claim a release", arguments: StoreKind.allCases)
    func releaseClaim(_ kind: StoreKind) async throws {
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

    @Test("A registration reads back as recorded, with a version that each write moves on", arguments: StoreKind.allCases)
    func registrationRoundTrip(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            var llama = Registration(
                model: "llama-3-8b", environment: "staging", state: .enabled,
                endpoints: ["http://10.0.0.7:8000", "http://10.0.0.8:8000"], changedBy: UserID("U1"), changedAt: moment(1)
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
    @Test("A registration write from a stale read changes nothing", arguments: StoreKind.allCases)
    func registrationCompareAndSet(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let read = try #require(try await store.updateRegistration(
                Registration(model: "llama-3-8b", environment: "staging", state: .enabled, endpoints: ["http://10.0.0.7:8000"],
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
            #expect(try await store.removeRegistration(model: "llama-3-8b", environment: "staging", expectedVersion: read.version) == false)
            #expect(try await store.registration(model: "llama-3-8b", environment: "staging") == disabled)

            #expect(try await store.removeRegistration(model: "llama-3-8b", environment: "staging", expectedVersion: disabled.version))
            #expect(try await store.registration(model: "llama-3-8b", environment: "staging") == nil)
        }
    }

    @Test("Of concurrent writers from one read, exactly one wins", arguments: StoreKind.allCases)
    func concurrentRegistrationWrites(_ kind: StoreKind) async throws {
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
                        return try await store.updateRegistration(next, expectedVersion: read.version)?.changedBy.rawValue
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
    @Test("An operation update names the state it expects, and never reopens a finished one", arguments: StoreKind.allCases)
    func operationCompareAndSet(_ kind: StoreKind) async throws {
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

    @Test("A registration row written without a version, as before v4, reads back at version 1", arguments: StoreKind.allCases)
    func registrationVersionDefault(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            try await store.execute(sql: """
                INSERT INTO registrations (model, environment, state, endpoints, changed_by, changed_at, reason)
                VALUES ('llama-3-8b', 'staging', 'disabled', '[]', 'U1', 1700000000000, 'old')
                """)
            let stored = try #require(try await store.registration(model: "llama-3-8b", environment: "staging"))
            #expect(stored.version == 1)
            #expect(stored.state == .disabled)
            var enabled = stored
            enabled.state = .enabled
            #expect(try await store.updateRegistration(enabled, expectedVersion: nil) == nil)
            #expect(try await store.updateRegistration(enabled, expectedVersion: 1)?.version == 2)
        }
    }

    @Test("Concurrent claims of one release have exactly one winner", arguments: StoreKind.allCases)
    func concurrentReleaseClaims(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let ids = (1...12).map { OperationID("op-\(String(format: "%08x", $0))") }
            for id in ids {
                var operation = makeOperation(id.rawValue)
                operation.target = ReleaseTarget(release: "llama-staging", namespace: "inference")
                try await store.insert(operation)
            }
            let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
                for id in ids {
                    group.addTask { try await store.claimRelease(for: id, release: "llama-staging", at: moment(1)) == nil }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(winners == 1)
        }
    }

    @Test("An operation with only the required fields reads back with nils", arguments: StoreKind.allCases)
    func minimalOperation(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let operation = makeOperation("op-00000001", kind: .unlock, model: nil)
            try await store.insert(operation)
            #expect(try await store.operation(operation.id) == operation)
            #expect(try await store.operation(OperationID("op-ffffffff")) == nil)
        }
    }

    @Test("Updating an operation that was never inserted throws", arguments: StoreKind.allCases)
    func updateUnknown(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let operation = makeOperation("op-00000404")
            await #expect(throws: SQLiteStoreError.unknownOperation(operation.id)) {
                try await store.update(operation, from: .requested)
            }
            #expect(try await store.operation(operation.id) == nil)
        }
    }

    @Test("Inserting the same id twice throws", arguments: StoreKind.allCases)
    func duplicateInsert(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            try await store.insert(makeOperation("op-00000001"))
            await #expect(throws: (any Error).self) {
                try await store.insert(makeOperation("op-00000001"))
            }
        }
    }

    @Test("Times keep milliseconds and round anything finer", arguments: StoreKind.allCases)
    func millisecondPrecision(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let fine = Date(timeIntervalSince1970: 1_700_000_000.123_6)
            try await store.insert(makeOperation("op-00000001", createdAt: fine))
            let stored = try #require(try await store.operation(OperationID("op-00000001")))
            #expect(stored.createdAt == date(ms: 1_700_000_000_124))
        }
    }

    @Test("Unfinished operations are listed oldest first, finished ones left out", arguments: StoreKind.allCases)
    func unfinished(_ kind: StoreKind) async throws {
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

            var finishing = operations[1]
            finishing.state = .cancelled
            try await store.update(finishing, from: .requested)
            #expect(try await store.unfinishedOperations().map(\.id.rawValue).first == "op-00000002")
        }
    }

    @Test(
        "Recent operations are newest first, filtered by model and environment, and limited",
        arguments: StoreKind.allCases
    )
    func recent(_ kind: StoreKind) async throws {
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

    // MARK: Journal

    @Test("The journal of an operation comes back in the order it was written", arguments: StoreKind.allCases)
    func journalOrder(_ kind: StoreKind) async throws {
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

    @Test("Durations are stored in milliseconds", arguments: StoreKind.allCases)
    func durationPrecision(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let id = OperationID("op-00000001")
            try await store.insert(makeOperation(id.rawValue))
            try await store.appendJournal(
                JournalEntry(
                    operation: id,
                    at: moment(),
                    state: .applying,
                    message: "step",
                    duration: .microseconds(2_345_600)
                )
            )
            #expect(try await store.journal(of: id).first?.duration == .milliseconds(2346))
        }
    }

    @Test("A journal entry for an operation that does not exist is refused", arguments: StoreKind.allCases)
    func journalForeignKey(_ kind: StoreKind) async throws {
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

    // MARK: Audit

    @Test("The audit log comes back in the order it was appended", arguments: StoreKind.allCases)
    func auditOrder(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let entries = sampleAudit()
            for entry in entries { try await store.appendAudit(entry) }
            #expect(try await store.auditLog() == entries)
        }
    }

    @Test("The database itself refuses to change or delete audit rows", arguments: StoreKind.allCases)
    func auditAppendOnly(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let entries = sampleAudit()
            for entry in entries { try await store.appendAudit(entry) }

            for sql in [
                "UPDATE audit SET outcome = 'succeeded'",
                "UPDATE audit SET detail = NULL WHERE id = 1",
                "DELETE FROM audit WHERE id = 2",
                "DELETE FROM audit",
                "INSERT OR REPLACE INTO audit (id, at, actor, action, outcome) VALUES (1, 0, 'U9', 'deploy', 'forged')",
            ] {
                let error = await #expect(throws: (any Error).self, "\(sql)") { try await store.execute(sql: sql) }
                #expect(String(describing: error).contains("append-only"), "\(sql)")
            }
            #expect(try await store.auditLog() == entries)
        }
    }

    @Test(
        "Audit JSON lines are compact objects with the documented keys and no nulls",
        arguments: StoreKind.allCases
    )
    func auditLines(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let entries = sampleAudit()
            for entry in entries { try await store.appendAudit(entry) }
            let lines = try await store.auditLines()
            #expect(lines.count == entries.count)

            let allowed: Set<String> = [
                "at", "actor", "action", "environment", "subject", "outcome", "operation", "detail", "channel",
                "os_user",
            ]
            for (line, entry) in zip(lines, entries) {
                #expect(!line.contains("\n"))
                #expect(!line.contains("null"))
                #expect(line.hasPrefix(#"{"at":""#))
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(Set(object.keys).isSubset(of: allowed))
                #expect(object.values.allSatisfy { $0 is String })
                #expect(object["actor"] as? String == entry.actor.rawValue)
                #expect(object["action"] as? String == entry.action)
                #expect(object["outcome"] as? String == entry.outcome)
                #expect(object["environment"] as? String == entry.environment)
                #expect(object["subject"] as? String == entry.subject)
                #expect(object["operation"] as? String == entry.operation?.rawValue)
                #expect(object["detail"] as? String == entry.detail)
            }

            #expect(
                lines[0] == #"{"at":"2023-11-14T22:13:20.123Z","actor":"U1","action":"deploy","#
                    + #""environment":"prod","subject":"llama","outcome":"accepted","operation":"op-00000001","#
                    + #""detail":"plan sha256:ab/cd"}"#
            )
            #expect(lines[1] == #"{"at":"2023-11-14T22:13:20.999Z","actor":"U2","action":"lock","outcome":"denied"}"#)
            let third = try #require(
                try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as? [String: Any]
            )
            #expect(third["at"] as? String == "2023-11-14T22:13:21.001Z")
            #expect(third["detail"] as? String == "said \"no\"\nthen left")
        }
    }

    @Test("Audit times before 1970 still print a positive fraction")
    func auditTimeBefore1970() {
        #expect(StoredTime.iso8601(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        #expect(StoredTime.iso8601(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(StoredTime.iso8601(milliseconds: 1_700_000_000_050) == "2023-11-14T22:13:20.050Z")
    }

    // MARK: Verifications

    @Test("The latest verification wins, per model and environment", arguments: StoreKind.allCases)
    func verifications(_ kind: StoreKind) async throws {
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

    // MARK: Locks

    @Test("A lock is taken once, reported to the next taker, and released", arguments: StoreKind.allCases)
    func locks(_ kind: StoreKind) async throws {
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

    @Test("Of many concurrent takers exactly one gets the lock", arguments: StoreKind.allCases)
    func concurrentLocks(_ kind: StoreKind) async throws {
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

    // MARK: Migrations

    @Test("Migration names never change order")
    func migrationNames() {
        #expect(
            SQLiteStore.migrationNames == [
                "v1-operations", "v1-journal", "v1-audit", "v1-verifications", "v1-locks", "v2-operation-revision",
                "v3-registrations", "v4-registration-version", "v5-audit-chain", "v6-operation-revisions",
                "v7-operation-intake-and-ownership",
            ]
        )
    }

    @Test("An operation recorded before the revisions column existed reads back with none")
    func revisionsBeforeTheirColumn() async throws {
        let store = try SQLiteStore.inMemory()
        let operation = makeOperation("op-00000009", state: .succeeded)
        try await store.insert(operation)
        try await store.execute(sql: "UPDATE operations SET revision = 2, revisions = NULL")
        let read = try #require(try await store.operation(operation.id))
        #expect(read.revision == 2)
        #expect(read.revisions == [])
    }

    @Test("The database and its WAL and shared-memory files are readable by their owner only")
    func privateFiles() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("state/inferops.sqlite")
        // The usual umask, set explicitly: with it, files the store did not restrict would be 0644
        // (world-readable). Not 0: the umask is the whole test process's, and other suites create
        // folders meanwhile that must not become world-writable.
        let previous = umask(0o022)
        defer { umask(previous) }
        do {
            let store = try SQLiteStore(path: path)
            try await store.insert(makeOperation("op-00000001", state: .applying))
            // While the store is open its WAL and shared-memory files exist.
            for file in [path, path + "-wal", path + "-shm"] {
                #expect(try Self.mode(of: file) == 0o600, "\(file)")
            }
            #expect(try Self.mode(of: folder.path("state")) == 0o700)
        }
        // A database left world-readable by an older build is tightened when opened.
        chmod(path, 0o644)
        chmod(path + "-wal", 0o644)
        _ = try SQLiteStore(path: path)
        #expect(try Self.mode(of: path) == 0o600)
        if FileManager.default.fileExists(atPath: path + "-wal") {
            #expect(try Self.mode(of: path + "-wal") == 0o600)
        }
    }

    static func mode(of path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? Int ?? -1) & 0o777
    }

    @Test("A new store applies every migration once, in order", arguments: StoreKind.allCases)
    func migrationsApplied(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            #expect(try await store.recordedMigrations() == SQLiteStore.migrationNames)
        }
    }

    @Test("The on-disk store uses WAL")
    func walMode() async throws {
        try await StoreKind.disk.withStore { store throws in
            #expect(try await store.journalMode() == "wal")
        }
    }

    @Test("Reopening a database keeps its data and applies no migration twice")
    func reopen() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        let operation = makeOperation("op-00000001", state: .applying)
        let audit = sampleAudit()[0]
        let lock = EnvironmentLock(environment: "prod", holder: UserID("U1"), reason: "release", since: moment())

        do {
            let store = try SQLiteStore(path: path)
            try await store.insert(operation)
            try await store.appendAudit(audit)
            #expect(try await store.acquireLock(lock) == nil)
        }
        let store = try SQLiteStore(path: path)
        #expect(try await store.recordedMigrations() == SQLiteStore.migrationNames)
        #expect(try await store.operation(operation.id) == operation)
        #expect(try await store.unfinishedOperations() == [operation])
        #expect(try await store.auditLog() == [audit])
        #expect(try await store.locks() == [lock])
    }

    @Test("A database migrated by a newer build is refused, not written to")
    func newerSchemaRefused() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        do {
            let store = try SQLiteStore(path: path)
            try await store.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-future')")
        }
        #expect(throws: SQLiteStoreError.newerSchema(migrations: ["v99-future"])) {
            _ = try SQLiteStore(path: path)
        }
    }
}

/// Three audit entries: every field set, only the required ones, and text that needs escaping,
/// at fractions of a second that a careless formatter rounds wrongly.
func sampleAudit() -> [AuditEntry] {
    [
        AuditEntry(
            at: moment(123),
            actor: UserID("U1"),
            action: "deploy",
            environment: "prod",
            subject: "llama",
            outcome: "accepted",
            operation: OperationID("op-00000001"),
            detail: "plan sha256:ab/cd"
        ),
        AuditEntry(at: moment(999), actor: UserID("U2"), action: "lock", outcome: "denied"),
        AuditEntry(
            at: moment(1001),
            actor: UserID("U3"),
            action: "unlock",
            environment: "staging",
            outcome: "refused",
            detail: "said \"no\"\nthen left"
        ),
    ]
}
