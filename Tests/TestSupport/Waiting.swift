import Foundation

/// A failure a test reports with a message of its own (a launcher that did not start, a deadline).
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds: waiting for an event with a deadline, never a fixed sleep.
/// - Throws: `TestFailure` naming `what` once `timeout` has passed.
public func waitUntil(
    _ what: String,
    timeout: Duration = .seconds(20),
    every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now > deadline { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: interval)
    }
}

/// `waitUntil` for synchronous code (the launchers' start-up, synchronous tests): blocks the
/// calling thread between polls.
public func pollUntil(
    _ what: String,
    timeout: Duration,
    every interval: Duration = .milliseconds(20),
    _ condition: () throws -> Bool
) throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return }
        if ContinuousClock.now > deadline { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        let (seconds, attoseconds) = interval.components
        Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
    }
}

/// Runs `operation`, and fails when it has not finished within `timeout` (the operation is then
/// cancelled).
public func withDeadline<T: Sendable>(
    _ timeout: Duration,
    _ what: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestFailure("timed out after \(timeout) waiting for \(what)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Runs blocking `work` (a launcher waiting for its child to be ready) on a thread of its own, so
/// that it does not hold one of the few threads of the concurrency pool that parallel tests share.
public func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// The last `count` characters of `text`, for failure messages.
public func tail(of text: String, _ count: Int = 2000) -> String {
    String(text.suffix(count))
}
