import Foundation
import InferOpsCore

/// The operation store in memory. An actor, so `claimRelease` checks and claims in one step with no
/// suspension in between, like the SQLite store's single write transaction.
public actor InMemoryOperationStore: OperationStore {
    public enum StoreError: Error, Equatable {
        case duplicateOperation(OperationID)
        case unknownOperation(OperationID)
    }

    /// Everything stored, plus the states each operation went through, for assertions.
    public struct Snapshot: Sendable {
        /// In insertion order.
        public var operations: [OperationRecord] = []
        /// Every journal entry of every operation, in the order they were appended.
        public var journal: [JournalEntry] = []
        public var audit: [AuditEntry] = []
        public var verifications: [Verification] = []
        public var locks: [String: EnvironmentLock] = [:]
        /// Keyed by `environment/model`.
        public var registrations: [String: Registration] = [:]
        /// Each operation's successive states as stored (repeats collapsed).
        public var stateHistory: [OperationID: [OperationState]] = [:]

        public func operation(_ id: OperationID) -> OperationRecord? { operations.first { $0.id == id } }
    }

    private struct Waiter {
        var condition: @Sendable (Snapshot) -> Bool
        var continuation: CheckedContinuation<Void, any Error>
    }

    public private(set) var snapshot = Snapshot()
    private var waiters: [UInt64: Waiter] = [:]
    private var nextWaiter: UInt64 = 0

    public init() {}

    // MARK: for tests

    public func stateHistory(of id: OperationID) -> [OperationState] { snapshot.stateHistory[id] ?? [] }
    public func allOperations() -> [OperationRecord] { snapshot.operations }
    public func allJournalEntries() -> [JournalEntry] { snapshot.journal }

    /// Returns once `condition` holds for what is stored.
    public func waitFor(_ condition: @escaping @Sendable (Snapshot) -> Bool) async throws {
        if condition(snapshot) { return }
        nextWaiter += 1
        let id = nextWaiter
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiters[id] = Waiter(condition: condition, continuation: continuation)
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    private func cancelWaiter(_ id: UInt64) {
        waiters.removeValue(forKey: id)?.continuation.resume(throwing: CancellationError())
    }

    private func changed() {
        for (id, waiter) in waiters where waiter.condition(snapshot) {
            waiters[id] = nil
            waiter.continuation.resume()
        }
    }

    private func store(_ operation: OperationRecord, at index: Int?) {
        if let index {
            snapshot.operations[index] = operation
        } else {
            snapshot.operations.append(operation)
        }
        if snapshot.stateHistory[operation.id]?.last != operation.state {
            snapshot.stateHistory[operation.id, default: []].append(operation.state)
        }
        changed()
    }

    // MARK: OperationStore

    public func insert(_ operation: OperationRecord) throws {
        guard snapshot.operation(operation.id) == nil else { throw StoreError.duplicateOperation(operation.id) }
        store(operation, at: nil)
    }

    /// Checks and writes with no suspension in between, like the SQLite store's one transaction.
    public func update(_ operation: OperationRecord, from expectedState: OperationState) throws {
        guard let index = snapshot.operations.firstIndex(where: { $0.id == operation.id }) else {
            throw StoreError.unknownOperation(operation.id)
        }
        let stored = snapshot.operations[index].state
        guard stored == expectedState else {
            if stored.isFinished { throw OperationAlreadyEnded(operation: operation.id, state: stored) }
            throw OperationStateConflict(operation: operation.id, expected: expectedState, found: stored)
        }
        var written = operation
        written.owner = snapshot.operations[index].owner
        written.cancelRequest = snapshot.operations[index].cancelRequest
        store(written, at: index)
    }

    public func operation(_ id: OperationID) -> OperationRecord? { snapshot.operation(id) }

    public func recordEnd(_ operation: OperationRecord, from expectedState: OperationState, journal: JournalEntry,
                          audit: AuditEntry) throws {
        try update(operation, from: expectedState)
        snapshot.journal.append(journal)
        snapshot.audit.append(audit)
        changed()
    }

    public func claimRelease(for operation: OperationID, release: String, at: Date) throws -> OperationRecord? {
        let holder = snapshot.operations
            .filter {
                $0.id != operation && $0.target?.release == release && OperationState.holdingRelease.contains($0.state)
            }
            .min { $0.createdAt < $1.createdAt }
        if let holder { return holder }
        guard let index = snapshot.operations.firstIndex(where: { $0.id == operation }) else {
            throw StoreError.unknownOperation(operation)
        }
        var claimed = snapshot.operations[index]
        guard !claimed.state.isFinished else {
            throw OperationAlreadyEnded(operation: operation, state: claimed.state)
        }
        claimed.state = .prechecking
        claimed.updatedAt = at
        store(claimed, at: index)
        return nil
    }

    public func unfinishedOperations() -> [OperationRecord] {
        // Stable sort: operations created at the same instant stay in insertion order.
        snapshot.operations.enumerated()
            .filter { !$0.element.state.isFinished }
            .sorted { ($0.element.createdAt, $0.offset) < ($1.element.createdAt, $1.offset) }
            .map(\.element)
    }

    public func revisionMakers(model: String, environment: String, limit: Int) -> [OperationRecord] {
        Array(
            recentOperations(model: model, environment: environment, limit: Int.max)
                .filter { $0.revision != nil || !$0.revisions.isEmpty }
                .prefix(max(limit, 0))
        )
    }

    public func unfinishedSummaries() -> [OperationSummary] {
        unfinishedOperations().map(OperationSummary.init)
    }

    public func recentOperations(model: String?, environment: String?, limit: Int) -> [OperationRecord] {
        Array(
            snapshot.operations.enumerated()
                .filter {
                    (model == nil || $0.element.model == model)
                        && (environment == nil || $0.element.environment == environment)
                }
                .sorted { ($0.element.createdAt, $0.offset) > ($1.element.createdAt, $1.offset) }
                .map(\.element)
                // Like SQLiteStore: a limit of zero or less returns nothing.
                .prefix(max(limit, 0))
        )
    }

    /// Refuses an entry for an operation never inserted, as SQLite's foreign key does.
    public func appendJournal(_ entry: JournalEntry) throws {
        guard snapshot.operation(entry.operation) != nil else { throw StoreError.unknownOperation(entry.operation) }
        snapshot.journal.append(entry)
        changed()
    }

    public func journal(of operation: OperationID) -> [JournalEntry] {
        snapshot.journal.filter { $0.operation == operation }
    }

    public func appendAudit(_ entry: AuditEntry) {
        snapshot.audit.append(entry)
        changed()
    }

    public func auditLog() -> [AuditEntry] { snapshot.audit }

    public func recordVerification(_ verification: Verification) {
        snapshot.verifications.append(verification)
        changed()
    }

    /// The verification with the latest time; of two at the same time, the one recorded last.
    public func lastVerification(model: String, environment: String) -> Verification? {
        snapshot.verifications.enumerated()
            .filter { $0.element.model == model && $0.element.environment == environment }
            .max { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }?
            .element
    }

    public func verifications(model: String?, environment: String?, since: Date) -> [Verification] {
        snapshot.verifications.enumerated()
            .filter { ($0.element.model == model || model == nil) && ($0.element.environment == environment || environment == nil)
                && $0.element.at >= since }
            .sorted { ($0.element.at, $0.offset) > ($1.element.at, $1.offset) }
            .map(\.element)
    }

    public func acquireLock(_ lock: EnvironmentLock) -> EnvironmentLock? {
        if let held = snapshot.locks[lock.environment] { return held }
        snapshot.locks[lock.environment] = lock
        changed()
        return nil
    }

    public func releaseLock(environment: String) -> EnvironmentLock? {
        defer { changed() }
        return snapshot.locks.removeValue(forKey: environment)
    }

    public func locks() -> [EnvironmentLock] {
        snapshot.locks.values.sorted { $0.environment < $1.environment }
    }

    public func updateRegistration(_ registration: Registration, expectedVersion: Int?) -> Registration? {
        let key = "\(registration.environment)/\(registration.model)"
        guard snapshot.registrations[key]?.version == expectedVersion else { return nil }
        var next = registration
        next.version = (expectedVersion ?? 0) + 1
        snapshot.registrations[key] = next
        changed()
        return next
    }

    public func registration(model: String, environment: String) -> Registration? {
        snapshot.registrations["\(environment)/\(model)"]
    }

    public func removeRegistration(model: String, environment: String, expectedVersion: Int) -> Bool {
        guard snapshot.registrations["\(environment)/\(model)"]?.version == expectedVersion else { return false }
        snapshot.registrations["\(environment)/\(model)"] = nil
        changed()
        return true
    }

    public func registrations() -> [Registration] {
        snapshot.registrations.values.sorted { ($0.environment, $0.model) < ($1.environment, $1.model) }
    }

    // MARK: intake and ownership

    /// Event ids and when each was accepted.
    public private(set) var events: [String: Date] = [:]

    public func accept(event: String, at: Date, starting: Acceptance?) throws -> Bool {
        guard events[event] == nil else { return false }
        if let starting, snapshot.operation(starting.operation.id) != nil {
            throw StoreError.duplicateOperation(starting.operation.id)
        }
        if let starting, let locked = starting.refusingLock(snapshot.locks[starting.operation.environment]) {
            throw locked
        }
        events[event] = at
        guard let starting else {
            changed()
            return true
        }
        if let journal = starting.journal { snapshot.journal.append(journal) }
        if let audit = starting.audit { snapshot.audit.append(audit) }
        store(starting.operation, at: nil)
        return true
    }

    public func forgetEvents(before date: Date) {
        events = events.filter { $0.value >= date }
    }

    public func claimOwnership(of operation: OperationID, by owner: OperationOwner, staleBefore: Date) -> OperationRecord? {
        guard let index = snapshot.operations.firstIndex(where: { $0.id == operation }) else { return nil }
        var record = snapshot.operations[index]
        guard !record.state.isFinished else { return nil }
        if let current = record.owner, current.instance != owner.instance, current.heartbeat >= staleBefore { return nil }
        record.owner = owner
        store(record, at: index)
        return record
    }

    public func heartbeat(instance: String, at: Date) -> [Renewal] {
        var owned: [Renewal] = []
        for index in snapshot.operations.indices
        where snapshot.operations[index].owner?.instance == instance && !snapshot.operations[index].state.isFinished {
            snapshot.operations[index].owner?.heartbeat = at
            owned.append(Renewal(id: snapshot.operations[index].id, cancelRequest: snapshot.operations[index].cancelRequest))
        }
        changed()
        return owned
    }

    public func releaseOwnership(of operation: OperationID, instance: String) {
        guard let index = snapshot.operations.firstIndex(where: { $0.id == operation }),
              snapshot.operations[index].owner?.instance == instance else { return }
        snapshot.operations[index].owner = nil
        changed()
    }

    public func recordApproval(
        _ approval: Approval, of operation: OperationID, digest: String, audit: AuditEntry
    ) -> ApprovalTally {
        guard let index = snapshot.operations.firstIndex(where: { $0.id == operation }) else { return .unknown }
        let (tally, changed) = snapshot.operations[index].adding(approval, of: digest)
        if let changed {
            snapshot.operations[index] = changed
            appendAudit(audit)
        }
        return tally
    }

    public func requestCancel(_ operation: OperationID, by user: UserID, at: Date) -> OperationRecord? {
        guard let index = snapshot.operations.firstIndex(where: { $0.id == operation }) else { return nil }
        if !snapshot.operations[index].state.isFinished, snapshot.operations[index].cancelRequest == nil {
            snapshot.operations[index].cancelRequest = CancelRequest(by: user, at: at)
            changed()
        }
        return snapshot.operations[index]
    }
}
