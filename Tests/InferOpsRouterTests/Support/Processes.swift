import Foundation
import InferOpsHTTP
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The checkout this test file belongs to, so tests use its `.tools` and `Tests/RouterHarness`.
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)  // Tests/InferOpsRouterTests/Support/Processes.swift
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Ends a child process for sure. SIGKILL, because children of `swift test` start with SIGTERM blocked.
func stopProcess(_ process: Process) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
}

/// Ports this test process has handed out; never handed out twice, so parallel tests cannot pick
/// the same one between its release and the child binding it.
private let handedOutPorts = Mutex<Set<Int>>([])

/// A loopback TCP port that was free a moment ago: bound to port 0, read back, released.
/// The child that gets it may still lose a race with another program; callers retry then.
func freePort() throws -> Int {
    for _ in 0..<50 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw TestFailure("bind(127.0.0.1:0) failed: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw TestFailure("getsockname failed: errno \(errno)") }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let fresh = handedOutPorts.withLock { $0.insert(port).inserted }
        if fresh { return port }
    }
    throw TestFailure("no fresh loopback port after 50 tries")
}

/// Polls `condition` until it holds: waiting for an event with a deadline, never a fixed sleep.
func waitUntil(
    _ what: String,
    timeout: Duration = .seconds(10),
    every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now > deadline { throw TestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: interval)
    }
}

/// A fresh temporary directory.
func temporaryDirectory(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The last `count` characters of a log file, for failure messages.
func tail(of file: URL, _ count: Int = 1500) -> String {
    let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
    return String(text.suffix(count))
}

/// The full path of an executable on `PATH`, or a clear failure naming what is missing.
func requireExecutable(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw TestFailure("\(name) is required for this test but was not found on PATH")
}

/// Wraps a client and counts the requests it sends, by "METHOD path".
final class CountingHTTPClient: HTTPClient {
    private let inner: any HTTPClient
    private let sent = Mutex<[String]>([])

    init(_ inner: any HTTPClient) { self.inner = inner }

    var requests: [String] { sent.withLock { $0 } }

    func count(_ prefix: String) -> Int { requests.filter { $0.hasPrefix(prefix) }.count }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let path = request.url.replacingOccurrences(of: #"^https?://[^/]+"#, with: "", options: .regularExpression)
        sent.withLock { $0.append("\(request.method.rawValue) \(path)") }
        return try await inner.send(request)
    }
}

/// Waits for a child to write the port it listens on (its start-up event), polling with a deadline.
/// - Throws: `TestFailure` with the child's stderr when it exits or the deadline passes first.
func waitForPortFile(_ portFile: URL, of process: Process, log: URL, within limit: Duration, what: String) async throws -> Int {
    let deadline = ContinuousClock.now + limit
    while true {
        if let text = try? String(contentsOf: portFile, encoding: .utf8),
            let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            return port
        }
        if !process.isRunning || ContinuousClock.now > deadline {
            stopProcess(process)
            throw TestFailure("\(what) did not start: \(tail(of: log))")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
