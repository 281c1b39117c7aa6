import Foundation
import InferOpsCore
import Testing

@testable import InferOpsStore

/// The two ways the daemon opens a store. Every behaviour test runs on both, because WAL pools and
/// in-memory queues differ in connections, transactions and file handling.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory
    case disk

    var testDescription: String { rawValue }

    /// Runs `body` with a fresh store; the on-disk one lives in a temporary folder removed afterwards.
    func withStore(_ body: (SQLiteStore) async throws -> Void) async throws {
        switch self {
        case .memory:
            try await body(SQLiteStore.inMemory())
        case .disk:
            let folder = TemporaryFolder()
            defer { folder.remove() }
            // A missing parent folder checks that `init(path:)` creates it.
            try await body(SQLiteStore(path: folder.path("state/inferops.sqlite")))
        }
    }
}

/// A unique folder under the system temporary directory.
struct TemporaryFolder {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("inferops-store-tests-\(UUID().uuidString)", isDirectory: true)

    func path(_ relative: String) -> String {
        url.appendingPathComponent(relative).path
    }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// A date at a whole millisecond since 1970, built the way the store reads dates back, so that
/// round-tripped values compare equal.
func date(ms: Int64) -> Date {
    Date(timeIntervalSince1970: Double(ms) / 1000)
}

/// 2023-11-14T22:13:20.000Z, and offsets from it in milliseconds.
func moment(_ offset: Int64 = 0) -> Date {
    date(ms: 1_700_000_000_000 + offset)
}

func makeOperation(
    _ id: String,
    kind: OperationKind = .deploy,
    environment: String = "staging",
    model: String? = "llama",
    state: OperationState = .requested,
    createdAt: Date = moment()
) -> OperationRecord {
    OperationRecord(
        id: OperationID(id),
        kind: kind,
        requester: UserID("U1"),
        environment: environment,
        model: model,
        state: state,
        command: "deploy \(model ?? "-") to \(environment)",
        createdAt: createdAt
    )
}
