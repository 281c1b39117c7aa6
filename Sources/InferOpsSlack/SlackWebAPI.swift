import InferOpsCore
import InferOpsHTTP

/// Slack's Web API: `POST <base>/<method>` with a JSON body and the bot token in the
/// `Authorization` header (never in the body, a URL or a log line). Every answer is checked: an
/// `ok:false` becomes a `SlackFailure` with its code, a 429 waits the `Retry-After` Slack asked for
/// and sends the call again (Slack did not act on it), and a failure of Slack's own or of the
/// connection is retried with backoff only for calls that are safe to send twice.
public struct SlackWebAPI: Sendable {
    public struct Settings: Sendable {
        /// `https://slack.com/api/`; the emulator's `http://127.0.0.1:PORT/api/` in tests.
        public var baseURL: String
        /// Each request's timeout.
        public var timeout: Duration
        /// Sends of one call at most, the first included.
        public var attempts: Int
        /// The first backoff after a transient failure; doubled each time, at most 8 s.
        public var backoff: Duration

        public init(baseURL: String = "https://slack.com/api/", timeout: Duration = .seconds(10), attempts: Int = 5,
                    backoff: Duration = .milliseconds(500)) {
            self.baseURL = baseURL.hasSuffix("/") ? baseURL : baseURL + "/"
            self.timeout = timeout
            self.attempts = attempts
            self.backoff = backoff
        }
    }

    let http: any HTTPClient
    let token: Secret
    let settings: Settings
    let sleep: @Sendable (Duration) async throws -> Void

    /// - Parameter sleep: how waits are taken (tests record them instead).
    public init(http: any HTTPClient, token: Secret, settings: Settings = Settings(),
                sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        self.http = http
        self.token = token
        self.settings = settings
        self.sleep = sleep
    }

    /// Calls `method` and returns its answer (`ok:true`).
    /// - Parameters:
    ///   - idempotent: whether sending the call twice does no harm (`chat.update`, `reactions.add`,
    ///     reads). A `chat.postMessage` whose answer was lost is not sent again: a duplicate post is
    ///     worse than a missing one, which the caller reports.
    /// - Throws: `SlackFailure` for an answer that is not `ok` (after the retries it allows),
    ///   `HTTPTransportError` when no answer came, `CancellationError`.
    public func call(_ method: String, _ arguments: [String: JSONValue], idempotent: Bool) async throws -> JSONValue {
        var request = HTTPRequest(
            method: .post, url: settings.baseURL + method,
            headers: ["Content-Type": "application/json; charset=utf-8", "Accept": "application/json"],
            body: Array(JSONValue.object(arguments).canonical.utf8), timeout: settings.timeout)
        request.setBearerToken(token.reveal())
        var attempt = 1
        var backoff = settings.backoff
        while true {
            let failure: any Error
            do {
                let response = try await http.send(request)
                if response.status == 429 {
                    let limited = SlackErrorClassifier.rateLimited(retryAfter: response.headers["Retry-After"])
                    guard attempt < settings.attempts, case .rateLimited(let wait) = limited else { throw limited }
                    // Not acted on: safe to send again whatever the call is.
                    try await sleep(wait)
                    attempt += 1
                    continue
                }
                let answer = try Self.answer(of: response, method: method)
                guard answer["ok"] == .bool(true) else {
                    let code = answer["error"]?.stringValue ?? "no_error_code"
                    if SlackErrorClassifier.isSuccess(code, method: method) { return answer }
                    let classified = SlackErrorClassifier.classify(code, needed: answer["needed"]?.stringValue)
                    if case .rateLimited = classified, attempt < settings.attempts {
                        try await sleep(.seconds(1))
                        attempt += 1
                        continue
                    }
                    throw classified
                }
                return answer
            } catch let slack as SlackFailure where slack.isRetryable && idempotent {
                failure = slack
            } catch let transport as HTTPTransportError where idempotent {
                failure = transport
            }
            guard attempt < settings.attempts else { throw failure }
            try await sleep(backoff)
            backoff = min(backoff * 2, .seconds(8))
            attempt += 1
        }
    }

    /// Answers a slash command through its `response_url` (no token: the URL is the credential,
    /// good for a few uses within 30 minutes), which works even where the bot may not post.
    /// Best effort, sent once.
    public func respond(to responseURL: String, ephemeral text: String) async throws {
        let body = JSONValue.object(["response_type": .string("ephemeral"), "text": .string(text)]).canonical
        let response = try await http.send(HTTPRequest(
            method: .post, url: responseURL, headers: ["Content-Type": "application/json; charset=utf-8"],
            body: Array(body.utf8), timeout: settings.timeout))
        guard response.status == 200 else { throw SlackFailure.unknown(code: "http_\(response.status)") }
    }

    /// The JSON of an answer; a status other than 200 or a body that is not JSON is Slack's trouble.
    static func answer(of response: HTTPResponse, method: String) throws -> JSONValue {
        guard response.status == 200 else {
            throw response.status >= 500 ? SlackFailure.transient(code: "http_\(response.status)")
                : SlackFailure.unknown(code: "http_\(response.status)")
        }
        guard let answer = try? JSONValue(parsing: response.body), case .object = answer else {
            throw SlackFailure.transient(code: "invalid_response")
        }
        return answer
    }
}
