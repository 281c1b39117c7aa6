import Foundation
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The checkout this file belongs to (`Tests/TestSupport/Workplace.swift` → the root), so the tests
/// use its `.tools`, `.build`, emulator and harness scripts.
public let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The full path of an executable on `PATH`, or a clear failure naming what is missing.
public func requireExecutable(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw TestFailure("\(name) is required for this test but was not found on PATH")
}

/// A fresh folder in the system's temporary folder.
public func temporaryFolder(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Ports this test process has handed out; never handed out twice, so parallel tests cannot pick
/// the same one between its release and the child binding it.
private let handedOutPorts = Mutex<Set<Int>>([])

/// A loopback TCP port that was free a moment ago: bound to port 0, read back, released.
/// The child that gets it may still lose a race with another program; callers retry then.
public func freePort() throws -> Int {
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

/// One HTTP request, answered synchronously (health polls, and tests that run processes and wait
/// for them anyway). A request that fails has status 0 and the error as its body.
public func request(
    _ method: String,
    _ url: String,
    json: String? = nil,
    timeout: TimeInterval = 10
) -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: url)!, timeoutInterval: timeout)
    request.httpMethod = method
    if let json {
        request.httpBody = Data(json.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    let done = DispatchSemaphore(value: 0)
    let result = Mutex<(Int, String)>((0, ""))
    URLSession.shared.dataTask(with: request) { data, response, error in
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let body = data.map { String(decoding: $0, as: UTF8.self) } ?? "\(error.map { "\($0)" } ?? "")"
        result.withLock { $0 = (status, body) }
        done.signal()
    }.resume()
    done.wait()
    return result.withLock { $0 }
}
