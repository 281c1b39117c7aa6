import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsRouter
import Synchronization
import Testing

/// The adapter against a scripted client: the exact calls it makes, its retries and its errors.
/// The same behaviour against the real router is in `VLLMRouterTests`.
@Suite struct VLLMRouterUnitTests {
    /// Answers each request with the next scripted outcome for its "METHOD path", and records it.
    final class ScriptedHTTPClient: HTTPClient {
        enum Outcome {
            case answer(Int, String)
            case refused
        }

        private let state = Mutex<(script: [String: [Outcome]], sent: [(String, String)])>(([:], []))

        init(_ script: [String: [Outcome]]) {
            state.withLock { $0.script = script }
        }

        /// "METHOD path" of every request, in order.
        var calls: [String] { state.withLock { $0.sent.map(\.0) } }
        /// Bodies of the requests, in order.
        var bodies: [String] { state.withLock { $0.sent.map(\.1) } }

        func send(_ request: HTTPRequest) async throws -> HTTPResponse {
            let path = request.url.replacingOccurrences(of: "http://router:30000", with: "")
            let key = "\(request.method.rawValue) \(path)"
            let outcome = state.withLock { state -> Outcome in
                state.sent.append((key, String(decoding: request.body ?? [], as: UTF8.self)))
                guard var queue = state.script[key], !queue.isEmpty else { return .answer(599, "unscripted \(key)") }
                let next = queue.removeFirst()
                // The last outcome repeats.
                state.script[key] = queue.isEmpty ? [next] : queue
                return next
            }
            switch outcome {
            case .answer(let status, let body): return HTTPResponse(status: status, body: Array(body.utf8))
            case .refused:
                throw HTTPTransportError(code: 7, message: "Couldn't connect to server", request: request.description)
            }
        }
    }

    static let fast = VLLMRouter.RetryPolicy(
        attempts: 3,
        initialBackoff: .milliseconds(1),
        maxBackoff: .milliseconds(2)
    )

    static func workers(_ pairs: [(String, String)]) -> String {
        let items = pairs.map { #"{"id":"x","url":"\#($0.0)","model_id":"\#($0.1)","priority":50,"is_healthy":true}"# }
        return #"{"workers":[\#(items.joined(separator: ","))],"total":\#(pairs.count),"stats":{}}"#
    }

    static let encodedA = "http%3A%2F%2F10.0.0.1%3A8000"

    func router(_ client: ScriptedHTTPClient) -> VLLMRouter {
        VLLMRouter(baseURL: "http://router:30000/", http: client, retry: Self.fast, requestTimeout: .seconds(1))
    }

    @Test func backoffDoublesUpToTheCap() {
        let policy = VLLMRouter.RetryPolicy(attempts: 8)
        let waits = (1..<8).map { policy.backoff(afterAttempt: $0) }
        #expect(
            waits == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                .milliseconds(1600), .seconds(2), .seconds(2),
            ]
        )
        #expect(VLLMRouter.RetryPolicy().totalBackoff == .milliseconds(1500))
        #expect(VLLMRouter.RetryPolicy(attempts: 0).attempts == 1)
    }

    @Test func aWholeURLIsOnePathSegment() {
        #expect(VLLMRouter.percentEncoded("http://127.0.0.1:18101") == "http%3A%2F%2F127.0.0.1%3A18101")
        #expect(
            VLLMRouter.percentEncoded("http://h:1/deny/staging/m-1_v2.0~x?m=a b")
                == "http%3A%2F%2Fh%3A1%2Fdeny%2Fstaging%2Fm-1_v2.0~x%3Fm%3Da%20b"
        )
    }

    @Test func workersParsesTheIGWList() async throws {
        let client = ScriptedHTTPClient([
            "GET /workers": [
                .answer(200, Self.workers([("http://10.0.0.1:8000", "llama"), ("http://10.0.0.2:8000", "mistral")]))
            ]
        ])
        let list = try await router(client).workers()
        #expect(
            list == [
                RouterWorker(url: "http://10.0.0.1:8000", model: "llama"),
                RouterWorker(url: "http://10.0.0.2:8000", model: "mistral"),
            ]
        )
    }

    @Test func addRegistersANewWorkerWithItsModel() async throws {
        let client = ScriptedHTTPClient([
            "GET /workers": [.answer(200, Self.workers([]))],
            "POST /workers": [.answer(200, #"{"success":true}"#)],
        ])
        try await router(client).add(RouterWorker(url: "http://10.0.0.1:8000", model: "llama"))
        #expect(client.calls == ["GET /workers", "POST /workers"])
        let body = try JSONSerialization.jsonObject(with: Data(client.bodies[1].utf8)) as? [String: String]
        #expect(body == ["url": "http://10.0.0.1:8000", "model_id": "llama"])
    }

    @Test func addOfAWorkerAlreadyThereUnderTheSameModelChangesNothing() async throws {
        let client = ScriptedHTTPClient([
            "GET /workers": [.answer(200, Self.workers([("http://10.0.0.1:8000", "llama")]))]
        ])
        try await router(client).add(RouterWorker(url: "http://10.0.0.1:8000", model: "llama"))
        #expect(client.calls == ["GET /workers"])
    }

    @Test func addUnderAnotherModelDeletesTheURLFirst() async throws {
        let client = ScriptedHTTPClient([
            "GET /workers": [.answer(200, Self.workers([("http://10.0.0.1:8000", "llama")]))],
            "DELETE /workers/\(Self.encodedA)": [.answer(200, #"{"success":true}"#)],
            "POST /workers": [.answer(200, #"{"success":true}"#)],
        ])
        try await router(client).add(RouterWorker(url: "http://10.0.0.1:8000", model: "llama-v2"))
        #expect(client.calls == ["GET /workers", "DELETE /workers/\(Self.encodedA)", "POST /workers"])
    }

    @Test func removeOfAnUnknownWorkerSucceeds() async throws {
        let client = ScriptedHTTPClient([
            "DELETE /workers/\(Self.encodedA)": [
                .answer(400, #"{"error":"Worker with URL http://10.0.0.1:8000 not found","code":"WORKER_NOT_FOUND"}"#)
            ]
        ])
        try await router(client).remove(url: "http://10.0.0.1:8000")
        #expect(client.calls == ["DELETE /workers/\(Self.encodedA)"])
    }

    @Test func anotherRefusalIsNotRetried() async throws {
        let client = ScriptedHTTPClient([
            "GET /workers": [.answer(200, Self.workers([]))],
            "POST /workers": [.answer(400, #"{"error":"Invalid URL","code":"ADD_WORKER_FAILED"}"#)],
        ])
        let error = await #expect(throws: RouterUnavailable.self) {
            try await router(client).add(RouterWorker(url: "nonsense", model: "llama"))
        }
        #expect(client.calls == ["GET /workers", "POST /workers"])
        #expect(error?.detail.contains("refused POST /workers with 400") == true)
    }

    @Test func fiveHundredsAndRefusedConnectionsAreRetried() async throws {
        let client = ScriptedHTTPClient([
            "GET /workers": [
                .refused, .answer(503, "busy"), .answer(200, Self.workers([("http://10.0.0.1:8000", "m")])),
            ]
        ])
        let list = try await router(client).workers()
        #expect(list.count == 1)
        #expect(client.calls == Array(repeating: "GET /workers", count: 3))
    }

    @Test func theLastAttemptThrowsRouterUnavailable() async throws {
        let client = ScriptedHTTPClient(["GET /workers": [.answer(502, "bad gateway")]])
        let error = await #expect(throws: RouterUnavailable.self) { try await router(client).workers() }
        #expect(client.calls.count == 3)
        #expect(
            error?.detail == "GET /workers at http://router:30000 failed after 3 attempts: answered 502 bad gateway"
        )
        #expect(error?.message.hasPrefix("The router is unreachable: GET /workers") == true)
    }

    @Test func aCompletionIsSentOnceAndReturnsAnyStatus() async throws {
        let client = ScriptedHTTPClient([
            "POST /v1/completions": [.answer(404, #"{"error":{"message":"The model `x` does not exist."}}"#)]
        ])
        let response = try await router(client).complete(model: "x", prompt: "hi", maxTokens: 4, timeout: .seconds(1))
        #expect(response.status == 404)
        #expect(client.calls == ["POST /v1/completions"])
        let body = try JSONSerialization.jsonObject(with: Data(client.bodies[0].utf8)) as? [String: Any]
        #expect(body?["model"] as? String == "x")
        #expect(body?["prompt"] as? String == "hi")
        #expect(body?["max_tokens"] as? Int == 4)
    }

    @Test func aCompletionWithoutAnAnswerIsRouterUnavailable() async throws {
        let client = ScriptedHTTPClient(["POST /v1/completions": [.refused]])
        await #expect(throws: RouterUnavailable.self) {
            try await router(client).complete(model: "x", prompt: "hi", maxTokens: 4, timeout: .seconds(1))
        }
        #expect(client.calls.count == 1)
    }

    @Test func reachabilityIsOneLivenessProbe() async throws {
        let up = ScriptedHTTPClient(["GET /liveness": [.answer(200, "OK")]])
        #expect(await router(up).isReachable())
        let down = ScriptedHTTPClient(["GET /liveness": [.refused]])
        #expect(await router(down).isReachable() == false)
        #expect(down.calls == ["GET /liveness"])
    }
}
