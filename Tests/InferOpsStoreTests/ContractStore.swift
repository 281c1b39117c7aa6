import Foundation
import InferOpsCore
import InferOpsStore
import InferOpsTesting
import Testing

/// Every implementation of `OperationStore`. The contract suite runs each of its tests on all of
/// them, so the fake that the core's tests use cannot drift from the store the daemon uses.
enum ContractStore: String, CaseIterable, CustomTestStringConvertible, Sendable {
    /// `InMemoryOperationStore`, the fake behind the core's fast tests.
    case fake
    /// `SQLiteStore.inMemory()`: one `DatabaseQueue` connection.
    case sqliteMemory = "sqlite-memory"
    /// `SQLiteStore(path:)` in a temporary folder: a WAL `DatabasePool`, as the daemon opens it.
    case sqliteDisk = "sqlite-disk"

    var testDescription: String { rawValue }

    /// Runs `body` with a fresh, empty store; the on-disk one lives in a folder removed afterwards.
    func withStore(_ body: (any OperationStore) async throws -> Void) async throws {
        switch self {
        case .fake:
            try await body(InMemoryOperationStore())
        case .sqliteMemory:
            try await body(SQLiteStore.inMemory())
        case .sqliteDisk:
            let folder = TemporaryFolder()
            defer { folder.remove() }
            try await body(SQLiteStore(path: folder.path("state/inferops.sqlite")))
        }
    }
}

/// A daemon instance on `gpu-ops-1` whose last heartbeat was at `heartbeat`.
func owner(_ instance: String, heartbeat: Date) -> OperationOwner {
    OperationOwner(instance: instance, host: "gpu-ops-1", pid: 4242, heartbeat: heartbeat)
}
