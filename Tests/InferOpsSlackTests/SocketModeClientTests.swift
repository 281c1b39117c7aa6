import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsSlack
import InferOpsTestSupport
import InferOpsWebSocket
import Logging
import Synchronization
import Testing

/// The Socket Mode client against the Slack emulator: acknowledgements, every kind of
/// `disconnect`, lost connections and a silent one.
@Suite(.serialized) struct SocketModeClientTests {
    final class Received: Sendable {
        let list = Mutex<[SocketModeEnvelope]>([])
        func append(_ envelope: SocketModeEnvelope) { list.withLock { $0.append(envelope) } }
        var all: [SocketModeEnvelope] { list.withLock { $0 } }
    }

    /// A client connected to an emulator, recording the envelopes handed on.
    final class Connected: Sendable {
        let slack: SlackEmulator
        let http: CurlHTTPClient
        let websockets: WebSocketRuntime
        let client: SocketModeClient
        let received = Received()
        let task: Task<Result<Void, any Error>, Never>

        /// - Parameter watchdog: the silence after which a connection is hung up. Long by default:
        ///   a test run on a loaded machine can starve the process for seconds, and only the
        ///   watchdog's own test should see a connection hung up for silence.
        init(emulator: [String] = ["--ack-timeout", "1", "--ping-interval", "1"], watchdog: Int = 20) async throws {
            slack = try await offThePool { try SlackEmulator(extraArguments: emulator) }
            http = try CurlHTTPClient()
            websockets = try WebSocketRuntime(configuration: .init(
                pingInterval: .seconds(1), idleTimeout: .seconds(watchdog), connectTimeout: .seconds(5)))
            let app = SlackWebAPI(http: http, token: Secret(SlackEmulator.appToken),
                                  settings: SlackWebAPI.Settings(baseURL: slack.url + "/api/"))
            let received = self.received
            client = SocketModeClient(
                api: app, websockets: websockets,
                settings: .init(reconnectDelay: .milliseconds(100), maxReconnectDelay: .seconds(1),
                                helloTimeout: .seconds(5), drainTimeout: .seconds(2)),
                logger: Logger(label: "test.socket-mode")) { envelope in received.append(envelope) }
            let client = self.client
            task = Task {
                do {
                    try await client.run()
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            try await waitUntil("the first connection") { client.isConnected }
        }

        var ids: [String] { received.all.map(\.id) }

        /// A slash command typed in Slack. The emulator's control call waits on the emulator, so it runs
        /// off the concurrency pool: on two cores a blocked pool thread would starve the client under
        /// test, whose reading needs that pool.
        func slash(_ text: String) async throws -> String {
            let slack = slack
            let answer = try await offThePool {
                slack.control("POST", "slash", json: #"{"text":"\#(text)","user_id":"U0ALICE01","channel_id":"C0DEPLOY01"}"#)
            }
            let json = try JSONValue(parsing: answer.body)
            return try #require(json["envelope_id"]?.stringValue)
        }

        func slashes(_ texts: [String]) async throws -> [String] {
            var ids: [String] = []
            for text in texts { ids.append(try await slash(text)) }
            return ids
        }

        func connections() throws -> [JSONValue] {
            guard case .array(let list)? = try JSONValue(parsing: slack.control("GET", "connections").body)["connections"] else { return [] }
            return list
        }

        func envelope(_ id: String) throws -> JSONValue? {
            guard case .array(let list)? = try JSONValue(parsing: slack.control("GET", "envelopes").body)["envelopes"] else { return nil }
            return list.first { $0["envelope_id"]?.stringValue == id }
        }

        func stop() async throws -> Result<Void, any Error> {
            client.stop()
            let result = await task.value
            await websockets.shutdown()
            await http.shutdown()
            slack.stop()
            return result
        }
    }

    @Test func everyEnvelopeIsAcknowledgedAndHandedOnOnce() async throws {
        let connected = try await Connected()
        let sent = try await connected.slashes((0..<20).map { "status n\($0)" })
        try await waitUntil("20 envelopes handed on") { connected.ids.count == 20 }
        #expect(connected.ids == sent)
        for id in sent {
            let record = try #require(try connected.envelope(id))
            #expect(record["acked"] == .bool(true))
            #expect(record["deliveries"].map { if case .array(let list) = $0 { list.count } else { 0 } } == 1)
        }
        try await connected.stop().get()
        #expect(connected.client.counts.connections == 1)
    }

    @Test(arguments: ["refresh_requested", "warning", "socket_mode_disabled_soon"])
    func aDisconnectOpensTheNextConnectionFirstAndLosesNothing(reason: String) async throws {
        let connected = try await Connected()
        let before = try await connected.slash("before")
        try await waitUntil("the first envelope") { connected.ids == [before] }
        connected.slack.control("POST", "disconnect", json: #"{"reason":"\#(reason)"}"#)
        // Envelopes sent while the old connection winds down go to the new one.
        let during = try await connected.slashes((0..<5).map { "during \($0)" })
        try await waitUntil("a second connection") { try connected.connections().count == 2 }
        try await waitUntil("everything handed on") { Set(connected.ids) == Set([before] + during) }
        #expect(connected.ids.count == 6)
        try await waitUntil("the first connection closed") {
            try connected.connections().first?["open"] == .bool(false)
        }
        #expect(connected.client.isConnected)
        try await connected.stop().get()
        #expect(connected.client.counts.disconnects == [reason: 1])
    }

    @Test func linkDisabledStopsAndSaysWhy() async throws {
        let connected = try await Connected()
        connected.slack.control("POST", "disconnect", json: #"{"reason":"link_disabled","disableLink":true}"#)
        let result = await connected.task.value
        #expect(throws: SocketModeStopped.linkDisabled) { try result.get() }
        #expect(!connected.client.isConnected)
        #expect(try connected.connections().count == 1, "no reconnect after link_disabled")
        _ = try await connected.stop()
        #expect(SocketModeStopped.linkDisabled.description.contains("Turn Socket Mode on"))
    }

    @Test func aLostConnectionIsReplacedAndItsUnacknowledgedEnvelopesComeAgain() async throws {
        let connected = try await Connected()
        connected.slack.control("POST", "drop", json: "{}")
        try await waitUntil("a second connection") {
            try connected.connections().filter { $0["open"] == .bool(true) }.count == 1 && connected.client.isConnected
                && (try connected.connections().count) == 2
        }
        let after = try await connected.slash("after the drop")
        try await waitUntil("the envelope after the drop") { connected.ids == [after] }
        try await connected.stop().get()
    }

    @Test func aRedeliveredEnvelopeIsHandedOnAgainWithItsIdForTheIntakeToDrop() async throws {
        let connected = try await Connected()
        let id = try await connected.slash("once")
        connected.slack.control("POST", "redeliver", json: #"{"envelope_id":"\#(id)","count":3}"#)
        try await waitUntil("the three redeliveries") { connected.ids.count == 4 }
        #expect(connected.ids == [id, id, id, id])
        #expect(connected.received.all.map(\.retryAttempt) == [0, 1, 2, 3])
        try await connected.stop().get()
    }

    @Test func aSilentConnectionIsReplacedByTheWatchdog() async throws {
        let connected = try await Connected(watchdog: 3)
        let started = ContinuousClock.now
        connected.slack.control("POST", "silent", json: "{}")
        try await waitUntil("the silent connection replaced", timeout: .seconds(15)) {
            let list = try connected.connections()
            return list.count == 2 && list[1]["open"] == .bool(true) && connected.client.isConnected
        }
        let replacedAfter = ContinuousClock.now - started
        // The watchdog (3 s) plus lws's once-a-second check and the reconnect.
        #expect(replacedAfter < .seconds(8), "replaced after \(replacedAfter)")
        let after = try await connected.slash("after the silence")
        try await waitUntil("the envelope on the new connection") { connected.ids.contains(after) }
        try await connected.stop().get()
    }

    @Test func aRefusedAppTokenStopsWithAClearError() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let http = try CurlHTTPClient()
        let websockets = try WebSocketRuntime()
        let client = SocketModeClient(
            api: SlackWebAPI(http: http, token: Secret("xapp-wrong"), settings: .init(baseURL: slack.url + "/api/")),
            websockets: websockets, logger: Logger(label: "test")) { _ in }
        await #expect(throws: SocketModeStopped.appTokenRefused(code: "invalid_auth")) { try await client.run() }
        await websockets.shutdown()
        await http.shutdown()
    }
}
