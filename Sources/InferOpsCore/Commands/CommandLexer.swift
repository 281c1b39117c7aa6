/// Splits a command line into words, honouring quotes, and refuses text a person would not type.
///
/// Chat clients rewrite what people type: Slack turns `"` into curly quotes and `--` into an em dash.
/// Both are accepted as their ASCII forms so commands copied from chat still parse.
public enum CommandLexer {
    public static let maximumLength = 1_000

    public struct Token: Hashable, Sendable {
        public var text: String
        /// Quoted tokens are never read as keywords or options.
        public var quoted: Bool
    }

    public static func tokenize(_ input: String) throws(CommandError) -> [Token] {
        guard input.unicodeScalars.count <= maximumLength else {
            throw CommandError(
                "The command is \(input.unicodeScalars.count) characters long; the limit is \(maximumLength).",
                hint: "Shorten it: a command names a verb, a model, an environment and a few options."
            )
        }
        for scalar in input.unicodeScalars where isForbidden(scalar) {
            let code = "U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
            let what = scalar.properties.generalCategory == .control ? "a control character" : "an invisible formatting character"
            throw CommandError(
                "The command contains \(what) (\(code)); commands are one line of visible text.",
                hint: "Type the command again without pasting it from elsewhere."
            )
        }
        var tokens: [Token] = []
        var current = ""
        var inToken = false
        var quote: Character? = nil
        var wasQuoted = false
        var iterator = input.makeIterator()
        while let character = iterator.next() {
            if let open = quote {
                if character == "\\" && open == "\"" {
                    if let next = iterator.next() { current.append(next) }
                    continue
                }
                if closes(open, character) {
                    quote = nil
                } else {
                    current.append(character)
                }
                continue
            }
            if character.isWhitespace {
                if inToken { tokens.append(Token(text: current, quoted: wasQuoted)) }
                current = ""
                inToken = false
                wasQuoted = false
                continue
            }
            if let open = opening(character) {
                quote = open
                // Only a token that starts with a quote is literal text; `--reason="two words"` is an option.
                if !inToken { wasQuoted = true }
                inToken = true
                continue
            }
            inToken = true
            current.append(character)
        }
        if quote != nil {
            throw CommandError("A quoted text is not closed.", hint: "Close it with a matching quote.")
        }
        if inToken { tokens.append(Token(text: current, quoted: wasQuoted)) }
        return tokens.map { token in
            guard !token.quoted else { return token }
            var text = token.text
            if text.hasPrefix("\u{2014}") { text = "--" + text.dropFirst() }  // em dash from Slack's autocorrect
            if text.hasPrefix("\u{2013}") { text = "--" + text.dropFirst() }  // en dash
            return Token(text: text, quoted: false)
        }
    }

    static func opening(_ character: Character) -> Character? {
        switch character {
        case "\"", "'": character
        case "\u{201C}", "\u{201E}": "\u{201D}"
        case "\u{2018}": "\u{2019}"
        default: nil
        }
    }

    static func isClosingQuote(_ character: Character) -> Bool {
        character == "\u{201D}" || character == "\u{2019}"
    }

    static func closes(_ open: Character, _ character: Character) -> Bool {
        switch open {
        case "\u{201D}": character == "\u{201D}" || character == "\u{201C}"
        case "\u{2019}": character == "\u{2019}"
        default: character == open
        }
    }

    static func isForbidden(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == " " { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned, .privateUse:
            return true
        default:
            return false
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
