import Foundation
import GRDB
import InferOpsCore

// One record type per table. Each maps the core's value to its row and back in one place, so the
// column names live next to each other and the core types never learn about GRDB. Reading uses
// GRDB's throwing `decode`, so a damaged row becomes an error instead of a crash.

/// A row of `operations`.
struct OperationRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "operations"

    enum Columns {
        static let id = Column("id")
        static let kind = Column("kind")
        static let requester = Column("requester")
        static let environment = Column("environment")
        static let model = Column("model")
        static let release = Column("release")
        static let namespace = Column("namespace")
        static let kubeContext = Column("kube_context")
        static let state = Column("state")
        static let plan = Column("plan")
        static let planDigest = Column("plan_digest")
        static let revision = Column("revision")
        static let revisions = Column("revisions")
        static let command = Column("command")
        static let thread = Column("thread")
        static let outcome = Column("outcome")
        static let createdAt = Column("created_at")
        static let updatedAt = Column("updated_at")
        static let request = Column("request")
        static let cardChannel = Column("card_channel")
        static let cardID = Column("card_id")
        static let checkpoint = Column("checkpoint")
        static let ownerInstance = Column("owner_instance")
        static let ownerHost = Column("owner_host")
        static let ownerPID = Column("owner_pid")
        static let heartbeatAt = Column("heartbeat_at")
        static let cancelRequestedBy = Column("cancel_requested_by")
        static let cancelRequestedAt = Column("cancel_requested_at")
        static let approval = Column("approval")
    }

    /// What an update from a workflow writes: every column but the owner's and a cancel request's.
    static let contentColumns: [String] = [
        Columns.id, Columns.kind, Columns.requester, Columns.environment, Columns.model, Columns.release,
        Columns.namespace, Columns.kubeContext, Columns.state, Columns.plan, Columns.planDigest, Columns.revision,
        Columns.revisions, Columns.command, Columns.thread, Columns.outcome, Columns.createdAt, Columns.updatedAt,
        Columns.request, Columns.cardChannel, Columns.cardID, Columns.checkpoint, Columns.approval,
    ].map(\.name)

    var operation: OperationRecord

    init(_ operation: OperationRecord) {
        self.operation = operation
    }

    init(row: Row) throws {
        let table = Self.databaseTableName
        var target: ReleaseTarget?
        if let release: String = try row.decode(forColumn: Columns.release),
            let namespace: String = try row.decode(forColumn: Columns.namespace)
        {
            target = ReleaseTarget(
                release: release,
                namespace: namespace,
                kubeContext: try row.decode(forColumn: Columns.kubeContext)
            )
        }
        var plan: JSONValue?
        if let text: String = try row.decode(forColumn: Columns.plan) {
            do {
                plan = try JSONValue(parsing: text)
            } catch {
                throw SQLiteStoreError.unreadableValue(table: table, column: Columns.plan.name, value: text)
            }
        }
        var revisions: [Int] = []
        if let text: String = try row.decode(forColumn: Columns.revisions) {
            guard case .array(let numbers)? = try? JSONValue(parsing: text),
                case let values = numbers.compactMap(\.intValue), values.count == numbers.count
            else {
                throw SQLiteStoreError.unreadableValue(table: table, column: Columns.revisions.name, value: text)
            }
            revisions = values
        }
        var card: MessageRef?
        if let channel: String = try row.decode(forColumn: Columns.cardChannel),
            let id: String = try row.decode(forColumn: Columns.cardID)
        {
            card = MessageRef(channel: channel, id: id)
        }
        let owner = try Self.owner(row)
        var cancelRequest: CancelRequest?
        if let user: String = try row.decode(forColumn: Columns.cancelRequestedBy) {
            cancelRequest = CancelRequest(
                by: UserID(user),
                at: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.cancelRequestedAt))
            )
        }
        operation = OperationRecord(
            id: OperationID(try row.decode(String.self, forColumn: Columns.id)),
            kind: try row.decodeRaw(OperationKind.self, forColumn: Columns.kind, table: table),
            requester: UserID(try row.decode(String.self, forColumn: Columns.requester)),
            environment: try row.decode(forColumn: Columns.environment),
            model: try row.decode(forColumn: Columns.model),
            target: target,
            state: try row.decodeRaw(OperationState.self, forColumn: Columns.state, table: table),
            plan: plan,
            planDigest: try row.decode(forColumn: Columns.planDigest),
            revision: try row.decode(forColumn: Columns.revision),
            revisions: revisions,
            command: try row.decode(forColumn: Columns.command),
            thread: try row.decode(forColumn: Columns.thread),
            outcome: try row.decode(forColumn: Columns.outcome),
            createdAt: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.createdAt)),
            updatedAt: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.updatedAt)),
            request: try row.decodeJSON(OperationRequest.self, forColumn: Columns.request, table: table),
            card: card,
            // Operations recorded before checkpoints existed had read nothing yet.
            checkpoint: try row.decodeJSON(Checkpoint.self, forColumn: Columns.checkpoint, table: table)
                ?? Checkpoint(),
            owner: owner,
            cancelRequest: cancelRequest,
            approval: try row.decodeJSON(ApprovalRequest.self, forColumn: Columns.approval, table: table)
        )
    }

    /// The owner columns of a row, `nil` when no daemon owns the operation.
    static func owner(_ row: Row) throws -> OperationOwner? {
        guard let instance: String = try row.decode(forColumn: Columns.ownerInstance) else { return nil }
        return OperationOwner(
            instance: instance,
            host: try row.decode(forColumn: Columns.ownerHost),
            pid: try row.decode(forColumn: Columns.ownerPID),
            heartbeat: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.heartbeatAt))
        )
    }

    /// The summary columns of a row (see `SQLiteStore.unfinishedSummaries`).
    static func summary(_ row: Row) throws -> OperationSummary {
        let table = databaseTableName
        let owner = try Self.owner(row)
        return OperationSummary(
            id: OperationID(try row.decode(String.self, forColumn: Columns.id)),
            kind: try row.decodeRaw(OperationKind.self, forColumn: Columns.kind, table: table),
            state: try row.decodeRaw(OperationState.self, forColumn: Columns.state, table: table),
            environment: try row.decode(forColumn: Columns.environment),
            model: try row.decode(forColumn: Columns.model),
            release: try row.decode(forColumn: Columns.release),
            owner: owner,
            createdAt: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.createdAt))
        )
    }

    func encode(to container: inout PersistenceContainer) throws {
        container[Columns.id] = operation.id.rawValue
        container[Columns.kind] = operation.kind.rawValue
        container[Columns.requester] = operation.requester.rawValue
        container[Columns.environment] = operation.environment
        container[Columns.model] = operation.model
        container[Columns.release] = operation.target?.release
        container[Columns.namespace] = operation.target?.namespace
        container[Columns.kubeContext] = operation.target?.kubeContext
        container[Columns.state] = operation.state.rawValue
        // Canonical JSON: sorted keys and stable numbers, the same text the plan digest is taken over.
        container[Columns.plan] = operation.plan?.canonical
        container[Columns.planDigest] = operation.planDigest
        container[Columns.revision] = operation.revision
        container[Columns.revisions] = operation.revisions.isEmpty
            ? nil : "[" + operation.revisions.map(String.init).joined(separator: ",") + "]"
        container[Columns.command] = operation.command
        container[Columns.thread] = operation.thread
        container[Columns.outcome] = operation.outcome
        container[Columns.createdAt] = StoredTime.milliseconds(operation.createdAt)
        container[Columns.updatedAt] = StoredTime.milliseconds(operation.updatedAt)
        container[Columns.request] = try operation.request.map(Self.json)
        container[Columns.cardChannel] = operation.card?.channel
        container[Columns.cardID] = operation.card?.id
        container[Columns.checkpoint] = try Self.json(operation.checkpoint)
        container[Columns.ownerInstance] = operation.owner?.instance
        container[Columns.ownerHost] = operation.owner?.host
        container[Columns.ownerPID] = operation.owner?.pid
        container[Columns.heartbeatAt] = operation.owner.map { StoredTime.milliseconds($0.heartbeat) }
        container[Columns.cancelRequestedBy] = operation.cancelRequest?.by.rawValue
        container[Columns.cancelRequestedAt] = operation.cancelRequest.map { StoredTime.milliseconds($0.at) }
        container[Columns.approval] = try operation.approval.map(Self.json)
    }

    /// Sorted keys, so the same value is always the same text.
    private static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// A row of `journal`. The autoincrement id is the order of the journal and is never read back.
struct JournalRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "journal"

    enum Columns {
        static let id = Column("id")
        static let operation = Column("operation_id")
        static let at = Column("at")
        static let state = Column("state")
        static let message = Column("message")
        static let duration = Column("duration_ms")
    }

    var entry: JournalEntry

    init(_ entry: JournalEntry) {
        self.entry = entry
    }

    init(row: Row) throws {
        let duration: Int64? = try row.decode(forColumn: Columns.duration)
        entry = JournalEntry(
            operation: OperationID(try row.decode(String.self, forColumn: Columns.operation)),
            at: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.at)),
            state: try row.decodeRaw(OperationState.self, forColumn: Columns.state, table: Self.databaseTableName),
            message: try row.decode(forColumn: Columns.message),
            duration: duration.map { StoredTime.duration(milliseconds: $0) }
        )
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.operation] = entry.operation.rawValue
        container[Columns.at] = StoredTime.milliseconds(entry.at)
        container[Columns.state] = entry.state.rawValue
        container[Columns.message] = entry.message
        container[Columns.duration] = entry.duration.map { StoredTime.milliseconds($0) }
    }
}

/// A row of `audit`. Rows are only ever inserted; the table's triggers refuse anything else.
struct AuditRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "audit"

    enum Columns {
        static let id = Column("id")
        static let at = Column("at")
        static let actor = Column("actor")
        static let action = Column("action")
        static let environment = Column("environment")
        static let subject = Column("subject")
        static let outcome = Column("outcome")
        static let operation = Column("operation_id")
        static let detail = Column("detail")
        static let channel = Column("channel")
        static let osUser = Column("os_user")
        static let previousHash = Column("previous_hash")
        static let hash = Column("hash")
    }

    var entry: AuditEntry
    /// The stored time, kept as the integer so the JSON lines print it without a round trip.
    var atMilliseconds: Int64
    /// Set when the row is chained (`AuditChain`) just before it is inserted.
    var id: Int64?
    var previousHash: String?
    var hash: String?

    init(_ entry: AuditEntry) {
        self.entry = entry
        self.atMilliseconds = StoredTime.milliseconds(entry.at)
    }

    init(row: Row) throws {
        atMilliseconds = try row.decode(forColumn: Columns.at)
        let operation: String? = try row.decode(forColumn: Columns.operation)
        entry = AuditEntry(
            at: StoredTime.date(milliseconds: atMilliseconds),
            actor: UserID(try row.decode(String.self, forColumn: Columns.actor)),
            action: try row.decode(forColumn: Columns.action),
            environment: try row.decode(forColumn: Columns.environment),
            subject: try row.decode(forColumn: Columns.subject),
            outcome: try row.decode(forColumn: Columns.outcome),
            operation: operation.map(OperationID.init(rawValue:)),
            detail: try row.decode(forColumn: Columns.detail),
            // Read by subscript: a database that `v5-audit-chain` has not reached yet (opened
            // read-only by `inferops audit`) has no such columns.
            channel: row[Columns.channel],
            osUser: row[Columns.osUser]
        )
        id = row[Columns.id]
        previousHash = row[Columns.previousHash]
        hash = row[Columns.hash]
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.at] = atMilliseconds
        container[Columns.actor] = entry.actor.rawValue
        container[Columns.action] = entry.action
        container[Columns.environment] = entry.environment
        container[Columns.subject] = entry.subject
        container[Columns.outcome] = entry.outcome
        container[Columns.operation] = entry.operation?.rawValue
        container[Columns.detail] = entry.detail
        container[Columns.channel] = entry.channel
        container[Columns.osUser] = entry.osUser
        container[Columns.id] = id
        container[Columns.previousHash] = previousHash
        container[Columns.hash] = hash
    }
}

/// A row of `verifications`. Every verification is kept; the newest one answers.
struct VerificationRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "verifications"

    enum Columns {
        static let id = Column("id")
        static let model = Column("model")
        static let environment = Column("environment")
        static let operation = Column("operation_id")
        static let at = Column("at")
        static let latency = Column("latency_ms")
        static let revision = Column("revision")
    }

    var verification: Verification

    init(_ verification: Verification) {
        self.verification = verification
    }

    init(row: Row) throws {
        verification = Verification(
            model: try row.decode(forColumn: Columns.model),
            environment: try row.decode(forColumn: Columns.environment),
            operation: OperationID(try row.decode(String.self, forColumn: Columns.operation)),
            at: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.at)),
            latency: StoredTime.duration(milliseconds: try row.decode(forColumn: Columns.latency)),
            revision: try row.decode(forColumn: Columns.revision)
        )
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.model] = verification.model
        container[Columns.environment] = verification.environment
        container[Columns.operation] = verification.operation.rawValue
        container[Columns.at] = StoredTime.milliseconds(verification.at)
        container[Columns.latency] = StoredTime.milliseconds(verification.latency)
        container[Columns.revision] = verification.revision
    }
}

/// A row of `locks`; the environment is the primary key, so there is at most one lock each.
struct LockRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "locks"

    enum Columns {
        static let environment = Column("environment")
        static let holder = Column("holder")
        static let reason = Column("reason")
        static let since = Column("since")
    }

    var lock: EnvironmentLock

    init(_ lock: EnvironmentLock) {
        self.lock = lock
    }

    init(row: Row) throws {
        lock = EnvironmentLock(
            environment: try row.decode(forColumn: Columns.environment),
            holder: UserID(try row.decode(String.self, forColumn: Columns.holder)),
            reason: try row.decode(forColumn: Columns.reason),
            since: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.since))
        )
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.environment] = lock.environment
        container[Columns.holder] = lock.holder.rawValue
        container[Columns.reason] = lock.reason
        container[Columns.since] = StoredTime.milliseconds(lock.since)
    }
}

/// A row of `registrations`: the desired routing of one model in one environment.
struct RegistrationRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "registrations"

    enum Columns {
        static let model = Column("model")
        static let environment = Column("environment")
        static let state = Column("state")
        static let endpoints = Column("endpoints")
        static let changedBy = Column("changed_by")
        static let changedAt = Column("changed_at")
        static let reason = Column("reason")
        static let version = Column("version")
    }

    var registration: Registration

    init(_ registration: Registration) {
        self.registration = registration
    }

    init(row: Row) throws {
        let table = Self.databaseTableName
        let endpointsText: String = try row.decode(forColumn: Columns.endpoints)
        guard let endpoints = try? JSONDecoder().decode([String].self, from: Data(endpointsText.utf8)) else {
            throw SQLiteStoreError.unreadableValue(table: table, column: Columns.endpoints.name, value: endpointsText)
        }
        registration = Registration(
            model: try row.decode(forColumn: Columns.model),
            environment: try row.decode(forColumn: Columns.environment),
            state: try row.decodeRaw(RegistrationState.self, forColumn: Columns.state, table: table),
            endpoints: endpoints,
            changedBy: UserID(try row.decode(String.self, forColumn: Columns.changedBy)),
            changedAt: StoredTime.date(milliseconds: try row.decode(forColumn: Columns.changedAt)),
            reason: try row.decode(forColumn: Columns.reason),
            version: try row.decode(forColumn: Columns.version)
        )
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.model] = registration.model
        container[Columns.environment] = registration.environment
        container[Columns.state] = registration.state.rawValue
        container[Columns.endpoints] = JSONValue.array(registration.endpoints.map(JSONValue.string)).canonical
        container[Columns.changedBy] = registration.changedBy.rawValue
        container[Columns.changedAt] = StoredTime.milliseconds(registration.changedAt)
        container[Columns.reason] = registration.reason
        container[Columns.version] = registration.version
    }
}

extension Row {
    /// Reads a JSON text column into a `Decodable`, naming the value when it does not decode.
    fileprivate func decodeJSON<Value: Decodable>(
        _ type: Value.Type,
        forColumn column: Column,
        table: String
    ) throws -> Value? {
        guard let text: String = try decode(forColumn: column) else { return nil }
        do {
            return try JSONDecoder().decode(Value.self, from: Data(text.utf8))
        } catch {
            throw SQLiteStoreError.unreadableValue(table: table, column: column.name, value: text)
        }
    }

    /// Reads a string column into one of the core's string enums, naming the value when it is not
    /// one this build knows (for example, a state written by a newer version).
    fileprivate func decodeRaw<Value: RawRepresentable>(
        _ type: Value.Type,
        forColumn column: Column,
        table: String
    ) throws -> Value where Value.RawValue == String {
        let text: String = try decode(forColumn: column)
        guard let value = Value(rawValue: text) else {
            throw SQLiteStoreError.unreadableValue(table: table, column: column.name, value: text)
        }
        return value
    }
}
