import Foundation

/// Which operations of an environment wait for a second person, how many, and for how long.
public struct ApprovalPolicy: Hashable, Sendable {
    /// The verbs whose operations wait for approval here.
    public var verbs: Set<String>
    /// Distinct approvers needed; one person approving twice counts once.
    public var approvals: Int
    /// How long a request stays open; after that the operation ends as `expired` and runs nothing.
    public var validFor: Duration

    public init(verbs: Set<String> = [], approvals: Int = 1, validFor: Duration = .seconds(30 * 60)) {
        self.verbs = verbs
        self.approvals = approvals
        self.validFor = validFor
    }

    /// What an environment called `production` asks for unless its configuration says otherwise.
    public static let productionVerbs: Set<String> = [
        "deploy", "promote", "rollback", "remove", "register", "deregister", "enable", "disable",
    ]

    /// Nothing waits.
    public static let noApproval = ApprovalPolicy()

    /// The default for an environment of this name: production's verbs wait for one approval.
    public static func defaultPolicy(forEnvironment name: String) -> ApprovalPolicy {
        name == "production" ? ApprovalPolicy(verbs: productionVerbs) : .noApproval
    }

    public func requires(_ verb: String) -> Bool { verbs.contains(verb) }
}

/// An operation's request for approval, stored with it: what the approvals bind to, how many are
/// needed, until when, and who has approved so far.
public struct ApprovalRequest: Hashable, Sendable, Codable {
    /// The plan digest the approvals are for. An approval given for another digest does not count.
    public var digest: String
    public var required: Int
    public var requestedAt: Date
    public var expiresAt: Date
    /// Approvals of `digest`, in the order given; one per person.
    public var approvals: [Approval]
    /// The posted request (with its buttons), edited to show the decision once there is one.
    public var message: MessageRef?

    public init(digest: String, required: Int, requestedAt: Date, expiresAt: Date, approvals: [Approval] = []) {
        self.digest = digest
        self.required = required
        self.requestedAt = requestedAt
        self.expiresAt = expiresAt
        self.approvals = approvals
    }

    public var isSatisfied: Bool { Set(approvals.map(\.by)).count >= required }

    public func isExpired(at date: Date) -> Bool { date >= expiresAt }

    public func approved(by user: UserID) -> Bool { approvals.contains { $0.by == user } }
}

/// One person's yes.
public struct Approval: Hashable, Sendable, Codable {
    public var by: UserID
    public var at: Date
    public var reason: String?

    public init(by: UserID, at: Date, reason: String? = nil) {
        self.by = by
        self.at = at
        self.reason = reason
    }
}

/// How the store took an approval (see `OperationStore.recordApproval`).
public enum ApprovalTally: Hashable, Sendable {
    /// Counted: the operation as stored afterwards.
    case counted(OperationRecord)
    /// This person had already approved this digest: nothing changed.
    case alreadyApproved(OperationRecord)
    /// It no longer awaits an approval of this digest (decided, ended, or its plan changed).
    case notAwaiting(OperationRecord)
    /// The request's time ran out.
    case expired(OperationRecord)
    case unknown
}

/// A decision on an operation awaiting approval, from a command or a button.
public enum ApprovalDecision: String, Hashable, Sendable {
    case approve, deny
}

extension OperationRecord {
    /// What recording `approval` of `digest` does to this operation, as both stores apply it inside
    /// one transaction: the tally, and the record to write when it changed.
    public func adding(_ approval: Approval, of digest: String) -> (tally: ApprovalTally, changed: OperationRecord?) {
        guard state == .awaitingApproval, var request = self.approval, request.digest == digest else {
            return (.notAwaiting(self), nil)
        }
        if request.isExpired(at: approval.at) { return (.expired(self), nil) }
        if request.approved(by: approval.by) { return (.alreadyApproved(self), nil) }
        request.approvals.append(approval)
        var changed = self
        changed.approval = request
        changed.updatedAt = approval.at
        return (.counted(changed), changed)
    }
}
