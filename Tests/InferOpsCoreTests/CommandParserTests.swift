import InferOpsCore
import Testing

@Suite struct CommandParserTests {
    let parser = Fixtures.parser

    struct Valid: Sendable, CustomTestStringConvertible {
        var input: String
        var expected: ParsedCommand
        var testDescription: String { input }

        init(_ input: String, _ verb: String, _ arguments: [String: String] = [:], _ options: [String: [String]] = [:])
        {
            self.input = input
            expected = ParsedCommand(verb: verb, arguments: arguments, options: options)
        }
    }

    static let llamaToStaging = ["model": "llama-3-8b", "environment": "staging"]

    static let validForms: [Valid] = [
        // deploy
        Valid("deploy llama-3-8b to staging", "deploy", llamaToStaging),
        Valid("/infer deploy llama-3-8b to staging", "deploy", llamaToStaging),
        Valid("@inferops deploy llama-3-8b to staging", "deploy", llamaToStaging),
        Valid("infer deploy llama-3-8b to staging", "deploy", llamaToStaging),
        Valid("/INFER DEPLOY llama-3-8b TO staging", "deploy", llamaToStaging),
        Valid("Deploy Llama-3-8B To Staging", "deploy", ["model": "Llama-3-8B", "environment": "Staging"]),
        Valid("deploy to staging llama-3-8b", "deploy", llamaToStaging),
        Valid("  deploy    llama-3-8b   to    staging   ", "deploy", llamaToStaging),
        Valid("deploy\u{00A0}llama-3-8b\u{3000}to staging", "deploy", llamaToStaging),
        Valid(
            "deploy llama-3-8b to staging --set replicaCount=2", "deploy", llamaToStaging, ["set": ["replicaCount=2"]]
        ),
        Valid(
            "deploy llama-3-8b to staging --set replicaCount=2 --set engine.maxModelLen=4096", "deploy", llamaToStaging,
            ["set": ["replicaCount=2", "engine.maxModelLen=4096"]]
        ),
        Valid(
            "deploy llama-3-8b --set replicaCount=2 to staging --set replicaCount=3", "deploy", llamaToStaging,
            ["set": ["replicaCount=2", "replicaCount=3"]]
        ),
        Valid(
            "deploy llama-3-8b to staging --set=replicaCount=2", "deploy", llamaToStaging, ["set": ["replicaCount=2"]]),
        Valid(
            "deploy llama-3-8b to staging --set \"engine.args=a b\"", "deploy", llamaToStaging,
            ["set": ["engine.args=a b"]]),
        Valid("deploy llama-3-8b to staging --dry-run", "deploy", llamaToStaging, ["dry-run": [""]]),
        Valid("deploy llama-3-8b to staging --DRY-RUN", "deploy", llamaToStaging, ["dry-run": [""]]),
        Valid("deploy llama-3-8b to staging \u{2014}dry-run", "deploy", llamaToStaging, ["dry-run": [""]]),
        Valid("deploy llama-3-8b to staging \u{2013}dry-run", "deploy", llamaToStaging, ["dry-run": [""]]),
        Valid(
            "deploy llama-3-8b to staging \u{2014}set replicaCount=2", "deploy", llamaToStaging,
            ["set": ["replicaCount=2"]]),
        Valid(
            "deploy llama-3-8b to staging --chart-version 0.2.0", "deploy", llamaToStaging, ["chart-version": ["0.2.0"]]
        ),
        Valid(
            "deploy llama-3-8b to staging --chart-version=0.2.0", "deploy", llamaToStaging, ["chart-version": ["0.2.0"]]
        ),
        Valid("deploy \"llama-3-8b\" to 'staging'", "deploy", llamaToStaging),
        // A quoted word is never a keyword: here "to" is the model.
        Valid("deploy \"to\" to staging", "deploy", ["model": "to", "environment": "staging"]),
        // rollback
        Valid("rollback llama-3-8b in staging", "rollback", llamaToStaging),
        Valid("rollback llama-3-8b in staging --to 3", "rollback", llamaToStaging, ["to": ["3"]]),
        Valid("rollback llama-3-8b in staging --to=3", "rollback", llamaToStaging, ["to": ["3"]]),
        Valid("rollback llama-3-8b in staging \u{2014}to 12", "rollback", llamaToStaging, ["to": ["12"]]),
        // lock and unlock, with every kind of quote a chat client produces
        Valid("lock production", "lock", ["environment": "production"]),
        Valid(
            "lock production --reason \"incident 4711\"", "lock", ["environment": "production"],
            ["reason": ["incident 4711"]]),
        Valid(
            "lock production --reason 'incident 4711'", "lock", ["environment": "production"],
            ["reason": ["incident 4711"]]),
        Valid(
            "lock production --reason \u{201C}incident 4711\u{201D}", "lock", ["environment": "production"],
            ["reason": ["incident 4711"]]
        ),
        Valid(
            "lock production --reason \u{2018}incident 4711\u{2019}", "lock", ["environment": "production"],
            ["reason": ["incident 4711"]]
        ),
        Valid(
            "lock production --reason \u{201E}Störung 4711\u{201C}", "lock", ["environment": "production"],
            ["reason": ["Störung 4711"]]
        ),
        Valid(
            "lock production --reason \"say \\\"hi\\\" twice\"", "lock", ["environment": "production"],
            ["reason": ["say \"hi\" twice"]]
        ),
        Valid(
            "lock production --reason \"--not an option\"", "lock", ["environment": "production"],
            ["reason": ["--not an option"]]
        ),
        Valid("lock production --reason \"\"", "lock", ["environment": "production"], ["reason": [""]]),
        Valid("unlock production", "unlock", ["environment": "production"]),
        Valid("unlock production --reason done", "unlock", ["environment": "production"], ["reason": ["done"]]),
        // cancel, status, history, help
        Valid("cancel op-1a2b3c4d", "cancel", ["operation": "op-1a2b3c4d"]),
        Valid("status", "status"),
        Valid("status llama-3-8b", "status", ["model": "llama-3-8b"]),
        Valid("status in staging", "status", ["environment": "staging"]),
        Valid("status llama-3-8b in staging", "status", llamaToStaging),
        Valid("history llama-3-8b in staging", "history", llamaToStaging),
        Valid("help", "help"),
        Valid("/infer help", "help"),
        Valid("HELP Deploy", "help", ["verb": "Deploy"]),
    ]

    @Test(arguments: validForms)
    func parsesValidForm(_ form: Valid) throws {
        #expect(try parser.parse(form.input) == form.expected)
    }

    @Test func canonicalFormReadsBackTheSame() throws {
        let spec = Fixtures.catalog.spec(named: "deploy")!
        let parsed = try parser.parse(
            "deploy llama-3-8b to staging --set \"engine.args=a b\" --set replicaCount=2 --dry-run")
        let canonical = parsed.canonical(spec: spec)
        #expect(canonical == "deploy llama-3-8b to staging --set \"engine.args=a b\" --set replicaCount=2 --dry-run")
        #expect(try parser.parse(canonical) == parsed)
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        var input: String
        var message: String
        /// Text the hint must contain (the usage, mostly).
        var hint: String?
        var testDescription: String { input.count > 60 ? String(input.prefix(60)) + "…" : input }

        init(_ input: String, _ message: String, hint: String? = nil) {
            self.input = input
            self.message = message
            self.hint = hint
        }
    }

    static let deployUsage =
        "Usage: `/infer deploy <model> to <environment> [--chart-version \"…\"] [--set key=value …] [--dry-run] [--register] [--wait-for-gpus \"…\"] [--min-replicas \"…\"]`"
    static let rollbackUsage = "Usage: `/infer rollback <model> in <environment> [--to N] [--reason \"…\"] [--break-glass]`"

    static let errors: [Invalid] = [
        Invalid(
            "", "No command given.",
            hint: "Commands: approve, cancel, deny, deploy, deregister, disable, enable, help, history, lock, promote, register, "
                + "remove, rollback, slo, status, unlock."),
        Invalid("/infer", "No command given."),
        Invalid("   ", "No command given."),
        Invalid(
            "deplyo llama-3-8b to staging", "Unknown command `deplyo`. Did you mean `deploy`?", hint: "`/infer help`"),
        Invalid("statsu", "Unknown command `statsu`. Did you mean `status`?"),
        Invalid("kubectl get pods", "Unknown command `kubectl`."),
        Invalid(
            "deploy llama-3-8b to staging --dryrun", "`deploy` has no option `--dryrun`. Did you mean `--dry-run`?",
            hint: deployUsage
        ),
        Invalid("deploy llama-3-8b to staging --force", "`deploy` has no option `--force`.", hint: deployUsage),
        Invalid("help --verbose", "`help` has no option `--verbose`.", hint: "`help` takes no options."),
        Invalid("deploy llama-3-8b", "The environment is missing (after `to`).", hint: deployUsage),
        Invalid("deploy to staging", "The model is missing.", hint: deployUsage),
        Invalid("deploy", "The model is missing.", hint: deployUsage),
        Invalid("deploy llama-3-8b to", "`to` must be followed by the environment.", hint: deployUsage),
        Invalid("rollback llama-3-8b", "The environment is missing (after `in`).", hint: rollbackUsage),
        Invalid("lock", "The environment is missing."),
        Invalid("cancel", "The operation is missing."),
        Invalid("deploy llama-3-8b to staging now", "Unexpected `now`.", hint: deployUsage),
        Invalid("deploy llama-3-8b to staging to production", "Unexpected `to`.", hint: deployUsage),
        Invalid("status llama-3-8b qwen-2-72b", "Unexpected `qwen-2-72b`."),
        Invalid("help deploy rollback", "Unexpected `rollback`."),
        Invalid("lock production --reason \"incident 4711", "A quoted text is not closed.", hint: "matching quote"),
        Invalid("lock production --reason \u{201C}incident 4711", "A quoted text is not closed."),
        Invalid("lock production --reason 'it\u{2019}s down", "A quoted text is not closed."),
        Invalid("deploy llama-3-8b to staging --dry-run=yes", "`--dry-run` takes no value.", hint: deployUsage),
        Invalid("deploy llama-3-8b to staging --dry-run --dry-run", "`--dry-run` is given twice.", hint: deployUsage),
        Invalid(
            "deploy llama-3-8b to staging --chart-version 1 --chart-version 2", "`--chart-version` is given twice."),
        Invalid("lock production --reason a --reason b", "`--reason` is given twice."),
        Invalid("rollback llama-3-8b in staging --to 2 --to 3", "`--to` is given twice."),
        Invalid(
            "rollback llama-3-8b in staging --to three", "`--to` needs a revision number (1, 2, …), not `three`.",
            hint: rollbackUsage
        ),
        Invalid("rollback llama-3-8b in staging --to 0", "`--to` needs a revision number (1, 2, …), not `0`."),
        Invalid("rollback llama-3-8b in staging --to -2", "`--to` needs a revision number (1, 2, …), not `-2`."),
        Invalid("rollback llama-3-8b in staging --to 2.5", "`--to` needs a revision number (1, 2, …), not `2.5`."),
        Invalid("rollback llama-3-8b in staging --to", "`--to` needs a value.", hint: rollbackUsage),
        Invalid("deploy llama-3-8b to staging --set", "`--set` needs a value."),
        Invalid("deploy llama-3-8b to staging --set --dry-run", "`--set` needs a value."),
        Invalid("deploy llama-3-8b to staging --set replicaCount", "`--set` needs `key=value`, not `replicaCount`."),
        Invalid("deploy llama-3-8b to staging --set =2", "`--set` needs `key=value`, not `=2`."),
        Invalid("cancel op-xyz", "`op-xyz` is not an operation id (they look like `op-1a2b3c4d`)."),
        Invalid("cancel op-1a2b3c4", "`op-1a2b3c4` is not an operation id (they look like `op-1a2b3c4d`)."),
        Invalid("cancel OP-1A2B3C4D", "`OP-1A2B3C4D` is not an operation id (they look like `op-1a2b3c4d`)."),
        Invalid("cancel 1a2b3c4d", "`1a2b3c4d` is not an operation id (they look like `op-1a2b3c4d`)."),
        Invalid(
            "deploy llama_3! to staging",
            "`llama_3!` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        Invalid(
            "deploy -llama to staging",
            "`-llama` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        Invalid(
            "deploy llama-3-8b to \"stag ing\"",
            "`stag ing` is not a valid environment name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        Invalid(
            "deploy " + String(repeating: "a", count: 64) + " to staging",
            "`" + String(repeating: "a", count: 40)
                + "…` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        Invalid(
            "help dep!oy",
            "`dep!oy` is not a valid verb name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        // Length, control and invisible characters are refused before anything else is read.
        Invalid(
            "deploy " + String(repeating: "x", count: 994), "The command is 1001 characters long; the limit is 1000.",
            hint: "Shorten it"
        ),
        Invalid(
            "deploy llama-3-8b\nto staging",
            "The command contains a control character (U+000A); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama-3-8b\tto staging",
            "The command contains a control character (U+0009); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama-3-8b to staging\r",
            "The command contains a control character (U+000D); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama-3-8b to stag\u{0000}ing",
            "The command contains a control character (U+0000); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama-3-8b to staging\u{007F}",
            "The command contains a control character (U+007F); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama-3-8b to \u{202E}gnigats",
            "The command contains an invisible formatting character (U+202E); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama\u{200B}-3-8b to staging",
            "The command contains an invisible formatting character (U+200B); commands are one line of visible text."
        ),
        Invalid(
            "deploy llama-3-8b to staging\u{2028}",
            "The command contains an invisible formatting character (U+2028); commands are one line of visible text."
        ),
        Invalid(
            "\u{FEFF}deploy llama-3-8b to staging",
            "The command contains an invisible formatting character (U+FEFF); commands are one line of visible text."
        ),
        // Shell syntax is just text to the parser, and never a valid name.
        Invalid("deploy llama; rm -rf / to staging", "Unexpected `rm`.", hint: deployUsage),
        Invalid(
            "deploy $(id) to staging",
            "`$(id)` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        Invalid(
            "deploy `id` to staging",
            "`'id'` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        Invalid(
            "deploy llama-3-8b to staging|sh",
            "`staging|sh` is not a valid environment name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
    ]

    @Test(arguments: errors)
    func refusesWithMessage(_ invalid: Invalid) {
        #expect {
            _ = try parser.parse(invalid.input)
        } throws: { error in
            guard let error = error as? CommandError else { return false }
            #expect(error.message == invalid.message)
            if let hint = invalid.hint {
                #expect(error.hint?.contains(hint) == true, "hint: \(error.hint ?? "none")")
            }
            return true
        }
    }

    @Test func acceptsExactlyTheLengthLimit() throws {
        let input = "lock production --reason " + String(repeating: "x", count: 1000 - 25)
        #expect(input.unicodeScalars.count == 1000)
        #expect(try parser.parse(input).option("reason")?.count == 975)
    }

    @Test func lengthIsCountedInUnicodeScalars() {
        // 500 flags are 1000 scalars but 2000 UTF-8 bytes: within the limit.
        let flag = String(repeating: "🇪🇺", count: 250)
        #expect(flag.unicodeScalars.count == 500)
        #expect(throws: Never.self) { try CommandLexer.tokenize(flag + flag) }
        #expect(throws: CommandError.self) { try CommandLexer.tokenize(flag + flag + "x") }
    }

    @Test func quotedTextKeepsEmDashesAndIsNeverAnOption() throws {
        let tokens = try CommandLexer.tokenize("lock production --reason \"\u{2014}see runbook\"")
        #expect(tokens.map(\.text) == ["lock", "production", "--reason", "\u{2014}see runbook"])
        #expect(tokens.map(\.quoted) == [false, false, false, true])
    }

    @Test func echoedTextIsShortAndHasNoBackticks() {
        #expect(CommandParser.excerpt("a`b`c") == "a'b'c")
        #expect(CommandParser.excerpt(String(repeating: "y", count: 41)) == String(repeating: "y", count: 40) + "…")
        #expect(CommandParser.excerpt(String(repeating: "y", count: 40)) == String(repeating: "y", count: 40))
    }

    /// A quoted verb reads like the same verb unquoted.
    @Test func quotedVerbIsTheVerb() throws {
        let parsed = try parser.parse("\"deploy\" llama-3-8b to staging")
        #expect(parsed.verb == "deploy")
        #expect(parsed.argument("model") == "llama-3-8b")
    }

    /// `--reason="two words"` is the `--flag=value` form with a quoted value, as people type it.
    @Test func quotedInlineValue() {
        let parsed = try? parser.parse("lock production --reason=\"two words\"")
        #expect(parsed?.option("reason") == "two words")
    }

    /// An option name that grows when lower-cased (`İ` becomes `i` and a combining dot) must be refused
    /// like any unknown option. Runs in a child process, because it brings the process down.
    @Test func optionNameThatGrowsWhenLowercasedIsRefused() async {
        // The `=` is found in the original text, before lower-casing changes its length.
        await #expect(processExitsWith: .success) {
            _ = try? Fixtures.parser.parse("help --\u{130}\u{130}=")
        }
    }

    /// The same input must always get the same answer, and it should be about the first bad name.
    @Test func errorForTwoBadNamesIsAlwaysTheSame() {
        var messages = Set<String>()
        for _ in 0..<200 {
            if case .failure(let error) = Result(catching: { () throws(CommandError) in
                try parser.parse("deploy $(a) to $(b)")
            }) {
                messages.insert(error.message)
            }
        }
        #expect(messages.count == 1, "\(messages)")
        // Names are checked in declaration order, so the model is reported first.
        #expect(messages.first?.hasPrefix("`$(a)` is not a valid model name") == true, "\(messages)")
    }

    /// The canonical form, stored in records and the audit log, must read back as the same command.
    @Test func canonicalFormReadsBackForEveryValue() throws {
        let spec = { Fixtures.catalog.spec(named: $0)! }
        let inputs = [
            "deploy \"to\" to staging",
            "lock production --reason \"--force\"",
            "lock production --reason '\u{201C}quoted'",
        ]
        for input in inputs {
            let parsed = try parser.parse(input)
            let canonical = parsed.canonical(spec: spec(parsed.verb))
            let reparsed = try? parser.parse(canonical)
            #expect(reparsed == parsed, "\(input) → \(canonical)")
        }
    }
}
