import Foundation
import HummingbirdTesting
import InferOpsCore
import Logging
import ServiceLifecycle
import Testing

@testable import InferOpsServer

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The server as the daemon runs it: a service in a `ServiceGroup`, on a real socket.
@Suite struct LiveServerTests {
    @Test func onAnEphemeralPortTheBoundPortIsReadBackAndServesRealRequests() async throws {
        let announced = Recorder()
        let server = try makeServer(port: 0, onListening: { port in announced.append("\(port)") })
        try await withServer(server) { port in
            #expect(port > 0)
            #expect(announced.values == ["\(port)"])
            // Asking again, after the server listens, answers at once.
            #expect(try await server.boundPort() == port)

            let (health, healthResponse) = try await URLSession.shared.data(
                for: URLRequest(url: URL(string: "http://127.0.0.1:\(port)/healthz")!)
            )
            #expect((healthResponse as? HTTPURLResponse)?.statusCode == 200)
            #expect(String(decoding: health, as: UTF8.self) == "ok\n")

            var request = URLRequest(
                url: URL(
                    string: DenyBackend.workerURL(
                        base: "http://127.0.0.1:\(port)",
                        environment: "staging",
                        model: "llama-3-8b"
                    ) + "/v1/chat/completions"
                )!
            )
            request.httpMethod = "POST"
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(#"{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}]}"#.utf8)
            let (body, response) = try await URLSession.shared.data(for: request)
            let http = try #require(response as? HTTPURLResponse)
            #expect(http.statusCode == 403)
            #expect(http.value(forHTTPHeaderField: "Server") == "inferops")
            let error = try JSONDecoder().decode(ErrorEnvelope.self, from: body).error
            #expect(error.message == DenyBackendTests.disabledMessage)
        }
        // After a graceful shutdown there is no port to hand out.
        await #expect(throws: DaemonHTTPServer.Stopped.self) {
            try await server.boundPort()
        }
    }

    @Test func aChunkedBodyOverTheLimitIs413WhileReading() async throws {
        let server = try makeServer(
            deny: .init(defaultEnvironment: "staging", environments: ["staging"], maxBodySize: 1024)
        )
        try await withServer(server) { port in
            // No Content-Length: the limit must hold while the body streams in.
            let chunk = String(repeating: "x", count: 600)
            let chunked =
                "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                + "Connection: close\r\n\r\n"
                + [#"{"model":"llama-3-8b","prompt":""#, chunk, chunk, #""}"#]
                .map { String($0.utf8.count, radix: 16) + "\r\n" + $0 + "\r\n" }.joined() + "0\r\n\r\n"
            let answer = try await RawHTTP.exchange(port: port, request: chunked)
            #expect(answer.hasPrefix("HTTP/1.1 413"))
            #expect(answer.contains(#""code":"request_too_large""#))

            let small = #"{"model":"llama-3-8b"}"#
            let fits =
                "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                + "Connection: close\r\n\r\n" + String(small.utf8.count, radix: 16) + "\r\n" + small + "\r\n0\r\n\r\n"
            #expect(try await RawHTTP.exchange(port: port, request: fits).hasPrefix("HTTP/1.1 403"))
        }
    }

    @Test func hummingbirdsLiveClientReachesTheDenyBackend() async throws {
        let server = try makeServer()
        try await server.application.test(.live) { client in
            #expect(client.port != nil)
            let response = try await client.execute(
                uri: "/deny/staging/mistral-7b/v1/completions",
                method: .post,
                body: json(#"{"prompt":"x"}"#)
            )
            #expect(response.status == .notFound)
            #expect(try decodeError(response.body).code == "model_not_found")
        }
    }

    @Test func aPortInUseFailsTheServiceAndTheWaitersLearnWhy() async throws {
        let first = try makeServer()
        try await withServer(first) { port in
            let second = try makeServer(port: port)
            let waiter = Task { try await second.boundPort() }
            await #expect(throws: (any Error).self) {
                try await second.run()
            }
            // The waiter gets the bind error, not a port and not a hang.
            await #expect {
                _ = try await waiter.value
            } throws: { error in
                !(error is DaemonHTTPServer.Stopped) && !(error is CancellationError)
            }
        }
    }

    @Test func waitingForThePortEndsWhenTheWaiterIsCancelled() async throws {
        let server = try makeServer()  // never run
        let waiter = Task { try await server.boundPort() }
        waiter.cancel()
        await #expect(throws: CancellationError.self) {
            try await waiter.value
        }
    }
}

/// One HTTP/1.1 exchange over a plain socket, for requests URLSession will not send as written
/// (a chunked body). Blocking socket calls run on their own thread, off the test's executor.
enum RawHTTP {
    struct Failure: Error {
        var step: String
    }

    static func exchange(port: Int, request: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try blockingExchange(port: port, request: request) })
            }
        }
    }

    /// A peer that already closed must fail the send, not raise SIGPIPE and end the test process.
    #if canImport(Glibc)
        private static let noSignal = Int32(MSG_NOSIGNAL)
    #else
        private static let noSignal: Int32 = 0
    #endif

    private static func blockingExchange(port: Int, request: String) throws -> String {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure(step: "socket") }
        defer { close(fd) }
        #if !canImport(Glibc)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw Failure(step: "connect") }
        // The server may answer 413 and close before it has read everything; a failed send is fine then.
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, noSignal) }
            if count <= 0 { break }
            sent += count
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
