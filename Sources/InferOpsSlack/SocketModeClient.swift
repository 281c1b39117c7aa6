import Foundation
import InferOpsCore
import InferOpsWebSocket
import Logging
import Synchronization

/// Slack's Socket Mode: asks `apps.connections.open` for a WebSocket URL, connects, acknowledges
/// every envelope the moment it arrives (before any work), and hands it on. It keeps a connection
/// up for as long as it runs:
///
/// - `disconnect` with `refresh_requested` or `warning` (Slack recycles connections every few
///   hours): a new connection is opened at once, and the old one is read until Slack closes it, so
///   no envelope falls between the two.
/// - a connection that closes or is lost, or never says `hello`: reconnected with jittered
///   exponential backoff, each time with a fresh URL (a ticket is good for one connection).
/// - a connection that is open but silent (no traffic, not even pongs): the WebSocket runtime's
///   pings notice it and hang up after its idle timeout (the watchdog), and it is replaced.
/// - `disconnect` with `link_disabled`, or the app token refused: nothing a reconnect can fix;
///   `run()` stops with `SocketModeStopped`, saying why.
///
/// Redelivered envelopes (an acknowledgement lost with its connection) are handed on again with
/// the same ids; the intake's durable event ids drop the repeats.
public final class SocketModeClient: Sendable {
    public struct Settings: Sendable {
        /// The first reconnect waits up to this (full jitter); each failure after doubles it.
        public var reconnectDelay: Duration
        public var maxReconnectDelay: Duration
        /// A connection that has not said `hello` by then is replaced.
        public var helloTimeout: Duration
        /// How long a connection told to `disconnect` is still read, for envelopes already on their way.
        public var drainTimeout: Duration

        public init(reconnectDelay: Duration = .milliseconds(250), maxReconnectDelay: Duration = .seconds(30),
                    helloTimeout: Duration = .seconds(10), drainTimeout: Duration = .seconds(10)) {
            self.reconnectDelay = reconnectDelay
            self.maxReconnectDelay = maxReconnectDelay
            self.helloTimeout = helloTimeout
            self.drainTimeout = drainTimeout
        }
    }

    let api: SlackWebAPI
    let websockets: any WebSocketClient
    let settings: Settings
    let logger: Logger
    let handle: @Sendable (SocketModeEnvelope) async -> Void

    struct State {
        var stopping = false
        var sessions: [Int: any WebSocketSession] = [:]
        var nextSession = 0
        /// Sessions between `hello` and their end.
        var live = 0
        var signals: AsyncStream<Signal>.Continuation?
    }

    let state = Mutex(State())
    let counters = Mutex(Counters())

    /// What happened over the client's life, for logs, `/readyz` and tests.
    public struct Counters: Sendable, Hashable {
        public var connections = 0
        public var envelopes = 0
        public var reconnects = 0
        public var disconnects: [String: Int] = [:]
    }

    /// - Parameters:
    ///   - api: the Web API with the *app* token (`xapp-…`), for `apps.connections.open`.
    ///   - handle: called for each envelope after it was acknowledged, concurrently; `run()` waits
    ///     for the calls under way before it returns.
    public init(api: SlackWebAPI, websockets: any WebSocketClient, settings: Settings = Settings(), logger: Logger,
                handle: @escaping @Sendable (SocketModeEnvelope) async -> Void) {
        self.api = api
        self.websockets = websockets
        self.settings = settings
        self.logger = logger
        self.handle = handle
    }

    /// Whether a connection has said `hello` and is still open.
    public var isConnected: Bool { state.withLock { $0.live > 0 } }

    public var counts: Counters { counters.withLock { $0 } }

    /// What a connection asks of the loop that opens them; each asks once.
    enum Signal: Sendable {
        /// It will close (`disconnect`): open the next one now.
        case replace
        /// It ended: open the next one after a backoff (none when it had been healthy).
        case ended(healthy: Bool)
        case linkDisabled
    }

    /// Keeps a connection up until `stop()` (or cancellation), then closes it and waits for the
    /// envelopes being handled.
    /// - Throws: `SocketModeStopped` when Slack disabled the link or refused the app token.
    public func run() async throws {
        let (signals, continuation) = AsyncStream.makeStream(of: Signal.self)
        let alreadyStopping = state.withLock { state -> Bool in
            state.signals = continuation
            return state.stopping
        }
        if alreadyStopping { return }
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                var failures = 0
                var pending: Signal? = .ended(healthy: true)
                var iterator = signals.makeAsyncIterator()
                while true {
                    if pending == nil { pending = await iterator.next() }
                    guard let signal = pending, !isStopping else { break }
                    pending = nil
                    switch signal {
                    case .linkDisabled:
                        stop()
                        throw SocketModeStopped.linkDisabled
                    case .replace:
                        failures = 0
                    case .ended(let healthy):
                        failures = healthy ? 0 : failures + 1
                    }
                    if case .ended = signal, failures > 0 || counts.connections > 0 {
                        let delay = backoff(failures: max(failures, 1))
                        logger.info("Slack: reconnecting", metadata: ["after": "\(delay)", "failures": "\(failures)"])
                        try? await Task.sleep(for: delay)
                        if isStopping { break }
                    }
                    do {
                        let session = try await open()
                        guard let id = register(session) else {
                            session.close(code: 1000, reason: "stopping")
                            break
                        }
                        group.addTask { await self.serve(session, id: id) }
                    } catch let stopped as SocketModeStopped {
                        stop()
                        throw stopped
                    } catch {
                        if isStopping { break }
                        logger.warning("Slack: could not connect", metadata: ["error": "\(error)"])
                        pending = .ended(healthy: false)
                    }
                }
                closeAll()
            }
        } onCancel: {
            stop()
        }
    }

    /// Stops reading: open connections are closed (1000), envelopes being handled finish.
    public func stop() {
        let continuation = state.withLock { state -> AsyncStream<Signal>.Continuation? in
            state.stopping = true
            return state.signals
        }
        continuation?.finish()
        closeAll()
    }

    var isStopping: Bool { state.withLock { $0.stopping } }

    func closeAll() {
        for session in state.withLock({ Array($0.sessions.values) }) { session.close(code: 1000, reason: "stopping") }
    }

    func register(_ session: any WebSocketSession) -> Int? {
        state.withLock { state in
            guard !state.stopping else { return nil }
            state.nextSession += 1
            state.sessions[state.nextSession] = session
            return state.nextSession
        }
    }

    func signal(_ signal: Signal) {
        _ = state.withLock { $0.signals }?.yield(signal)
    }

    /// Full jitter: a random wait up to `reconnectDelay × 2^(failures−1)`, at most `maxReconnectDelay`.
    func backoff(failures: Int) -> Duration {
        let ceiling = min(settings.reconnectDelay * (1 << min(failures - 1, 20)), settings.maxReconnectDelay)
        return ceiling * Double.random(in: 0...1)
    }

    /// A fresh URL (`apps.connections.open`, one ticket per connection) and a connection to it.
    func open() async throws -> any WebSocketSession {
        let answer: JSONValue
        do {
            answer = try await api.call("apps.connections.open", [:], idempotent: true)
        } catch let failure as SlackFailure {
            if case .credentials(let code, _) = failure { throw SocketModeStopped.appTokenRefused(code: code) }
            throw failure
        }
        guard let link = answer["url"]?.stringValue else { throw SlackFailure.transient(code: "no_url") }
        let url = try WebSocketURL(link)
        let session = try await websockets.connect(to: url)
        counters.withLock { $0.connections += 1 }
        // The ticket in the query is a credential of sorts: only the host is logged.
        logger.info("Slack: connected", metadata: ["host": "\(url.host)"])
        return session
    }

    /// Reads one connection until it ends: acknowledges and hands on envelopes, and asks for the
    /// next connection when this one is told to go, goes quiet before `hello`, or ends.
    func serve(_ session: any WebSocketSession, id: Int) async {
        let greeted = Mutex(false)
        var asked = false
        func ask(_ signal: Signal) {
            guard !asked else { return }
            asked = true
            self.signal(signal)
        }
        // Timers end with the connection; envelopes being handled do not.
        var timers = [Task { [settings] in
            try? await Task.sleep(for: settings.helloTimeout)
            if !greeted.withLock({ $0 }) { session.close(code: 4000, reason: "no hello") }
        }]
        defer { for timer in timers { timer.cancel() } }
        await withDiscardingTaskGroup { handlers in
            for await event in session.events {
                switch event {
                case .text(let text):
                    let message: SocketModeMessage
                    do {
                        message = try SocketModeMessage(text: text)
                    } catch {
                        logger.warning("Slack: a frame that is not JSON", metadata: ["error": "\(error)"])
                        continue
                    }
                    switch message {
                    case .envelope(let envelope):
                        // First the acknowledgement, then anything else.
                        do {
                            try session.send(text: envelope.acknowledgement)
                        } catch {
                            // Closed meanwhile: Slack redelivers it on the next connection.
                            continue
                        }
                        counters.withLock { $0.envelopes += 1 }
                        handlers.addTask { await self.handle(envelope) }
                    case .hello:
                        if !greeted.withLock({ flag in defer { flag = true }; return flag }) {
                            state.withLock { $0.live += 1 }
                        }
                    case .disconnect(let reason):
                        counters.withLock { $0.disconnects[reason, default: 0] += 1 }
                        if reason == "link_disabled" {
                            logger.error("Slack disabled this app's Socket Mode link (link_disabled)")
                            ask(.linkDisabled)
                            session.close(code: 1000, reason: "link disabled")
                        } else {
                            logger.info("Slack: asked to reconnect", metadata: ["reason": "\(reason)"])
                            counters.withLock { $0.reconnects += 1 }
                            ask(.replace)
                            timers.append(Task { [settings] in
                                try? await Task.sleep(for: settings.drainTimeout)
                                session.close(code: 1000, reason: "replaced")
                            })
                        }
                    case .other(let type):
                        logger.debug("Slack: ignored a message", metadata: ["type": "\(type)"])
                    }
                case .binary:
                    continue
                case .closed(let code, let reason):
                    let wasLive = greeted.withLock { $0 }
                    if !asked {
                        counters.withLock { $0.reconnects += 1 }
                        logger.warning("Slack: connection closed", metadata: ["code": "\(code)", "reason": "\(reason)"])
                    }
                    ask(.ended(healthy: wasLive))
                }
            }
        }
        // Counted live from its `hello` until here, however the reading ended (closed, or the task
        // cancelled because `run()` is throwing).
        let wasLive = greeted.withLock { $0 }
        state.withLock { state in
            state.sessions.removeValue(forKey: id)
            if wasLive { state.live -= 1 }
        }
    }
}

/// Socket Mode cannot go on, and reconnecting will not help.
public enum SocketModeStopped: Error, Hashable, Sendable, CustomStringConvertible {
    /// Slack sent `disconnect` / `link_disabled`: the app's Socket Mode was turned off, or the app
    /// was disabled or uninstalled.
    case linkDisabled
    /// `apps.connections.open` refused the app token.
    case appTokenRefused(code: String)

    public var description: String {
        switch self {
        case .linkDisabled:
            "Slack disabled this app's Socket Mode connection (link_disabled): Socket Mode was turned off or the app "
                + "was disabled or uninstalled. Turn Socket Mode on in the app's settings (api.slack.com/apps), then start InferOps again."
        case .appTokenRefused(let code):
            "Slack refused the app-level token (\(code)). Create one with the connections:write scope under "
                + "Basic Information → App-Level Tokens and give it to InferOps (chat.slack.appToken)."
        }
    }
}
