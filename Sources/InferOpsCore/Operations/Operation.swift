import Foundation

/// What an operation does.
public enum OperationKind: String, Hashable, Sendable, Codable, CaseIterable {
    case deploy, rollback, lock, unlock, cancel
    case register, deregister, enable, disable
    /// Takes a model out of the router, uninstalls its release and checks its GPUs are free.
    case remove
    /// A deploy of what was verified in another environment (`PromotionPlanner`).
    case promote

    /// Whether it installs or upgrades a release with a plan: a deploy or a promotion.
    public var deploysPlan: Bool { self == .deploy || self == .promote }
}

/// The life of an operation (DESIGN §3). Every change is recorded before its side effect.
public enum OperationState: String, Hashable, Sendable, Codable, CaseIterable {
    case requested, planned
    /// Waiting for a second person (production); then approved, or ended as denied or expired.
    case awaitingApproval = "awaiting_approval"
    case approved
    case queued, prechecking, applying
    case waitingReady = "waiting_ready"
    case warming, verifying
    /// Changing the router's registry (register, deregister, enable, disable, or after a deploy).
    case registering
    case rollingBack = "rolling_back"
    case succeeded, failed
    case rolledBack = "rolled_back"
    case cancelled
    case denied, expired
    /// Its daemon stopped and it could not be resumed safely; the reason is its outcome.
    case interrupted

    public var isFinished: Bool {
        switch self {
        case .succeeded, .failed, .rolledBack, .cancelled, .denied, .expired, .interrupted: true
        default: false
        }
    }

    /// The states each state may move to. Anything unfinished may fail, be cancelled or be
    /// interrupted.
    public var successors: Set<OperationState> {
        let ending: Set<OperationState> = [.failed, .cancelled, .interrupted]
        switch self {
        case .requested: return ending.union([.planned])
        case .planned: return ending.union([.queued, .succeeded, .awaitingApproval])
        case .awaitingApproval: return ending.union([.approved, .denied, .expired])
        // An approved plan that changed before it ran asks again.
        case .approved: return ending.union([.queued, .awaitingApproval])
        case .queued: return ending.union([.prechecking])
        // A resumed operation goes back to `prechecking` to check reality, then on to the step that
        // is still to do: the engines (`waiting_ready`), the GPUs after a remove (`verifying`), the router.
        case .prechecking: return ending.union([.applying, .registering, .waitingReady, .verifying])
        // `remove` applies after the router step (verifying) and then verifies the GPUs are free.
        case .applying: return ending.union([.waitingReady, .rollingBack, .succeeded, .verifying, .prechecking])
        case .waitingReady: return ending.union([.warming, .verifying, .rollingBack, .prechecking])
        case .warming: return ending.union([.verifying, .rollingBack, .prechecking])
        case .verifying: return ending.union([.succeeded, .registering, .rollingBack, .applying, .prechecking])
        case .registering: return ending.union([.succeeded, .verifying, .prechecking])
        case .rollingBack: return [.rolledBack, .failed, .cancelled, .interrupted]
        case .succeeded, .failed, .rolledBack, .cancelled, .denied, .expired, .interrupted: return []
        }
    }

    public func canMove(to next: OperationState) -> Bool { successors.contains(next) }
}

/// A durable record of one command that changes something.
public struct OperationRecord: Hashable, Sendable, Codable, Identifiable {
    public var id: OperationID
    public var kind: OperationKind
    public var requester: UserID
    public var environment: String
    /// The model, for deploy and rollback.
    public var model: String?
    /// The release target, for deploy and rollback.
    public var target: ReleaseTarget?
    public var state: OperationState
    /// The canonical plan as JSON, when there is one.
    public var plan: JSONValue?
    public var planDigest: String?
    /// The Helm revision the operation produced or restored, once known.
    public var revision: Int?
    /// Every Helm revision the operation made, oldest first: a failed upgrade's revision and the
    /// revision of the automatic rollback that followed it both belong to the operation.
    public var revisions: [Int]
    /// The command as typed, after parsing (never containing secrets).
    public var command: String
    /// The chat thread the operation reports into.
    public var thread: String?
    /// The last user-facing outcome message.
    public var outcome: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// The request as data, for the runner (and a restarted daemon) to plan and run it.
    public var request: OperationRequest?
    /// The status card at the top of the thread, edited in place as the operation progresses.
    public var card: MessageRef?
    /// What the operation read before its side effects, so a resumed one can tell what happened.
    public var checkpoint: Checkpoint
    /// The daemon running it, and its heartbeat. Changed only by the store's ownership methods;
    /// `update(_:from:)` leaves it as stored.
    public var owner: OperationOwner?
    /// A cancel asked for by someone, for the owner to carry out. Changed only by
    /// `requestCancel`; `update(_:from:)` leaves it as stored.
    public var cancelRequest: CancelRequest?
    /// The open request for approval (`awaiting_approval`) and the approvals given, kept once
    /// decided. Approvals are added only by `OperationStore.recordApproval`.
    public var approval: ApprovalRequest?

    public init(
        id: OperationID, kind: OperationKind, requester: UserID, environment: String, model: String? = nil,
        target: ReleaseTarget? = nil, state: OperationState = .requested, plan: JSONValue? = nil,
        planDigest: String? = nil, revision: Int? = nil, revisions: [Int] = [], command: String,
        thread: String? = nil, outcome: String? = nil,
        createdAt: Date, updatedAt: Date? = nil, request: OperationRequest? = nil, card: MessageRef? = nil,
        checkpoint: Checkpoint = Checkpoint(), owner: OperationOwner? = nil, cancelRequest: CancelRequest? = nil,
        approval: ApprovalRequest? = nil
    ) {
        self.id = id
        self.kind = kind
        self.requester = requester
        self.environment = environment
        self.model = model
        self.target = target
        self.state = state
        self.plan = plan
        self.planDigest = planDigest
        self.revision = revision
        self.revisions = revisions
        self.command = command
        self.thread = thread
        self.outcome = outcome
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.request = request
        self.card = card
        self.checkpoint = checkpoint
        self.owner = owner
        self.cancelRequest = cancelRequest
        self.approval = approval
    }
}

/// One step in an operation's journal.
public struct JournalEntry: Hashable, Sendable, Codable {
    public var operation: OperationID
    public var at: Date
    /// The state the operation was in when this was written.
    public var state: OperationState
    public var message: String
    /// How long the step took, when it is the end of a step.
    public var duration: Duration?

    public init(operation: OperationID, at: Date, state: OperationState, message: String, duration: Duration? = nil) {
        self.operation = operation
        self.at = at
        self.state = state
        self.message = message
        self.duration = duration
    }
}

/// One line of the append-only audit log: who did what where, and how it ended.
public struct AuditEntry: Hashable, Sendable, Codable {
    public var at: Date
    public var actor: UserID
    /// The verb as declared in `commands/`.
    public var action: String
    public var environment: String?
    /// What it acted on: a model, a release, an operation id.
    public var subject: String?
    /// `accepted`, `denied`, `refused`, `succeeded`, `failed`, `rolled_back`, `cancelled`.
    public var outcome: String
    public var operation: OperationID?
    public var detail: String?
    /// Where the command came from: a chat channel, `console` or `exec`.
    public var channel: String?
    /// The operating-system account that typed the command, for the console and `inferops exec`,
    /// where the chat user is only what `--as` or `/as` claimed. Chat platforms leave it empty.
    public var osUser: String?

    public init(
        at: Date, actor: UserID, action: String, environment: String? = nil, subject: String? = nil,
        outcome: String, operation: OperationID? = nil, detail: String? = nil, channel: String? = nil,
        osUser: String? = nil
    ) {
        self.at = at
        self.actor = actor
        self.action = action
        self.environment = environment
        self.subject = subject
        self.outcome = outcome
        self.operation = operation
        self.detail = detail
        self.channel = channel
        self.osUser = osUser
    }
}

/// The last successful test completion against a model in an environment.
public struct Verification: Hashable, Sendable, Codable {
    public var model: String
    public var environment: String
    public var operation: OperationID
    public var at: Date
    public var latency: Duration
    /// The Helm revision that was verified.
    public var revision: Int?

    public init(model: String, environment: String, operation: OperationID, at: Date, latency: Duration, revision: Int?) {
        self.model = model
        self.environment = environment
        self.operation = operation
        self.at = at
        self.latency = latency
        self.revision = revision
    }
}

/// An environment lock: while held, nobody else may change the environment.
public struct EnvironmentLock: Hashable, Sendable, Codable {
    public var environment: String
    public var holder: UserID
    public var reason: String?
    public var since: Date

    public init(environment: String, holder: UserID, reason: String?, since: Date) {
        self.environment = environment
        self.holder = holder
        self.reason = reason
        self.since = since
    }
}

/// An unfinished operation as lists and the runner's rounds look at it: who owns it and where it
/// stands, without its plan, request or checkpoint (the costly parts to read back).
public struct OperationSummary: Hashable, Sendable {
    public var id: OperationID
    public var kind: OperationKind
    public var state: OperationState
    public var environment: String
    public var model: String?
    /// The release it acts on, when it acts on one.
    public var release: String?
    public var owner: OperationOwner?
    public var createdAt: Date

    public init(
        id: OperationID, kind: OperationKind, state: OperationState, environment: String, model: String?,
        release: String?, owner: OperationOwner?, createdAt: Date
    ) {
        self.id = id
        self.kind = kind
        self.state = state
        self.environment = environment
        self.model = model
        self.release = release
        self.owner = owner
        self.createdAt = createdAt
    }

    public init(_ record: OperationRecord) {
        self.init(
            id: record.id, kind: record.kind, state: record.state, environment: record.environment,
            model: record.model, release: record.target?.release, owner: record.owner, createdAt: record.createdAt
        )
    }
}
