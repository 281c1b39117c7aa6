import Foundation
import InferOpsCore
import Synchronization

/// The console chat: replies printed as text, each operation's thread an indented block tagged with
/// its id. Used by the sandbox, `inferops exec`, and anyone running the daemon locally.
///
/// A terminal cannot edit what it printed, so each edit of a status card is printed as one short
/// line tagged with the operation id; an edit that says the same as the last one printed for that
/// operation is skipped, so the console is not flooded with repeats.
public final class ConsoleTransport: ChatTransport, Sendable {
    let output: @Sendable (String) -> Void
    let isWritable: @Sendable () -> Bool
    let counter = MessageCounter()
    let cardEdits = CardEditMemory()

    /// - Parameters:
    ///   - output: where rendered lines go; standard output by default.
    ///   - isWritable: whether `output` accepts writes now; standard output's state by default.
    public init(
        output: @escaping @Sendable (String) -> Void = { line in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        },
        isWritable: @escaping @Sendable () -> Bool = { ConsoleTransport.isWritable(descriptor: STDOUT_FILENO) }
    ) {
        self.output = output
        self.isWritable = isWritable
    }

    /// Connected while the output accepts writes: a closed terminal or a pipe whose reader has gone
    /// means replies are lost, and the daemon should not claim to be ready.
    public var isConnected: Bool {
        get async { isWritable() }
    }

    /// Whether writing to `descriptor` would succeed now, asked without writing: `poll` reports it
    /// writable and reports no error or hang-up (the reader of a pipe closing it is an error).
    public static func isWritable(descriptor: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        return entry.revents & Int16(POLLOUT) != 0 && entry.revents & Int16(POLLERR | POLLHUP | POLLNVAL) == 0
    }

    public func post(_ reply: Reply, in conversation: Conversation, operation: OperationID?) async throws -> MessageRef {
        let id = counter.next()
        let threaded = conversation.thread != nil
        output(ConsoleRenderer.render(reply, operation: operation, threaded: threaded))
        return MessageRef(channel: conversation.channel, id: operation?.rawValue ?? "msg-\(id)")
    }

    public func update(_ message: MessageRef, with reply: Reply, operation: OperationID?) async throws {
        let edit = ConsoleRenderer.cardEdit(reply)
        guard await cardEdits.isNew(edit, for: operation?.rawValue ?? message.id) else { return }
        output(ConsoleRenderer.renderEdit(reply, operation: operation))
    }
}

/// Numbers the console's messages; taken without a hop to an actor, since every reply takes one.
final class MessageCounter: Sendable {
    let value = Atomic<Int>(0)
    func next() -> Int {
        value.add(1, ordering: .relaxed).newValue
    }
}

/// The last card edit printed for each of the most recent operations.
actor CardEditMemory {
    /// Enough for every operation running at once; older ones are forgotten (at worst an edit of a
    /// forgotten operation is printed once more).
    static let capacity = 64
    var last: [String: ConsoleRenderer.CardEdit] = [:]
    var order: [String] = []

    /// Whether `edit` differs from the last one printed for `key`; remembers it when it does.
    func isNew(_ edit: ConsoleRenderer.CardEdit, for key: String) -> Bool {
        if last[key] == edit { return false }
        if last.updateValue(edit, forKey: key) == nil {
            order.append(key)
            if order.count > Self.capacity { last[order.removeFirst()] = nil }
        }
        return true
    }
}

/// Renders replies as plain text. Golden tests pin its output.
///
/// Mentions are written `@id`. Text from outside InferOps is shown with every control character
/// and terminal escape sequence removed (line breaks become spaces), so a reason, an engine's
/// answer or a Kubernetes event cannot clear the screen, recolour it, or forge a line of output.
public enum ConsoleRenderer {
    public static func render(_ reply: Reply, operation: OperationID?, threaded: Bool) -> String {
        let symbol: String
        switch reply.tone {
        case .info: symbol = "•"
        case .progress: symbol = "…"
        case .success: symbol = "✓"
        case .warning: symbol = "!"
        case .failure: symbol = "✗"
        }
        var lines = ["\(symbol) \(text(reply.title))"]
        for field in reply.fields { lines.append("    \(field.label): \(text(field.value))") }
        lines.append(contentsOf: reply.lines.map { "  " + text($0) })
        if let table = reply.table { lines.append(contentsOf: renderTable(table).map { "  " + $0 }) }
        if let hint = reply.hint { lines.append("  → \(text(hint))") }
        // A button becomes the command that does the same, for the user to type.
        lines.append(contentsOf: reply.actions.map { "  [\(literal($0.label))] \(literal($0.command))" })
        guard let operation else { return lines.joined(separator: "\n") }
        let prefix = threaded ? "    │ [\(operation)] " : "[\(operation)] "
        let indent = repeated(" ", prefix.count)
        return lines.enumerated().map { index, line in
            index == 0 ? prefix + line : indent + line
        }.joined(separator: "\n")
    }

    /// `character` `count` times, written at once (`String(repeating:count:)` appends one by one).
    static func repeated(_ character: Unicode.Scalar, _ count: Int) -> String {
        guard count > 0 else { return "" }
        return String(unsafeUninitializedCapacity: count) { buffer in
            buffer.initialize(repeating: UInt8(ascii: character))
            return count
        }
    }

    /// What a status card edit says: the operation's state and what it is doing now.
    public struct CardEdit: Hashable, Sendable {
        public var state: String?
        public var detail: String
    }

    /// How many characters of an edit's detail are shown: the line stays within a terminal's width.
    public static let editDetailWidth = 100

    /// The `state` and `now` fields of a status card (`StatusCard.reply`), sanitized; the title
    /// stands in for `now` when the card has none (the final edit), truncated to `editDetailWidth`.
    public static func cardEdit(_ reply: Reply) -> CardEdit {
        func field(_ label: String) -> String? {
            reply.fields.first { $0.label == label }.map { text($0.value) }
        }
        let detail = field("now") ?? text(reply.title)
        let shown = detail.count > editDetailWidth ? detail.prefix(editDetailWidth - 1) + "…" : detail
        return CardEdit(state: field("state"), detail: String(shown))
    }

    /// A status card edit as one line: `[op-…] ▣ state · detail`.
    public static func renderEdit(_ reply: Reply, operation: OperationID?) -> String {
        let edit = cardEdit(reply)
        let body = "▣ " + (edit.state.map { "\($0) · " } ?? "") + edit.detail
        return operation.map { "[\($0)] " + body } ?? body
    }

    /// One piece of reply text for a terminal.
    public static func text(_ rich: RichText) -> String {
        rich.segments.map { segment in
            switch segment {
            case .plain(let plain): plain
            case .mention(let user): "@" + literal(user.rawValue)
            case .userText(let untrusted): literal(untrusted)
            case .channel(let channel): "`" + literal(channel) + "`"
            }
        }.joined()
    }

    /// `untrusted` without escape sequences (CSI, OSC and two-byte `ESC x`), C0 and C1 control
    /// characters, or bidirectional overrides; tabs and line breaks become spaces.
    public static func literal(_ untrusted: String) -> String {
        var result = String.UnicodeScalarView()
        var scalars = untrusted.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            switch scalar.value {
            case 0x1B:
                skipEscapeSequence(&scalars)
            case 0x9B:
                skipControlSequence(&scalars)
            case 0x09, 0x0A, 0x0D:
                result.append(" ")
            case 0x00...0x1F, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069:
                continue
            default:
                result.append(scalar)
            }
        }
        return String(result)
    }

    /// After an ESC: a CSI (`[` … final byte), an OSC or other string (`]`, `P`, `^`, `_`, `X` … BEL
    /// or ESC `\`), or a single following character.
    static func skipEscapeSequence(_ scalars: inout String.UnicodeScalarView.Iterator) {
        guard let introducer = scalars.next() else { return }
        switch introducer {
        case "[":
            skipControlSequence(&scalars)
        case "]", "P", "^", "_", "X":
            while let scalar = scalars.next() {
                if scalar.value == 0x07 || scalar.value == 0x9C { return }
                if scalar.value == 0x1B {
                    _ = scalars.next()
                    return
                }
            }
        default:
            return
        }
    }

    /// Parameters and intermediates (0x20–0x3F) up to the final byte (0x40–0x7E).
    static func skipControlSequence(_ scalars: inout String.UnicodeScalarView.Iterator) {
        while let scalar = scalars.next() {
            if (0x40...0x7E).contains(scalar.value) || !(0x20...0x3F).contains(scalar.value) { return }
        }
    }

    static func renderTable(_ table: Reply.Table) -> [String] {
        let columns = table.headers.count
        // Each cell with its width in characters, counted once (counting a String walks it).
        let rows = table.rows.map { $0.prefix(columns).map { cell in text(cell) }.map { ($0, $0.count) } }
        let headers = table.headers.map { ($0, $0.count) }
        var widths = headers.map(\.1)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.1) }
        }
        let spaces = repeated(" ", widths.max() ?? 0)
        // Padded by characters, in Swift: Foundation's `padding(toLength:)` counts UTF-16 units and
        // goes through NSString, and a burst of `history` tables spent most of its rendering there.
        func format(_ row: [(String, Int)]) -> String {
            var line = ""
            for (index, (cell, width)) in row.enumerated() {
                if index > 0 { line += "  " }
                line += cell
                let missing = widths[index] - width
                if missing > 0 { line += spaces.prefix(missing) }
            }
            let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
            let start = line.drop(while: blank)
            return String(start[..<(start.lastIndex { !blank($0) }.map { start.index(after: $0) } ?? start.startIndex)])
        }
        return [format(headers), widths.map { repeated("-", $0) }.joined(separator: "  ")]
            + rows.map(format)
    }
}
