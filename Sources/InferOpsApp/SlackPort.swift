import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsSlack
import InferOpsWebSocket
import Logging
import ServiceLifecycle
import Synchronization

/// The Slack chat port, both ways: envelopes from Socket Mode go to the intake (acknowledged first,
/// then accepted: the intake's durable event ids drop redeliveries), replies go out through the
/// Web API with the bot token.
public final class SlackPort: Sendable {
    public let chat: SlackChat
    let socket: SocketModeClient
    let http: CurlHTTPClient
    let websockets: WebSocketRuntime
    let inbound: SlackInbound
    /// Set once the runtime exists (it needs `chat` first).
    let intake = Slot<Intake>()
    let logger: Logger
    /// Who the bot is, from `auth.test`: `@inferops in Acme (T…)`.
    public let identity: String
    /// The two tokens, for the redactor: they never reach a reply, a log line or the audit log.
    public let secrets: [String]

    /// Reads the tokens, checks the bot token with `auth.test`, and prepares the connection (opened by `run`).
    /// - Throws: `Refusal` naming what is missing or refused, and how to fix it.
    public static func connect(_ settings: SlackSettings, logger: Logger,
                               environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> SlackPort {
        let appToken = try SecretReading.read(settings.appToken, what: "Slack's app-level token (chat.slack.appToken)",
                                              prefix: "xapp-", environment: environment)
        let botToken = try SecretReading.read(settings.botToken, what: "Slack's bot token (chat.slack.botToken)",
                                              prefix: "xoxb-", environment: environment)
        let http = try CurlHTTPClient()
        let webAPI = SlackWebAPI.Settings(baseURL: settings.apiURL)
        let bot = SlackWebAPI(http: http, token: botToken, settings: webAPI)
        let who: JSONValue
        do {
            who = try await bot.call("auth.test", [:], idempotent: true)
        } catch let failure as SlackFailure {
            await http.shutdown()
            if case .credentials(let code, _) = failure {
                throw Refusal("Slack refused the bot token (\(code)).",
                              hint: "Install the app to the workspace and give InferOps its Bot User OAuth Token (xoxb-…).")
            }
            throw Refusal("Slack's auth.test failed: \(failure.code).", hint: "Check chat.slack.apiURL and Slack's status.")
        } catch {
            await http.shutdown()
            throw Refusal("Slack cannot be reached at \(settings.apiURL): \(error).",
                          hint: "Check the network (and HTTPS_PROXY) from this machine to Slack.")
        }
        let websockets: WebSocketRuntime
        do {
            // The watchdog: a ping after a third of the silence allowed, a hang-up when it is all gone.
            websockets = try WebSocketRuntime(configuration: .init(
                pingInterval: .seconds(max(1, settings.watchdog.seconds / 3)), idleTimeout: settings.watchdog,
                logger: logger))
        } catch {
            await http.shutdown()
            throw Refusal("The WebSocket client did not start: \(error).", hint: "Check that libwebsockets is installed (scripts/install-deps).")
        }
        let app = SlackWebAPI(http: http, token: appToken, settings: webAPI)
        return SlackPort(http: http, websockets: websockets, bot: bot, app: app, who: who, settings: settings,
                         logger: logger, secrets: [appToken.reveal(), botToken.reveal()])
    }

    init(http: CurlHTTPClient, websockets: WebSocketRuntime, bot: SlackWebAPI, app: SlackWebAPI, who: JSONValue,
         settings: SlackSettings, logger: Logger, secrets: [String]) {
        self.http = http
        self.websockets = websockets
        self.logger = logger
        self.secrets = secrets
        let botUser = who["user_id"]?.stringValue
        self.inbound = SlackInbound(command: settings.command, botUser: botUser)
        self.identity = "@\(who["user"]?.stringValue ?? "?") (\(botUser ?? "?")) in \(who["team"]?.stringValue ?? "?") (\(who["team_id"]?.stringValue ?? "?"))"
        let intake = self.intake
        let inbound = self.inbound
        let socketSlot = Slot<SocketModeClient>()
        let chat = SlackChat(api: bot, logger: logger, connected: { socketSlot.current?.isConnected ?? false })
        let socket = SocketModeClient(api: app, websockets: websockets, logger: logger) { envelope in
            switch inbound.translate(envelope) {
            case .event(let event):
                guard let intake = intake.current else { return }
                if envelope.type == "slash_commands", let url = envelope.payload["response_url"]?.stringValue {
                    chat.noteSlashCommand(in: event.channel, responseURL: url)
                }
                // A mention has no acknowledgement a person can see: 👀 on it says it was heard.
                let mention = envelope.payload["event"].flatMap { event -> (channel: String, ts: String)? in
                    guard event["type"]?.stringValue == "app_mention", let channel = event["channel"]?.stringValue,
                          let ts = event["ts"]?.stringValue else { return nil }
                    return (channel, ts)
                }
                async let seen: Void = { if let mention { await chat.react("eyes", to: mention.ts, in: mention.channel) } }()
                _ = await intake.accept(event)
                await seen
            case .ignored(let why):
                logger.debug("Slack: envelope ignored", metadata: ["type": "\(envelope.type)", "why": "\(why)"])
            }
        }
        socketSlot.set(socket)
        self.socket = socket
        self.chat = chat
    }

    /// The inbound side as a service of the daemon's group, handing commands to `intake`.
    public func service(intake: Intake) -> some Service {
        self.intake.set(intake)
        return SlackService(port: self, runner: intake.runner)
    }

    /// Closes the WebSocket runtime and the HTTP client; after the daemon's group has stopped.
    public func shutdown() async {
        await websockets.shutdown()
        await http.shutdown()
    }

    public var counts: SocketModeClient.Counters { socket.counts }
}

/// A value set once after the closures that read it were made (the intake needs the chat first,
/// the chat's readiness needs the socket made after it).
final class Slot<Value: Sendable>: Sendable {
    let slot = Mutex<Value?>(nil)
    var current: Value? { slot.withLock { $0 } }
    func set(_ value: Value) { slot.withLock { $0 = value } }
}

/// Socket Mode in the daemon's group: a graceful stop stops reading (open connections close and
/// Slack redelivers whatever was not acknowledged to the next daemon), lets the envelopes being
/// handled finish, and then the runner brings running steps to a safe point.
struct SlackService: Service {
    let port: SlackPort
    let runner: OperationRunner

    func run() async throws {
        let socket = port.socket
        try await withGracefulShutdownHandler {
            try await socket.run()
        } onGracefulShutdown: {
            socket.stop()
            runner.stop()
        }
    }
}

/// Reads a secret from where the configuration says it is.
enum SecretReading {
    /// - Parameter prefix: what the secret starts with, to catch the two Slack tokens swapped.
    static func read(_ source: SecretSource, what: String, prefix: String, environment: [String: String]) throws -> Secret {
        let value: String
        switch source {
        case .environment(let name):
            guard let found = environment[name], !found.isEmpty else {
                throw Refusal("\(what) is not set: \(source) is empty.", hint: "export \(name)=\(prefix)… before starting InferOps.")
            }
            value = found
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw Refusal("\(what) cannot be read from \(path).", hint: "Check that the file exists and this user may read it.")
            }
            value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard value.hasPrefix(prefix) else {
            // Never the value itself: only what it starts with.
            throw Refusal("\(what) from \(source) does not start with `\(prefix)` (it starts with `\(value.prefix(5))`).",
                          hint: "The app-level token starts with xapp-, the bot token with xoxb-; check they are not swapped.")
        }
        return Secret(value)
    }
}
