import InferOpsCore
import Logging
import Synchronization

/// The Slack side of the chat port: replies rendered as Block Kit and posted with the bot token.
///
/// - A reply with an operation opens or joins its thread (`thread_ts`); replies in one thread are
///   posted one after another, in the order they were given, whatever Slack's rate limits do to
///   each (`SlackWebAPI` waits out a 429 and sends again, and the next post of that thread waits
///   for it).
/// - A reply meant for one person (`privateTo`: a refusal) is ephemeral: only they see it.
/// - Every `ok:false` is logged with its code; the caller gets the `SlackFailure`.
public final class SlackChat: ChatTransport {
    let api: SlackWebAPI
    let logger: Logger
    let threads = InOrder()
    let connected: @Sendable () -> Bool
    /// The `response_url` of recent slash commands per channel: where to say so when the bot may
    /// not post in a channel someone typed `/infer` in.
    let responseURLs = Mutex<[String: (url: String, at: ContinuousClock.Instant)]>([:])

    /// - Parameters:
    ///   - api: the Web API with the *bot* token (`xoxb-…`).
    ///   - connected: whether the Socket Mode connection is up (`/readyz`'s `chat`).
    public init(api: SlackWebAPI, logger: Logger, connected: @escaping @Sendable () -> Bool) {
        self.api = api
        self.logger = logger
        self.connected = connected
    }

    /// The `id` of an ephemeral message: Slack cannot edit one, so an update of it does nothing.
    static let ephemeralPrefix = "ephemeral:"

    @discardableResult
    public func post(_ reply: Reply, in conversation: Conversation, operation: OperationID?) async throws -> MessageRef {
        var arguments = SlackRenderer.render(reply, operation: operation).arguments
        arguments["channel"] = .string(conversation.channel)
        if let thread = conversation.thread { arguments["thread_ts"] = .string(thread) }
        let send = { () async throws -> MessageRef in
            if let user = reply.privateTo {
                arguments["user"] = .string(user.rawValue)
                let answer = try await self.call("chat.postEphemeral", arguments, idempotent: false)
                return MessageRef(channel: conversation.channel,
                                  id: Self.ephemeralPrefix + (answer["message_ts"]?.stringValue ?? ""),
                                  thread: conversation.thread)
            }
            let answer = try await self.call("chat.postMessage", arguments, idempotent: false)
            guard let ts = answer["ts"]?.stringValue else { throw SlackFailure.transient(code: "no_ts") }
            return MessageRef(channel: answer["channel"]?.stringValue ?? conversation.channel, id: ts,
                              thread: conversation.thread)
        }
        // Only a thread's order matters: top-level posts (answers to different commands) go at once.
        guard let thread = conversation.thread else { return try await send() }
        return try await threads.run(conversation.channel + "/" + thread, send)
    }

    public func update(_ message: MessageRef, with reply: Reply, operation: OperationID?) async throws {
        guard !message.id.hasPrefix(Self.ephemeralPrefix) else { return }
        var arguments = SlackRenderer.render(reply, operation: operation).arguments
        arguments["channel"] = .string(message.channel)
        arguments["ts"] = .string(message.id)
        // Edits of the card wait behind the posts of its thread, so the card never runs ahead of them.
        _ = try await threads.run(message.channel + "/" + message.threadRoot) {
            try await self.call("chat.update", arguments, idempotent: true)
        }
    }

    public var isConnected: Bool { connected() }

    /// Remembers a slash command's `response_url` (Slack keeps one usable for 30 minutes).
    public func noteSlashCommand(in channel: String, responseURL: String) {
        let now = ContinuousClock.now
        responseURLs.withLock { urls in
            urls = urls.filter { $0.value.at.duration(to: now) < .seconds(25 * 60) }
            urls[channel] = (responseURL, now)
        }
    }

    /// Slack would not take a post in `channel` (the bot is not in it, it is archived or gone): the
    /// person who typed the command there is told why, through their command's `response_url`,
    /// which needs no membership.
    func tellWhyNot(_ failure: SlackFailure, in channel: String) async {
        guard case .destination(let code) = failure,
              let url = responseURLs.withLock({ $0.removeValue(forKey: channel)?.url }) else { return }
        let why = switch code {
        case "not_in_channel", "channel_not_found":
            "InferOps cannot post in this channel: it is not a member. Invite it with `/invite @inferops`, or use /infer in a channel it is in."
        case "is_archived": "InferOps cannot post in this channel: it is archived."
        default: "InferOps cannot post here (Slack said `\(code)`)."
        }
        do {
            try await api.respond(to: url, ephemeral: ":warning: " + why)
        } catch {
            logger.warning("Slack: response_url not answered", metadata: ["error": "\(error)"])
        }
    }

    /// Adds a reaction to a message (👀 on a mention: seen, the answer follows in its thread). Best
    /// effort: a reaction that fails is logged, never reported.
    public func react(_ name: String, to ts: String, in channel: String) async {
        _ = try? await call("reactions.add", ["channel": .string(channel), "timestamp": .string(ts), "name": .string(name)],
                            idempotent: true)
    }

    func call(_ method: String, _ arguments: [String: JSONValue], idempotent: Bool) async throws -> JSONValue {
        do {
            return try await api.call(method, arguments, idempotent: idempotent)
        } catch let failure as SlackFailure {
            let channel = arguments["channel"]?.stringValue ?? ""
            logger.error("Slack refused a call", metadata: [
                "method": "\(method)", "error": "\(failure.code)", "channel": "\(channel)",
            ])
            await tellWhyNot(failure, in: channel)
            throw failure
        }
    }
}

/// Runs the calls given under one key one at a time, in the order they were given (first come,
/// first served); calls under different keys run side by side.
final class InOrder: Sendable {
    /// Per busy key, the callers waiting for it in order. A key is present while one call runs.
    let waiting = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func run<Result: Sendable>(_ key: String, _ body: () async throws -> Result) async throws -> Result {
        await acquire(key)
        defer { release(key) }
        return try await body()
    }

    func acquire(_ key: String) async {
        await withCheckedContinuation { continuation in
            let free = waiting.withLock { waiting -> Bool in
                guard waiting[key] != nil else {
                    waiting[key] = []
                    return true
                }
                waiting[key]!.append(continuation)
                return false
            }
            if free { continuation.resume() }
        }
    }

    /// Hands the key to the next caller in line, or frees it.
    func release(_ key: String) {
        let next = waiting.withLock { waiting -> CheckedContinuation<Void, Never>? in
            guard var queue = waiting[key], !queue.isEmpty else {
                waiting[key] = nil
                return nil
            }
            let first = queue.removeFirst()
            waiting[key] = queue
            return first
        }
        next?.resume()
    }
}
