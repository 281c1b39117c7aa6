import Foundation

/// Wall-clock time for records, and waiting, behind a port so tests can control both.
public protocol TimeSource: Sendable {
    func now() -> Date
    /// Suspends for `duration`; used only for polling intervals, never to wait for an outcome.
    func sleep(for duration: Duration) async throws
}

public struct SystemTime: TimeSource {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}
