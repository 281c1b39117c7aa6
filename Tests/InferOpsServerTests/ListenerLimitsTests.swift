import Foundation
import InferOpsCore
import ServiceLifecycle
import Synchronization
import Testing

@testable import InferOpsServer

#if canImport(Glibc)
    import Glibc
#endif

/// The listener under clients that hold connections without finishing requests (slowloris): they
/// are dropped by the read and idle deadlines, the connection cap holds, and meanwhile probes and
/// the deny backend keep answering. Loopback only; each case takes a few seconds.
@Suite(.serialized) struct ListenerLimitsTests {
    static let deadline: Duration = .seconds(2)

    /// 500 connections hold the listener: 200 send a request head one byte at a time, 200 send a
    /// whole head and then its body a byte at a time, 100 connect and send nothing. Each one must be
    /// closed by the server within its deadline (plus scheduling slack), while `/healthz` answers
    /// within 1 s every time and the deny backend keeps refusing a disabled model.
    @Test func trickleClientsAreDroppedWhileProbesAndTheDenyBackendKeepAnswering() async throws {
        try raiseDescriptorLimit(to: 4096)
        let server = try DaemonHTTPServer(
            configuration: .init(
                host: "127.0.0.1",
                port: 0,
                deny: .init(defaultEnvironment: "staging", environments: ["staging"], contact: "#ml-platform"),
                idleTimeout: Self.deadline,
                readTimeout: Self.deadline
            ),
            denials: lookup(fixtures),
            logger: quietLogger
        )
        try await withServer(server) { port in
            let trickle = Trickle(port: port, headTricklers: 200, bodyTricklers: 200, silent: 100)
            let opened = try await trickle.openAll()
            #expect(opened == 500)
            let finished = Flag(false)
            async let probes = Self.probe(port: port, until: finished)
            let lifetimes = await trickle.runUntilAllClosed(limit: .seconds(15))
            finished.set(true)
            let (healthLatencies, denials) = try await probes

            // Every trickling connection was closed by the server, none outlived its deadline by much.
            #expect(lifetimes.count == 500, "\(500 - lifetimes.count) connections were never closed by the server")
            let longest = lifetimes.max() ?? .zero
            #expect(longest <= Self.deadline + .seconds(2), "a connection lived \(longest)")
            print(
                "listener: 500 trickling connections closed after at most \(longest); "
                    + "\(healthLatencies.count) probes, slowest \(healthLatencies.max() ?? .zero)")

            // The probes ran throughout, each answered within a second, and every denial held.
            #expect(healthLatencies.count >= 10)
            for latency in healthLatencies {
                #expect(latency <= .seconds(1), "/healthz took \(latency)")
            }
            #expect(denials.count == healthLatencies.count)
            for answer in denials {
                #expect(answer.hasPrefix("HTTP/1.1 403"), "\(answer.prefix(200))")
                #expect(answer.contains(#""type":"model_disabled""#), "\(answer.prefix(400))")
            }
        }
    }

    /// At the cap the listener stops accepting: a further client is served only once a connection closes.
    @Test func theConnectionCapHoldsAndFreesUpWhenAConnectionCloses() async throws {
        let server = try DaemonHTTPServer(
            configuration: .init(host: "127.0.0.1", port: 0, idleTimeout: .seconds(30), maxConnections: 4),
            denials: lookup(fixtures),
            logger: quietLogger
        )
        try await withServer(server) { port in
            // Four keep-alive connections, each proven accepted by a full exchange.
            var held: [Int32] = []
            defer { held.forEach { _ = close($0) } }
            for _ in 0..<4 {
                let socket = try RawSocket.connect(port: port)
                held.append(socket)
                let answer = try RawSocket.exchange(socket, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout: 5)
                #expect(answer.hasPrefix("HTTP/1.1 200"))
            }
            let fifth = try RawSocket.connect(port: port)
            defer { _ = close(fifth) }
            let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            #expect(try RawSocket.exchange(fifth, request, timeout: 0.7).isEmpty, "the fifth connection was served")
            _ = close(held.removeFirst())
            let answer = try RawSocket.exchange(fifth, "", timeout: 5)
            #expect(answer.hasPrefix("HTTP/1.1 200"))
        }
    }

    /// The listener's defaults are the configuration's: one port, one set of limits.
    @Test func theListenerDefaultsAreTheConfigurationDefaults() {
        let listener = DaemonHTTPServer.Configuration()
        let settings = ServerSettings()
        #expect(listener.port == settings.port)
        #expect(listener.port == 8470)
        #expect(listener.idleTimeout == settings.idleTimeout)
        #expect(listener.readTimeout == settings.readTimeout)
        #expect(listener.maxConnections == settings.maxConnections)
    }

    /// Probes `/healthz` and the deny backend one after the other until `finished` is set.
    static func probe(port: Int, until finished: Flag) async throws -> (health: [Duration], denials: [String]) {
        var latencies: [Duration] = []
        var denials: [String] = []
        let denied = #"{"model":"llama-3-8b","messages":[]}"#
        while !finished.isSet {
            let clock = ContinuousClock()
            let start = clock.now
            let health = try await RawSocket.request(
                port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            latencies.append(clock.now - start)
            #expect(health.hasPrefix("HTTP/1.1 200") && health.hasSuffix("ok\n"), "\(health.prefix(200))")
            denials.append(
                try await RawSocket.request(
                    port: port,
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(denied.utf8.count)\r\nConnection: close\r\n\r\n\(denied)"
                ))
            try await Task.sleep(for: .milliseconds(50))
        }
        return (latencies, denials)
    }
}

/// 500 client sockets and their server-side peers need more descriptors than the usual soft limit of 1024.
func raiseDescriptorLimit(to wanted: rlim_t) throws {
    var limit = rlimit()
    #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        let resource = RLIMIT_NOFILE
    #endif
    guard getrlimit(resource, &limit) == 0 else { throw RawSocket.Failure(step: "getrlimit") }
    guard limit.rlim_cur < wanted else { return }
    limit.rlim_cur = min(wanted, limit.rlim_max)
    guard setrlimit(resource, &limit) == 0, limit.rlim_cur >= 1200 else {
        throw RawSocket.Failure(step: "raising the descriptor limit to \(wanted) (hard limit \(limit.rlim_max))")
    }
}

/// Connections that never finish a request, driven from one thread with non-blocking sockets.
final class Trickle: Sendable {
    let port: Int
    let headTricklers: Int
    let bodyTricklers: Int
    let silent: Int
    private let sockets = Mutex<[(socket: Int32, opened: ContinuousClock.Instant, kind: Kind)]>([])

    enum Kind {
        case head, body, silent
    }

    init(port: Int, headTricklers: Int, bodyTricklers: Int, silent: Int) {
        self.port = port
        self.headTricklers = headTricklers
        self.bodyTricklers = bodyTricklers
        self.silent = silent
    }

    /// Connects every client; body tricklers send their whole head at once.
    func openAll() async throws -> Int {
        try await RawSocket.onThread { [self] in
            let kinds =
                Array(repeating: Kind.head, count: headTricklers) + Array(repeating: Kind.body, count: bodyTricklers)
                + Array(repeating: Kind.silent, count: silent)
            var opened: [(socket: Int32, opened: ContinuousClock.Instant, kind: Kind)] = []
            for kind in kinds {
                let socket = try RawSocket.connect(port: port)
                _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) | O_NONBLOCK)
                if kind == .body {
                    RawSocket.send(
                        socket,
                        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            + "Content-Length: 4096\r\n\r\n{")
                }
                opened.append((socket, ContinuousClock.now, kind))
            }
            sockets.withLock { $0 = opened }
            return opened.count
        }
    }

    /// Sends one byte per trickling connection every 100 ms and notes when the server closes each
    /// one; returns how long each closed connection lived. Gives up after `limit`.
    func runUntilAllClosed(limit: Duration) async -> [Duration] {
        (try? await RawSocket.onThread { [self] in
            var open = sockets.withLock { $0 }.map { (entry: $0, sent: 0) }
            var lifetimes: [Duration] = []
            let stop = ContinuousClock.now + limit
            // A head that is valid so far and never ends: one more header byte at a time.
            let head = Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !open.isEmpty, ContinuousClock.now < stop {
                var index = 0
                while index < open.count {
                    let (entry, sent) = open[index]
                    if Self.closedByServer(entry.socket, buffer: &buffer) {
                        lifetimes.append(ContinuousClock.now - entry.opened)
                        _ = close(entry.socket)
                        open.remove(at: index)
                        continue
                    }
                    switch entry.kind {
                    case .head:
                        let byte = sent < head.count ? head[sent] : UInt8(ascii: "a")
                        RawSocket.send(entry.socket, String(decoding: [byte], as: UTF8.self))
                    case .body: RawSocket.send(entry.socket, " ")
                    case .silent: break
                    }
                    open[index].sent += 1
                    index += 1
                }
                usleep(100_000)
            }
            open.forEach { _ = close($0.entry.socket) }
            return lifetimes
        }) ?? []
    }

    /// Drains what the server sent; end of stream or a reset means it closed the connection.
    private static func closedByServer(_ socket: Int32, buffer: inout [UInt8]) -> Bool {
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count > 0 { continue }
            return !(count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        }
    }
}

/// Plain sockets for what HTTP clients will not do on purpose: hold requests open, trickle bytes.
enum RawSocket {
    struct Failure: Error, CustomStringConvertible {
        var step: String
        var description: String { "\(step) failed (errno \(errno))" }
    }

    #if canImport(Glibc)
        static let noSignal = Int32(MSG_NOSIGNAL)
    #else
        static let noSignal: Int32 = 0
    #endif

    /// Runs blocking socket work on its own thread, off the test's executor.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    static func connect(port: Int) throws -> Int32 {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure(step: "socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            _ = close(fd)
            throw Failure(step: "connect")
        }
        return fd
    }

    @discardableResult
    static func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, noSignal) }
            if count <= 0 { return false }
            sent += count
        }
        return true
    }

    /// Sends `text` on a blocking socket and reads until the server closes, `timeout` seconds pass
    /// without data, or a whole response with `Content-Length` has arrived.
    static func exchange(_ fd: Int32, _ text: String, timeout: Double) throws -> String {
        var wait = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        if !text.isEmpty, !send(fd, text) { throw Failure(step: "send") }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isComplete(answer) {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: answer, as: UTF8.self)
    }

    /// One request on a fresh connection.
    static func request(port: Int, _ text: String) async throws -> String {
        try await onThread {
            let fd = try connect(port: port)
            defer { _ = close(fd) }
            return try exchange(fd, text, timeout: 5)
        }
    }

    private static func isComplete(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let head = text[..<end.lowerBound].lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
            let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        else { return false }
        return text[end.upperBound...].utf8.count >= length
    }
}
