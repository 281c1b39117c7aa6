import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsSlack
import InferOpsTestSupport
import Synchronization
import Testing

/// An HTTP client that answers from a script and records what it was sent.
final class ScriptedHTTP: HTTPClient {
    let state: Mutex<(answers: [Result<HTTPResponse, HTTPTransportError>], sent: [HTTPRequest])>

    init(_ answers: [Result<HTTPResponse, HTTPTransportError>]) {
        state = Mutex((answers, []))
    }

    var sent: [HTTPRequest] { state.withLock { $0.sent } }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let next = state.withLock { state -> Result<HTTPResponse, HTTPTransportError> in
            state.sent.append(request)
            return state.answers.isEmpty ? .success(ok) : state.answers.removeFirst()
        }
        return try next.get()
    }
}

let ok = HTTPResponse(status: 200, body: Array(#"{"ok":true,"ts":"1.000100"}"#.utf8))
func slackError(_ code: String) -> Result<HTTPResponse, HTTPTransportError> {
    .success(HTTPResponse(status: 200, body: Array(#"{"ok":false,"error":"\#(code)"}"#.utf8)))
}
let limited: Result<HTTPResponse, HTTPTransportError> = .success(HTTPResponse(
    status: 429, headers: ["Retry-After": "7"], body: Array(#"{"ok":false,"error":"ratelimited"}"#.utf8)))
let lost: Result<HTTPResponse, HTTPTransportError> = .failure(HTTPTransportError(
    code: 28, message: "Operation timed out", request: "POST https://slack.com/api/chat.postMessage"))

/// What the client does with each kind of answer, on a scripted HTTP client.
@Suite struct SlackWebAPITests {
    final class Waits: Sendable {
        let taken = Mutex<[Duration]>([])
        var all: [Duration] { taken.withLock { $0 } }
        func sleep(_ duration: Duration) { taken.withLock { $0.append(duration) } }
    }

    static func api(_ http: ScriptedHTTP, _ waits: Waits) -> SlackWebAPI {
        SlackWebAPI(http: http, token: Secret("xoxb-test-token"), sleep: { waits.sleep($0) })
    }

    @Test func aCallSendsJSONWithTheTokenInTheHeaderOnly() async throws {
        let http = ScriptedHTTP([])
        let answer = try await Self.api(http, Waits()).call(
            "chat.postMessage", ["channel": "C1", "text": "hi", "thread_ts": "1.0001"], idempotent: false)
        #expect(answer["ts"]?.stringValue == "1.000100")
        let sent = try #require(http.sent.first)
        #expect(sent.url == "https://slack.com/api/chat.postMessage")
        #expect(sent.headers["Authorization"] == "Bearer xoxb-test-token")
        #expect(sent.headers["Content-Type"] == "application/json; charset=utf-8")
        let body = String(decoding: sent.body ?? [], as: UTF8.self)
        #expect(body.contains(#""thread_ts":"1.0001""#) && !body.contains("xoxb"))
        #expect(!"\(sent)".contains("xoxb-test-token"))
    }

    @Test func aRateLimitWaitsRetryAfterAndSendsAgainEvenAPost() async throws {
        let http = ScriptedHTTP([limited, limited])
        let waits = Waits()
        _ = try await Self.api(http, waits).call("chat.postMessage", ["channel": "C1", "text": "hi"], idempotent: false)
        #expect(http.sent.count == 3)
        #expect(waits.all == [.seconds(7), .seconds(7)])
    }

    @Test func slacksOwnTroubleIsRetriedWithBackoffOnlyForIdempotentCalls() async throws {
        let waits = Waits()
        let update = ScriptedHTTP([slackError("fatal_error"), slackError("request_timeout")])
        _ = try await Self.api(update, waits).call("chat.update", ["channel": "C1", "ts": "1.0"], idempotent: true)
        #expect(update.sent.count == 3)
        #expect(waits.all == [.milliseconds(500), .seconds(1)])

        let post = ScriptedHTTP([slackError("fatal_error")])
        await #expect(throws: SlackFailure.transient(code: "fatal_error")) {
            try await Self.api(post, Waits()).call("chat.postMessage", ["channel": "C1"], idempotent: false)
        }
        #expect(post.sent.count == 1)
        let lostPost = ScriptedHTTP([lost])
        await #expect(throws: HTTPTransportError.self) {
            try await Self.api(lostPost, Waits()).call("chat.postMessage", ["channel": "C1"], idempotent: false)
        }
        #expect(lostPost.sent.count == 1)
        let lostUpdate = ScriptedHTTP([lost])
        _ = try await Self.api(lostUpdate, Waits()).call("chat.update", ["channel": "C1", "ts": "1.0"], idempotent: true)
        #expect(lostUpdate.sent.count == 2)
    }

    @Test func errorsKeepTheirCodeAndAreNotRetried() async throws {
        let http = ScriptedHTTP([slackError("not_in_channel")])
        await #expect(throws: SlackFailure.destination(code: "not_in_channel")) {
            try await Self.api(http, Waits()).call("chat.update", ["channel": "C1", "ts": "1.0"], idempotent: true)
        }
        #expect(http.sent.count == 1)
        let reaction = ScriptedHTTP([slackError("already_reacted")])
        _ = try await Self.api(reaction, Waits()).call("reactions.add", ["name": "eyes"], idempotent: true)
    }

    @Test func retriesStopAtTheLimit() async throws {
        let http = ScriptedHTTP(Array(repeating: limited, count: 10))
        await #expect(throws: SlackFailure.rateLimited(retryAfter: .seconds(7))) {
            try await Self.api(http, Waits()).call("chat.postMessage", ["channel": "C1"], idempotent: false)
        }
        #expect(http.sent.count == 5)
    }
}

/// The same client over libcurl against the Slack emulator, which checks each call against Slack's
/// published Web API schema.
@Suite(.serialized) struct SlackWebAPIEmulatorTests {
    @Test func postsInAThreadUpdatesAndReadsThroughTheEmulator() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let http = try CurlHTTPClient()
        let api = SlackWebAPI(http: http, token: Secret(SlackEmulator.botToken),
                              settings: SlackWebAPI.Settings(baseURL: slack.url + "/api/"))

        let identity = try await api.call("auth.test", [:], idempotent: true)
        #expect(identity["user_id"]?.stringValue == "U0EMUBOT1")
        let parent = try await api.call("chat.postMessage", ["channel": "C0DEPLOY01", "text": "card"], idempotent: false)
        let ts = try #require(parent["ts"]?.stringValue)
        let reply = try await api.call(
            "chat.postMessage", ["channel": "C0DEPLOY01", "text": "step", "thread_ts": .string(ts)], idempotent: false)
        #expect(reply["message"]?["thread_ts"]?.stringValue == ts)
        _ = try await api.call("chat.update", ["channel": "C0DEPLOY01", "ts": .string(ts), "text": "card, edited"], idempotent: true)
        await #expect(throws: SlackFailure.destination(code: "channel_not_found")) {
            try await api.call("chat.postMessage", ["channel": "C0NOWHERE", "text": "x"], idempotent: false)
        }
        let bad = SlackWebAPI(http: http, token: Secret("xoxb-wrong"), settings: SlackWebAPI.Settings(baseURL: slack.url + "/api/"))
        await #expect(throws: SlackFailure.credentials(code: "invalid_auth", needed: nil)) {
            try await bad.call("auth.test", [:], idempotent: true)
        }

        let calls = try slack.calls()
        #expect(calls.map { $0["method"] as? String ?? "" }
                == ["auth.test", "chat.postMessage", "chat.postMessage", "chat.update", "chat.postMessage", "auth.test"])
        #expect(calls.allSatisfy { ($0["schemaErrors"] as? [Any] ?? []).isEmpty }, "\(calls)")
        await http.shutdown()
    }

    @Test func aRateLimitFromTheEmulatorIsWaitedOut() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let http = try CurlHTTPClient()
        let api = SlackWebAPI(http: http, token: Secret(SlackEmulator.botToken),
                              settings: SlackWebAPI.Settings(baseURL: slack.url + "/api/"))
        #expect(slack.control("POST", "ratelimit", json: #"{"method":"chat.postMessage","count":2,"retryAfter":1}"#).status == 200)
        let started = ContinuousClock.now
        _ = try await api.call("chat.postMessage", ["channel": "C0DEPLOY01", "text": "after the storm"], idempotent: false)
        #expect(ContinuousClock.now - started >= .seconds(2))
        #expect(try slack.calls("chat.postMessage").map { $0["status"] as? Int } == [429, 429, 200])
        await http.shutdown()
    }
}

/// Call arguments written as literals in these tests.
extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}
