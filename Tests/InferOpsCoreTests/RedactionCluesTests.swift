import Foundation
@testable import InferOpsCore
import Testing

/// The redactor runs a pattern only when one pass over the text finds what the pattern's match
/// must contain (`SecretRedactor.Clues`). Skipping must never change the result: redacting with the
/// clues gives what running every pattern gives.
@Suite(.timeLimit(.minutes(1))) struct RedactionCluesTests {
    static let redactor = SecretRedactor(literals: ["literal-s3cret"])

    /// Pieces of texts: parts of what each pattern matches, whole matches, near misses, other
    /// scripts and Unicode whitespace, joined at random.
    static let fragments = [
        "://", ":/", "https://", "u:p@", "@", "user", "/", "\"", "'", "bearer", "BeArEr", "Bearer ", "bearer\u{00A0}",
        "beare", "Invalid value: ", "Invalid value: \"", "invalid value: \"", "x\"", "\\\"", "hf_", "HF_", "sk-",
        "ghp_", "gho_", "ghs_", "github_pat_", "xox", "xoxb-", "AKIA", "akia", "12345678", "abcdefg", "passw",
        "PASSWORD", "passwd", "secret", "SeCrEt", "token", "TOKEN", "api", "ApI", "api_key", "apikey", "access",
        "access-key", "private", "private_key", "credential", "credentials", "Authorization", "authorizatio", ":",
        "=", " ", "\t", "\n", "é", "🔒", "a", "Z", "0", "+", "_", "-", String(repeating: "x", count: 31),
        String(repeating: "Q7", count: 8), String(repeating: "0123456789abcdef", count: 4), "literal-s3cret", "}", ",",
    ]

    @Test func runningOnlyThePatternsTheCluesCallForChangesNothing() async {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<4_000 {
            // Seconds of work: the concurrency pool's threads are shared with the tests running beside it.
            if round % 10 == 0 { await Task.yield() }
            let count = Int.random(in: 0...10, using: &generator)
            let text = (0..<count).map { _ in Self.fragments.randomElement(using: &generator)! }.joined()
            #expect(Self.redactor.redact(text) == Self.redactor.redact(text, patterns: .all), "\(text.debugDescription)")
        }
    }

    @Test func eachPatternRunsWhereItMatches() {
        let cases: [(String, SecretRedactor.Clues)] = [
            ("see https://user:pw@example.com/x", .url),
            ("Authorization: Bearer abc.def", [.bearer, .secretKeyValue]),
            ("password: hunter2", .secretKeyValue),
            ("api_key = 'value'", .secretKeyValue),
            ("token\"\t=x", .secretKeyValue),
            ("spec: Invalid value: \"x\": bad", .invalidValue),
            ("hf_abcdefgh12 and xoxb-123456789", .token),
            ("key " + String(repeating: "a1", count: 16), .opaqueRun),
        ]
        for (text, clues) in cases {
            #expect(SecretRedactor.Clues(in: text).isSuperset(of: clues), "\(text)")
            #expect(Self.redactor.redact(text) != text, "\(text)")
        }
    }

    /// Words that only look like the start of a match do not make a pattern run.
    @Test func nearMissesRunNothing() {
        for text in ["the api is rapid", "capacity 4 GPUs", "token bucket", "http://example.com/path", "disk-7",
                     "Invalid value: 3", "bearer-token", "ask-me", "secretKeyRef", "access granted"] {
            #expect(SecretRedactor.Clues(in: text).isEmpty, "\(text)")
        }
    }
}
