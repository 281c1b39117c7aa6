import Foundation
import InferOpsCore

/// What Slack sends over a Socket Mode connection.
public enum SocketModeMessage: Hashable, Sendable {
    /// The connection is ready; envelopes follow.
    case hello
    /// Slack will close this connection: `refresh_requested` and `warning` ask for a new one,
    /// `link_disabled` means the app's Socket Mode was turned off (reconnecting cannot help).
    case disconnect(reason: String)
    /// A command, event or action to acknowledge within 3 s.
    case envelope(SocketModeEnvelope)
    /// Anything else (types Slack adds later); ignored.
    case other(type: String)

    /// - Throws: `JSONValue.ParseError` for text that is not JSON.
    public init(text: String) throws {
        let json = try JSONValue(parsing: text)
        let type = json["type"]?.stringValue ?? ""
        switch type {
        case "hello":
            self = .hello
        case "disconnect":
            self = .disconnect(reason: json["reason"]?.stringValue ?? "unknown")
        default:
            if let id = json["envelope_id"]?.stringValue {
                self = .envelope(SocketModeEnvelope(
                    id: id, type: type, payload: json["payload"] ?? .null,
                    retryAttempt: json["retry_attempt"]?.intValue ?? 0))
            } else {
                self = .other(type: type)
            }
        }
    }
}

/// One envelope: its id (the same on a redelivery), its type (`slash_commands`, `events_api`,
/// `interactive`) and its payload.
public struct SocketModeEnvelope: Hashable, Sendable {
    public var id: String
    public var type: String
    public var payload: JSONValue
    public var retryAttempt: Int

    public init(id: String, type: String, payload: JSONValue, retryAttempt: Int = 0) {
        self.id = id
        self.type = type
        self.payload = payload
        self.retryAttempt = retryAttempt
    }

    /// The acknowledgement Slack waits for: the envelope id and nothing else (InferOps answers in
    /// the channel, never in the acknowledgement's payload).
    public var acknowledgement: String {
        // Envelope ids are UUIDs; escaping keeps the frame valid JSON whatever they hold.
        JSONValue.object(["envelope_id": .string(id)]).canonical
    }
}

/// Turns envelopes into the platform-neutral events the intake takes. Pure: what Slack sent in,
/// a `ChatEvent` (or the reason it is ignored) out.
public struct SlackInbound: Sendable {
    /// The slash command InferOps answers (`/infer`).
    public var command: String
    /// The bot's own user id (from `auth.test`): its mention is taken off a message, and its own
    /// messages are never commands.
    public var botUser: String?

    public init(command: String = "/infer", botUser: String? = nil) {
        self.command = command
        self.botUser = botUser
    }

    public enum Outcome: Hashable, Sendable {
        case event(ChatEvent)
        /// Nothing to do, and why (for the debug log).
        case ignored(String)
    }

    public func translate(_ envelope: SocketModeEnvelope) -> Outcome {
        let payload = envelope.payload
        switch envelope.type {
        case "slash_commands":
            guard let name = payload["command"]?.stringValue, name == command else {
                return .ignored("slash command \(payload["command"]?.stringValue ?? "?") is not \(command)")
            }
            guard let user = payload["user_id"]?.stringValue, let channel = payload["channel_id"]?.stringValue else {
                return .ignored("slash command without user or channel")
            }
            let text = Self.unescape(payload["text"]?.stringValue ?? "")
            return .event(ChatEvent(id: "slack:" + envelope.id, kind: .command("\(command) \(text)"),
                                    user: UserID(user), channel: channel))
        case "events_api":
            return translateEvent(payload)
        case "interactive":
            return translateInteraction(payload, envelope: envelope.id)
        default:
            return .ignored("envelope type \(envelope.type)")
        }
    }

    func translateEvent(_ payload: JSONValue) -> Outcome {
        guard let event = payload["event"], let type = event["type"]?.stringValue else {
            return .ignored("event without an event")
        }
        guard type == "app_mention" else { return .ignored("event type \(type)") }
        // Slack's retries of one event keep its event id; the envelope id may differ.
        guard let id = payload["event_id"]?.stringValue else { return .ignored("event without an event id") }
        if event["bot_id"] != nil || (botUser != nil && event["user"]?.stringValue == botUser) {
            return .ignored("a bot's own message")
        }
        if let subtype = event["subtype"]?.stringValue { return .ignored("message subtype \(subtype)") }
        guard let user = event["user"]?.stringValue, let channel = event["channel"]?.stringValue,
              let ts = event["ts"]?.stringValue
        else { return .ignored("mention without user, channel or ts") }
        // Answered in the mention's thread: the one it was typed in, or a new one under it.
        let thread = event["thread_ts"]?.stringValue ?? ts
        return .event(ChatEvent(id: "slack:" + id, kind: .mention(commandText(ofMention: event["text"]?.stringValue ?? "")),
                                user: UserID(user), channel: channel, thread: thread))
    }

    func translateInteraction(_ payload: JSONValue, envelope: String) -> Outcome {
        guard payload["type"]?.stringValue == "block_actions" else {
            return .ignored("interaction \(payload["type"]?.stringValue ?? "?")")
        }
        guard let action = payload["actions"]?[0], let name = action["action_id"]?.stringValue,
              let blockID = action["block_id"]?.stringValue,
              let operation = SlackRenderer.operation(inActionBlock: blockID)
        else { return .ignored("an action on a block that is not an operation's") }
        guard let user = payload["user"]?["id"]?.stringValue,
              let channel = payload["channel"]?["id"]?.stringValue ?? payload["container"]?["channel_id"]?.stringValue
        else { return .ignored("an action without user or channel") }
        let message = payload["message"]
        let thread = message?["thread_ts"]?.stringValue ?? payload["container"]?["thread_ts"]?.stringValue
            ?? message?["ts"]?.stringValue
        return .event(ChatEvent(
            id: "slack:" + envelope,
            kind: .action(ChatAction(name: name, operation: operation, value: action["value"]?.stringValue ?? "")),
            user: UserID(user), channel: channel, thread: thread))
    }

    /// A mention's text as a command: the bot's mention taken off wherever it is, Slack's escapes undone.
    func commandText(ofMention text: String) -> String {
        var text = text
        if let botUser {
            for form in ["<@\(botUser)>", "<@\(botUser)|"] {
                while let range = text.range(of: form) {
                    if form.hasSuffix("|"), let end = text[range.upperBound...].firstIndex(of: ">") {
                        text.removeSubrange(range.lowerBound...end)
                    } else {
                        text.removeSubrange(range)
                    }
                }
            }
        }
        return Self.unescape(text).trimmingCharacters(in: .whitespaces)
    }

    /// Slack sends `&`, `<` and `>` in message text as entities.
    static func unescape(_ text: String) -> String {
        text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
