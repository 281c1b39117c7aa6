import Foundation
@testable import InferOpsCore
import Testing

/// The redactor decides which patterns to run from one pass over a text (`SecretRedactor.Clues`);
/// that pass must find exactly what searching for each word on its own finds, or a pattern that
/// should have run would be skipped.
@Suite(.timeLimit(.minutes(1))) struct RedactionCluesTests {
    /// Each clue found the slow way: one search per word, lowercased where case does not matter.
    static func searched(_ text: String) -> SecretRedactor.Clues {
        let lowered = String(decoding: text.utf8.map { (65...90).contains($0) ? $0 + 32 : $0 }, as: UTF8.self)
        var clues = SecretRedactor.Clues()
        if SecretRedactor.occurs("://", in: text) { clues.insert(.url) }
        if SecretRedactor.occurs("bearer", in: lowered) { clues.insert(.bearer) }
        if SecretRedactor.Trigger.secretKeyWords.contains(where: { SecretRedactor.occurs($0, in: lowered) }) {
            clues.insert(.secretKeyWord)
        }
        if SecretRedactor.occurs(":", in: text) || SecretRedactor.occurs("=", in: text) { clues.insert(.assignment) }
        if SecretRedactor.occurs("Invalid value: ", in: text) { clues.insert(.invalidValue) }
        if SecretRedactor.Trigger.tokenPrefixes.contains(where: { SecretRedactor.occurs($0, in: text) }) {
            clues.insert(.tokenPrefix)
        }
        var run = 0
        for byte in text.utf8 {
            let opaque = (65...90).contains(byte) || (97...122).contains(byte) || (48...57).contains(byte)
                || [UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "_")].contains(byte)
            run = opaque ? run + 1 : 0
            if run >= 32 { clues.insert(.opaqueRun) }
        }
        return clues
    }

    static let fragments = [
        "://", ":/", "bearer", "BeArEr", "beare", "Invalid value: ", "invalid value: ", "Invalid value:",
        "hf_", "HF_", "sk-", "SK-", "ghp_", "gho_", "ghs_", "github_pat_", "xox", "XOX", "AKIA", "akia",
        "passw", "PASSWORD", "secret", "SeCrEt", "token", "TOKEN", "api", "ApI", "access", "private",
        "credential", "Authorization", "authorizatio", ":", "=", " ", "\n", "é", "🔒", "a", "Z", "0", "+", "/",
        "_", String(repeating: "x", count: 31), String(repeating: "Q", count: 16), "-", "\"", "'",
    ]

    @Test func oneScanFindsWhatSearchingForEachWordFinds() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let count = Int.random(in: 0...8, using: &generator)
            let text = (0..<count).map { _ in Self.fragments.randomElement(using: &generator)! }.joined()
            #expect(SecretRedactor.Clues(in: text) == Self.searched(text), "\(text.debugDescription)")
        }
    }

    @Test func eachClueIsFoundAtTheStartAtTheEndAndNowhereElse() {
        for word in Self.fragments {
            for text in [word, "x " + word, word + " x", "é" + word + "é"] {
                #expect(SecretRedactor.Clues(in: text) == Self.searched(text), "\(text.debugDescription)")
            }
        }
        #expect(SecretRedactor.Clues(in: "").isEmpty)
        #expect(SecretRedactor.Clues(in: "plain words only").isEmpty)
    }
}
