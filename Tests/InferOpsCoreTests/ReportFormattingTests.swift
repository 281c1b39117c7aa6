import Foundation
@testable import InferOpsCore
import Testing

/// The pieces reports are made of: times as RFC 3339 and help text broken into lines.
@Suite(.timeLimit(.minutes(1))) struct ReportFormattingTests {
    static func foundation(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    @Test func timestampsAreWhatFoundationWrites() {
        // Leap days, the turn of centuries (2000 is a leap year, 2100 is not), before 1970, far ahead.
        let fixed: [TimeInterval] = [
            0, -1, 59, 86_399, 86_400, 951_782_400, 951_868_799, 951_868_800, 1_709_164_800, 1_796_203_489.75,
            4_107_542_400, 4_107_628_800, -2_208_988_800, -86_401, 253_402_300_799,
        ]
        var generator = SystemRandomNumberGenerator()
        let random = (0..<2_000).map { _ in TimeInterval(Int64.random(in: -2_208_988_800...4_102_444_800, using: &generator)) }
        for seconds in fixed + random {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(Reports.timestamp(date) == Self.foundation(date), "\(seconds)")
        }
    }

    @Test func wrappedLinesStayWithinTheWidthAndKeepEveryWord() {
        var generator = SystemRandomNumberGenerator()
        let words = ["a", "model", "environment", "`--set`", "é", "🔒", "replicaCount,", String(repeating: "w", count: 30)]
        for _ in 0..<500 {
            let width = Int.random(in: 10...100, using: &generator)
            let text = "  " + (0..<Int.random(in: 1...60, using: &generator))
                .map { _ in words.randomElement(using: &generator)! }.joined(separator: " ")
            let lines = Reports.wrap(text, continuation: "    ", width: width)
            for line in lines {
                // A word longer than a line stays whole, alone on its line.
                let alone = line.split(separator: " ").count == 1
                #expect(line.count <= width || alone, "\(width): \(line)")
            }
            #expect(lines.first?.hasPrefix("  ") == true)
            #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("    ") && !$0.hasPrefix("     ") })
            #expect(lines.flatMap { $0.split(separator: " ") } == text.split(separator: " "))
            // No line could have taken the next line's first word.
            for (line, next) in zip(lines, lines.dropFirst()) {
                let word = next.split(separator: " ").first!
                #expect(line.count + 1 + word.count > width, "\(width): \(line) | \(next)")
            }
        }
    }
}
