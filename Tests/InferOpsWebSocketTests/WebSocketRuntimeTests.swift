import Foundation
import InferOpsTestSupport
import InferOpsWebSocket
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// The libwebsockets client against the Slack emulator's own WebSocket server (Python stdlib):
/// a real handshake, real frames, real closes and drops. Every wait is on an event or on the
/// emulator's control API, with a deadline.
@Suite(.serialized) struct WebSocketRuntimeTests {
    /// A socket URL from `apps.connections.open`, as Slack hands one out: single use, with a ticket.
    static func socketURL(_ slack: SlackEmulator) async throws -> WebSocketURL {
        var request = URLRequest(url: URL(string: slack.url + "/api/apps.connections.open")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(SlackEmulator.appToken)", forHTTPHeaderField: "Authorization")
        let (data, _) = try await URLSession.shared.data(for: request)
        let answer = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let url = try #require(answer["url"] as? String, "apps.connections.open answered \(answer)")
        return try WebSocketURL(url)
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func json(_ event: WebSocketEvent?) throws -> [String: Any] {
        guard case .text(let text) = event else {
            throw TestFailure("expected a text message, got \(String(describing: event))")
        }
        return try json(text)
    }

    /// A control-API listing (`GET /_emu/<name>`, answered as `{"<name>": [...]}`).
    static func records(_ slack: SlackEmulator, _ name: String) throws -> [[String: Any]] {
        let answer = try json(slack.control("GET", name).body)
        return answer[name] as? [[String: Any]] ?? []
    }

    /// Starts an emulator and a runtime, runs `body` under a deadline, and stops both.
    static func withEmulator(
        _ what: String,
        emulatorArguments: [String] = [],
        configuration: WebSocketRuntime.Configuration = WebSocketRuntime.Configuration(),
        _ body: @escaping @Sendable (SlackEmulator, WebSocketRuntime) async throws -> Void
    ) async throws {
        let slack = try await offThePool { try SlackEmulator(extraArguments: emulatorArguments) }
        defer { slack.stop() }
        let runtime = try WebSocketRuntime(configuration: configuration)
        do {
            try await withDeadline(.seconds(30), what) { try await body(slack, runtime) }
        } catch {
            await runtime.shutdown()
            throw error
        }
        await runtime.shutdown()
    }

    @Test func receivesHelloOnTheURLTheEmulatorHandsOut() async throws {
        try await Self.withEmulator("hello") { slack, runtime in
            let url = try await Self.socketURL(slack)
            #expect(url.path.contains("?ticket="))
            let socket = try await runtime.connect(to: url)
            var events = socket.events.makeAsyncIterator()
            let hello = try Self.json(await events.next())
            #expect(hello["type"] as? String == "hello")
            #expect((hello["connection_info"] as? [String: Any])?["app_id"] as? String == "A0EMU0001")

            socket.close(code: 1000, reason: "done")
            let event1 = await events.next()

            #expect(event1 == .closed(code: 1000, reason: "done"))
            let event2 = await events.next()

            #expect(event2 == nil)
            try await waitUntil("the emulator to see the client's close code") {
                try Self.records(slack, "connections").first?["clientCloseCode"] as? Int == 1000
            }
        }
    }

    @Test func acknowledgesASlashCommandEnvelope() async throws {
        try await Self.withEmulator("an acknowledged envelope") { slack, runtime in
            let socket = try await runtime.connect(to: try await Self.socketURL(slack))
            var events = socket.events.makeAsyncIterator()
            let greeting = try Self.json(await events.next())
            #expect(greeting["type"] as? String == "hello")

            let posted = slack.control("POST", "slash", json: #"{"text":"status","user_name":"alice"}"#)
            #expect(posted.status == 200, "\(posted.body)")
            let envelope = try Self.json(await events.next())
            #expect(envelope["type"] as? String == "slash_commands")
            #expect((envelope["payload"] as? [String: Any])?["text"] as? String == "status")
            let id = try #require(envelope["envelope_id"] as? String)
            #expect(id == (try Self.json(posted.body))["envelope_id"] as? String)

            try socket.send(text: #"{"envelope_id":"\#(id)"}"#)
            try await waitUntil("the emulator to record the ack") {
                try Self.records(slack, "envelopes").contains {
                    $0["envelope_id"] as? String == id && $0["acked"] as? Bool == true
                }
            }
            socket.close(code: 1000, reason: "")
            let event3 = await events.next()

            #expect(event3 == .closed(code: 1000, reason: ""))
        }
    }

    @Test func aDisconnectRequestEndsWithTheServersCloseCode() async throws {
        try await Self.withEmulator("a server close") { slack, runtime in
            let socket = try await runtime.connect(to: try await Self.socketURL(slack))
            var events = socket.events.makeAsyncIterator()
            let greeting = try Self.json(await events.next())
            #expect(greeting["type"] as? String == "hello")

            #expect(slack.control("POST", "disconnect", json: #"{"reason":"refresh_requested"}"#).status == 200)
            let notice = try Self.json(await events.next())
            #expect(notice["type"] as? String == "disconnect")
            #expect(notice["reason"] as? String == "refresh_requested")
            let event4 = await events.next()

            #expect(event4 == .closed(code: 1000, reason: "disconnect"))
            let event5 = await events.next()

            #expect(event5 == nil)
            #expect(throws: WebSocketError.notOpen) { try socket.send(text: "late") }
        }
    }

    @Test func aDroppedConnectionIsReportedAs1006() async throws {
        try await Self.withEmulator("a dropped connection") { slack, runtime in
            let socket = try await runtime.connect(to: try await Self.socketURL(slack))
            var events = socket.events.makeAsyncIterator()
            let greeting = try Self.json(await events.next())
            #expect(greeting["type"] as? String == "hello")

            #expect(slack.control("POST", "drop", json: "{}").status == 200)
            let last = await events.next()
            guard case .closed(let code, _) = last else {
                Issue.record("expected closed")
                return
            }
            #expect(code == 1006)
            let event6 = await events.next()

            #expect(event6 == nil)
        }
    }

    @Test func aSilentPeerIsHungUpOnByTheIdlePolicy() async throws {
        let quick = WebSocketRuntime.Configuration(pingInterval: .seconds(1), idleTimeout: .seconds(3))
        try await Self.withEmulator("an idle hang-up", configuration: quick) { slack, runtime in
            let socket = try await runtime.connect(to: try await Self.socketURL(slack))
            var events = socket.events.makeAsyncIterator()
            let greeting = try Self.json(await events.next())
            #expect(greeting["type"] as? String == "hello")

            #expect(slack.control("POST", "silent", json: #"{"silent":true}"#).status == 200)
            let started = ContinuousClock.now
            let last = await events.next()
            guard case .closed(let code, _) = last else {
                Issue.record("expected closed")
                return
            }
            #expect(code == 1006)
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    @Test func reassemblesALargeMessageAndClosesWith1009AboveTheCap() async throws {
        let capped = WebSocketRuntime.Configuration(maxMessageBytes: 256 << 10)
        try await Self.withEmulator("a large message", configuration: capped) { slack, runtime in
            let socket = try await runtime.connect(to: try await Self.socketURL(slack))
            var events = socket.events.makeAsyncIterator()
            let greeting = try Self.json(await events.next())
            #expect(greeting["type"] as? String == "hello")

            // 100 KB: many of lws's 4 KB receive chunks, under the cap.
            let big = String(repeating: "x", count: 100_000)
            slack.control("POST", "envelope", json: #"{"type":"events_api","payload":{"blob":"\#(big)"}}"#)
            let envelope = try Self.json(await events.next())
            #expect((envelope["payload"] as? [String: Any])?["blob"] as? String == big)

            let huge = String(repeating: "y", count: 300_000)
            slack.control("POST", "envelope", json: #"{"type":"events_api","payload":{"blob":"\#(huge)"}}"#)
            let event7 = await events.next()

            #expect(event7 == .closed(code: 1009, reason: "message too big"))
        }
    }

    @Test func aRefusedConnectionIsAnError() async throws {
        let runtime = try WebSocketRuntime()
        let port = try Self.closedPort()
        let error = await #expect(throws: WebSocketError.self) {
            _ = try await runtime.connect(
                to: WebSocketURL(secure: false, host: "127.0.0.1", port: port, path: "/link/")
            )
        }
        guard case .connectFailed(let url, let message) = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        #expect(url == "ws://127.0.0.1:\(port)/link/")
        #expect(!message.isEmpty)
        await runtime.shutdown()
    }

    @Test func sendingAfterCloseFailsCleanly() async throws {
        try await Self.withEmulator("send after close") { slack, runtime in
            let socket = try await runtime.connect(to: try await Self.socketURL(slack))
            var events = socket.events.makeAsyncIterator()
            let greeting = try Self.json(await events.next())
            #expect(greeting["type"] as? String == "hello")
            socket.close(code: 4000, reason: "bye")
            #expect(throws: WebSocketError.notOpen) { try socket.send(text: "too late") }
            let event8 = await events.next()

            #expect(event8 == .closed(code: 4000, reason: "bye"))
            #expect(throws: WebSocketError.notOpen) { try socket.send(text: "later still") }
            socket.close(code: 1000, reason: "again")  // harmless
        }
    }

    @Test func shutdownClosesOpenConnectionsAndRefusesNewOnes() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let runtime = try WebSocketRuntime()
        let url = try await Self.socketURL(slack)
        let socket = try await runtime.connect(to: url)
        var events = socket.events.makeAsyncIterator()
        let greeting = try Self.json(await events.next())
        #expect(greeting["type"] as? String == "hello")
        await runtime.shutdown()
        let last = await events.next()
        guard case .closed(let code, _) = last else {
            Issue.record("expected closed")
            return
        }
        #expect(code == 1001)
        await #expect(throws: WebSocketError.runtimeStopped) {
            _ = try await runtime.connect(to: try await Self.socketURL(slack))
        }
        #expect(throws: WebSocketError.notOpen) { try socket.send(text: "after shutdown") }
    }

    @Test func wssVerifiesTheServerAgainstTheGivenCertificateAuthority() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let tls = try await offThePool { try TLSTerminator(upstream: slack.port) }
        defer { tls.stop() }
        // The ticket URL's path, served over TLS by the terminator as Slack serves it (wss://).
        func secureURL() async throws -> WebSocketURL {
            WebSocketURL(secure: true, host: "localhost", port: tls.port, path: try await Self.socketURL(slack).path)
        }

        let trusting = try WebSocketRuntime(configuration: .init(certificateAuthorityFile: tls.certificateAuthority))
        let socket = try await trusting.connect(to: try await secureURL())
        var events = socket.events.makeAsyncIterator()
        let greeting = try Self.json(await events.next())
        #expect(greeting["type"] as? String == "hello")
        socket.close(code: 1000, reason: "")
        let closed = await events.next()
        #expect(closed == .closed(code: 1000, reason: ""))
        await trusting.shutdown()

        // Without the private CA the certificate is refused, and the error says why.
        let strict = try WebSocketRuntime()
        let error = await #expect(throws: WebSocketError.self) {
            _ = try await strict.connect(to: try await secureURL())
        }
        guard case .connectFailed(_, let message) = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        #expect(message.contains("unable to get local issuer certificate"), "\(message)")
        await strict.shutdown()
    }

    /// Accepts TCP connections and never answers the handshake; counts them in `accepted`.
    static let silentServer = """
        import os, socket, sys
        port_file = sys.argv[1]
        folder = os.path.dirname(port_file)
        server = socket.create_server(("127.0.0.1", 0))
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.getsockname()[1]))
        os.replace(port_file + ".tmp", port_file)
        held = []
        while True:
            client, _ = server.accept()
            held.append(client)
            with open(os.path.join(folder, "accepted.tmp"), "w") as f:
                f.write(str(len(held)))
            os.replace(os.path.join(folder, "accepted.tmp"), os.path.join(folder, "accepted"))
        """

    static func startSilentServer() async throws -> PythonServer {
        try await offThePool { try PythonServer("a silent server", program: .source(silentServer)) { [$0] } }
    }

    @Test func aHandshakeThatNeverComesTimesOut() async throws {
        let silent = try await Self.startSilentServer()
        defer { silent.stop() }
        let runtime = try WebSocketRuntime(configuration: .init(connectTimeout: .seconds(1)))
        let started = ContinuousClock.now
        let error = await #expect(throws: WebSocketError.self) {
            _ = try await withDeadline(.seconds(20), "the connect timeout") {
                try await runtime.connect(to: WebSocketURL(secure: false, host: "127.0.0.1", port: silent.port))
            }
        }
        guard case .connectFailed = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        #expect(ContinuousClock.now - started < .seconds(5))  // lws checks its timeouts once a second
        await runtime.shutdown()
    }

    @Test func cancellingAHangingConnectThrowsCancellationError() async throws {
        let silent = try await Self.startSilentServer()
        defer { silent.stop() }
        let runtime = try WebSocketRuntime(configuration: .init(connectTimeout: .seconds(30)))
        let url = WebSocketURL(secure: false, host: "127.0.0.1", port: silent.port)
        let attempt = Task { try await runtime.connect(to: url) }
        let accepted = silent.folder.appendingPathComponent("accepted").path
        try await waitUntil("the server to accept the TCP connection") {
            FileManager.default.fileExists(atPath: accepted)
        }
        let started = ContinuousClock.now
        attempt.cancel()
        await #expect(throws: CancellationError.self) {
            _ = try await withDeadline(.seconds(20), "the cancelled connect") { try await attempt.value }
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        await runtime.shutdown()
    }

    /// A loopback port with a bound socket that does not listen: connecting is refused.
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestFailure("bind() failed") }
        // Kept open (and never listening) until the process exits, so nobody else takes the port.
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
