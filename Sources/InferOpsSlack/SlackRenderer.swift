import InferOpsCore

/// A message as Slack's Web API takes it: `text` (the notification and the fallback where blocks
/// cannot be shown) and Block Kit `blocks`.
public struct SlackMessage: Hashable, Sendable {
    public var text: String
    public var blocks: JSONValue

    /// The arguments of `chat.postMessage` / `chat.update` besides channel, ts and thread.
    public var arguments: [String: JSONValue] {
        ["text": .string(text), "blocks": blocks]
    }
}

/// Turns the platform-neutral replies into Block Kit. The only place that knows Slack's markup:
/// mentions become `<@U…>`, text from outside InferOps is escaped (`&`, `<`, `>`, so a reason of
/// `<!channel>` pings nobody and a link cannot be forged), buttons carry the operation in their
/// block id, and Slack's limits (3,000 characters a section, 10 fields, 50 blocks) are kept by
/// cutting, never by failing the post.
public enum SlackRenderer {
    /// Slack refuses a section text longer than this.
    static let sectionLimit = 3000
    /// …a field longer than this, and more fields than `fieldsPerSection` in one section.
    static let fieldLimit = 2000
    static let fieldsPerSection = 10
    /// …a message with more blocks than this.
    static let blockLimit = 50
    /// …a button label, a confirmation title and text longer than these.
    static let buttonLabelLimit = 75
    static let confirmTitleLimit = 100
    static let confirmTextLimit = 300
    /// The fallback text is a notification: it needs the title, not the whole reply.
    static let textLimit = 3000

    /// The block id of an operation's actions: the inbound `block_actions` names the operation with it.
    public static func actionBlockID(_ operation: OperationID) -> String { "inferops:\(operation.rawValue)" }

    /// The operation an action's block id names, if it is one of ours.
    public static func operation(inActionBlock blockID: String) -> OperationID? {
        guard blockID.hasPrefix("inferops:") else { return nil }
        let id = String(blockID.dropFirst("inferops:".count))
        return OperationID.isWellFormed(id) ? OperationID(id) : nil
    }

    public static func render(_ reply: Reply, operation: OperationID? = nil) -> SlackMessage {
        var blocks: [JSONValue] = []
        let title = emoji(reply.tone) + " *" + mrkdwn(reply.title, bold: true) + "*"
        blocks += sections(title)
        if !reply.lines.isEmpty {
            blocks += sections(reply.lines.map { mrkdwn($0) }.joined(separator: "\n"))
        }
        for start in stride(from: 0, to: reply.fields.count, by: fieldsPerSection) {
            let fields = reply.fields[start..<min(start + fieldsPerSection, reply.fields.count)].map { field in
                JSONValue.object([
                    "type": .string("mrkdwn"),
                    "text": .string(cut("*\(escape(field.label))*\n" + mrkdwn(field.value), to: fieldLimit)),
                ])
            }
            blocks.append(.object(["type": .string("section"), "fields": .array(fields)]))
        }
        if let table = reply.table {
            blocks += tableSections(table)
        }
        if let hint = reply.hint {
            blocks.append(.object([
                "type": .string("context"),
                "elements": .array([.object(["type": .string("mrkdwn"), "text": .string(cut("→ " + mrkdwn(hint), to: sectionLimit))])]),
            ]))
        }
        if !reply.actions.isEmpty {
            var actions: [String: JSONValue] = [
                "type": .string("actions"),
                "elements": .array(reply.actions.map(button)),
            ]
            if let operation { actions["block_id"] = .string(actionBlockID(operation)) }
            blocks.append(.object(actions))
        }
        if blocks.count > blockLimit {
            let shown = blocks.prefix(blockLimit - 1)
            blocks = Array(shown) + [.object([
                "type": .string("context"),
                "elements": .array([.object(["type": .string("mrkdwn"),
                                             "text": .string("… \(blocks.count - shown.count) more blocks not shown")])]),
            ])]
        }
        return SlackMessage(text: cut(emoji(reply.tone) + " " + notification(reply.title), to: textLimit), blocks: .array(blocks))
    }

    // MARK: text

    /// Slack's mrkdwn of a rich text: our own words as they are (backticks for names), mentions as
    /// `<@U…>`, outside text escaped. `bold` keeps `*` out of a bold title's user text.
    static func mrkdwn(_ text: RichText, bold: Bool = false) -> String {
        text.segments.map { segment in
            switch segment {
            case .plain(let words): escape(words)
            case .mention(let user): "<@\(user.rawValue)>"
            case .userText(let outside): userText(outside, bold: bold)
            case .channel(let channel): channelLink(channel)
            }
        }.joined()
    }

    /// The notification text (Slack formats it too, where blocks cannot be shown): the title as in
    /// the blocks, without the bold.
    static func notification(_ text: RichText) -> String {
        mrkdwn(text)
    }

    /// Slack's three control characters; every text it shows goes through this.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Outside text: escaped, on one line, and its backticks and formatting marks made literal so it
    /// cannot end our code spans or bold, or start its own.
    static func userText(_ text: String, bold: Bool) -> String {
        var cleaned = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n", "\r", "\t": cleaned.append(" ")
            case "`": cleaned.append("ˋ")
            case "*" where bold: cleaned.append("∗")
            default:
                if scalar.properties.generalCategory == .control { continue }
                cleaned.unicodeScalars.append(scalar)
            }
        }
        return escape(cleaned)
    }

    static func cut(_ text: String, to limit: Int) -> String {
        guard text.count > limit else { return text }
        return String(text.prefix(limit - 1)) + "…"
    }

    static func emoji(_ tone: Reply.Tone) -> String {
        switch tone {
        case .info: ":information_source:"
        case .progress: ":hourglass_flowing_sand:"
        case .success: ":white_check_mark:"
        case .warning: ":warning:"
        case .failure: ":x:"
        }
    }

    // MARK: blocks

    /// One section per 3,000 characters, split at line ends where it can.
    static func sections(_ text: String) -> [JSONValue] {
        var blocks: [JSONValue] = []
        var current = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let candidate = current.isEmpty ? String(line) : current + "\n" + line
            if candidate.count <= sectionLimit {
                current = candidate
                continue
            }
            if !current.isEmpty { blocks.append(section(current)) }
            current = cut(String(line), to: sectionLimit)
        }
        if !current.isEmpty { blocks.append(section(current)) }
        return blocks
    }

    static func section(_ text: String) -> JSONValue {
        .object(["type": .string("section"), "text": .object(["type": .string("mrkdwn"), "text": .string(text)])])
    }

    /// A table as aligned columns in a code block (Block Kit has no table that every client shows),
    /// cut into sections by whole rows.
    static func tableSections(_ table: Reply.Table) -> [JSONValue] {
        let rows = [table.headers] + table.rows.map { $0.map { cell in tableCell(cell) } }
        let widths = (0..<table.headers.count).map { column in
            rows.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0
        }
        func line(_ row: [String]) -> String {
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        let header = line(table.headers)
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        var blocks: [JSONValue] = []
        var chunk = [header, rule]
        for row in rows.dropFirst() {
            let next = line(row)
            if (chunk + [next]).joined(separator: "\n").count + 6 > sectionLimit {
                blocks.append(section("```\n" + chunk.joined(separator: "\n") + "\n```"))
                chunk = [header, rule]
            }
            chunk.append(cut(next, to: sectionLimit - 200))
        }
        blocks.append(section("```\n" + chunk.joined(separator: "\n") + "\n```"))
        return blocks
    }

    /// A table cell inside a code block: mentions still as `<@U…>` (Slack shows names there too),
    /// outside text escaped and with no backticks to close the block.
    static func tableCell(_ cell: RichText) -> String {
        cell.segments.map { segment in
            switch segment {
            case .plain(let words): escape(words.replacingOccurrences(of: "`", with: ""))
            case .mention(let user): "<@\(user.rawValue)>"
            case .userText(let outside): userText(outside, bold: false)
            case .channel(let channel): channelLink(channel)
            }
        }.joined()
    }

    /// A channel id (`C…`, `G…`) as Slack's link, which shows its current name; anything else (a
    /// name from another platform's configuration) as `#name`, escaped.
    static func channelLink(_ channel: String) -> String {
        let isID = channel.count >= 9 && ["C", "G"].contains(channel.first)
            && channel.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
        return isID ? "<#\(channel)>" : "#" + escape(channel)
    }

    static func button(_ action: Reply.Action) -> JSONValue {
        var button: [String: JSONValue] = [
            "type": .string("button"),
            "action_id": .string(action.name),
            "text": .object(["type": .string("plain_text"), "text": .string(cut(action.label, to: buttonLabelLimit))]),
            "value": .string(cut(action.value, to: 2000)),
        ]
        switch action.style {
        case .primary: button["style"] = .string("primary")
        case .danger: button["style"] = .string("danger")
        case .plain: break
        }
        if let confirmation = action.confirmation {
            button["confirm"] = .object([
                "title": .object(["type": .string("plain_text"), "text": .string(cut(action.label + "?", to: confirmTitleLimit))]),
                "text": .object(["type": .string("mrkdwn"), "text": .string(cut(escape(confirmation), to: confirmTextLimit))]),
                "confirm": .object(["type": .string("plain_text"), "text": .string(cut(action.label, to: 30))]),
                "deny": .object(["type": .string("plain_text"), "text": .string("Cancel")]),
            ])
        }
        return .object(button)
    }
}
