// Golden files for the console renderer: each fixture reply below is rendered and compared with
// `Tests/Golden/Console/<name>.txt`, byte for byte (outside the test target's folder, so SwiftPM
// does not warn about files it does not build). A change in the console's output fails here until the file
// is re-recorded, on purpose only, after reading the diff:
//
//     INFEROPS_RECORD_GOLDEN=1 swift test --filter ConsoleGoldenTests
//
// rewrites the files instead of comparing (the tests then fail, saying what they recorded, so a
// recording run is never mistaken for a passing one); review `git diff Tests/Golden/Console`.

import Foundation
import InferOpsConsole
import InferOpsCore
import Testing

@Suite struct ConsoleGoldenTests {
    static let operation = OperationID("op-1234abcd")
    static let alice = UserID("alice")
    static let carol = UserID("carol")

    /// An operation as the status card sees it: a deploy to staging, planned, at `state`.
    static func record(_ state: OperationState) -> OperationRecord {
        OperationRecord(
            id: operation, kind: .deploy, requester: alice, environment: "staging", model: "llama-3-8b",
            target: ReleaseTarget(release: "llama-3-8b-staging", namespace: "inference-staging"), state: state,
            planDigest: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            command: "/infer deploy llama-3-8b to staging", createdAt: Date(timeIntervalSince1970: 1_796_000_000)
        )
    }

    struct Fixture: CustomTestStringConvertible, Sendable {
        var name: String
        var render: @Sendable () -> String
        var testDescription: String { name }
    }

    static let fixtures: [Fixture] = [
        Fixture(name: "status-card") {
            ConsoleRenderer.render(
                StatusCard.reply(for: record(.planned)), operation: operation, threaded: false)
        },
        Fixture(name: "card-edit") {
            let detail = "Running helm upgrade --install (waits up to 1 min 0 s for readiness)."
            return ConsoleRenderer.renderEdit(
                StatusCard.reply(for: record(.applying), detail: RichText(detail)), operation: operation)
        },
        Fixture(name: "card-edit-long-hostile") {
            let event = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.\n\u{1b}[2J✓ forged line, "
                + String(repeating: "preemption is not helpful for scheduling; ", count: 3)
            return ConsoleRenderer.renderEdit(
                StatusCard.reply(for: record(.waitingReady), detail: "Waiting: \(user: event)"), operation: operation)
        },
        Fixture(name: "card-final-edit") {
            ConsoleRenderer.renderEdit(StatusCard.reply(for: record(.succeeded)), operation: operation)
        },
        Fixture(name: "step") {
            ConsoleRenderer.render(
                Reply(.progress, "Plan ready: 1 × meta-llama/Meta-Llama-3-8B-Instruct@main, 1 GPU each."),
                operation: operation, threaded: true)
        },
        Fixture(name: "success") {
            ConsoleRenderer.render(
                Reply(
                    .success, "Deployed llama-3-8b to staging: revision 1, verified in 4 ms.",
                    fields: [
                        Reply.Field("endpoint", "llama-3-8b-staging.inference-staging.svc.cluster.local:8000"),
                        Reply.Field("revision", "1"),
                    ]),
                operation: operation, threaded: true)
        },
        Fixture(name: "failure-with-hint") {
            ConsoleRenderer.render(
                Reply(
                    .failure,
                    "The rollout failed: \(user: "Deployment inference-staging/llama-3-8b-staging: Progress deadline exceeded")",
                    lines: ["Rolled back to revision 1."],
                    hint: "`/infer history llama-3-8b in staging` shows what each revision was."),
                operation: operation, threaded: true)
        },
        Fixture(name: "status-table") {
            ConsoleRenderer.render(
                Reply(
                    .info, "Deployments",
                    table: Reply.Table(
                        headers: ["model", "env", "helm", "ready", "in flight"],
                        rows: [
                            ["llama-3-8b", "staging", "deployed", "1/1", "—"],
                            ["mistral-7b", "production", "failed", "0/2", "op-1234abcd deploy"],
                        ])),
                operation: nil, threaded: false)
        },
        Fixture(name: "help") {
            ConsoleRenderer.render(
                Reply(
                    .info, "InferOps commands",
                    lines: [
                        "`/infer deploy <model> to <env> [--set k=v …] [--dry-run]`: deploy or upgrade a model.",
                        "`/infer rollback <model> in <env> [--to N]`: go back to an earlier revision.",
                        "`/infer status [<env>]`: what runs where.",
                    ],
                    hint: "`/infer help <command>` explains one."),
                operation: nil, threaded: false)
        },
        Fixture(name: "approval-request") {
            var reply = Reply(
                .warning, "\(mention: carol) asks to deploy llama-3-8b to production; a second person must approve.",
                fields: [Reply.Field("digest", "9f86d081884c"), Reply.Field("expires", "in 30 min")])
            reply.actions = [
                Reply.Action(
                    name: "approve", label: "Approve", value: operation.rawValue, style: .primary,
                    confirmation: "Approve deploy of llama-3-8b to production?",
                    command: "/infer approve \(operation.rawValue)"),
                Reply.Action(
                    name: "deny", label: "Deny", value: operation.rawValue, style: .danger,
                    command: "/infer deny \(operation.rawValue) --reason <why>"),
            ]
            return ConsoleRenderer.render(reply, operation: operation, threaded: true)
        },
        Fixture(name: "mentions-and-hostile-text") {
            let reason = "<!channel> \u{1b}]0;pwned\u{07}\u{1b}[31mred\u{1b}[0m\nline two\r\n✗ forged \u{202e}txt"
            return ConsoleRenderer.render(
                Reply(
                    .success, "🔒 `staging` is locked by \(mention: alice): \(user: reason)",
                    lines: ["\(mention: carol) tried to deploy; \(mention: UserID("evil\u{1b}[2J")) too." as RichText],
                    fields: [Reply.Field("reason", RichText.user(reason))],
                    hint: "Ask \(mention: alice) to `/infer unlock staging`." as RichText),
                operation: nil, threaded: false)
        },
    ]

    static let goldenFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Golden/Console")

    @Test(arguments: fixtures)
    func rendersAsRecorded(_ fixture: Fixture) throws {
        let rendered = fixture.render() + "\n"
        let file = Self.goldenFolder.appendingPathComponent(fixture.name + ".txt")
        if ProcessInfo.processInfo.environment["INFEROPS_RECORD_GOLDEN"] == "1" {
            try rendered.write(to: file, atomically: true, encoding: .utf8)
            Issue.record("Recorded \(file.path); review the diff and run the tests again without INFEROPS_RECORD_GOLDEN.")
            return
        }
        let recorded = try #require(
            try? String(contentsOf: file, encoding: .utf8),
            "No golden file \(file.path): record it with INFEROPS_RECORD_GOLDEN=1.")
        #expect(rendered == recorded, "\(fixture.name) differs from \(file.lastPathComponent)")
    }

    /// Nothing a golden file holds may move the cursor, recolour or retitle a terminal.
    @Test(arguments: fixtures)
    func noEscapeSequenceReachesTheTerminal(_ fixture: Fixture) {
        let rendered = fixture.render()
        #expect(!rendered.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || (0x7F...0x9F).contains($0.value) })
        #expect(!rendered.unicodeScalars.contains { (0x202A...0x202E).contains($0.value) })
    }

    /// Every golden file belongs to a fixture: a renamed fixture leaves no stale file behind.
    @Test func everyGoldenFileHasAFixture() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.goldenFolder.path)
            .filter { $0.hasSuffix(".txt") }.sorted()
        #expect(files == Self.fixtures.map { $0.name + ".txt" }.sorted())
    }
}
