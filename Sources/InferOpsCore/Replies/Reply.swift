/// A platform-neutral reply. Each chat transport renders it its own way; handlers never format
/// for a platform.
public struct Reply: Hashable, Sendable {
    public enum Tone: String, Hashable, Sendable, Codable {
        /// Neutral information (help, status).
        case info
        /// A step of an operation is under way or done.
        case progress
        case success
        case warning
        case failure
    }

    public var tone: Tone
    /// The first line.
    public var title: RichText
    /// Further lines of text.
    public var lines: [RichText]
    /// Label/value pairs, e.g. release, endpoint, digest.
    public var fields: [Field]
    public var table: Table?
    /// What to do next, for failures and refusals.
    public var hint: RichText?
    /// Buttons (Approve, Deny) for a platform that has them; each names the command that does the
    /// same, for one that has not.
    public var actions: [Action] = []
    /// Shown only to this person where the platform can (Slack's ephemeral messages): refusals and
    /// errors of a command concern the one who typed it. The console shows everything to whoever
    /// sits at it.
    public var privateTo: UserID?

    /// - Parameters:
    ///   - lines: `String`s are InferOps' own words; text from outside goes in as `RichText`.
    public init(
        _ tone: Tone, _ title: RichText, lines: [any RichTextConvertible] = [], fields: [Field] = [],
        table: Table? = nil, hint: (any RichTextConvertible)? = nil
    ) {
        self.tone = tone
        self.title = title
        self.lines = lines.map(\.richText)
        self.fields = fields
        self.table = table
        self.hint = hint?.richText
    }

    /// A title of InferOps' own words; text from outside goes in as `RichText` (`\(user: …)`).
    @_disfavoredOverload
    public init(
        _ tone: Tone, _ title: String, lines: [any RichTextConvertible] = [], fields: [Field] = [],
        table: Table? = nil, hint: (any RichTextConvertible)? = nil
    ) {
        self.init(tone, RichText(title), lines: lines, fields: fields, table: table, hint: hint)
    }

    public struct Field: Hashable, Sendable {
        public var label: String
        public var value: RichText
        public init(_ label: String, _ value: any RichTextConvertible) {
            self.label = label
            self.value = value.richText
        }
    }

    /// A button on a reply. Pressing it is an inbound `ChatAction` with this name and value.
    public struct Action: Hashable, Sendable {
        public enum Style: String, Hashable, Sendable { case primary, danger, plain }
        public var name: String
        public var label: String
        public var value: String
        public var style: Style
        /// Asked before the action is sent ("Approve deploy of …?"), when it needs confirming.
        public var confirmation: String?
        /// The command that does the same, for the console.
        public var command: String

        public init(name: String, label: String, value: String, style: Style = .plain, confirmation: String? = nil,
                    command: String) {
            self.name = name
            self.label = label
            self.value = value
            self.style = style
            self.confirmation = confirmation
            self.command = command
        }
    }

    public struct Table: Hashable, Sendable {
        public var headers: [String]
        public var rows: [[RichText]]
        public init(headers: [String], rows: [[any RichTextConvertible]]) {
            self.headers = headers
            self.rows = rows.map { $0.map(\.richText) }
        }
    }

    /// The reply as plain lines (title, lines, `label: value` fields, table rows, hint), for logs
    /// and tests: mentions as `@id`, user text as it came, nothing escaped.
    public var plainText: String {
        var out = ([title] + lines + fields.map { "\($0.label): \($0.value)" }).map(\.plainText)
        if let table {
            out.append(table.headers.joined(separator: " | "))
            out += table.rows.map { $0.map(\.plainText).joined(separator: " | ") }
        }
        if let hint { out.append(hint.plainText) }
        return out.joined(separator: "\n")
    }

    /// A refusal or failure whose message is safe to post.
    public static func error(_ error: any UserFacingError) -> Reply {
        Reply(.failure, error.text, hint: error.hint)
    }
}

/// Where a reply goes: a channel, and a thread in it when the reply belongs to an operation.
public struct Conversation: Hashable, Sendable, Codable {
    public var channel: String
    public var thread: String?
    public init(channel: String, thread: String? = nil) {
        self.channel = channel
        self.thread = thread
    }
}

/// A posted message, so it can be edited (the status card) or replied to (the thread).
public struct MessageRef: Hashable, Sendable, Codable {
    public var channel: String
    public var id: String
    /// The thread the message was posted in, when it is a reply: replies to it belong there (Slack
    /// wants a thread's first message, never a reply, as the thread of a new reply).
    public var thread: String?
    public init(channel: String, id: String, thread: String? = nil) {
        self.channel = channel
        self.id = id
        self.thread = thread
    }

    /// The thread that replies to this message go in: its own thread, or the message itself.
    public var threadRoot: String { thread ?? id }
}

/// Posts replies to a chat platform (console, Slack, Mattermost).
public protocol ChatTransport: Sendable {
    /// Posts a reply; with `operation`, the reply opens or joins that operation's thread.
    @discardableResult
    func post(_ reply: Reply, in conversation: Conversation, operation: OperationID?) async throws -> MessageRef
    /// Edits a message in place (the status card at the top of an operation's thread).
    func update(_ message: MessageRef, with reply: Reply, operation: OperationID?) async throws
    /// Whether replies can be delivered now (the console's output accepts writes, a chat
    /// platform's connection is up); `/readyz` reports it as `chat`. Must answer promptly.
    var isConnected: Bool { get async }
}
