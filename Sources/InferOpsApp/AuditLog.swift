import Foundation
import InferOpsCore
import InferOpsStore

/// Reads the audit log without starting the daemon's other parts. The database is opened read-only:
/// reading the log must never create, migrate or write the file it is meant to check.
public enum AuditLog {
    /// - Throws: `Refusal` when there is no database at the path or it cannot be read as one.
    public static func lines(storagePath: String) async throws -> [String] {
        try await withStore(storagePath) { try await $0.auditLines() }
    }

    /// Walks the hash chain; `summary` names the first row that breaks it, or the intact chain's
    /// length and head hash.
    /// - Throws: `Refusal` as `lines(storagePath:)` does.
    public static func verify(storagePath: String) async throws -> (intact: Bool, summary: String) {
        let verdict = try await withStore(storagePath) { try await $0.verifyAuditChain() }
        return (verdict.isIntact, verdict.description)
    }

    /// The service-level report of `inferops slo`, read from the records without the daemon.
    /// - Throws: `Refusal` as `lines(storagePath:)` does.
    public static func serviceLevels(storagePath: String, environments: [String], days: Int, now: Date)
        async throws -> ServiceLevelReport
    {
        try await withStore(storagePath) { store in
            try await ServiceLevels.read(from: store, environments: environments, days: days, now: now)
        }
    }

    private static func withStore<T>(_ path: String, _ body: (SQLiteStore) async throws -> T) async throws -> T {
        guard FileManager.default.fileExists(atPath: path) else {
            throw Refusal(
                "There is no database at \(path) (storage.path).", hint: "The daemon creates it when it starts.")
        }
        do {
            return try await body(SQLiteStore.openReadOnly(path: path))
        } catch let error as SQLiteStoreError {
            throw Refusal("Cannot read the records: \(error.description).")
        }
    }
}

/// The operating-system account running this process, for the audit rows of console and
/// `inferops exec` commands. Read from the effective uid, not `$USER`, which anyone can set.
public enum OperatingSystemUser {
    public static var current: String {
        let uid = geteuid()
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }
}
