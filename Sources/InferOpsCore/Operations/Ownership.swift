import Foundation

/// The request an operation was started with, as data: enough to plan and run it again after a
/// restart, in another process, without the task that accepted it.
public struct OperationRequest: Hashable, Sendable, Codable {
    /// The verb as declared in `commands/`.
    public var verb: String
    public var arguments: [String: String]
    /// Option values by option name; a flag that is present has one empty value.
    public var options: [String: [String]]
    public var requester: UserID
    /// Where the command was typed, and the thread it was typed in, if any.
    public var channel: String
    public var thread: String?
    /// The operating-system account behind a console or `inferops exec` command.
    public var osUser: String?
    /// The chat platform's id of the event that carried the command.
    public var event: String?

    public init(
        verb: String, arguments: [String: String] = [:], options: [String: [String]] = [:], requester: UserID,
        channel: String, thread: String? = nil, osUser: String? = nil, event: String? = nil
    ) {
        self.verb = verb
        self.arguments = arguments
        self.options = options
        self.requester = requester
        self.channel = channel
        self.thread = thread
        self.osUser = osUser
        self.event = event
    }

    public init(_ parsed: ParsedCommand, requester: UserID, channel: String, thread: String? = nil,
                osUser: String? = nil, event: String? = nil) {
        self.init(verb: parsed.verb, arguments: parsed.arguments, options: parsed.options, requester: requester,
                  channel: channel, thread: thread, osUser: osUser, event: event)
    }

    /// The command as parsed, to validate and plan again.
    public var parsed: ParsedCommand { ParsedCommand(verb: verb, arguments: arguments, options: options) }

    /// The `--reason` given, if any.
    public var reason: String? { options["reason"]?.last }
}

/// Which daemon runs an operation. Only the owner acts on it; the heartbeat tells the others that
/// the owner is alive. An owner whose heartbeat is older than the lease is presumed dead, and any
/// daemon may take the operation over and recover it.
public struct OperationOwner: Hashable, Sendable, Codable {
    /// Random per daemon start: a restarted daemon is a new instance even with the same pid.
    public var instance: String
    public var host: String
    public var pid: Int32
    /// When the owner last said it was alive.
    public var heartbeat: Date

    public init(instance: String, host: String, pid: Int32, heartbeat: Date) {
        self.instance = instance
        self.host = host
        self.pid = pid
        self.heartbeat = heartbeat
    }

    /// `host pid 123 (instance 9f2c…)`, for messages.
    public var description: String { "\(host) pid \(pid) (instance \(instance.prefix(8)))" }
}

/// Someone asked for a running operation to stop; its owner carries it out.
public struct CancelRequest: Hashable, Sendable, Codable {
    public var by: UserID
    public var at: Date

    public init(by: UserID, at: Date) {
        self.by = by
        self.at = at
    }
}

/// What an operation recorded about reality before a side effect, so a resumed operation can tell
/// whether the side effect happened: the release's revision before `helm upgrade`, the revision an
/// automatic rollback goes back to.
public struct Checkpoint: Hashable, Sendable, Codable {
    /// The release's revision before the operation applied anything (`nil`: not installed).
    public var revisionBefore: Int?
    /// Whether `revisionBefore` was read (a release that did not exist reads as `nil` too).
    public var applyStarted: Bool
    /// The revision an automatic rollback restores.
    public var lastGood: Int?
    /// The revision being rolled back to, once chosen, and the release's revision when it began:
    /// a deployed revision newer than that one is the rollback done.
    public var rollbackTarget: Int?
    public var rollbackFrom: Int?
    /// How many times the operation was resumed after its owner stopped.
    public var resumptions: Int
    /// The revision Helm marked failed because this daemon stopped it (a stop past its bound): a
    /// resumed deploy applies again instead of taking it for a failed rollout.
    public var stoppedRevision: Int?

    public init(revisionBefore: Int? = nil, applyStarted: Bool = false, lastGood: Int? = nil,
                rollbackTarget: Int? = nil, rollbackFrom: Int? = nil, resumptions: Int = 0) {
        self.rollbackFrom = rollbackFrom
        self.revisionBefore = revisionBefore
        self.applyStarted = applyStarted
        self.lastGood = lastGood
        self.rollbackTarget = rollbackTarget
        self.resumptions = resumptions
    }
}

/// One inbound chat event: a command, a mention of the bot, or a button action, with the ids the
/// platform gave it. Redelivered events carry the same `id`.
public struct ChatEvent: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// A slash command or a console line: `/infer deploy …`.
        case command(String)
        /// A message that mentions the bot, its text without the mention.
        case mention(String)
        /// A button on a reply was pressed.
        case action(ChatAction)
    }

    /// Unique per platform (`console:17`, a Slack envelope's event id); the intake drops repeats.
    public var id: String
    public var kind: Kind
    /// The platform's immutable user id.
    public var user: UserID
    public var channel: String
    /// The thread the event was posted in, when it was.
    public var thread: String?
    /// The operating-system account, for the console and `inferops exec`.
    public var osUser: String?

    public init(id: String, kind: Kind, user: UserID, channel: String, thread: String? = nil, osUser: String? = nil) {
        self.id = id
        self.kind = kind
        self.user = user
        self.channel = channel
        self.thread = thread
        self.osUser = osUser
    }
}

/// A button pressed on a reply (Approve, Deny).
public struct ChatAction: Hashable, Sendable {
    /// The action's name as the reply declared it.
    public var name: String
    /// The operation the reply belongs to.
    public var operation: OperationID
    /// What the button carries (the plan digest an approval binds to).
    public var value: String

    public init(name: String, operation: OperationID, value: String) {
        self.name = name
        self.operation = operation
        self.value = value
    }
}
