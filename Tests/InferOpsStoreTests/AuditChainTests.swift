import Foundation
import GRDB
import InferOpsCore
import Testing

@testable import InferOpsStore

/// The audit log's hash chain, and what `inferops audit --verify` reports when someone edits the
/// file. The triggers refuse UPDATE and DELETE, so each tampering first drops them with raw SQL, as
/// anyone who can write the file could.
@Suite("Audit chain")
struct AuditChainTests {
    static let dropTriggers = """
        DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TRIGGER audit_no_replace;
        DROP TRIGGER audit_chained;
        """

    /// One way to tamper with rows 1–3 and what `--verify` must say about it.
    struct Tampering: CustomTestStringConvertible, Sendable {
        var name: String
        var sql: String
        var verdict: AuditChainVerdict
        var testDescription: String { name }

        static let all: [Tampering] = [
            Tampering(name: "alter a middle row", sql: "UPDATE audit SET outcome = 'succeeded' WHERE id = 2",
                      verdict: .altered(row: 2)),
            Tampering(name: "alter the first row's actor", sql: "UPDATE audit SET actor = 'U9' WHERE id = 1",
                      verdict: .altered(row: 1)),
            Tampering(name: "clear a detail", sql: "UPDATE audit SET detail = NULL WHERE id = 3",
                      verdict: .altered(row: 3)),
            Tampering(name: "delete a middle row", sql: "DELETE FROM audit WHERE id = 2",
                      verdict: .deleted(rows: 2...2)),
            Tampering(name: "delete the first row", sql: "DELETE FROM audit WHERE id = 1",
                      verdict: .deleted(rows: 1...1)),
            Tampering(name: "delete the last row", sql: "DELETE FROM audit WHERE id = 3",
                      verdict: .deleted(rows: 3...3)),
            Tampering(name: "delete every row", sql: "DELETE FROM audit", verdict: .deleted(rows: 1...3)),
            Tampering(
                name: "insert a row without a hash",
                sql: "INSERT INTO audit (at, actor, action, outcome) VALUES (0, 'U9', 'deploy', 'succeeded')",
                verdict: .inserted(row: 4)),
            Tampering(
                name: "insert a row with a made-up hash",
                sql: """
                    INSERT INTO audit (at, actor, action, outcome, previous_hash, hash)
                    VALUES (0, 'U9', 'deploy', 'succeeded', '\(String(repeating: "a", count: 64))',
                            '\(String(repeating: "b", count: 64))')
                    """,
                verdict: .inserted(row: 4)),
            Tampering(
                name: "replace a deleted row with one of the same id",
                sql: """
                    DELETE FROM audit WHERE id = 2;
                    INSERT INTO audit (id, at, actor, action, outcome) VALUES (2, 0, 'U9', 'lock', 'succeeded')
                    """,
                verdict: .inserted(row: 2)),
        ]
    }

    @Test(
        "Appended rows are chained, and an untouched chain verifies with its head hash",
        arguments: StoreKind.allCases)
    func intact(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            #expect(try await store.verifyAuditChain() == .intact(rows: 0, head: AuditChain.genesis))
            for entry in sampleAudit() { try await store.appendAudit(entry) }
            let links = try await store.auditLinks()
            #expect(links.map(\.id) == [1, 2, 3])
            #expect(links.first?.previousHash == AuditChain.genesis)
            for (earlier, later) in zip(links, links.dropFirst()) { #expect(later.previousHash == earlier.hash) }
            for link in links { #expect(link.hash == link.expectedHash && link.hash?.count == 64) }
            #expect(Set(links.compactMap(\.hash)).count == 3)
            #expect(try await store.verifyAuditChain() == .intact(rows: 3, head: try #require(links.last?.hash)))
        }
    }

    @Test("Verify names the first altered, deleted or inserted row", arguments: StoreKind.allCases, Tampering.all)
    func tampered(_ kind: StoreKind, _ tampering: Tampering) async throws {
        try await kind.withStore { store throws in
            for entry in sampleAudit() { try await store.appendAudit(entry) }
            try await store.execute(sql: Self.dropTriggers)
            try await store.execute(sql: tampering.sql)
            let verdict = try await store.verifyAuditChain()
            #expect(verdict == tampering.verdict)
            #expect(!verdict.isIntact)
        }
    }

    @Test(
        "A row rewritten together with its own hash breaks the link of the row after it",
        arguments: StoreKind.allCases)
    func rehashed(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            for entry in sampleAudit() { try await store.appendAudit(entry) }
            var link = try #require(try await store.auditLinks().first { $0.id == 2 })
            link.outcome = "succeeded"
            try await store.execute(sql: Self.dropTriggers)
            try await store.execute(
                sql: "UPDATE audit SET outcome = 'succeeded', hash = '\(link.expectedHash)' WHERE id = 2")
            #expect(try await store.verifyAuditChain() == .unlinked(row: 3, after: 2))
        }
    }

    @Test("Inserting a row without its chain is refused while the triggers stand", arguments: StoreKind.allCases)
    func unchainedInsertRefused(_ kind: StoreKind) async throws {
        try await kind.withStore { store throws in
            try await store.appendAudit(sampleAudit()[0])
            let error = await #expect(throws: (any Error).self) {
                try await store.execute(
                    sql: "INSERT INTO audit (at, actor, action, outcome) VALUES (0, 'U9', 'deploy', 'x')")
            }
            #expect(String(describing: error).contains("hash chain"))
            #expect(try await store.verifyAuditChain().isIntact)
        }
    }

    @Test("Tampering through a second connection to the file is caught by a read-only reader")
    func tamperedOnDisk() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        let daemon = try SQLiteStore(path: path)
        for entry in sampleAudit() { try await daemon.appendAudit(entry) }
        let attacker = try DatabaseQueue(path: path)
        try await attacker.write { db in
            try db.execute(sql: Self.dropTriggers)
            try db.execute(sql: "UPDATE audit SET actor = 'U9' WHERE id = 2")
        }
        #expect(try await SQLiteStore.openReadOnly(path: path).verifyAuditChain() == .altered(row: 2))
        try await daemon.appendAudit(sampleAudit()[0])
        #expect(try await SQLiteStore.openReadOnly(path: path).verifyAuditChain() == .altered(row: 2))
    }

    @Test("Rows written before the chain existed are chained by its migration")
    func migratesOldRows() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("inferops.sqlite")
        try FileManager.default.createDirectory(at: folder.url, withIntermediateDirectories: true)
        do {
            let old = try DatabaseQueue(path: path)
            try Schema.migrator.migrate(old, upTo: "v3-registrations")
            try await old.write { db in
                try db.execute(sql: """
                    INSERT INTO audit (at, actor, action, environment, outcome, detail)
                    VALUES (1700000000123, 'U1', 'deploy', 'prod', 'accepted', 'plan');
                    INSERT INTO audit (at, actor, action, outcome) VALUES (1700000000999, 'U2', 'lock', 'denied');
                    """)
            }
        }
        let store = try SQLiteStore(path: path)
        let links = try await store.auditLinks()
        #expect(links.map(\.previousHash) == [AuditChain.genesis, links[0].hash])
        #expect(try await store.verifyAuditChain() == .intact(rows: 2, head: try #require(links[1].hash)))
        try await store.appendAudit(sampleAudit()[2])
        #expect(try await store.verifyAuditChain().isIntact)
        #expect(try await store.auditLog().map(\.actor) == [UserID("U1"), UserID("U2"), UserID("U3")])
        // The update trigger lifted for the migration is back.
        await #expect(throws: (any Error).self) { try await store.execute(sql: "UPDATE audit SET outcome = 'x'") }
    }

    @Test("Channel and operating-system user are stored and printed")
    func channelAndOSUser() async throws {
        try await StoreKind.memory.withStore { store throws in
            var entry = sampleAudit()[1]
            entry.channel = "exec"
            entry.osUser = "carol"
            try await store.appendAudit(entry)
            #expect(try await store.auditLog() == [entry])
            #expect(
                try await store.auditLines() == [
                    #"{"at":"2023-11-14T22:13:20.999Z","actor":"U2","action":"lock","outcome":"denied","#
                        + #""channel":"exec","os_user":"carol"}"#
                ])
        }
    }

    @Test("A read-only store does not create a missing database and cannot write an existing one")
    func readOnly() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let missing = folder.path("missing/inferops.sqlite")
        #expect(throws: (any Error).self) { _ = try SQLiteStore.openReadOnly(path: missing) }
        #expect(!FileManager.default.fileExists(atPath: missing))
        #expect(!FileManager.default.fileExists(atPath: folder.path("missing")))

        let path = folder.path("inferops.sqlite")
        try await SQLiteStore(path: path).appendAudit(sampleAudit()[0])
        let reader = try SQLiteStore.openReadOnly(path: path)
        let error = await #expect(throws: DatabaseError.self) { try await reader.appendAudit(sampleAudit()[1]) }
        #expect(error?.resultCode == .SQLITE_READONLY)
        await #expect(throws: DatabaseError.self) { try await reader.execute(sql: "DROP TRIGGER audit_no_update") }
        #expect(try await reader.auditLog() == [sampleAudit()[0]])
        #expect(try await reader.verifyAuditChain().isIntact)
    }
}
