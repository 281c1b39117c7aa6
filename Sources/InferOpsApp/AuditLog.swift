import InferOpsStore

/// Reads the audit log without starting the daemon's other parts.
public enum AuditLog {
    public static func lines(storagePath: String) async throws -> [String] {
        try await SQLiteStore(path: storagePath).auditLines()
    }
}
