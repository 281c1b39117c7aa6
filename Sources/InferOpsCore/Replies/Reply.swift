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
    public var title: String
    /// Further lines of text.
    public var lines: [String]
    /// Label/value pairs, e.g. release, endpoint, digest.
    public var fields: [Field]
    public var table: Table?
    /// What to do next, for failures and refusals.
    public var hint: String?

    public init(
        _ tone: Tone, _ title: String, lines: [String] = [], fields: [Field] = [], table: Table? = nil,
        hint: String? = nil
    ) {
        self.tone = tone
        self.title = title
        self.lines = lines
        self.fields = fields
        self.table = table
        self.hint = hint
    }

    public struct Field: Hashable, Sendable {
        public var label: String
        public var value: String
        public init(_ label: String, _ value: String) {
            self.label = label
            self.value = value
        }
    }

    public struct Table: Hashable, Sendable {
        public var headers: [String]
        public var rows: [[String]]
        public init(headers: [String], rows: [[String]]) {
            self.headers = headers
            self.rows = rows
        }
    }

    /// A refusal or failure whose message is safe to post.
    public static func error(_ error: any UserFacingError) -> Reply {
        Reply(.failure, error.message, hint: error.hint)
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
    public init(channel: String, id: String) {
        self.channel = channel
        self.id = id
    }
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
