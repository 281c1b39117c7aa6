import Foundation
import InferOpsHTTP
import InferOpsTestSupport
import Testing

@Suite("CurlHTTPClient against a local Python server")
struct CurlHTTPClientTests {
    private func json(_ response: HTTPResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: response.bodyData) as? [String: Any])
    }

    @Test func getSendsHeadersAndParsesResponseHeaders() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        var request = HTTPRequest(url: "\(server.base)/echo?x=1", headers: ["X-Trace": "abc"])
        request.setBearerToken("s3cret")
        let response = try await client.send(request)
        await client.shutdown()

        #expect(response.status == 200)
        #expect(response.headers["x-echo"] == "yes")
        #expect(response.headers["Content-Type"] == "application/json")
        let echoed = try json(response)
        #expect(echoed["method"] as? String == "GET")
        #expect(echoed["path"] as? String == "/echo?x=1")
        let headers = try #require(echoed["headers"] as? [String: String])
        #expect(headers["x-trace"] == "abc")
        #expect(headers["authorization"] == "Bearer s3cret")
        #expect(headers["expect"] == nil)
        #expect(!request.description.contains("s3cret"))
    }

    @Test func postSendsUTF8Body() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        let body = #"{"prompt":"grüße 👋"}"#
        let response = try await client.send(
            HTTPRequest(
                method: .post,
                url: "\(server.base)/echo",
                headers: ["Content-Type": "application/json"],
                body: Array(body.utf8)
            )
        )
        await client.shutdown()

        #expect(response.status == 201)
        let echoed = try json(response)
        #expect(echoed["method"] as? String == "POST")
        #expect(echoed["body"] as? String == body)
        let headers = try #require(echoed["headers"] as? [String: String])
        #expect(headers["content-type"] == "application/json")
    }

    @Test func otherMethodsCarryTheirVerb() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        for method in [HTTPMethod.put, .patch, .delete] {
            let response = try await client.send(
                HTTPRequest(method: method, url: "\(server.base)/echo", body: Array("x".utf8))
            )
            #expect(try json(response)["method"] as? String == method.rawValue)
            #expect(try json(response)["body"] as? String == "x")
        }
        let head = try await client.send(HTTPRequest(method: .head, url: "\(server.base)/echo"))
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        await client.shutdown()
    }

    @Test func non2xxStatusIsAResponseNotAnError() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        let response = try await client.send(HTTPRequest(url: "\(server.base)/status/429"))
        await client.shutdown()
        #expect(response.status == 429)
        #expect(!response.isSuccess)
        #expect(response.headers["retry-after"] == "1")
        #expect(try json(response)["status"] as? Int == 429)
    }

    @Test func timeoutHasMillisecondPrecision() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        let clock = ContinuousClock()
        let started = clock.now
        let error = await #expect(throws: HTTPTransportError.self) {
            _ = try await client.send(HTTPRequest(url: "\(server.base)/slow?ms=10000", timeout: .milliseconds(400)))
        }
        let elapsed = clock.now - started
        await client.shutdown()
        #expect(error?.isTimeout == true)
        #expect(error?.code == 28)
        // Not before the 400 ms limit, and long before the server's 10 s answer: the limit fired.
        #expect(elapsed >= .milliseconds(390))
        #expect(elapsed < .seconds(8), "took \(elapsed)")
    }

    @Test func cancellingAnInFlightRequestThrowsCancellationErrorPromptly() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        let url = "\(server.base)/slow?ms=10000"
        let task = Task { try await client.send(HTTPRequest(url: url, timeout: .seconds(30))) }
        // Cancel only once the server holds the request, so the transfer is really in flight.
        try await waitUntil("the slow request to reach the server") {
            let response = try await client.send(HTTPRequest(url: "\(server.base)/inflight"))
            return try json(response)["inflight"] as? Int == 1
        }
        let clock = ContinuousClock()
        let cancelledAt = clock.now
        task.cancel()
        let result = await task.result
        let elapsed = clock.now - cancelledAt
        #expect(throws: CancellationError.self) { try result.get() }
        // The server would have answered after 10 s: ending well before proves the cancel cut it short.
        // (How fast is a benchmark question, not a test's.)
        #expect(elapsed < .seconds(8), "cancellation took \(elapsed)")
        // The client still works after a cancellation.
        #expect(try await client.send(HTTPRequest(url: "\(server.base)/echo")).status == 200)
        await client.shutdown()
    }

    @Test func alreadyCancelledTaskNeverSends() async throws {
        let client = try CurlHTTPClient()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.send(HTTPRequest(url: "http://127.0.0.1:9/never"))
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        await client.shutdown()
    }

    @Test func twoHundredConcurrentRequests() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient(configuration: .init(maxConnectionsPerHost: 8))
        let base = server.base
        let clock = ContinuousClock()
        let started = clock.now
        let paths = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for index in 0..<200 {
                group.addTask {
                    let response = try await client.send(HTTPRequest(url: "\(base)/echo?i=\(index)"))
                    let object = try JSONSerialization.jsonObject(with: response.bodyData) as? [String: Any]
                    return (index, object?["path"] as? String)
                }
            }
            var paths: [Int: String?] = [:]
            for try await (index, path) in group { paths[index] = path }
            return paths
        }
        let elapsed = clock.now - started
        await client.shutdown()
        #expect(paths.count == 200)
        for index in 0..<200 { #expect(paths[index] == "/echo?i=\(index)") }
        #expect(elapsed < .seconds(20), "200 requests took \(elapsed)")
    }

    @Test func connectionRefusedIsATypedTransportError() async throws {
        // Bind and close a socket to find a port nobody listens on.
        let server = try await PythonHTTPServer()
        let port = server.port
        server.stop()
        let client = try CurlHTTPClient()
        let error = await #expect(throws: HTTPTransportError.self) {
            _ = try await client.send(HTTPRequest(url: "http://127.0.0.1:\(port)/", timeout: .seconds(5)))
        }
        await client.shutdown()
        #expect(error?.isConnectionFailure == true)
        #expect(error?.code == 7)
        #expect(error?.description.contains("curl error 7") == true)
    }

    @Test func shutdownFailsInFlightAndLaterRequests() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient()
        let url = "\(server.base)/slow?ms=10000"
        let task = Task { try await client.send(HTTPRequest(url: url)) }
        try await waitUntil("the slow request to reach the server") {
            let response = try await client.send(HTTPRequest(url: "\(server.base)/inflight"))
            return try json(response)["inflight"] as? Int == 1
        }
        await client.shutdown()
        await #expect(throws: HTTPClientShutDown.self) { try await task.value }
        await #expect(throws: HTTPClientShutDown.self) {
            try await client.send(HTTPRequest(url: "\(server.base)/echo"))
        }
        await client.shutdown()  // a second call is harmless
    }

    @Test func oversizedResponseIsRefused() async throws {
        let server = try await PythonHTTPServer()
        defer { server.stop() }
        let client = try CurlHTTPClient(configuration: .init(maxResponseBytes: 16))
        let error = await #expect(throws: HTTPTransportError.self) {
            _ = try await client.send(HTTPRequest(url: "\(server.base)/echo"))
        }
        await client.shutdown()
        #expect(error?.code == 23)
        #expect(error?.message.contains("larger than 16 bytes") == true)
    }
}
