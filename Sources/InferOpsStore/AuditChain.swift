import Crypto
import Foundation
import GRDB
import InferOpsCore

/// The audit log's hash chain: each row stores the SHA-256 of its canonical content, which
/// includes the hash of the row before it, so altering, deleting or inserting a row with SQL breaks
/// the chain at that row.
///
/// What it cannot do alone: someone who can write the file can also recompute every hash after
/// their edit. `inferops audit --verify` prints the head hash so it can be kept elsewhere (a ticket,
/// a log shipper); a rewritten chain then ends in a different head.
///
/// The canonical form is part of the stored data: changing it would break every chain in the
/// field, so it is never edited. Each field is written as its UTF-8 length, a colon and its bytes
/// (`-` for NULL), one per line, so no two different rows share a form.
enum AuditChain {
    /// The `previous_hash` of the first row.
    static let genesis = String(repeating: "0", count: 64)

    /// The stored columns of one row, read and written raw so the chain never depends on how the
    /// Swift records map them.
    struct Link {
        var id: Int64
        var at: Int64
        var actor: String
        var action: String
        var environment: String?
        var subject: String?
        var outcome: String
        var operation: String?
        var detail: String?
        var channel: String?
        var osUser: String?
        var previousHash: String?
        var hash: String?

        init(row: Row) {
            id = row["id"]
            at = row["at"]
            actor = row["actor"]
            action = row["action"]
            environment = row["environment"]
            subject = row["subject"]
            outcome = row["outcome"]
            operation = row["operation_id"]
            detail = row["detail"]
            channel = row["channel"]
            osUser = row["os_user"]
            previousHash = row["previous_hash"]
            hash = row["hash"]
        }

        init(id: Int64, record: AuditRecord, previousHash: String) {
            let entry = record.entry
            self.id = id
            at = record.atMilliseconds
            actor = entry.actor.rawValue
            action = entry.action
            environment = entry.environment
            subject = entry.subject
            outcome = entry.outcome
            operation = entry.operation?.rawValue
            detail = entry.detail
            channel = entry.channel
            osUser = entry.osUser
            self.previousHash = previousHash
            hash = nil
        }

        /// The hash this row's content calls for, whatever is stored in `hash`.
        var expectedHash: String {
            let fields: [String?] = [
                String(id), String(at), actor, action, environment, subject, outcome, operation, detail, channel,
                osUser, previousHash,
            ]
            let canonical = fields.map { field in field.map { "\($0.utf8.count):\($0)" } ?? "-" }
                .joined(separator: "\n")
            return hex(SHA256.hash(data: Data(canonical.utf8)))
        }
    }

    /// The id the next row will get and the hash it must link to, read inside the writing
    /// transaction so no other writer can slip a row in between.
    static func nextLink(_ db: Database) throws -> (id: Int64, previousHash: String) {
        let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"))
        // AUTOINCREMENT never reuses an id, even of a deleted row; sqlite_sequence remembers the highest.
        let sequence = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT seq FROM sqlite_sequence WHERE name = 'audit'")) ?? 0
        let lastID: Int64 = last?["id"] ?? 0
        return (max(sequence, lastID) + 1, (last?["hash"] as String?) ?? genesis)
    }

    /// Chains the rows that have no hash yet, in id order: those written before `v5-audit-chain`.
    static func chainUnhashedRows(_ db: Database) throws {
        var previous = genesis
        for row in try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id") {
            var link = Link(row: row)
            if link.hash == nil {
                link.previousHash = previous
                let hash = link.expectedHash
                try db.execute(
                    sql: "UPDATE audit SET previous_hash = ?, hash = ? WHERE id = ?",
                    arguments: [previous, hash, link.id])
                previous = hash
            } else {
                previous = link.hash!
            }
        }
    }

    /// Walks the chain from the first row and stops at the first row that breaks it.
    static func verify(_ db: Database) throws -> AuditChainVerdict {
        var previousID: Int64 = 0
        var previousHash = genesis
        var count = 0
        for row in try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id") {
            let link = Link(row: row)
            guard let hash = link.hash, let linkedTo = link.previousHash else {
                return .inserted(row: link.id)
            }
            let follows = linkedTo == previousHash
            if link.id > previousID + 1 { return .deleted(rows: (previousID + 1)...(link.id - 1)) }
            if hash != link.expectedHash { return follows ? .altered(row: link.id) : .inserted(row: link.id) }
            if !follows { return .unlinked(row: link.id, after: previousID) }
            previousID = link.id
            previousHash = hash
            count += 1
        }
        let sequence = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'audit'") ?? 0
        if sequence > previousID { return .deleted(rows: (previousID + 1)...sequence) }
        return .intact(rows: count, head: previousHash)
    }
}

/// What `inferops audit --verify` found.
public enum AuditChainVerdict: Hashable, Sendable, CustomStringConvertible {
    /// Every row is where the chain says; `head` is the last row's hash (the genesis hash when empty).
    case intact(rows: Int, head: String)
    /// The row's content no longer matches its hash.
    case altered(row: Int64)
    /// Ids the log once held are gone (AUTOINCREMENT never skips or reuses one).
    case deleted(rows: ClosedRange<Int64>)
    /// The row was not written by InferOps: it has no hash, or neither its content nor its link fits.
    case inserted(row: Int64)
    /// The row is intact but does not link to the one before it: that one was rewritten together
    /// with its hash, or this one was forged.
    case unlinked(row: Int64, after: Int64)

    public var isIntact: Bool {
        if case .intact = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .intact(let rows, let head):
            "The audit chain of \(rows) row(s) is intact; head \(head)."
        case .altered(let row):
            "Audit row \(row) was altered: its content no longer matches its hash."
        case .deleted(let rows):
            rows.count == 1
                ? "Audit row \(rows.lowerBound) was deleted."
                : "Audit rows \(rows.lowerBound)–\(rows.upperBound) were deleted."
        case .inserted(let row):
            "Audit row \(row) was inserted outside InferOps: it does not belong to the chain."
        case .unlinked(let row, let after):
            "Audit row \(row) does not link to row \(after): row \(after) was rewritten with a new hash, "
                + "or row \(row) was inserted."
        }
    }
}
