/// A command line read against the catalog: the verb, its arguments by name, and its options.
public struct ParsedCommand: Hashable, Sendable {
    public var verb: String
    public var arguments: [String: String]
    /// Option values by option name; a flag that is present has one empty value.
    public var options: [String: [String]]

    public init(verb: String, arguments: [String: String] = [:], options: [String: [String]] = [:]) {
        self.verb = verb
        self.arguments = arguments
        self.options = options
    }

    public func argument(_ name: String) -> String? { arguments[name] }
    public func flag(_ name: String) -> Bool { options[name] != nil }
    public func option(_ name: String) -> String? { options[name]?.last }
    public func values(_ name: String) -> [String] { options[name] ?? [] }

    /// The command in a canonical form, for records and the audit log.
    public func canonical(spec: CommandSpec) -> String {
        var parts = [verb]
        let keywords = Set(spec.arguments.compactMap(\.keyword))
        for argument in spec.arguments {
            guard let value = arguments[argument.name] else { continue }
            if let keyword = argument.keyword { parts.append(keyword) }
            parts.append(CommandParser.quoteIfNeeded(value, keywords: keywords))
        }
        for option in spec.options {
            for value in options[option.name] ?? [] {
                parts.append("--\(option.name)")
                if option.kind != .flag { parts.append(CommandParser.quoteIfNeeded(value, keywords: keywords)) }
            }
        }
        return parts.joined(separator: " ")
    }
}

/// A command that could not be read. Its message is safe to post.
public struct CommandError: UserFacingError, Equatable {
    public var message: String
    public var hint: String?
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
}

/// Reads `/infer …` text against the verbs declared in `commands/`.
public struct CommandParser: Sendable {
    public let catalog: CommandCatalog

    public init(catalog: CommandCatalog) {
        self.catalog = catalog
    }

    /// Parses one command. A leading `/infer` or bot mention is ignored.
    /// - Throws: `CommandError` naming what is wrong and the usage to follow.
    public func parse(_ input: String) throws(CommandError) -> ParsedCommand {
        var tokens = try CommandLexer.tokenize(input)
        if let first = tokens.first, !first.quoted,
            ["/infer", "@inferops", "infer"].contains(first.text.lowercased())
        {
            tokens.removeFirst()
        }
        guard let verbToken = tokens.first else {
            throw CommandError(
                "No command given.",
                hint: "Try `/infer help`. Commands: " + catalog.names.joined(separator: ", ") + "."
            )
        }
        let verb = verbToken.text.lowercased()
        guard let spec = catalog.spec(named: verb) else {
            throw CommandError(
                "Unknown command `\(Self.excerpt(verbToken.text))`." + Suggestions.didYouMean(verb, in: catalog.names),
                hint: "`/infer help` lists the commands."
            )
        }
        return try parse(Array(tokens.dropFirst()), as: spec)
    }

    private func parse(_ tokens: [CommandLexer.Token], as spec: CommandSpec) throws(CommandError) -> ParsedCommand {
        var result = ParsedCommand(verb: spec.name)
        let usage = "Usage: `/infer \(spec.usage)`"
        var index = 0
        while index < tokens.count {
            let token = tokens[index]
            index += 1
            if !token.quoted, token.text.hasPrefix("--") {
                // Split before lower-casing: lower-casing can change a string's length.
                let body = String(token.text.dropFirst(2))
                var name = body.lowercased()
                var inlineValue: String? = nil
                if let equals = body.firstIndex(of: "=") {
                    inlineValue = String(body[body.index(after: equals)...])
                    name = String(body[..<equals]).lowercased()
                }
                guard let option = spec.options.first(where: { $0.name == name }) else {
                    let known = spec.options.map { "--" + $0.name }
                    let hint = known.isEmpty ? "`\(spec.name)` takes no options. \(usage)" : usage
                    throw CommandError(
                        "`\(spec.name)` has no option `--\(Self.excerpt(name))`."
                            + Suggestions.didYouMean("--" + name, in: known),
                        hint: hint
                    )
                }
                if result.options[option.name] != nil, !option.repeatable {
                    throw CommandError("`--\(option.name)` is given twice.", hint: usage)
                }
                var value = ""
                if option.kind == .flag {
                    if inlineValue != nil {
                        throw CommandError("`--\(option.name)` takes no value.", hint: usage)
                    }
                } else if let inlineValue {
                    value = inlineValue
                } else {
                    guard index < tokens.count, tokens[index].quoted || !tokens[index].text.hasPrefix("--") else {
                        throw CommandError("`--\(option.name)` needs a value.", hint: usage)
                    }
                    value = tokens[index].text
                    index += 1
                }
                try Self.check(value, for: option, usage: usage)
                result.options[option.name, default: []].append(value)
                continue
            }
            let word = token.text.lowercased()
            if !token.quoted,
                let argument = spec.arguments.first(where: { $0.keyword == word && result.arguments[$0.name] == nil })
            {
                guard index < tokens.count else {
                    throw CommandError("`\(word)` must be followed by the \(argument.name).", hint: usage)
                }
                result.arguments[argument.name] = tokens[index].text
                index += 1
                continue
            }
            guard
                let argument = spec.arguments.first(where: { $0.keyword == nil && result.arguments[$0.name] == nil })
            else {
                throw CommandError("Unexpected `\(Self.excerpt(token.text))`.", hint: usage)
            }
            result.arguments[argument.name] = token.text
        }
        for argument in spec.arguments where !argument.optional && result.arguments[argument.name] == nil {
            let introduced = argument.keyword.map { " (after `\($0)`)" } ?? ""
            throw CommandError("The \(argument.name) is missing\(introduced).", hint: usage)
        }
        // In declaration order, so the same input always reports the same problem first.
        for argument in spec.arguments {
            guard let value = result.arguments[argument.name] else { continue }
            try Self.check(value, for: argument, usage: usage)
        }
        return result
    }

    /// Names of models, environments and verbs: lower-case letters, digits, `.`, `_` and `-`.
    public static func isName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, text.unicodeScalars.count <= 63 else { return false }
        guard ("a"..."z").contains(first) || ("0"..."9").contains(first) else { return false }
        return text.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "." || scalar == "_"
        }
    }

    static func check(_ value: String, for argument: ArgumentSpec, usage: String) throws(CommandError) {
        switch argument.kind {
        case .model, .environment, .verb:
            guard isName(value.lowercased()) else {
                throw CommandError(
                    "`\(excerpt(value))` is not a valid \(argument.name) name: names use lower-case letters, digits, `.`, `_` and `-`.",
                    hint: usage
                )
            }
        case .operation:
            guard OperationID.isWellFormed(value) else {
                throw CommandError("`\(excerpt(value))` is not an operation id (they look like `op-1a2b3c4d`).", hint: usage)
            }
        case .text:
            break
        }
    }

    static func check(_ value: String, for option: OptionSpec, usage: String) throws(CommandError) {
        switch option.kind {
        case .flag, .string:
            break
        case .revision:
            guard let number = Int(value), number > 0 else {
                throw CommandError("`--\(option.name)` needs a revision number (1, 2, …), not `\(excerpt(value))`.", hint: usage)
            }
        case .keyvalue:
            guard let equals = value.firstIndex(of: "="), equals != value.startIndex else {
                throw CommandError("`--\(option.name)` needs `key=value`, not `\(excerpt(value))`.", hint: usage)
            }
        }
    }

    /// Echoes user text back safely: at most 40 characters, backticks removed.
    public static func excerpt(_ text: String) -> String {
        let cleaned = text.replacingOccurrences(of: "`", with: "'")
        return cleaned.count > 40 ? String(cleaned.prefix(40)) + "…" : cleaned
    }

    /// Quotes a value whenever reading it back unquoted would mean something else: spaces, quotes of
    /// any kind, a leading dash (an option), or a word that is one of the verb's keywords.
    static func quoteIfNeeded(_ value: String, keywords: Set<String>) -> String {
        let needsQuotes = value.isEmpty || value.hasPrefix("-") || value.hasPrefix("\u{2014}") || value.hasPrefix("\u{2013}")
            || keywords.contains(value.lowercased())
            || value.contains(where: { $0.isWhitespace || CommandLexer.opening($0) != nil || CommandLexer.isClosingQuote($0) })
        return needsQuotes ? JSONValue.quote(value) : value
    }
}
