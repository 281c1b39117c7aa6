import Foundation
import InferOpsTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Paths and waiting helpers shared by the unit and integration tests.
enum TestTools {
    /// The repository these tests belong to.
    static var repositoryRoot: URL { InferOpsTestSupport.repositoryRoot }

    /// `python3` from `PATH`, or `nil`.
    static func python3() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/python3" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// A fresh path in the system's temporary folder; nothing is created at it.
    /// Writes an executable script. Its descriptor is close-on-exec: a child that another test spawns
    /// at that moment must not inherit it open for writing, or running the script fails with
    /// "Text file busy" (ETXTBSY).
    static func writeExecutable(_ text: String, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o700)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }

    static func temporaryPath(_ name: String) -> String {
        (NSTemporaryDirectory() as NSString).appendingPathComponent(
            "inferops-helm-\(name)-\(UUID().uuidString.prefix(8))"
        )
    }

    /// Polls `condition` until it holds, failing with `what` once `timeout` has passed. The short
    /// poll interval is the only pause: the test proceeds as soon as the event has happened.
    static func waitUntil(
        _ what: String,
        timeout: Duration,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if try await condition() { return }
            if clock.now >= deadline {
                Issue.record("timed out after \(timeout) waiting until \(what)", sourceLocation: sourceLocation)
                throw WaitTimedOut(what: what)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Sets `variables` in this test process's own environment, the daemon's environment in these
    /// tests, for the length of `body`, and restores them afterwards. Tests that do this take turns.
    static func withProcessEnvironment<T>(
        _ variables: [String: String],
        _ body: () async throws -> T
    ) async throws -> T {
        while !environmentInUse.withLock({ inUse in
            defer { inUse = true }
            return !inUse
        }) {
            try await Task.sleep(for: .milliseconds(20))
        }
        defer { environmentInUse.withLock { $0 = false } }
        let saved = variables.keys.map { ($0, getenv($0).map { String(cString: $0) }) }
        for (name, value) in variables { setenv(name, value, 1) }
        defer {
            for (name, value) in saved {
                if let value { setenv(name, value, 1) } else { unsetenv(name) }
            }
        }
        return try await body()
    }

    private static let environmentInUse = Mutex(false)

    struct WaitTimedOut: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out waiting until \(what)" }
    }
}
