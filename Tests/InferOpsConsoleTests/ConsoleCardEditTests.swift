import Foundation
import InferOpsConsole
import InferOpsCore
import Testing

/// A terminal cannot edit what it printed: each status card edit is one line tagged with the
/// operation id, and an edit that says nothing new is not printed again.
@Suite struct ConsoleCardEditTests {
    /// The lines a transport printed, in order.
    final class Printed: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    static func card(_ operation: OperationID, _ state: OperationState, _ detail: String?) -> Reply {
        StatusCard.reply(
            for: OperationRecord(
                id: operation, kind: .deploy, requester: UserID("alice"), environment: "staging",
                model: "llama-3-8b", state: state, command: "/infer deploy llama-3-8b to staging",
                createdAt: Date(timeIntervalSince1970: 0)),
            detail: detail.map { RichText($0) })
    }

    @Test func editsArePrintedOnceEachAndTaggedWithTheOperation() async throws {
        let printed = Printed()
        let transport = ConsoleTransport(output: printed.append, isWritable: { true })
        let first = OperationID("op-00000001")
        let second = OperationID("op-00000002")
        let conversation = Conversation(channel: "console")
        let card = try await transport.post(Self.card(first, .planned, nil), in: conversation, operation: first)
        let otherCard = try await transport.post(Self.card(second, .planned, nil), in: conversation, operation: second)
        #expect(printed.all.count == 2)

        let edits: [(MessageRef, OperationID, OperationState, String?)] = [
            (card, first, .prechecking, "Checking GPU capacity."),
            (card, first, .prechecking, "Checking GPU capacity."),  // the same again: skipped
            (otherCard, second, .prechecking, "Checking GPU capacity."),  // another operation: printed
            (card, first, .applying, "Checking GPU capacity."),  // a new state: printed
            (card, first, .applying, "Running helm upgrade --install."),  // a new detail: printed
            (card, first, .applying, "Running helm upgrade --install."),
            (card, first, .succeeded, nil),  // the final edit, no detail: the title stands in
        ]
        for (message, operation, state, detail) in edits {
            try await transport.update(message, with: Self.card(operation, state, detail), operation: operation)
        }
        #expect(
            Array(printed.all.dropFirst(2)) == [
                "[op-00000001] ▣ prechecking · Checking GPU capacity.",
                "[op-00000002] ▣ prechecking · Checking GPU capacity.",
                "[op-00000001] ▣ applying · Checking GPU capacity.",
                "[op-00000001] ▣ applying · Running helm upgrade --install.",
                "[op-00000001] ▣ succeeded · Deploy llama-3-8b to staging, requested by @alice",
            ])
    }

    @Test func aLongDetailIsCutToOneShortLine() {
        let detail = String(repeating: "0/3 nodes are available. ", count: 10)
        let line = ConsoleRenderer.renderEdit(Self.card(OperationID("op-00000001"), .waitingReady, detail), operation: nil)
        #expect(line.hasPrefix("▣ waiting ready · 0/3 nodes are available."))
        #expect(line.hasSuffix("…"))
        #expect(ConsoleRenderer.cardEdit(Self.card(OperationID("op-00000001"), .waitingReady, detail)).detail.count
            == ConsoleRenderer.editDetailWidth)
        #expect(!line.contains("\n"))
    }
}
