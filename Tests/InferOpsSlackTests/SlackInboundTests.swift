import InferOpsCore
import InferOpsSlack
import Testing

/// Envelopes as Slack sends them (shapes from Slack's SDK fixtures) in, the intake's events out.
@Suite struct SlackInboundTests {
    let inbound = SlackInbound(command: "/infer", botUser: "U0EMUBOT1")

    func envelope(_ type: String, _ payload: String, id: String = "e-1") throws -> SocketModeEnvelope {
        SocketModeEnvelope(id: id, type: type, payload: try JSONValue(parsing: payload))
    }

    @Test func frames() throws {
        #expect(try SocketModeMessage(text: #"{"type":"hello","num_connections":1}"#) == .hello)
        #expect(try SocketModeMessage(text: #"{"type":"disconnect","reason":"refresh_requested"}"#)
                == .disconnect(reason: "refresh_requested"))
        let message = try SocketModeMessage(
            text: #"{"envelope_id":"abc","type":"slash_commands","payload":{"text":"x"},"retry_attempt":2,"retry_reason":"timeout"}"#)
        guard case .envelope(let envelope) = message else {
            Issue.record("not an envelope: \(message)")
            return
        }
        #expect(envelope.id == "abc" && envelope.retryAttempt == 2 && envelope.payload["text"] == .string("x"))
        #expect(envelope.acknowledgement == #"{"envelope_id":"abc"}"#)
        #expect(try SocketModeMessage(text: #"{"type":"something_new"}"#) == .other(type: "something_new"))
        #expect(throws: (any Error).self) { try SocketModeMessage(text: "not json") }
    }

    @Test func aSlashCommandIsACommandFromItsUserInItsChannel() throws {
        let outcome = inbound.translate(try envelope("slash_commands", """
            {"command":"/infer","text":"deploy llama-3-8b to staging --reason \\"a &amp; b &lt;x&gt;\\"","user_id":"U0ALICE01",
             "user_name":"alice","channel_id":"C0DEPLOY01","channel_name":"deploys"}
            """, id: "env-7"))
        #expect(outcome == .event(ChatEvent(
            id: "slack:env-7", kind: .command(#"/infer deploy llama-3-8b to staging --reason "a & b <x>""#),
            user: UserID("U0ALICE01"), channel: "C0DEPLOY01")))
        #expect(inbound.translate(try envelope("slash_commands", #"{"command":"/other","text":"x","user_id":"U1","channel_id":"C1"}"#))
                == .ignored("slash command /other is not /infer"))
    }

    @Test func aMentionIsACommandAnsweredInItsThread() throws {
        let top = inbound.translate(try envelope("events_api", """
            {"type":"event_callback","event_id":"Ev01","event":{"type":"app_mention","user":"U0BOB0001",
             "text":"<@U0EMUBOT1> status llama-3-8b","channel":"C0DEPLOY01","ts":"1700000000.000200"}}
            """))
        #expect(top == .event(ChatEvent(id: "slack:Ev01", kind: .mention("status llama-3-8b"), user: UserID("U0BOB0001"),
                                        channel: "C0DEPLOY01", thread: "1700000000.000200")))
        let inThread = inbound.translate(try envelope("events_api", """
            {"type":"event_callback","event_id":"Ev02","event":{"type":"app_mention","user":"U0BOB0001",
             "text":"cancel op-1 <@U0EMUBOT1|inferops>","channel":"C0DEPLOY01","ts":"1700000000.000300",
             "thread_ts":"1700000000.000100"}}
            """))
        #expect(inThread == .event(ChatEvent(id: "slack:Ev02", kind: .mention("cancel op-1"), user: UserID("U0BOB0001"),
                                             channel: "C0DEPLOY01", thread: "1700000000.000100")))
    }

    @Test func theBotsOwnMessagesEditsAndOtherEventsAreIgnored() throws {
        for payload in [
            #"{"event_id":"Ev1","event":{"type":"app_mention","bot_id":"B1","user":"U0EMUBOT1","text":"x","channel":"C1","ts":"1.0"}}"#,
            #"{"event_id":"Ev2","event":{"type":"app_mention","subtype":"message_changed","user":"U1","text":"x","channel":"C1","ts":"1.0"}}"#,
            #"{"event_id":"Ev3","event":{"type":"message","user":"U1","text":"deploy x","channel":"C1","ts":"1.0"}}"#,
        ] {
            guard case .ignored = inbound.translate(try envelope("events_api", payload)) else {
                Issue.record("not ignored: \(payload)")
                continue
            }
        }
    }

    @Test func aButtonIsAnActionOnTheOperationItsBlockNames() throws {
        let outcome = inbound.translate(try envelope("interactive", """
            {"type":"block_actions","user":{"id":"U0CAROL01"},"channel":{"id":"C0PROD0001"},
             "container":{"type":"message","message_ts":"1700000000.000500","channel_id":"C0PROD0001"},
             "message":{"ts":"1700000000.000500","thread_ts":"1700000000.000400"},
             "actions":[{"action_id":"approve","block_id":"inferops:op-1a2b3c4d","value":"sha256:abc"}]}
            """, id: "env-9"))
        #expect(outcome == .event(ChatEvent(
            id: "slack:env-9", kind: .action(ChatAction(name: "approve", operation: OperationID("op-1a2b3c4d"), value: "sha256:abc")),
            user: UserID("U0CAROL01"), channel: "C0PROD0001", thread: "1700000000.000400")))
        guard case .ignored = inbound.translate(try envelope("interactive", """
            {"type":"block_actions","user":{"id":"U1"},"channel":{"id":"C1"},"actions":[{"action_id":"x","block_id":"someone-else"}]}
            """)) else {
            Issue.record("a foreign block was taken")
            return
        }
        guard case .ignored = inbound.translate(try envelope("interactive", #"{"type":"view_submission","user":{"id":"U1"}}"#)) else {
            Issue.record("a view submission was taken")
            return
        }
    }
}
