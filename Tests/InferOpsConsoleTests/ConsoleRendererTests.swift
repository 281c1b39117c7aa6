import InferOpsConsole
import InferOpsCore
import Testing

/// The console writes mentions as `@id` and shows text from outside InferOps literally: no escape
/// sequence reaches the terminal, no control character, no forged line.
@Suite struct ConsoleRendererTests {
    static let hostileReason = "<!channel> \u{1b}[2J"

    @Test func aHostileReasonIsShownHarmlessly() {
        let alice = UserID("alice")
        let reply = Reply(
            .success, "🔒 `staging` is locked by \(mention: alice): \(user: Self.hostileReason).",
            lines: ["\(mention: alice) said: \(user: Self.hostileReason)" as RichText],
            fields: [Reply.Field("reason", RichText.user(Self.hostileReason))],
            table: Reply.Table(
                headers: ["by", "why"], rows: [["\(mention: alice)" as RichText, RichText.user(Self.hostileReason)]]),
            hint: "\(user: Self.hostileReason)" as RichText
        )
        let rendered = ConsoleRenderer.render(reply, operation: nil, threaded: false)
        #expect(!rendered.unicodeScalars.contains { $0.value == 0x1B })
        #expect(!rendered.contains("<@"))
        #expect(
            rendered == """
                ✓ 🔒 `staging` is locked by @alice: <!channel> .
                    reason: <!channel> 
                  @alice said: <!channel> 
                  by      why
                  ------  -----------
                  @alice  <!channel>
                  → <!channel> 
                """)
        // The part is marked, so a Slack renderer can escape `<!channel>` instead of pinging.
        #expect(reply.title.segments.contains(.userText(Self.hostileReason)))
        #expect(reply.title.segments.contains(.mention(alice)))
        #expect(reply.title.plainText == "🔒 `staging` is locked by @alice: \(Self.hostileReason).")
    }

    /// Columns line up by characters: an accented letter or an emoji is one column of the table.
    @Test func tableColumnsArePaddedByCharacters() {
        let reply = Reply(
            .info, "History",
            table: Reply.Table(headers: ["rev", "by", "note"], rows: [
                ["1", "@renée", "🚀 first"],
                ["2", "@bob", ""],
            ]))
        #expect(
            ConsoleRenderer.render(reply, operation: nil, threaded: false) == """
                • History
                  rev  by      note
                  ---  ------  -------
                  1    @renée  🚀 first
                  2    @bob
                """)
    }

    @Test(arguments: [
        ("\u{1b}[31mred\u{1b}[0m", "red"),
        ("\u{1b}[1;38;5;196mbold\u{1b}[m", "bold"),
        ("\u{1b}]0;pwned\u{07}title", "title"),
        ("\u{1b}]8;;http://evil\u{1b}\\link\u{1b}]8;;\u{1b}\\", "link"),
        ("\u{9b}2Jc1", "c1"),
        ("bell\u{07}and\u{08}backspace\u{7f}", "bellandbackspace"),
        ("two\nlines\r\n✓ forged", "two lines  ✓ forged"),
        ("tab\there", "tab here"),
        ("\u{202e}desrever", "desrever"),
        ("trailing escape \u{1b}", "trailing escape "),
        ("`code` and <!here> stay", "`code` and <!here> stay"),
    ])
    func userTextIsLiteral(_ input: String, _ shown: String) {
        #expect(ConsoleRenderer.text(.user(input)) == shown)
        #expect(ConsoleRenderer.literal(input) == shown)
    }

    @Test func mentionsAndOwnWordsRender() {
        let text: RichText = "deploy by \(mention: UserID("U0ADMIN")) in `staging`"
        #expect(ConsoleRenderer.text(text) == "deploy by @U0ADMIN in `staging`")
        #expect(ConsoleRenderer.text("\(mention: UserID("evil\u{1b}[2J"))") == "@evil")
    }

    @Test func threadedRepliesIndentUnderTheOperation() {
        let reply = Reply(.progress, "Test completion answered in 4 ms: “\(user: "hi\u{1b}[2J")”")
        #expect(
            ConsoleRenderer.render(reply, operation: OperationID("op-00000001"), threaded: true)
                == "    │ [op-00000001] … Test completion answered in 4 ms: “hi”")
    }
}
