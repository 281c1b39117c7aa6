import InferOpsCore
import Synchronization

/// A chat platform that records every post and edit, and lets tests await them.
public final class RecordingChat: ChatTransport, Sendable {
    public struct Event: Sendable, Hashable, CustomStringConvertible {
        public enum Kind: String, Sendable, Hashable { case post, update }

        public var kind: Kind
        public var reply: Reply
        /// Where it was posted; for an edit, the edited message's channel.
        public var conversation: Conversation
        /// The posted message, or the edited one.
        public var message: MessageRef
        public var operation: OperationID?

        /// Everything the reply shows, as plain text.
        public var text: String { reply.plainText }
        public var title: String { reply.title.plainText }
        public var description: String { "\(kind.rawValue) \(message.id) [\(reply.tone.rawValue)] \(reply.title)" }
    }

    public struct State: Sendable {
        public var events: [Event] = []
        var nextMessage = 0
        var holds: [Hold] = []
    }

    struct Hold: Sendable {
        var matches: @Sendable (Reply, Conversation, OperationID?) -> Bool
        var gate: Gate
    }

    private let observed = Observed(State())
    private let connected = Mutex(true)

    public init() {}

    /// What ``isConnected`` answers; tests clear it to see the daemon notice a lost chat.
    public func setConnected(_ value: Bool) { connected.withLock { $0 = value } }
    public var isConnected: Bool { get async { connected.withLock { $0 } } }

    public var events: [Event] { observed.value.events }
    public var posts: [Event] { events.filter { $0.kind == .post } }
    public var updates: [Event] { events.filter { $0.kind == .update } }

    /// Posts that belong to an operation, in order: the status card first, then its thread.
    public func posts(for operation: OperationID) -> [Event] {
        posts.filter { $0.operation == operation }
    }

    /// Every text shown, posts and edits, joined: for checking what users could read.
    public var transcript: String { events.map(\.text).joined(separator: "\n") }

    /// Returns once `condition` holds for the events so far.
    public func waitFor(_ condition: @escaping @Sendable ([Event]) -> Bool) async throws {
        try await observed.wait { condition($0.events) }
    }

    /// Returns the first event matching `predicate`, waiting for it if it has not happened yet.
    @discardableResult
    public func waitForEvent(where predicate: @escaping @Sendable (Event) -> Bool) async throws -> Event {
        try await observed.wait { $0.events.contains(where: predicate) }
        return events.first(where: predicate)!
    }

    /// Holds the next post that matches until the returned gate is opened; the post is recorded then.
    public func holdPost(where matches: @escaping @Sendable (Reply, Conversation, OperationID?) -> Bool) -> Gate {
        let gate = Gate()
        observed.update { $0.holds.append(Hold(matches: matches, gate: gate)) }
        return gate
    }

    @discardableResult
    public func post(_ reply: Reply, in conversation: Conversation, operation: OperationID?) async throws -> MessageRef
    {
        let held = observed.update { state -> Gate? in
            guard let index = state.holds.firstIndex(where: { $0.matches(reply, conversation, operation) }) else {
                return nil
            }
            return state.holds.remove(at: index).gate
        }
        if let held { try await held.pass() }
        return observed.update { state in
            state.nextMessage += 1
            let message = MessageRef(channel: conversation.channel, id: "m\(state.nextMessage)")
            state.events.append(
                Event(kind: .post, reply: reply, conversation: conversation, message: message, operation: operation)
            )
            return message
        }
    }

    public func update(_ message: MessageRef, with reply: Reply, operation: OperationID?) async throws {
        observed.update { state in
            state.events.append(
                Event(
                    kind: .update, reply: reply, conversation: Conversation(channel: message.channel), message: message,
                    operation: operation
                )
            )
        }
    }
}
