import Foundation
import GRDB
import Synchronization
import InferOpsCore

/// The `OperationStore` on SQLite: the one type that owns the database connection, the writer and
/// the migrations.
///
/// Every write goes through GRDB's single serialized writer in an immediate transaction, so
/// writes never interleave, even with another process using the same file. On disk the database
/// is a WAL-mode `DatabasePool`, so `inferops audit` and other readers never wait for the daemon.
public final class SQLiteStore: OperationStore, Sendable {
    /// A `DatabasePool` on disk, a `DatabaseQueue` in memory; both are used only through this.
    private let writer: any DatabaseWriter
    private let turns = WriteTurns()
    /// Checkpoints the log of a database on disk; `nil` in memory and read-only.
    let checkpointer: WALCheckpointer?
    /// Events waiting to be accepted in the next group commit.
    private let pendingAcceptances = Mutex<[PendingAcceptance]>([])

    /// The names of the schema migrations, in the order they run. Append-only; see `Schema`.
    public static let migrationNames: [String] = Schema.migrations.map(\.name)

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// - Parameter path: The database file. Its parent folder is created when missing.
    /// - Throws: `SQLiteStoreError.newerSchema` when a newer InferOps has migrated the file,
    ///   or the file-system or SQLite error that stopped it opening.
    public convenience init(path: String) throws {
        try self.init(path: path) { try WALCheckpointer(path: $0) }
    }

    /// - Parameter checkpointer: makes the log's checkpointer for the file (tests choose its thresholds).
    convenience init(path: String, checkpointer: (String) throws -> WALCheckpointer) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(),
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        try Self.restrictToOwner(url.path)
        var configuration = Configuration()
        // Another process (such as `inferops audit`) may briefly hold the write lock.
        configuration.busyMode = .timeout(5)
        // In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a crash or `kill -9`
        // of the daemon loses nothing (the WAL is in the file system), only a power cut can lose
        // the last commits. Intake writes several small transactions per command. Checkpoints run
        // beside the writer, not inside its commits (`WALCheckpointer`).
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")
        }
        let pool = try DatabasePool(path: url.path, configuration: configuration)
        try self.init(writer: pool, checkpointer: try checkpointer(url.path))
    }

    /// The database holds plans (values included), the journal and the audit log: only its owner
    /// may read it. The file is created 0600 before SQLite opens it, and SQLite gives its `-wal`,
    /// `-shm` and `-journal` files the database file's mode; files left looser by an older build
    /// are tightened.
    static func restrictToOwner(_ path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw SQLiteStoreError.unsafeFile(path: path, detail: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o600) == 0 else {
            throw SQLiteStoreError.unsafeFile(path: path, detail: String(cString: strerror(errno)))
        }
        for suffix in ["-wal", "-shm", "-journal"] {
            let companion = path + suffix
            var info = stat()
            guard lstat(companion, &info) == 0 else { continue }
            guard (info.st_mode & S_IFMT) == S_IFREG, chmod(companion, 0o600) == 0 else {
                throw SQLiteStoreError.unsafeFile(path: companion, detail: "not a regular file this user owns")
            }
        }
    }

    /// Opens an existing database for reading only, as `inferops audit` does: it never creates the
    /// file, never migrates it, and SQLite refuses every write through it.
    ///
    /// - Throws: `SQLiteStoreError.newerSchema` as `init(path:)` does, or SQLite's error when the
    ///   file is missing or unreadable.
    public static func openReadOnly(path: String) throws -> SQLiteStore {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        return try SQLiteStore(readOnly: DatabaseQueue(path: path, configuration: configuration))
    }

    /// A fresh, private database that lives as long as the store: for tests and dry runs.
    public static func inMemory() throws -> SQLiteStore {
        try SQLiteStore(writer: DatabaseQueue())
    }

    private init(writer: any DatabaseWriter, checkpointer: WALCheckpointer? = nil) throws {
        self.checkpointer = checkpointer
        // A file migrated by a newer build may hold tables or meanings this build does not know;
        // refusing to open is safer than writing rows that the newer build would misread.
        let unknown = try writer.read { db in
            try Schema.migrator.appliedIdentifiers(db).subtracting(Self.migrationNames).sorted()
        }
        guard unknown.isEmpty else { throw SQLiteStoreError.newerSchema(migrations: unknown) }
        try Schema.migrator.migrate(writer)
        self.writer = writer
    }

    private init(readOnly reader: DatabaseQueue) throws {
        checkpointer = nil
        let unknown = try reader.read { db in
            try Schema.migrator.appliedIdentifiers(db).subtracting(Self.migrationNames).sorted()
        }
        guard unknown.isEmpty else { throw SQLiteStoreError.newerSchema(migrations: unknown) }
        self.writer = reader
    }

    /// One short read (a few rows by an index), on the calling thread. A read in WAL mode never
    /// waits for the writer, and the few pages such a query touches are in memory: handing it to a
    /// reader's queue and waiting to be resumed costs more (two thread switches and a semaphore)
    /// than the query itself. Reads of a whole table (the audit log) go to a reader's queue
    /// (`writer.read` awaited), so they never hold one of the concurrency pool's few threads.
    private func read<T>(_ value: (Database) throws -> T) throws -> T {
        try writer.read(value)
    }

    /// One short read made of a single statement (one of `HotReads`, prepared once per connection
    /// with `cachedStatement`), run without a transaction around it: one statement reads one
    /// consistent snapshot on its own. For the reads every `status` makes: building the query and
    /// preparing it again, and the `BEGIN`/`COMMIT` around it, cost several times the query itself.
    private func readOneStatement<T>(_ value: (Database) throws -> T) throws -> T {
        try writer.unsafeReentrantRead(value)
    }

    /// One write transaction, in its turn (see `WriteTurns`; the intake's acceptances go first, from
    /// `accept`). A task that is cancelled writes nothing.
    private func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try Task.checkCancellation()
        let writer = self.writer
        let turns = self.turns
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            turns.enqueue(urgent: false) {
                writer.asyncWrite(updates) { _, result in
                    turns.finished()
                    self.committed()
                    continuation.resume(with: result)
                }
            }
        }
    }

    /// After each write transaction: counts it for the checkpointer, and truncates the log in the
    /// writer's next turn when a passive checkpoint could not keep up (see `WALCheckpointer`).
    private func committed() {
        guard let checkpointer, checkpointer.committed() else { return }
        let writer = self.writer
        let turns = self.turns
        turns.enqueue(urgent: false) {
            writer.asyncWriteWithoutTransaction { db in
                _ = try? db.checkpoint(.truncate)
                turns.finished()
            }
        }
    }

    // MARK: Operations

    public func insert(_ operation: OperationRecord) async throws {
        try await write { db in
            try OperationRow(operation).insert(db)
        }
    }

    /// Reads the stored state and writes in one immediate transaction, so no other writer (another
    /// process included) can change the operation in between. The owner, its heartbeat and a cancel
    /// request are written back as stored: a writer's copy of them may be older than the store's.
    /// - Throws: `SQLiteStoreError.unknownOperation` when no operation has this id;
    ///   `OperationAlreadyEnded` or `OperationStateConflict` when it is not in `expectedState`.
    public func update(_ operation: OperationRecord, from expectedState: OperationState) async throws {
        try await write { db in try Self.update(operation, from: expectedState, in: db) }
    }

    /// Writes `operation` if the stored one is still in `expectedState`, keeping the stored owner and
    /// cancel request: the one compare-and-set every operation write goes through.
    static func update(_ operation: OperationRecord, from expectedState: OperationState, in db: Database) throws {
        // Only the state is read (not the whole row), and the owner and a cancel request are left
        // as stored: they are the runner's and the cancel's to write.
        let state = try String.fetchOne(
            db.cachedStatement(sql: "SELECT state FROM operations WHERE id = ?"), arguments: [operation.id.rawValue])
        guard let state else { throw SQLiteStoreError.unknownOperation(operation.id) }
        guard let stored = OperationState(rawValue: state) else {
            throw SQLiteStoreError.unreadableValue(table: OperationRow.databaseTableName, column: "state", value: state)
        }
        guard stored == expectedState else {
            if stored.isFinished { throw OperationAlreadyEnded(operation: operation.id, state: stored) }
            throw OperationStateConflict(operation: operation.id, expected: expectedState, found: stored)
        }
        try db.updateCached(OperationRow(operation), columns: OperationRow.contentColumns)
    }

    public func recordEnd(_ operation: OperationRecord, from expectedState: OperationState, journal: JournalEntry,
                          audit: AuditEntry) async throws {
        try await write { db in
            try Self.update(operation, from: expectedState, in: db)
            try db.insertCached(JournalRecord(journal))
            try Self.appendAudit(audit, in: db)
        }
    }

    public func operation(_ id: OperationID) async throws -> OperationRecord? {
        try readOneStatement { db in
            try OperationRow.fetchOne(db.cachedStatement(sql: HotReads.operation), arguments: [id.rawValue])?.operation
        }
    }

    /// The list of unfinished states comes from `OperationState.isFinished`, so the core alone
    /// decides what "finished" means. Ties on the creation time keep insertion order.
    public func unfinishedOperations() async throws -> [OperationRecord] {
        let unfinished = OperationState.allCases.filter { !$0.isFinished }.map(\.rawValue)
        return try read { db in
            try OperationRow
                .filter(unfinished.contains(OperationRow.Columns.state))
                .order(OperationRow.Columns.createdAt.asc, Column.rowID.asc)
                .fetchAll(db)
                .map(\.operation)
        }
    }

    /// Only the summary's columns are read: no JSON is decoded.
    public func unfinishedSummaries() async throws -> [OperationSummary] {
        try readOneStatement { db in
            try Row.fetchAll(db.cachedStatement(sql: HotReads.unfinishedSummaries)).map { try OperationRow.summary($0) }
        }
    }

    /// A `limit` of zero or less returns nothing (SQLite would read a negative limit as "all").
    public func recentOperations(
        model: String?,
        environment: String?,
        limit: Int
    ) async throws -> [OperationRecord] {
        guard limit > 0 else { return [] }
        return try read { db in
            let columns = OperationRow.Columns.self
            var request = OperationRow.order(columns.createdAt.desc, Column.rowID.desc).limit(limit)
            if let model { request = request.filter(columns.model == model) }
            if let environment { request = request.filter(columns.environment == environment) }
            return try request.fetchAll(db).map(\.operation)
        }
    }

    /// A `limit` of zero or less returns nothing. Operations that made no revision store `NULL` in
    /// both columns, so the many enables, disables and locks of a release are never read.
    public func revisionMakers(model: String, environment: String, limit: Int) async throws -> [OperationRecord] {
        guard limit > 0 else { return [] }
        return try readOneStatement { db in
            try OperationRow.fetchAll(db.cachedStatement(sql: HotReads.revisionMakers), arguments: [model, environment, limit])
                .map(\.operation)
        }
    }

    // MARK: Journal

    /// - Throws: A foreign-key error when the operation has not been inserted.
    public func appendJournal(_ entry: JournalEntry) async throws {
        try await write { db in
            try db.insertCached(JournalRecord(entry))
        }
    }

    /// In the order the entries were appended, which is the order of the autoincrement id.
    public func journal(of operation: OperationID) async throws -> [JournalEntry] {
        try read { db in
            try JournalRecord
                .filter(JournalRecord.Columns.operation == operation.rawValue)
                .order(JournalRecord.Columns.id)
                .fetchAll(db)
                .map(\.entry)
        }
    }

    // MARK: Audit

    /// Chains the row to the last one (`AuditChain`) in the same transaction that inserts it.
    public func appendAudit(_ entry: AuditEntry) async throws {
        try await write { db in try Self.appendAudit(entry, in: db) }
    }

    static func appendAudit(_ entry: AuditEntry, in db: Database) throws {
        var record = AuditRecord(entry)
        let next = try AuditChain.nextLink(db)
        record.id = next.id
        record.previousHash = next.previousHash
        record.hash = AuditChain.Link(id: next.id, record: record, previousHash: next.previousHash).expectedHash
        try db.insertCached(record)
    }

    /// Walks the audit log's hash chain and names the first row that breaks it.
    public func verifyAuditChain() async throws -> AuditChainVerdict {
        try await writer.read { db in
            guard try Schema.migrator.appliedIdentifiers(db).contains("v5-audit-chain") else {
                throw SQLiteStoreError.notMigrated(migration: "v5-audit-chain")
            }
            return try AuditChain.verify(db)
        }
    }

    /// In the order the entries were appended.
    public func auditLog() async throws -> [AuditEntry] {
        try await auditRecords().map(\.entry)
    }

    /// The audit log as JSON lines for `inferops audit`: one compact object per entry, oldest first.
    ///
    /// Keys appear in a fixed order (`at`, `actor`, `action`, `environment`, `subject`, `outcome`,
    /// `operation`, `detail`, `channel`, `os_user`) so lines diff and grep the same on every platform;
    /// absent values are left out rather than written as `null`. `at` is ISO 8601 in UTC with
    /// milliseconds. The chain's hashes are left out: `verifyAuditChain` checks them.
    public func auditLines() async throws -> [String] {
        try await auditRecords().map(AuditLine.render)
    }

    private func auditRecords() async throws -> [AuditRecord] {
        try await writer.read { db in
            try AuditRecord.order(AuditRecord.Columns.id).fetchAll(db)
        }
    }

    // MARK: Verifications

    public func recordVerification(_ verification: Verification) async throws {
        try await write { db in
            try VerificationRecord(verification).insert(db)
        }
    }

    /// The verification with the latest time; of two at the same millisecond, the one recorded last.
    public func lastVerification(model: String, environment: String) async throws -> Verification? {
        try readOneStatement { db in
            try VerificationRecord.fetchOne(db.cachedStatement(sql: HotReads.lastVerification), arguments: [model, environment])?
                .verification
        }
    }

    public func verifications(model: String?, environment: String?, since: Date) async throws -> [Verification] {
        try read { db in
            let columns = VerificationRecord.Columns.self
            var request = VerificationRecord
                .filter(columns.at >= StoredTime.milliseconds(since))
                .order(columns.at.desc, columns.id.desc)
            if let model { request = request.filter(columns.model == model) }
            if let environment { request = request.filter(columns.environment == environment) }
            return try request.fetchAll(db).map(\.verification)
        }
    }

    // MARK: Locks

    /// Check and insert share one immediate write transaction, so two callers can never both
    /// believe they took the lock.
    /// Checks and moves in one write transaction, so two processes cannot both claim a release.
    public func claimRelease(for operation: OperationID, release: String, at: Date) async throws -> OperationRecord? {
        try await write { db in
            let columns = OperationRow.Columns.self
            let holding = OperationState.holdingRelease.map(\.rawValue)
            if let holder = try OperationRow
                .filter(columns.release == release && holding.contains(columns.state) && columns.id != operation.rawValue)
                .order(columns.createdAt.asc)
                .fetchOne(db)
            {
                return holder.operation
            }
            guard var claimed = try OperationRow.fetchOne(db, key: operation.rawValue)?.operation else {
                throw SQLiteStoreError.unknownOperation(operation)
            }
            guard !claimed.state.isFinished else {
                throw OperationAlreadyEnded(operation: operation, state: claimed.state)
            }
            claimed.state = .prechecking
            claimed.updatedAt = at
            try OperationRow(claimed).update(db)
            return nil
        }
    }

    public func acquireLock(_ lock: EnvironmentLock) async throws -> EnvironmentLock? {
        try await write { db in
            if let held = try LockRecord.fetchOne(db, key: lock.environment) {
                return held.lock
            }
            try LockRecord(lock).insert(db)
            return nil
        }
    }

    public func releaseLock(environment: String) async throws -> EnvironmentLock? {
        try await write { db in
            guard let held = try LockRecord.fetchOne(db, key: environment) else { return nil }
            try LockRecord.deleteOne(db, key: environment)
            return held.lock
        }
    }

    /// Sorted by environment, so listings are stable.
    public func locks() async throws -> [EnvironmentLock] {
        try readOneStatement { db in
            try LockRecord.fetchAll(db.cachedStatement(sql: HotReads.locks)).map(\.lock)
        }
    }

    /// The version check and the write share one immediate transaction.
    public func updateRegistration(_ registration: Registration, expectedVersion: Int?) async throws -> Registration? {
        try await write { db in
            let stored = try Self.registrationRecord(
                db, model: registration.model, environment: registration.environment)
            guard stored?.registration.version == expectedVersion else { return nil }
            var next = registration
            next.version = (expectedVersion ?? 0) + 1
            if stored == nil {
                try RegistrationRecord(next).insert(db)
            } else {
                try RegistrationRecord(next).update(db)
            }
            return next
        }
    }

    private static func registrationRecord(
        _ db: Database, model: String, environment: String
    ) throws -> RegistrationRecord? {
        try RegistrationRecord.fetchOne(db.cachedStatement(sql: HotReads.registration), arguments: [environment, model])
    }

    public func registration(model: String, environment: String) async throws -> Registration? {
        try readOneStatement { db in
            try Self.registrationRecord(db, model: model, environment: environment)?.registration
        }
    }

    public func removeRegistration(model: String, environment: String, expectedVersion: Int) async throws -> Bool {
        try await write { db in
            try RegistrationRecord
                .filter(RegistrationRecord.Columns.model == model && RegistrationRecord.Columns.environment == environment)
                .filter(RegistrationRecord.Columns.version == expectedVersion)
                .deleteAll(db) > 0
        }
    }

    public func registrations() async throws -> [Registration] {
        try read { db in
            try RegistrationRecord
                .order(RegistrationRecord.Columns.environment, RegistrationRecord.Columns.model)
                .fetchAll(db).map(\.registration)
        }
    }

    // MARK: Intake and ownership

    /// The event id's primary key decides: of two processes accepting the same event at once, one
    /// inserts it and the other's `INSERT OR IGNORE` changes nothing. A failed operation insert rolls
    /// the event back with it, so the event can be accepted again.
    ///
    /// Events accepted together share one transaction (group commit), each in a savepoint of its
    /// own: a burst of commands costs one commit, not one each, and one that fails leaves the
    /// others recorded.
    public func accept(event: String, at: Date, starting: Acceptance?) async throws -> Bool {
        try Task.checkCancellation()
        let writer = self.writer
        let turns = self.turns
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
            pendingAcceptances.withLock {
                $0.append(PendingAcceptance(event: event, at: at, starting: starting, continuation: continuation))
            }
            turns.enqueue(urgent: true) {
                // The first turn takes every acceptance waiting then; later turns may find none.
                let batch = self.pendingAcceptances.withLock { pending in
                    defer { pending = [] }
                    return pending
                }
                guard !batch.isEmpty else {
                    turns.finished()
                    return
                }
                writer.asyncWrite({ db in
                    batch.map { request in
                        Result<Bool, any Error> {
                            // An event that starts nothing is one statement, all or nothing by
                            // itself; one that starts an operation writes several rows, so a refusal
                            // halfway (a lock) undoes only its own.
                            guard request.starting != nil else { return try Self.accept(request, in: db) }
                            var accepted = false
                            try db.inSavepoint {
                                accepted = try Self.accept(request, in: db)
                                return .commit
                            }
                            return accepted
                        }
                    }
                }, completion: { _, outcome in
                    turns.finished()
                    self.committed()
                    switch outcome {
                    case .success(let results):
                        for (request, result) in zip(batch, results) { request.continuation.resume(with: result) }
                    case .failure(let error):
                        for request in batch { request.continuation.resume(throwing: error) }
                    }
                })
            }
        }
    }

    private static func accept(_ request: PendingAcceptance, in db: Database) throws -> Bool {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO inbound_events (id, accepted_at) VALUES (?, ?)")
            .execute(arguments: [request.event, StoredTime.milliseconds(request.at)])
        guard db.changesCount > 0 else { return false }
        if let starting = request.starting {
            if starting.respectsLocks,
               let locked = starting.refusingLock(
                try LockRecord.fetchOne(db.cachedStatement(sql: HotReads.lock), arguments: [starting.operation.environment])?.lock) {
                throw locked
            }
            try db.insertCached(OperationRow(starting.operation))
            if let journal = starting.journal { try db.insertCached(JournalRecord(journal)) }
            if let audit = starting.audit { try Self.appendAudit(audit, in: db) }
        }
        return true
    }

    public func forgetEvents(before date: Date) async throws {
        try await write { db in
            try db.execute(
                sql: "DELETE FROM inbound_events WHERE accepted_at < ?",
                arguments: [StoredTime.milliseconds(date)]
            )
        }
    }

    /// Reads the current owner and writes the new one in one immediate transaction, so of two
    /// daemons taking over the same stale operation only one finds it stale.
    public func claimOwnership(
        of operation: OperationID, by owner: OperationOwner, staleBefore: Date
    ) async throws -> OperationRecord? {
        try await write { db in
            guard var record = try OperationRow.fetchOne(db, key: operation.rawValue)?.operation,
                !record.state.isFinished
            else { return nil }
            if let current = record.owner, current.instance != owner.instance, current.heartbeat >= staleBefore {
                return nil
            }
            record.owner = owner
            try OperationRow(record).update(db)
            return try OperationRow.fetchOne(db, key: operation.rawValue)?.operation
        }
    }

    /// One `UPDATE` over the owner index, then the rows it renewed, in one transaction.
    /// One `UPDATE`, then the ids and cancel columns of the rows it renewed (not whole rows: the
    /// write lock is held meanwhile, and the intake waits for it).
    public func heartbeat(instance: String, at: Date) async throws -> [Renewal] {
        let unfinished = OperationState.allCases.filter { !$0.isFinished }.map(\.rawValue)
        return try await write { db in
            let columns = OperationRow.Columns.self
            let owned = OperationRow.filter(columns.ownerInstance == instance && unfinished.contains(columns.state))
            try owned.updateAll(db, columns.heartbeatAt.set(to: StoredTime.milliseconds(at)))
            let rows = try Row.fetchAll(
                db,
                owned.select(columns.id, columns.cancelRequestedBy, columns.cancelRequestedAt)
                    .order(columns.createdAt.asc, Column.rowID.asc))
            return try rows.map { row in
                let by: String? = try row.decode(forColumn: columns.cancelRequestedBy)
                return Renewal(
                    id: OperationID(try row.decode(String.self, forColumn: columns.id)),
                    cancelRequest: try by.map {
                        CancelRequest(
                            by: UserID($0),
                            at: StoredTime.date(milliseconds: try row.decode(forColumn: columns.cancelRequestedAt)))
                    })
            }
        }
    }

    /// Only the instance that owns the operation may give it up; for any other this does nothing.
    public func releaseOwnership(of operation: OperationID, instance: String) async throws {
        try await write { db in
            let columns = OperationRow.Columns.self
            try OperationRow
                .filter(key: operation.rawValue)
                .filter(columns.ownerInstance == instance)
                .updateAll(
                    db,
                    columns.ownerInstance.set(to: nil), columns.ownerHost.set(to: nil),
                    columns.ownerPID.set(to: nil), columns.heartbeatAt.set(to: nil)
                )
        }
    }

    /// The first request stands: asking again does not change who asked or when.
    public func requestCancel(_ operation: OperationID, by user: UserID, at: Date) async throws -> OperationRecord? {
        try await write { db in
            guard var record = try OperationRow.fetchOne(db, key: operation.rawValue)?.operation else { return nil }
            guard !record.state.isFinished, record.cancelRequest == nil else { return record }
            record.cancelRequest = CancelRequest(by: user, at: at)
            try OperationRow(record).update(db)
            return try OperationRow.fetchOne(db, key: operation.rawValue)?.operation
        }
    }

    public func recordApproval(
        _ approval: Approval, of operation: OperationID, digest: String, audit: AuditEntry
    ) async throws -> ApprovalTally {
        try await write { db in
            guard let record = try OperationRow.fetchOne(db, key: operation.rawValue)?.operation else { return .unknown }
            let (tally, changed) = record.adding(approval, of: digest)
            if let changed {
                try OperationRow(changed).update(db, columns: OperationRow.contentColumns)
                try Self.appendAudit(audit, in: db)
            }
            return tally
        }
    }

    // MARK: For tests

    /// Runs raw SQL through the writer, so tests can prove the schema itself refuses what the
    /// intent-level methods never attempt (such as editing the audit log).
    func execute(sql: String) async throws {
        try await write { db in
            try db.execute(sql: sql)
        }
    }

    /// The column names of `table`, so tests can check that column lists in the code cover them.
    func columns(of table: String) async throws -> [String] {
        try read { db in try db.columns(in: table).map(\.name) }
    }

    /// The raw chain columns of every audit row, in id order, so tests can check the stored links.
    func auditLinks() async throws -> [AuditChain.Link] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id").map(AuditChain.Link.init(row:))
        }
    }

    /// Creates a database at `path` as an older build left it: migrated only up to `migration`,
    /// then `sql` run on it, so tests can check what the later migrations make of its rows.
    static func createDatabase(path: String, migratedUpTo migration: String, then sql: String) throws {
        try FileManager.default.createDirectory(
            at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        let queue = try DatabaseQueue(path: path)
        try Schema.migrator.migrate(queue, upTo: migration)
        try queue.write { db in try db.execute(sql: sql) }
    }

    /// SQLite's plan for `sql` (the `detail` of each `EXPLAIN QUERY PLAN` row), to check an index is used.
    func queryPlan(_ sql: String) async throws -> [String] {
        try read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql).map { $0["detail"] }
        }
    }

    /// The migration names recorded in the database, in the order they were applied.
    func recordedMigrations() async throws -> [String] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        }
    }

    /// The SQLite journal mode, to check the on-disk store really is in WAL mode.
    func journalMode() async throws -> String {
        try read { db in
            try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? ""
        }
    }
}

/// Failures inside the store. They are not user-facing: callers log them with a correlation id.
public enum SQLiteStoreError: Error, Equatable, CustomStringConvertible {
    /// `update` was given an operation that was never inserted.
    case unknownOperation(OperationID)
    /// A stored value that this build cannot read, such as a state written by a newer version.
    case unreadableValue(table: String, column: String, value: String)
    /// The database has migrations this build does not know: a newer InferOps has used it.
    case newerSchema(migrations: [String])
    /// The database file (or its `-wal`/`-shm`) cannot be made readable by its owner only.
    case unsafeFile(path: String, detail: String)
    /// A read-only store was asked for something a migration it may not run would add.
    case notMigrated(migration: String)

    public var description: String {
        switch self {
        case .unknownOperation(let id):
            "no operation \(id) to update"
        case .unreadableValue(let table, let column, let value):
            "unreadable value in \(table).\(column): \(value)"
        case .newerSchema(let migrations):
            "the database was migrated by a newer InferOps (\(migrations.joined(separator: ", ")))"
        case .unsafeFile(let path, let detail):
            "cannot make \(path) private to its owner: \(detail)"
        case .notMigrated(let migration):
            "the database predates the migration \(migration); start the daemon once so it migrates the file"
        }
    }
}

/// One `accept` waiting for its group commit, and who waits for its answer.
struct PendingAcceptance: Sendable {
    let event: String
    let at: Date
    let starting: Acceptance?
    let continuation: CheckedContinuation<Bool, any Error>
}

/// The SQL of the store's hot reads: those every `status`, `history`, acceptance and runner step
/// makes (see `SQLiteStore.readOneStatement`), written out once so each connection prepares it once.
/// Their tests are the store's contract suite.
enum HotReads {
    static let unfinishedSummaries: String = {
        let unfinished = OperationState.allCases.filter { !$0.isFinished }.map { "'\($0.rawValue)'" }
        let columns = OperationRow.Columns.self
        let selected = [columns.id, columns.kind, columns.state, columns.environment, columns.model, columns.release,
                        columns.ownerInstance, columns.ownerHost, columns.ownerPID, columns.heartbeatAt,
                        columns.createdAt].map(\.name)
        return "SELECT \(selected.joined(separator: ", ")) FROM \(OperationRow.databaseTableName) "
            + "WHERE \(columns.state.name) IN (\(unfinished.joined(separator: ", "))) "
            + "ORDER BY \(columns.createdAt.name) ASC, rowid ASC"
    }()

    static let lastVerification: String = {
        let columns = VerificationRecord.Columns.self
        return "SELECT * FROM \(VerificationRecord.databaseTableName) "
            + "WHERE \(columns.model.name) = ? AND \(columns.environment.name) = ? "
            + "ORDER BY \(columns.at.name) DESC, \(columns.id.name) DESC LIMIT 1"
    }()

    static let registration: String = {
        let columns = RegistrationRecord.Columns.self
        return "SELECT * FROM \(RegistrationRecord.databaseTableName) "
            + "WHERE \(columns.environment.name) = ? AND \(columns.model.name) = ?"
    }()

    static let operation = "SELECT * FROM \(OperationRow.databaseTableName) WHERE \(OperationRow.Columns.id.name) = ?"

    /// Operations that made no revision store `NULL` in both columns, so the many enables, disables
    /// and locks of a release are never read.
    static let revisionMakers: String = {
        let columns = OperationRow.Columns.self
        return "SELECT * FROM \(OperationRow.databaseTableName) "
            + "WHERE \(columns.model.name) = ? AND \(columns.environment.name) = ? "
            + "AND (\(columns.revision.name) IS NOT NULL OR \(columns.revisions.name) IS NOT NULL) "
            + "ORDER BY \(columns.createdAt.name) DESC, rowid DESC LIMIT ?"
    }()

    static let lock =
        "SELECT * FROM \(LockRecord.databaseTableName) WHERE \(LockRecord.Columns.environment.name) = ?"

    static let locks =
        "SELECT * FROM \(LockRecord.databaseTableName) ORDER BY \(LockRecord.Columns.environment.name)"
}

extension Database {
    /// Inserts `record` with a statement prepared once per connection: GRDB's `insert` builds and
    /// prepares its statement again for every row, which cost more than the insert on the paths that
    /// write a row per command or per step. Every column the record encodes is written.
    func insertCached<Record: EncodableRecord & TableRecord>(_ record: Record) throws {
        let values = try record.databaseDictionary
        let columns = values.keys.sorted()
        let placeholders = Array(repeating: "?", count: columns.count).joined(separator: ", ")
        let statement = try cachedStatement(
            sql: "INSERT INTO \(Record.databaseTableName) (\(columns.joined(separator: ", "))) VALUES (\(placeholders))")
        try statement.execute(arguments: StatementArguments(columns.map { values[$0]! }))
    }

    /// Updates `columns` of the row whose `key` column equals `record`'s, with a statement prepared
    /// once per connection (see `insertCached`). A column the record does not encode is written as
    /// `NULL`, as GRDB's own `update` does.
    func updateCached<Record: EncodableRecord & TableRecord>(
        _ record: Record, columns: [String], key: String = "id"
    ) throws {
        let values = try record.databaseDictionary
        let assignments = columns.map { "\($0) = ?" }.joined(separator: ", ")
        let statement = try cachedStatement(
            sql: "UPDATE \(Record.databaseTableName) SET \(assignments) WHERE \(key) = ?")
        try statement.execute(arguments: StatementArguments(columns.map { values[$0] ?? .null } + [values[key] ?? .null]))
    }
}
