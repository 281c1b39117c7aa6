import Foundation
import InferOpsCore
import Testing

/// SplitMix64: a tiny deterministic generator, so a failing input can be reproduced from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random command lines: mostly plausible words, with quotes, shell syntax and hostile Unicode mixed in.
struct CommandLineGenerator {
    var random: SplitMix64

    static let verbs = [
        "deploy", "rollback", "status", "history", "lock", "unlock", "cancel", "help", "DEPLOY", "Deploy", "deplyo",
        "rolback", "stauts", "/infer", "@inferops", "infer", "kubectl", "",
    ]
    static let keywords = ["to", "in", "TO", "In", "to", "in"]
    static let names = [
        "llama-3-8b", "qwen-2-72b", "LLAMA-3-8B", "staging", "production", "dev", "prod", "op-1a2b3c4d", "op-zzzzzzzz",
        "op-", "a", "-", ".", "llama_3", "llama.3", "llama;", "$(id)", "`id`", "${HOME}", "|", "&&", ";", ">", "<",
        "../../etc/passwd", "*", "%s%n", "\\", "'", "\"",
    ]
    static let options = [
        "--set", "--dry-run", "--to", "--reason", "--chart-version", "--set=replicaCount=2", "--to=3", "--dry-run=yes",
        "--", "---", "--=", "--SET", "--foo", "--set=", "\u{2014}dry-run", "\u{2013}set", "\u{2014}", "--to=-1",
        "--reason=", "--\u{00E9}=1", "--ﬁ=1", "--\u{00DF}=x", "--\u{0130}=1", "--SET\u{0130}=replicaCount=2",
    ]
    static let values = [
        "replicaCount=2", "replicaCount=$(id)", "engine.maxModelLen=4096", "k=", "=v", "3", "0", "-1",
        "99999999999999999999",
        "1.5", "abc", "two words", "image.tag=`id`", "replicaCount=1e3", "replicaCount=9223372036854775807",
        "replicaCount=-9223372036854775808", "replicaCount=4", "engine.maxModelLen=x y",
    ]
    static let quotes = ["\"", "'", "\u{201C}", "\u{201D}", "\u{2018}", "\u{2019}", "\u{201E}", "\\\"", "\\"]
    /// Combining marks, emoji (with skin tones and flags), right-to-left text, CJK, and look-alikes.
    static let unicode = [
        "e\u{0301}", "\u{0301}", "a\u{0308}\u{0308}\u{0308}\u{0308}", "👍🏽", "🇪🇺", "🚀", "שלום", "مرحبا", "日本語",
        "Ａ", "ℓ", "ⅰ", "\u{00A0}", "\u{3000}", "İ", "ß", "ẞ", "\u{212A}", "ǅ", "ŉ", "\u{1F600}", "Ω", "\u{FFFD}",
        "𝔡𝔢𝔭𝔩𝔬𝔶",
    ]
    /// Refused by the lexer wherever they appear.
    static let forbidden = [
        "\n", "\r", "\t", "\u{0000}", "\u{0007}", "\u{001B}[31m", "\u{007F}", "\u{0085}", "\u{202E}", "\u{202D}",
        "\u{200B}",
        "\u{200D}", "\u{2028}", "\u{2029}", "\u{FEFF}", "\u{E000}", "\u{061C}", "\u{2066}",
    ]

    mutating func pick(_ list: [String]) -> String { list[Int(random.next() % UInt64(list.count))] }
    mutating func chance(_ percent: UInt64) -> Bool { random.next() % 100 < percent }

    mutating func token() -> String {
        switch random.next() % 100 {
        case 0..<15: return pick(Self.verbs)
        case 15..<25: return pick(Self.keywords)
        case 25..<45: return pick(Self.names)
        case 45..<60: return pick(Self.options)
        case 60..<68: return pick(Self.values)
        case 68..<76:
            return pick(Self.quotes) + (chance(50) ? pick(Self.values) : pick(Self.names))
                + (chance(70) ? pick(Self.quotes) : "")
        case 76..<86: return pick(Self.unicode) + (chance(50) ? pick(Self.names) : "")
        case 86..<90: return pick(Self.names) + pick(Self.forbidden) + pick(Self.names)
        case 90..<93:
            // A very long token, sometimes over the whole-command limit.
            return String(repeating: pick(Self.unicode + ["x", "-", "a"]), count: Int(random.next() % 1_200) + 1)
        default:
            // Random scalars from the BMP and beyond, skipping surrogates.
            let count = Int(random.next() % 6) + 1
            var text = ""
            for _ in 0..<count {
                let value = UInt32(truncatingIfNeeded: random.next() % 0x2_FFFF)
                text.unicodeScalars.append(Unicode.Scalar(value) ?? "?")
            }
            return text
        }
    }

    /// A well-formed command, sometimes with one thing changed: reaches the validator and the options.
    mutating func nearlyValid() -> String {
        let model = chance(80) ? pick(["llama-3-8b", "qwen-2-72b", "LLAMA-3-8B"]) : pick(Self.names)
        let environment = chance(80) ? pick(["staging", "dev", "production", "Staging"]) : pick(Self.names)
        let quoted =
            pick(["\"", "'", "\u{201C}"]) + pick(Self.unicode) + " " + pick(Self.values)
            + pick(["\"", "'", "\u{201D}"])
        var parts: [String]
        var options: [String]
        switch random.next() % 6 {
        case 0:
            parts = chance(50) ? ["deploy", model, "to", environment] : ["deploy", "to", environment, model]
            options = [
                "--dry-run", "\u{2014}dry-run", "--set " + pick(Self.values), "--set=replicaCount=3",
                "--chart-version 0.2.0",
            ]
        case 1:
            parts = ["rollback", model, "in", environment]
            options = ["--to \(random.next() % 5)", "--to=2", "\u{2014}to 3"]
        case 2:
            parts = [pick(["lock", "unlock"]), environment]
            options = ["--reason " + quoted, "--reason=plain"]
        case 3:
            parts = ["status"] + (chance(50) ? [model] : []) + (chance(50) ? ["in", environment] : [])
            options = []
        case 4:
            parts = ["cancel", chance(80) ? "op-" + String(random.next() % 0xFFFF_FFFF, radix: 16) : pick(Self.names)]
            options = []
        default:
            parts = ["help"] + (chance(70) ? [pick(Self.verbs)] : [])
            options = []
        }
        if !options.isEmpty {
            for _ in 0..<Int(random.next() % 3) { parts.append(pick(options)) }
        }
        if chance(25) {
            let index = Int(random.next() % UInt64(parts.count))
            parts[index] = chance(50) ? token() : parts[index] + token()
        }
        return (chance(20) ? pick(["/infer ", "@inferops ", "infer "]) : "") + parts.joined(separator: " ")
    }

    mutating func line() -> String {
        if chance(40) { return nearlyValid() }
        var parts: [String] = []
        if chance(50) {
            parts.append(pick(["deploy", "rollback", "status", "history", "lock", "unlock", "cancel", "help"]))
        }
        for _ in 0..<Int(random.next() % 9) { parts.append(token()) }
        let separator = chance(90) ? " " : pick(["  ", "", " \u{00A0}"])
        return parts.joined(separator: separator)
    }
}

@Suite struct ParserFuzzTests {
    static let inputs = 100_000

    /// Every input ends as a parsed and validated command, or as an error with a message that is safe
    /// to post: not empty, one line, and short (user text is echoed at most 40 characters at a time).
    @Test func randomInputsNeverCrashAndAlwaysExplain() async throws {
        let seed = ProcessInfo.processInfo.environment["INFEROPS_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20_250_615
        print("parser fuzz: seed \(seed) (set INFEROPS_FUZZ_SEED to reproduce), \(Self.inputs) inputs")
        var generator = CommandLineGenerator(random: SplitMix64(seed: seed))
        let parser = Fixtures.parser
        let validator = Fixtures.validator
        var parsed = 0
        var validated = 0
        var planned = 0
        var messages: [String: Int] = [:]
        // Inputs of the two classes that once brought the process down, counted so the test shows
        // it still reaches them (it used to skip them).
        var growingOptions = 0
        var hugeReplicaCounts = 0
        for index in 0..<Self.inputs {
            // Tens of seconds of work: the concurrency pool's threads are shared with the tests
            // running beside it (a timeout test measures how soon it is resumed).
            if index % 100 == 0 { await Task.yield() }
            let input = generator.line()
            if Self.hasOptionThatGrowsWhenLowercased(input) { growingOptions += 1 }
            let message: String
            switch Result(catching: { () throws(CommandError) -> ParsedCommand in try parser.parse(input) }) {
            case .failure(let error):
                message = error.message
            case .success(let command):
                parsed += 1
                #expect(Fixtures.catalog.spec(named: command.verb) != nil)
                switch Result(catching: { () throws(Refusal) -> ValidatedCommand in try validator.validate(command) }) {
                case .success(let validCommand):
                    validated += 1
                    // Deploys go on to the planner, the last stage before any port.
                    guard case .deploy(let model, let environment, let chartVersion, let overrides, _, _, _) = validCommand
                    else {
                        continue
                    }
                    if Self.hasHugeReplicaCount(overrides) { hugeReplicaCounts += 1 }
                    let planning = Result { () throws(Refusal) -> DeployPlan in
                        try DeployPlanner.plan(
                            model: model, environment: environment, chartVersion: chartVersion, overrides: overrides)
                    }
                    switch planning {
                    case .success(let plan):
                        planned += 1
                        #expect(plan.replicas >= 0 && plan.digest.count == 71)
                        continue
                    case .failure(let refusal):
                        message = refusal.message
                    }
                case .failure(let refusal):
                    message = refusal.message
                }
            }
            let valid = !message.isEmpty && !message.contains("\n") && message.count <= 400
            if !valid {
                Issue.record("input #\(index) (seed \(seed)): \(input.debugDescription) → \(message.debugDescription)")
            }
            messages[String(message.prefix(24)), default: 0] += 1
        }
        print(
            "parser fuzz: \(parsed) parsed, \(validated) validated, \(planned) planned, "
                + "\(messages.count) kinds of message, \(growingOptions) with an option name that grows when "
                + "lower-cased, \(hugeReplicaCounts) with a huge replica count"
        )
        // The generator must reach every stage, or the test proves little.
        #expect(parsed > 10_000)
        #expect(validated > 5_000)
        #expect(planned > 1_000)
        #expect(growingOptions > 0)
        #expect(hugeReplicaCounts > 0)
    }

    /// An option token whose name grows in UTF-8 when lower-cased and has an `=` (`--İ=`): see
    /// `CommandParserTests.optionNameThatGrowsWhenLowercasedIsRefused`.
    static func hasOptionThatGrowsWhenLowercased(_ input: String) -> Bool {
        guard let tokens = try? CommandLexer.tokenize(input) else { return false }
        return tokens.contains { token in
            guard !token.quoted, token.text.hasPrefix("--") else { return false }
            let body = token.text.dropFirst(2)
            return body.contains("=") && body.lowercased().utf8.count > body.utf8.count
        }
    }

    /// A replica count whose `Double` rounds up past `Int.max`: see `DeployPlanTests.hugeReplicaCountIsRefused`.
    static func hasHugeReplicaCount(_ overrides: [String]) -> Bool {
        overrides.contains { override in
            guard override.hasPrefix("replicaCount="), let number = Int(override.dropFirst("replicaCount=".count))
            else {
                return false
            }
            return Double(number) >= 9.223_372_036_854_775_807e18
        }
    }

    @Test func generatorIsDeterministic() {
        var first = CommandLineGenerator(random: SplitMix64(seed: 42))
        var second = CommandLineGenerator(random: SplitMix64(seed: 42))
        for _ in 0..<100 { #expect(first.line() == second.line()) }
    }
}
