import InferOpsCore
import Testing

@Suite struct SuggestionsTests {
    static let verbs = Fixtures.catalog.names

    @Test(arguments: [
        ("deplyo", ["deploy"]),
        ("DEPLYO", ["deploy"]),
        ("deploi", ["deploy"]),
        ("statsu", ["status"]),
        ("rollbak", ["rollback"]),
        ("rolback", ["rollback"]),
        ("unlokc", ["unlock"]),
        ("hlep", ["help"]),
        ("cancle", ["cancel"]),
        // A prefix is as close as it gets.
        ("hist", ["history"]),
        ("roll", ["rollback"]),
        ("de", ["deny", "deploy", "deregister"]),
        ("lck", ["lock"]),
    ])
    func suggestsCloseVerbs(word: String, expected: [String]) {
        #expect(Suggestions.closest(to: word, in: Self.verbs) == expected)
    }

    @Test(arguments: [
        "kubectl", "xyzzy", "terraform", "apply", "delete", "rm", "sudo", "🚀", "", "a-very-long-word-indeed",
    ])
    func suggestsNothingForFarWords(word: String) {
        #expect(Suggestions.closest(to: word, in: Self.verbs) == [])
        #expect(Suggestions.didYouMean(word, in: Self.verbs) == "")
    }

    @Test func phrasesOneOrSeveral() {
        #expect(Suggestions.didYouMean("deplyo", in: Self.verbs) == " Did you mean `deploy`?")
        #expect(
            Suggestions.didYouMean("stag", in: ["staging", "stage", "prod"]) == " Did you mean `stage` or `staging`?"
        )
    }

    @Test func offersAtMostTheLimit() {
        let candidates = ["lock-a", "lock-b", "lock-c", "lock-d", "lock-e"]
        #expect(Suggestions.closest(to: "lock", in: candidates) == ["lock-a", "lock-b", "lock-c"])
        #expect(Suggestions.closest(to: "lock", in: candidates, limit: 1) == ["lock-a"])
    }

    /// "stadium" is three edits away: too far for a six-letter word.
    @Test func closerMatchesComeFirst() {
        #expect(Suggestions.closest(to: "stagin", in: ["staging", "stadium", "stage"]) == ["staging", "stage"])
    }

    @Test func toleranceGrowsWithLength() {
        // Short words allow two edits; a 12-letter word allows four.
        #expect(Suggestions.closest(to: "prod", in: ["production"]) == ["production"])
        #expect(Suggestions.closest(to: "abcd", in: ["wxyz"]) == [])
        #expect(Suggestions.closest(to: "llama-3-70b-x", in: ["llama-3-8b"]) == ["llama-3-8b"])
        #expect(Suggestions.closest(to: "qwen-2-72b", in: ["llama-3-8b"]) == [])
    }

    @Test func modelAndEnvironmentNamesAreSuggestedByTheValidator() throws {
        let parsed = try Fixtures.parser.parse("deploy lama-3-8b to stagng")
        #expect {
            _ = try Fixtures.validator.validate(parsed)
        } throws: { error in
            (error as? Refusal)?.message == "There is no model `lama-3-8b` in the catalog. Did you mean `llama-3-8b`?"
                && (error as? Refusal)?.hint == "Models: `llama-3-8b`, `qwen-2-72b`."
        }
        let environment = try Fixtures.parser.parse("deploy llama-3-8b to stagng")
        #expect {
            _ = try Fixtures.validator.validate(environment)
        } throws: { error in
            (error as? Refusal)?.message == "There is no environment `stagng`. Did you mean `staging`?"
                && (error as? Refusal)?.hint == "Environments: `dev`, `production`, `staging`."
        }
    }

    @Test func farNamesGetTheListOnly() throws {
        let parsed = try Fixtures.parser.parse("history gpt-4 in staging")
        #expect {
            _ = try Fixtures.validator.validate(parsed)
        } throws: { error in
            (error as? Refusal)?.message == "There is no model `gpt-4` in the catalog."
        }
    }

    @Test func helpForAnUnknownVerbSuggests() throws {
        let parsed = try Fixtures.parser.parse("help deplyo")
        #expect {
            _ = try Fixtures.validator.validate(parsed)
        } throws: { error in
            (error as? Refusal)?.message == "There is no command `deplyo`. Did you mean `deploy`?"
        }
    }
}
