import Foundation
import Testing

/// `/infer history` with the real helm: a failed deploy's revision and the automatic rollback's
/// revision are both attributed to the deploy that made them.
@Suite("History end to end", .serialized)
struct HistoryEndToEndTests {
    @Test("A failed deploy and its automatic rollback are both attributed, one line per revision")
    func failedRevisionAndRollbackAttributed() throws {
        let sandbox = try Sandbox(helm: .helm4)
        #expect(try sandbox.exec("/infer deploy mistral-7b to canary").status == 0)
        let broken = try sandbox.exec(
            #"/infer deploy mistral-7b to canary --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=never"#)
        #expect(broken.output.contains("restored as revision 3"), "\(broken.output)")
        let id = try #require(broken.output.firstMatch(of: #/\[(op-[0-9a-f]{8})\]/#)?.output.1)

        let history = try sandbox.exec("/infer history mistral-7b in canary")
        #expect(history.status == 0, "\(history.output)")
        let lines = history.output.split(separator: "\n").map(String.init)
        let start = try #require(lines.firstIndex { $0.contains("History of mistral-7b-canary") })
        // Title, header, rule, three rows, hint: a multi-line description would add lines.
        let table = Array(lines[(start + 2)...].prefix { !$0.hasPrefix("  →") })
        #expect(table.count == 4, "\(history.output)")
        let rows = table.dropFirst().map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(rows.map { String($0.prefix(1)) } == ["3", "2", "1"], "\(history.output)")
        #expect(rows[0].contains("deployed") && rows[0].contains("@alice") && rows[0].contains("deploy \(id)"))
        #expect(rows[1].contains("failed") && rows[1].contains("@alice") && rows[1].contains("deploy \(id)"))
        #expect(rows[2].contains("superseded") && !rows[2].contains(String(id)))
    }
}
