import Foundation
import InferOpsTestSupport
import Testing

/// The daemon with Slack as its chat: `inferops serve` against the Slack emulator (Socket Mode and
/// the Web API), the Kubernetes emulator and the real helm. Users and channels are Slack ids.
@Suite("End to end", .serialized)
struct SlackEndToEndTests {
    /// The sandbox's configuration with `chat.transport: slack` pointed at a Slack emulator, its
    /// users as Slack user ids, and a daemon serving it.
    final class SlackSandbox {
        let sandbox: Sandbox
        let slack: SlackEmulator
        var daemon: ChildProcess?

        init(environmentExtra: String = "", emulator: [String] = []) throws {
            sandbox = try Sandbox(helm: .helm4)
            slack = try SlackEmulator(extraArguments: emulator)
            sandbox.extraEnvironment = environmentExtra
            // A listener port of its own: other suites' daemons may be serving beside it.
            sandbox.extraTopLevel = "server:\n  port: 0"
            try sandbox.writeConfiguration()
            var yaml = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            yaml = yaml.replacingOccurrences(
                of: "chat:\n  transport: console\n  console:\n    user: alice\n",
                with: "chat:\n  transport: slack\n  slack:\n    apiURL: \(slack.url)/api/\n    watchdog: 6s\n")
            for (name, id) in [("alice", "U0ALICE01"), ("bob", "U0BOB0001"), ("carol", "U0CAROL01")] {
                yaml = yaml.replacingOccurrences(of: "members: [\(name)]", with: "members: [\(id)]")
            }
            try yaml.write(toFile: sandbox.config, atomically: true, encoding: .utf8)
            slack.control("POST", "users", json: #"{"id":"U0CAROL01","name":"carol"}"#)
        }

        deinit {
            daemon?.stop()
            slack.stop()
        }

        /// Starts `inferops serve` with the emulator's tokens in its environment and waits for its
        /// Socket Mode connection.
        func serve() throws -> ChildProcess {
            let daemon = try InferOpsDaemon.serve(
                config: sandbox.config,
                environment: ["SLACK_APP_TOKEN": SlackEmulator.appToken, "SLACK_BOT_TOKEN": SlackEmulator.botToken],
                errors: .separate)
            self.daemon = daemon
            _ = try daemon.waitForLineBlocking(in: .standardError, within: .seconds(30)) { $0.contains("signed in as") }
            try eventually("the daemon's Socket Mode connection") { try self.openConnections() == 1 }
            return daemon
        }

        func json(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
            let answer = slack.control(method, path, json: body)
            return try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any] ?? [:]
        }

        func openConnections() throws -> Int {
            (try json("GET", "connections")["connections"] as? [[String: Any]] ?? []).filter { $0["open"] as? Bool == true }.count
        }

        @discardableResult
        func slash(_ text: String, as user: String, in channel: String = "C0DEPLOY01") throws -> String {
            let body = try JSONSerialization.data(withJSONObject: ["text": text, "user_id": user, "channel_id": channel])
            return try json("POST", "slash", String(decoding: body, as: UTF8.self))["envelope_id"] as? String ?? ""
        }

        /// Everything the bot posted, edited and sent privately, in order.
        func posts(_ query: String = "") throws -> [[String: Any]] {
            try json("GET", "posts" + query)["posts"] as? [[String: Any]] ?? []
        }
    }

    static func text(_ post: [String: Any]) -> String { post["text"] as? String ?? "" }

    /// The fallback text and every block, for what a reader sees anywhere in the message.
    static func content(_ post: [String: Any]) -> String {
        let blocks = (post["blocks"]).flatMap { try? JSONSerialization.data(withJSONObject: $0) }
        return text(post) + (blocks.map { String(decoding: $0, as: UTF8.self) } ?? "")
    }

    /// The approve/deny buttons of a posted message: (block id, action id, value).
    static func buttons(_ post: [String: Any]) -> [(block: String, action: String, value: String)] {
        let blocks = post["blocks"] as? [[String: Any]] ?? []
        return blocks.filter { $0["type"] as? String == "actions" }.flatMap { block in
            (block["elements"] as? [[String: Any]] ?? []).map {
                (block["block_id"] as? String ?? "", $0["action_id"] as? String ?? "", $0["value"] as? String ?? "")
            }
        }
    }

    @Test("From Slack: a refusal only its user sees, a deploy that waits for a button, a mention in its thread")
    func slackFlow() throws {
        let slack = try SlackSandbox(environmentExtra: "approval: {verbs: [deploy]}\n    channels: [C0DEPLOY01]")
        let daemon = try slack.serve()

        // Bob may deploy to staging, but not from #random: refused to him alone.
        try slack.slash("deploy llama-3-8b to staging", as: "U0BOB0001", in: "C0RANDOM01")
        try eventually("bob's refusal") { try slack.posts().contains { $0["kind"] as? String == "ephemeral" } }
        let refusal = try #require(try slack.posts().first)
        #expect(refusal["kind"] as? String == "ephemeral" && refusal["user"] as? String == "U0BOB0001")
        #expect(Self.text(refusal).contains("taken only in"), "\(refusal)")

        // A channel the bot is not in: the one who typed the command is told so, through the
        // command's response_url (Slack takes no post there).
        try slack.slash("help", as: "U0ALICE01", in: "C0ELSEWHR1")
        try eventually("the answer through response_url") {
            try slack.posts("?kind=response_url").contains { Self.text($0).contains("not a member") }
        }

        // Alice's deploy: a status card at the top of a thread, the approval request in it.
        try slack.slash("deploy llama-3-8b to staging", as: "U0ALICE01")
        var request: [String: Any] = [:]
        try eventually("the approval request with its buttons") {
            request = try slack.posts("?channel=C0DEPLOY01").first { !Self.buttons($0).isEmpty } ?? [:]
            return !request.isEmpty
        }
        let card = try #require(try slack.posts("?channel=C0DEPLOY01&kind=post").first)
        let thread = try #require(card["ts"] as? String)
        #expect(card["thread_ts"] == nil || card["thread_ts"] is NSNull, "the card opens the thread")
        #expect(request["thread_ts"] as? String == thread)
        let approve = try #require(Self.buttons(request).first { $0.action == "approve" })
        #expect(Self.buttons(request).map(\.action) == ["approve", "deny"])
        let operation = String(approve.block.dropFirst("inferops:".count))
        func press(as user: String) throws {
            let body = try JSONSerialization.data(withJSONObject: [
                "action_id": "approve", "value": approve.value, "block_id": approve.block, "user": user,
                "channel": "C0DEPLOY01", "message_ts": request["ts"] as? String ?? "", "thread_ts": thread,
            ])
            _ = try slack.json("POST", "button", String(decoding: body, as: UTF8.self))
        }

        // Her own button: refused, privately.
        try press(as: "U0ALICE01")
        try eventually("alice's own approval refused") {
            try slack.posts("?kind=ephemeral").contains { $0["user"] as? String == "U0ALICE01" && Self.text($0).contains("someone else must approve") }
        }
        // Carol's: the operation runs, and its thread says so in order.
        try press(as: "U0CAROL01")
        try eventually("the deploy finished", timeout: .seconds(120)) {
            try slack.posts("?channel=C0DEPLOY01&thread_ts=\(thread)").contains { Self.text($0).contains("Deployed llama-3-8b to staging") }
        }
        let threadTexts = try slack.posts("?channel=C0DEPLOY01&thread_ts=\(thread)").filter { $0["kind"] as? String == "post" }.map(Self.text)
        let approved = try #require(threadTexts.firstIndex { $0.contains("Approved by <@U0CAROL01>") }, "\(threadTexts)")
        let deployed = try #require(threadTexts.firstIndex { $0.contains("Deployed llama-3-8b to staging") })
        #expect(approved < deployed)
        try eventually("the card edited with the outcome") {
            try slack.posts("?kind=update").last { $0["ts"] as? String == thread }.map { Self.text($0).contains(":white_check_mark:") } ?? false
        }
        // The request's buttons gave way to the decision and who made it.
        let decided = try #require(try slack.posts("?kind=update").last { $0["ts"] as? String == request["ts"] as? String })
        #expect(Self.buttons(decided).isEmpty)
        #expect(Self.text(decided).contains("Approved by <@U0CAROL01>"), "\(decided)")
        #expect(try slack.sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed")

        // A mention inside the thread is answered in the thread.
        _ = try slack.json("POST", "mention", #"{"text":"<@U0EMUBOT1> status llama-3-8b in staging","user":"U0BOB0001","channel":"C0DEPLOY01","thread_ts":"\#(thread)"}"#)
        try eventually("the status in the thread") {
            try slack.posts("?channel=C0DEPLOY01&thread_ts=\(thread)").contains {
                Self.text($0).contains("Status") && Self.content($0).contains("llama-3-8b") && $0["kind"] as? String == "post"
            }
        }

        // …and gets 👀 at once, as a mention has no acknowledgement a person can see.
        try eventually("the reaction on the mention") {
            try slack.posts("?kind=reaction").contains { "\($0)".contains("eyes") }
        }

        // /readyz says whether replies can be delivered: down while Slack refuses new connections.
        let port = try #require(daemon.text(of: .standardError).firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/)?.1)
        let readiness = "http://127.0.0.1:\(port)/readyz"
        #expect(InferOpsTestSupport.request("GET", readiness).status == 200)
        _ = try slack.json("POST", "link", #"{"enabled":false}"#)
        _ = try slack.json("POST", "drop", "{}")
        try eventually("/readyz to report the chat down") {
            let answer = InferOpsTestSupport.request("GET", readiness)
            return answer.status == 503 && answer.body.contains("chat")
        }
        _ = try slack.json("POST", "link", #"{"enabled":true}"#)
        try eventually("/readyz ready again once reconnected") { InferOpsTestSupport.request("GET", readiness).status == 200 }

        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == .exited(0), "\(daemon.text(of: .standardError))")
        let audit = try slack.sandbox.auditLines().map { "\($0["actor"] as? String ?? "") \($0["action"] as? String ?? "") \($0["outcome"] as? String ?? "")" }
        #expect(audit == [
            "U0BOB0001 deploy denied", "U0ALICE01 deploy approval-requested", "U0ALICE01 approve refused",
            "U0CAROL01 approve counted", "U0ALICE01 deploy succeeded",
        ], "\(audit)")
        #expect(try slack.sandbox.auditLines().contains { $0["operation"] as? String == operation })
        // The tokens reach Slack's Authorization header and nothing else.
        let everything = daemon.text(of: .standardOutput) + daemon.text(of: .standardError)
            + (try String(contentsOfFile: slack.sandbox.folder.appendingPathComponent("inferops.sqlite").path, encoding: .isoLatin1))
            + (try slack.posts().map { "\($0)" }.joined())
        for token in [SlackEmulator.botToken, SlackEmulator.appToken] { #expect(!everything.contains(token)) }
    }

    @Test("1,000 commands while the connection drops every 100 envelopes: each runs once, none lost, a thrice-redelivered one once")
    func burstThroughDrops() throws {
        let slack = try SlackSandbox(emulator: ["--ack-timeout", "1"])
        let daemon = try slack.serve()
        _ = try slack.json("POST", "config", #"{"dropEvery":100}"#)
        let count = 1000
        let tokens = (0..<count).map { String(format: "nosuch-%04d", $0) }
        var first = ""
        let sending = ContinuousClock.now
        for (index, token) in tokens.enumerated() {
            let id = try slack.slash("status \(token)", as: "U0ALICE01")
            if index == 0 { first = id }
        }
        print("slack burst: \(count) commands sent in \(ContinuousClock.now - sending)")
        try eventually("every command answered", timeout: .seconds(180)) {
            Set(try slack.posts("?kind=ephemeral").compactMap { Self.text($0).firstMatch(of: /nosuch-\d{4}/).map { String($0.0) } }).count == count
        }
        try eventually("every envelope acknowledged") {
            let envelopes = try slack.json("GET", "envelopes")["envelopes"] as? [[String: Any]] ?? []
            return envelopes.count == count && envelopes.allSatisfy { $0["pending"] as? Bool == false && $0["acked"] as? Bool == true }
        }
        // Then Slack sends the first one again three times, as if its acknowledgement had been lost each time.
        _ = try slack.json("POST", "config", #"{"dropEvery":0}"#)
        func deliveries(of id: String) throws -> Int {
            let envelopes = try slack.json("GET", "envelopes")["envelopes"] as? [[String: Any]] ?? []
            return envelopes.first { $0["envelope_id"] as? String == id }.map { ($0["deliveries"] as? [Any] ?? []).count } ?? 0
        }
        let before = try deliveries(of: first)
        for _ in 0..<3 {
            let delivered = try deliveries(of: first)
            _ = try slack.json("POST", "redeliver", #"{"envelope_id":"\#(first)"}"#)
            try eventually("a redelivery") { try deliveries(of: first) == delivered + 1 }
        }
        #expect(try deliveries(of: first) == before + 3)
        // A graceful stop waits for the envelopes being handled: whatever a repeat would post is posted by then.
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == .exited(0), "\(daemon.text(of: .standardError))")

        var answers: [String: Int] = [:]
        for post in try slack.posts("?kind=ephemeral") {
            if let match = Self.text(post).firstMatch(of: /nosuch-\d{4}/) { answers[String(match.0), default: 0] += 1 }
        }
        #expect(answers.count == count)
        #expect(answers.filter { $0.value != 1 }.isEmpty, "answered more than once: \(answers.filter { $0.value != 1 })")
        let envelopes = try slack.json("GET", "envelopes")["envelopes"] as? [[String: Any]] ?? []
        let deliveries = envelopes.map { ($0["deliveries"] as? [Any] ?? []).count }
        let connections = try slack.json("GET", "connections")["connections"] as? [[String: Any]] ?? []
        #expect(connections.count >= 10, "a drop every 100 deliveries: \(connections.count) connections")
        print("slack burst: \(count) commands, \(connections.count) connections, \(deliveries.reduce(0, +)) deliveries "
              + "(\(deliveries.filter { $0 > 1 }.count) envelopes delivered more than once), every command answered once")
    }
}
