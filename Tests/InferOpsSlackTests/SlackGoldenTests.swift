// Golden files for the Slack renderer: each fixture reply is rendered to Block Kit and compared
// with `Tests/Golden/Slack/<name>.json` (sorted keys, indented), byte for byte. A change in what
// Slack receives fails here until the file is re-recorded, on purpose only, after reading the diff:
//
//     INFEROPS_RECORD_GOLDEN=1 swift test --filter SlackGoldenTests
//
// rewrites the files instead of comparing (the tests then fail, saying what they recorded);
// review `git diff Tests/Golden/Slack`.

import Foundation
import InferOpsCore
import InferOpsSlack
import Testing

@Suite struct SlackGoldenTests {
    static let operation = OperationID("op-1234abcd")
    static let alice = UserID("U0ALICE")
    static let carol = UserID("U0CAROL")

    /// A promotion to production, running.
    static let promotion = OperationRecord(
        id: operation, kind: .promote, requester: alice, environment: "production", model: "llama-3-8b",
        target: ReleaseTarget(release: "llama-3-8b-production", namespace: "inference-production"), state: .applying,
        planDigest: "sha256:ebd8e79d9abfeec96b1cfc516eac7743816d6a013b7bdba84820c6efc2929725",
        command: "/infer promote llama-3-8b to production", createdAt: Date(timeIntervalSince1970: 1_796_000_000))

    struct Fixture: CustomTestStringConvertible, Sendable {
        var name: String
        var reply: @Sendable () -> Reply
        var testDescription: String { name }
    }

    static let fixtures: [Fixture] = [
        Fixture(name: "status-card") { StatusCard.reply(for: promotion, detail: "Running helm upgrade --install.") },
        Fixture(name: "step") {
            Reply(.progress, "Plan ready: 1 × meta-llama/Meta-Llama-3-8B-Instruct@main, 1 GPU each.",
                  fields: [Reply.Field("chart", "deploy/charts/vllm-engine 0.1.0"), Reply.Field("digest", "9f86d081884c")])
        },
        Fixture(name: "success") {
            Reply(.success, "Deployed llama-3-8b to staging: revision 3, verified in 412 ms.",
                  fields: [Reply.Field("endpoint", "llama-3-8b-staging.inference-staging.svc.cluster.local:8000")])
        },
        Fixture(name: "failure-with-hint") {
            Reply.error(Refusal("`staging` is locked by \(mention: carol): \(user: "load test <!channel> & *bold*").",
                                hint: "Ask them to `/infer unlock staging` when they are done."))
        },
        Fixture(name: "mentions-and-hostile-text") {
            Reply(.warning, "Disabled by \(mention: carol): \(user: "see <https://evil.example|INC-1> `rm -rf` *now*\nsecond line")",
                  lines: ["A line with our own `code`.", "Asked by \(mention: alice) & answered." as RichText])
        },
        Fixture(name: "status-table") {
            Reply(.info, "Status", lines: ["🔒 production locked by \(mention: carol) 5 min ago: \(user: "freeze <b>")" as RichText],
                  table: Reply.Table(
                      headers: ["model", "env", "helm", "ready", "in flight"],
                      rows: [["llama-3-8b", "staging", "deployed rev 3", "1/1", "–"],
                             ["llama-3-8b", "production", "deployed rev 1", "2/2", "op-1234abcd deploy (queued)"]]))
        },
        Fixture(name: "wrong-channel-refusal") {
            var reply = Reply.error(WrongChannel(environment: "production", channel: "C0RANDOM01", allowed: ["C0PRODDEP1"]))
            reply.privateTo = alice
            return reply
        },
        Fixture(name: "approval-decided") {
            Reply(.success, "Approved by \(mention: carol) (1 of 1). (promote in production, op-1234abcd, plan ebd8e79d9abf)")
        },
        Fixture(name: "approval-request") {
            var reply = Reply(
                .warning, "Approval needed: promote in production (op-1234abcd)",
                lines: ["Nothing runs until 1 person other than the requester approves this exact plan."],
                fields: [Reply.Field("requested by", "\(mention: alice)" as RichText),
                         Reply.Field("promoted from", "op-0badf00d in staging, plan 27bbcce984d5"),
                         Reply.Field("plan digest", "sha256:ebd8e79d9abfeec96b1cfc516eac7743816d6a013b7bdba84820c6efc2929725"),
                         Reply.Field("valid until", "2026-12-02T23:11:24Z")],
                hint: "Anyone with the role `production-approver` may approve, except the requester.")
            reply.actions = [
                Reply.Action(name: "approve", label: "Approve", value: "sha256:ebd8e79d9abf", style: .primary,
                             confirmation: "Approve promote in production, plan ebd8e79d9abf?", command: "/infer approve op-1234abcd"),
                Reply.Action(name: "deny", label: "Deny", value: "sha256:ebd8e79d9abf", style: .danger,
                             command: "/infer deny op-1234abcd --reason \"…\""),
            ]
            return reply
        },
    ]

    static var folder: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Golden/Slack")
    }

    /// Sorted keys and indentation, so a diff reads block by block.
    static func pretty(_ message: SlackMessage) throws -> String {
        let data = Data(JSONValue.object(message.arguments).canonical.utf8)
        let object = try JSONSerialization.jsonObject(with: data)
        let pretty = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: pretty, as: UTF8.self) + "\n"
    }

    @Test(arguments: fixtures)
    func rendersAsRecorded(_ fixture: Fixture) throws {
        let rendered = try Self.pretty(SlackRenderer.render(fixture.reply(), operation: Self.operation))
        let file = Self.folder.appendingPathComponent("\(fixture.name).json")
        if ProcessInfo.processInfo.environment["INFEROPS_RECORD_GOLDEN"] == "1" {
            try rendered.write(to: file, atomically: true, encoding: .utf8)
            Issue.record("recorded \(file.path); unset INFEROPS_RECORD_GOLDEN and run again")
            return
        }
        let recorded = try String(contentsOf: file, encoding: .utf8)
        #expect(rendered == recorded, "\(fixture.name) differs from \(file.path)")
    }
}

/// What the golden files show, said as rules: escaping, mentions, limits and the action's operation.
@Suite struct SlackRendererTests {
    @Test func outsideTextCannotPingLinkOrBreakOutOfFormatting() throws {
        let message = SlackRenderer.render(Reply(.failure, "Denied: \(user: "<!channel> <@U0EVIL> `x` & *y*")"))
        let text = try #require(message.blocks[0]?["text"]?["text"]?.stringValue)
        #expect(!text.contains("<!channel>") && !text.contains("<@U0EVIL>"))
        #expect(text.contains("&lt;!channel&gt;") && text.contains("&amp;"))
        #expect(!text.dropFirst().dropLast().contains("*y*"))
        #expect(!text.contains("`x`"))
        #expect(!message.text.contains("<!channel>"))
    }

    @Test func mentionsAreSlackMentions() {
        let message = SlackRenderer.render(Reply(.success, "Approved by \(mention: UserID("U0CAROL"))."))
        #expect(message.text.contains("<@U0CAROL>"))
    }

    @Test func channelIdsAreLinksAndOtherNamesAreEscaped() {
        let message = SlackRenderer.render(Reply(.failure, "Only in \(channel: "C0PROD0001") or \(channel: "prod-deploys"), not \(channel: "<!here>")."))
        #expect(message.text.contains("<#C0PROD0001>"))
        #expect(message.text.contains("#prod-deploys"))
        #expect(message.text.contains("#&lt;!here&gt;") && !message.text.contains("<!here>"))
    }

    @Test func longRepliesKeepSlacksLimits() throws {
        let lines = (1...400).map { "line \($0): " + String(repeating: "x", count: 60) }
        let fields = (1...25).map { Reply.Field("field \($0)", String(repeating: "v", count: 2500)) }
        let message = SlackRenderer.render(Reply(.info, "Long", lines: lines, fields: fields))
        guard case .array(let blocks) = message.blocks else { throw TestFailure("no blocks") }
        #expect(blocks.count <= 50)
        for block in blocks {
            if let text = block["text"]?["text"]?.stringValue { #expect(text.count <= 3000) }
            if case .array(let fields)? = block["fields"] {
                #expect(fields.count <= 10)
                for field in fields { #expect((field["text"]?.stringValue?.count ?? 0) <= 2000) }
            }
        }
    }

    @Test func anActionsBlockNamesItsOperation() throws {
        var reply = Reply(.warning, "Approval needed")
        reply.actions = [Reply.Action(name: "approve", label: "Approve", value: "sha256:abc", style: .primary,
                                      confirmation: "Sure?", command: "/infer approve op-1234abcd")]
        let message = SlackRenderer.render(reply, operation: OperationID("op-1234abcd"))
        guard case .array(let blocks) = message.blocks, let actions = blocks.last else { throw TestFailure("no blocks") }
        let blockID = try #require(actions["block_id"]?.stringValue)
        #expect(SlackRenderer.operation(inActionBlock: blockID) == OperationID("op-1234abcd"))
        #expect(SlackRenderer.operation(inActionBlock: "inferops:op-zz") == nil)
        #expect(actions["elements"]?[0]?["confirm"] != nil)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The manifest follows the declared commands and asks for Socket Mode, interactivity and the few
/// scopes the bot's calls need.
@Suite struct SlackManifestTests {
    @Test func theManifestNamesEveryVerbAndOnlyTheScopesTheBotUses() throws {
        let spec = CommandSpec(name: "deploy", summary: "Deploy.", permission: "deploy", changes: true, arguments: [],
                               options: [], examples: [])
        let status = CommandSpec(name: "status", summary: "Status.", permission: "view", changes: false, arguments: [],
                                 options: [], examples: [])
        let manifest = SlackManifest.make(catalog: CommandCatalog(specs: [status, spec]))
        let command = try #require(manifest["features"]?["slash_commands"]?[0])
        #expect(command["command"] == .string("/infer"))
        #expect(command["usage_hint"]?.stringValue?.hasPrefix("[deploy|status]") == true)
        #expect(manifest["settings"]?["socket_mode_enabled"] == .bool(true))
        #expect(manifest["settings"]?["interactivity"]?["is_enabled"] == .bool(true))
        #expect(manifest["oauth_config"]?["scopes"]?["bot"]
                == .array(["app_mentions:read", "chat:write", "commands", "reactions:write"].map(JSONValue.string)))
    }
}
