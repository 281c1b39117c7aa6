import Foundation
import Testing

/// `inferops audit` on the database `inferops exec` wrote: the rows say who ran the commands from
/// which account, `--verify` vouches for the chain, and an edit made with the sqlite3 shell is named.
@Suite("Audit log end to end", .serialized)
struct AuditEndToEndTests {
    @Test("audit --verify passes on the daemon's log and names the row an attacker altered")
    func verifyCatchesAnEdit() throws {
        let sandbox = try Sandbox(helm: .helm3)
        #expect(try sandbox.exec("/infer lock staging --reason maintenance").status == 0)
        #expect(try sandbox.exec("/infer unlock staging").status == 0)
        let database = sandbox.folder.appendingPathComponent("inferops.sqlite").path

        let rows = try sandbox.auditLines()
        #expect(rows.map { $0["action"] as? String } == ["lock", "unlock"])
        let account = try #require(getpwuid(geteuid())).pointee.pw_name.map { String(cString: $0) }
        #expect(
            rows.allSatisfy { $0["channel"] as? String == "exec" && $0["os_user"] as? String == account }, "\(rows)")

        let intact = try run(sandbox.inferops, ["audit", "--verify", "--config", sandbox.config])
        #expect(intact.status == 0, "\(intact.output)")
        #expect(intact.output.hasPrefix("The audit chain of 2 row(s) is intact; head "), "\(intact.output)")

        let edit = try run("/usr/bin/sqlite3", [
            database, "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE id = 1;",
        ])
        #expect(edit.status == 0, "\(edit.output)")
        let altered = try run(sandbox.inferops, ["audit", "--verify", "--config", sandbox.config])
        #expect(altered.status == 1, "\(altered.output)")
        #expect(altered.output.contains("Audit row 1 was altered"), "\(altered.output)")

        // Reading never creates a database that is not there.
        try FileManager.default.removeItem(atPath: database)
        let missing = try run(sandbox.inferops, ["audit", "--config", sandbox.config])
        #expect(missing.status != 0, "\(missing.output)")
        #expect(missing.output.contains("There is no database at"), "\(missing.output)")
        #expect(!FileManager.default.fileExists(atPath: database))
    }
}
