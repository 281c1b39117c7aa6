import Foundation

/// Durable records: operations and their journals, the audit log, verifications and locks.
///
/// Intent-level methods only; adapters own the schema and its migrations.
public protocol OperationStore: Sendable {
    /// Records a new operation.
    func insert(_ operation: OperationRecord) async throws
    /// Replaces the stored operation with `operation` (same id), in one step with checking that the
    /// stored one is still in `expectedState`: the state the caller last read or wrote. Used for state,
    /// plan, thread, card, checkpoint and outcome; never for `owner` and `cancelRequest`, which keep
    /// their stored values (they change only through the ownership methods below). So a record that another process closed (a `cancel` from
    /// `inferops exec`) is never written back to a running state.
    /// - Throws: `OperationAlreadyEnded` when the stored operation has finished meanwhile;
    ///   `OperationStateConflict` when it is in another unfinished state.
    func update(_ operation: OperationRecord, from expectedState: OperationState) async throws
    func operation(_ id: OperationID) async throws -> OperationRecord?
    /// Ends an operation in one transaction: its final state (as `update(_:from:)` writes it), the
    /// journal's last entry and the audit row of its end. A daemon killed at any moment leaves either
    /// all three or none, so a finished operation always has its end journaled and audited.
    func recordEnd(_ operation: OperationRecord, from expectedState: OperationState, journal: JournalEntry,
                   audit: AuditEntry) async throws
    /// Atomically moves `operation` to `prechecking` unless another unfinished operation in a state of
    /// `OperationState.holdingRelease` acts on the same release; returns that operation instead.
    /// This is what keeps two daemons (or `inferops exec` runs) from interleaving on one release.
    /// - Throws: `OperationAlreadyEnded` when `operation` was closed meanwhile (cancelled elsewhere).
    func claimRelease(for operation: OperationID, release: String, at: Date) async throws -> OperationRecord?
    /// Operations not yet finished, oldest first.
    func unfinishedOperations() async throws -> [OperationRecord]
    /// The same operations, oldest first, as summaries: read without their plans, requests and
    /// checkpoints, for `status` and the runner's rounds, which run often and need only these.
    func unfinishedSummaries() async throws -> [OperationSummary]
    /// The newest operations, newest first, optionally for one model and/or environment.
    func recentOperations(model: String?, environment: String?, limit: Int) async throws -> [OperationRecord]
    /// The newest operations of `model` in `environment` that made Helm revisions (a `revision` or
    /// `revisions`), newest first: who made each revision, for `history`.
    func revisionMakers(model: String, environment: String, limit: Int) async throws -> [OperationRecord]

    func appendJournal(_ entry: JournalEntry) async throws
    /// The journal of one operation, in order.
    func journal(of operation: OperationID) async throws -> [JournalEntry]

    func appendAudit(_ entry: AuditEntry) async throws
    /// The whole audit log, oldest first.
    func auditLog() async throws -> [AuditEntry]

    func recordVerification(_ verification: Verification) async throws
    func lastVerification(model: String, environment: String) async throws -> Verification?
    /// Verifications made at or after `since`, newest first, optionally for one model and/or
    /// environment: the evidence a promotion looks for, and the SLO report's verification latencies.
    func verifications(model: String?, environment: String?, since: Date) async throws -> [Verification]

    /// Records the desired routing of a model in an environment, in one step with checking that the
    /// stored one is still the one the caller decided from: at `expectedVersion`, or absent when it is
    /// `nil`. A change made meanwhile (a `disable` while the reconciler waited on the cluster) is
    /// therefore never overwritten.
    /// - Returns: the registration as stored, with its new version; `nil` when the stored one changed.
    func updateRegistration(_ registration: Registration, expectedVersion: Int?) async throws -> Registration?
    func registration(model: String, environment: String) async throws -> Registration?
    /// Forgets a registration if it is still at `expectedVersion` (used only to undo one that never
    /// reached the router); returns whether it did.
    func removeRegistration(model: String, environment: String, expectedVersion: Int) async throws -> Bool
    /// Every registration, sorted by environment then model.
    func registrations() async throws -> [Registration]

    /// Takes the lock; returns the existing lock instead when someone already holds it.
    func acquireLock(_ lock: EnvironmentLock) async throws -> EnvironmentLock?
    /// Releases the lock and returns it, or `nil` when the environment was not locked.
    func releaseLock(environment: String) async throws -> EnvironmentLock?
    func locks() async throws -> [EnvironmentLock]

    // MARK: intake and ownership

    /// Records an inbound chat event and, when it starts one, the operation with its first journal
    /// entry and audit line, in one transaction keyed by the event id: a redelivered event (same id)
    /// records nothing and returns `false`. Event ids are kept until `forgetEvents(before:)` drops
    /// them (the intake keeps them at least 10 minutes).
    /// - Throws: `EnvironmentLocked` when the acceptance asks for it and the operation's environment
    ///   is locked by someone other than its requester (checked in the same transaction, so a lock
    ///   taken at the same moment is never passed by); nothing is recorded then.
    func accept(event: String, at: Date, starting: Acceptance?) async throws -> Bool
    /// Drops event ids accepted before `date`.
    func forgetEvents(before date: Date) async throws
    /// Makes `owner` the owner of an unfinished operation that has no owner, is already `owner`'s
    /// instance, or whose owner's heartbeat is older than `staleBefore`, in one transaction.
    /// - Returns: the operation as claimed (with its new owner), or `nil` when it is finished,
    ///   unknown, or held by a live owner.
    func claimOwnership(of operation: OperationID, by owner: OperationOwner, staleBefore: Date) async throws -> OperationRecord?
    /// Renews the heartbeat of every unfinished operation `instance` owns, in one transaction.
    /// - Returns: those operations, oldest first, each with the cancel asked for it elsewhere, if any.
    func heartbeat(instance: String, at: Date) async throws -> [Renewal]
    /// Gives an operation up (a graceful stop): no owner, state as it is, for the next start to resume.
    func releaseOwnership(of operation: OperationID, instance: String) async throws
    /// Records that `user` asked for an unfinished operation to stop, for its owner to carry out.
    /// - Returns: the operation as stored afterwards; `nil` when there is no such operation.
    ///   A finished operation is returned unchanged.
    func requestCancel(_ operation: OperationID, by user: UserID, at: Date) async throws -> OperationRecord?
    /// Adds `approval` to an operation awaiting approval of `digest`, with `audit`, in one
    /// transaction that checks it still awaits one for that digest, has not expired at
    /// `approval.at`, and has no approval from the same person (`OperationRecord.adding`). Two
    /// approvers at once are both counted; the same one twice, once. It never changes the state:
    /// the caller moves a satisfied request on with `update(_:from:)`.
    func recordApproval(_ approval: Approval, of operation: OperationID, digest: String, audit: AuditEntry)
        async throws -> ApprovalTally
}

/// The operation was closed (cancelled) before it could claim its release; it must not run.
public struct OperationAlreadyEnded: Error, Equatable, Sendable {
    public var operation: OperationID
    public var state: OperationState
    public init(operation: OperationID, state: OperationState) {
        self.operation = operation
        self.state = state
    }
}

/// The stored operation is not in the state its writer expected: two writers act on one operation.
public struct OperationStateConflict: Error, Equatable, Sendable {
    public var operation: OperationID
    public var expected: OperationState
    public var found: OperationState
    public init(operation: OperationID, expected: OperationState, found: OperationState) {
        self.operation = operation
        self.expected = expected
        self.found = found
    }
}

extension OperationState {
    /// States in which an operation acts on its release; only one operation per release may be in them.
    public static let holdingRelease: Set<OperationState> = [
        .prechecking, .applying, .waitingReady, .warming, .verifying, .registering, .rollingBack,
    ]
}

/// What an accepted event starts: the operation, and the journal entry and audit line that say so,
/// written with the event id in one transaction.
public struct Acceptance: Sendable {
    public var operation: OperationRecord
    public var journal: JournalEntry?
    public var audit: AuditEntry?
    /// Whether a lock on the operation's environment held by anyone but its requester refuses it.
    public var respectsLocks: Bool

    public init(_ operation: OperationRecord, journal: JournalEntry? = nil, audit: AuditEntry? = nil,
                respectsLocks: Bool = false) {
        self.operation = operation
        self.journal = journal
        self.audit = audit
        self.respectsLocks = respectsLocks
    }

    /// The lock that refuses this acceptance, from the environment's lock (if any).
    public func refusingLock(_ lock: EnvironmentLock?) -> EnvironmentLocked? {
        guard respectsLocks, let lock, lock.holder != operation.requester else { return nil }
        return EnvironmentLocked(lock: lock)
    }
}

/// An operation was not accepted: its environment is locked by someone else.
public struct EnvironmentLocked: Error, Equatable, Sendable {
    public var lock: EnvironmentLock
    public init(lock: EnvironmentLock) { self.lock = lock }
}

/// An operation a heartbeat renewed, and the cancel asked for it, if any: what the owner needs each
/// second, without reading the whole operation.
public struct Renewal: Hashable, Sendable {
    public var id: OperationID
    public var cancelRequest: CancelRequest?

    public init(id: OperationID, cancelRequest: CancelRequest? = nil) {
        self.id = id
        self.cancelRequest = cancelRequest
    }
}
