import Foundation
import InferOpsCore
import Testing

@testable import InferOpsStore

@Suite("SQLiteStore")
struct SQLiteStoreTests {
    // MARK: Operations

    @Test(
        "A registration row written without a version, as before v4, reads back at version 1",
        arguments: StoreKind.allCases
    )
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

    @Test("Times keep milliseconds and round anything finer", arguments: StoreKind.allCases)
    func millisecondPrecision(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            let fine = Date(timeIntervalSince1970: 1_700_000_000.123_6)
            try await store.insert(makeOperation("op-00000001", createdAt: fine))
            let stored = try #require(try await store.operation(OperationID("op-00000001")))
            #expect(stored.createdAt == date(ms: 1_700_000_000_124))
        }
    }

    // MARK: Journal

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

    @Test("An update writes every column of an operation but its owner's and a cancel request's")
    func updateColumnsCoverTheTable() async throws {
        let store = try SQLiteStore.inMemory()
        let ownership = ["owner_instance", "owner_host", "owner_pid", "heartbeat_at",
                         "cancel_requested_by", "cancel_requested_at"]
        let columns = try await store.columns(of: OperationRow.databaseTableName)
        #expect(Set(OperationRow.contentColumns).union(ownership) == Set(columns))
        #expect(Set(OperationRow.contentColumns).isDisjoint(with: ownership))
    }

    // MARK: Audit

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

    // MARK: Intake and ownership across processes

    /// Two daemons (or a daemon and `inferops exec`) on one database file each have their own
    /// connection pool; only the database's transactions keep them apart.
    @Test("Two processes on one file accept a redelivered event once, also after a restart")
    func eventAcrossProcesses() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        let daemons = [try SQLiteStore(path: path), try SQLiteStore(path: path)]
        let accepted = try await withThrowingTaskGroup(of: OperationID?.self) { group in
            for delivery in 1...12 {
                group.addTask {
                    let operation = makeOperation(String(format: "op-%08x", delivery))
                    let started = try await daemons[delivery % 2].accept(
                        event: "Ev0PV52K25", at: moment(), starting: Acceptance(operation))
                    return started ? operation.id : nil
                }
            }
            return try await group.reduce(into: [OperationID]()) { if let id = $1 { $0.append(id) } }
        }
        #expect(accepted.count == 1)

        let restarted = try SQLiteStore(path: path)
        let redelivered = makeOperation("op-000000ff")
        #expect(try await restarted.accept(event: "Ev0PV52K25", at: moment(1000), starting: Acceptance(redelivered)) == false)
        #expect(try await restarted.unfinishedOperations().map(\.id) == accepted)
    }

    @Test("Two processes taking over one stale operation: exactly one becomes its owner")
    func takeoverAcrossProcesses() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        let daemons = [try SQLiteStore(path: path), try SQLiteStore(path: path)]
        var dead = makeOperation("op-00000001", state: .applying)
        dead.owner = OperationOwner(instance: "dead", host: "gpu-ops-1", pid: 7, heartbeat: moment(0))
        try await daemons[0].insert(dead)
        let operation = dead.id
        let winners = try await withThrowingTaskGroup(of: String?.self) { group in
            for instance in 1...12 {
                group.addTask {
                    let owner = OperationOwner(instance: "i\(instance)", host: "gpu-ops-\(instance % 2)", pid: 8,
                                               heartbeat: moment(100))
                    return try await daemons[instance % 2]
                        .claimOwnership(of: operation, by: owner, staleBefore: moment(50))?.owner?.instance
                }
            }
            return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
        }
        #expect(winners.count == 1)
        #expect(try await daemons[1].operation(operation)?.owner?.instance == winners.first)
    }

    @Test("The heartbeat's lookup by owner uses an index, not a scan of every operation")
    func heartbeatUsesOwnerIndex() async throws {
        let store = try SQLiteStore.inMemory()
        let plan = try await store.queryPlan(
            "SELECT * FROM operations WHERE owner_instance = 'a' AND state IN ('applying', 'queued')")
        #expect(plan.contains { $0.contains("USING INDEX operations_owner") }, "\(plan)")
    }

    @Test("The database refuses a request or checkpoint that is not JSON; one of the wrong shape is named on reading",
          arguments: StoreKind.allCases)
    func damagedIntakeColumns(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            try await store.insert(makeOperation("op-00000001"))
            for column in ["request", "checkpoint"] {
                await #expect(throws: (any Error).self, "\(column)") {
                    try await store.execute(sql: "UPDATE operations SET \(column) = 'not json'")
                }
            }
            try await store.execute(sql: #"UPDATE operations SET request = '{"verb":"deploy"}'"#)
            await #expect(
                throws: SQLiteStoreError.unreadableValue(
                    table: "operations", column: "request", value: #"{"verb":"deploy"}"#)
            ) {
                try await store.operation(OperationID("op-00000001"))
            }
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
                "v8-operation-approval",
            ]
        )
    }

    /// A daemon upgraded in place finds the operations the old build left: they read back with no
    /// request, card, owner or cancel request and an empty checkpoint, and can be claimed and moved
    /// to the states added with the migration.
    @Test("Operations recorded before v7 read back with empty intake fields and can be resumed")
    func operationsBeforeIntakeColumns() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        try SQLiteStore.createDatabase(
            path: path, migratedUpTo: "v6-operation-revisions",
            then: """
                INSERT INTO operations (id, kind, requester, environment, model, state, command, created_at, updated_at)
                VALUES ('op-00000001', 'deploy', 'U1', 'staging', 'llama', 'applying', 'deploy llama to staging',
                        1700000000000, 1700000000000)
                """
        )
        let store = try SQLiteStore(path: path)
        #expect(try await store.recordedMigrations() == SQLiteStore.migrationNames)
        var expected = makeOperation("op-00000001", state: .applying)
        #expect(try await store.operation(expected.id) == expected)

        let owner = OperationOwner(instance: "new", host: "gpu-ops-1", pid: 9, heartbeat: moment(10))
        expected.owner = owner
        #expect(try await store.claimOwnership(of: expected.id, by: owner, staleBefore: moment(0)) == expected)
        expected.state = .interrupted
        expected.outcome = "The daemon stopped during helm upgrade."
        try await store.update(expected, from: .applying)
        #expect(try await store.operation(expected.id) == expected)
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

/// The write-ahead log of a database on disk is checkpointed beside the writer (`WALCheckpointer`),
/// with SQLite's own checkpoint inside commits turned off.
@Suite("WAL checkpoints")
struct WALCheckpointTests {
    func logSize(_ path: String) throws -> Int {
        try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int ?? 0
    }

    @Test("commits that pause now and then: passive checkpoints keep the log small, the writer never truncates")
    func pausingWrites() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        let store = try SQLiteStore(path: path) { try WALCheckpointer(path: $0, interval: 50, forceAbove: 100_000) }
        let checkpointer = try #require(store.checkpointer)
        var largest = 0
        var firstRound = 0
        for round in 0..<20 {
            for number in 1...50 {
                try await store.insert(makeOperation(String(format: "op-%08x", round * 50 + number)))
            }
            // The pause: the round's checkpoint ends before the next round writes.
            while !checkpointer.idle { try await Task.sleep(for: .milliseconds(5)) }
            largest = max(largest, try logSize(path))
            if round == 0 { firstRound = largest }
        }
        #expect(checkpointer.counts.passive == 20)
        #expect(checkpointer.counts.forced == 0)
        // Each round's log starts again from its beginning: it stays the size of about one round
        // (50 commits), never that of the 1,000 commits written.
        #expect(firstRound > 0)
        #expect(largest <= firstRound * 3 / 2)
        #expect(try await store.recentOperations(model: nil, environment: nil, limit: 2_000).count == 1_000)
    }

    @Test("commits that never pause: the writer truncates the log once passive checkpoints fall behind")
    func unpausedWrites() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        let store = try SQLiteStore(path: path) { try WALCheckpointer(path: $0, interval: 50, forceAbove: 500) }
        let checkpointer = try #require(store.checkpointer)
        let commits = 3_000
        for number in 1...commits {
            try await store.insert(makeOperation(String(format: "op-%08x", number)))
        }
        while !checkpointer.idle { try await Task.sleep(for: .milliseconds(5)) }
        #expect(checkpointer.counts.forced >= 1)
        // Each commit appends about six 4 KiB pages here: unchecked, the log would pass 70 MB. How
        // far it grows past 500 frames before a checkpoint looks depends on the machine's load; that
        // it was cut is what is checked: less than one page per commit is left.
        #expect(try logSize(path) < commits * 4096)
        #expect(try await store.recentOperations(model: nil, environment: nil, limit: commits + 1).count == commits)
    }
}
