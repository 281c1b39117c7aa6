import Foundation
import InferOpsCore
import InferOpsHTTP

/// `ModelRouter` on vllm-router (0.1.17) in multi-model mode (`--enable-igw`), through its admin REST API.
///
/// The admin calls are `GET /workers`, `POST /workers {"url","model_id"}` and
/// `DELETE /workers/<percent-encoded URL>`; completions go to `POST /v1/completions` like any client's.
/// What this adapter knows about the router (see `Tests/RouterHarness/ROUTER-NOTES.md`):
///
/// * Registering a URL that is already registered under another model is an upsert that leaves a
///   *ghost route*: the old model keeps routing to the URL for the router's whole life, even after
///   the URL is deleted. `add` therefore deletes such a URL first.
/// * Deleting an unknown worker answers `400 {"code":"WORKER_NOT_FOUND"}`; `remove` treats it as done.
/// * Registration takes effect at once and probes nothing, so callers register an engine only after
///   its `/health` answers 200: one failed request opens the router's circuit breaker for ~30 s.
/// * The registry lives in memory; after a restart it is empty and must be reconciled again.
///
/// Connection failures, timeouts and 5xx answers to admin calls are retried with exponential backoff;
/// when the attempts are used up the call throws `RouterUnavailable`. Calls are not serialised here:
/// `add` lists and then changes, so the caller (the registry reconciler) runs one change at a time.
public final class VLLMRouter: ModelRouter {
    /// How admin calls are retried.
    public struct RetryPolicy: Sendable, Hashable {
        /// Attempts in all, the first included; at least 1.
        public var attempts: Int
        /// The wait after the first failed attempt; each later wait doubles it.
        public var initialBackoff: Duration
        /// No wait is longer than this.
        public var maxBackoff: Duration

        public init(
            attempts: Int = 5,
            initialBackoff: Duration = .milliseconds(100),
            maxBackoff: Duration = .seconds(2)
        ) {
            self.attempts = max(1, attempts)
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }

        /// The wait after failed attempt `attempt` (1-based) before the next one.
        public func backoff(afterAttempt attempt: Int) -> Duration {
            var wait = initialBackoff
            for _ in 1..<max(1, attempt) {
                wait *= 2
                if wait >= maxBackoff { break }
            }
            return min(wait, maxBackoff)
        }

        /// Everything a call may spend waiting between its attempts.
        public var totalBackoff: Duration {
            (1..<attempts).reduce(Duration.zero) { $0 + backoff(afterAttempt: $1) }
        }
    }

    /// The router's address, `http://host:port`, without a trailing slash.
    public let baseURL: String
    public let retry: RetryPolicy
    /// The timeout of each admin request (each attempt).
    public let requestTimeout: Duration
    private let http: any HTTPClient

    /// - Parameters:
    ///   - baseURL: the router's address, e.g. `http://vllm-router.inference.svc:30000`.
    ///   - http: the client for every call; the caller owns it and shuts it down.
    ///   - retry: how admin calls are retried; completions are never retried (the router retries itself).
    ///   - requestTimeout: the timeout of one admin request.
    public init(
        baseURL: String,
        http: any HTTPClient,
        retry: RetryPolicy = RetryPolicy(),
        requestTimeout: Duration = .seconds(5)
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.http = http
        self.retry = retry
        self.requestTimeout = requestTimeout
    }

    // MARK: ModelRouter

    /// - Throws: `RouterUnavailable` when the router does not answer, or answers something other than a worker list.
    public func workers() async throws -> [RouterWorker] {
        let response = try await admin(.get, "/workers")
        guard response.isSuccess else { throw refused("GET /workers", response) }
        do {
            let list = try JSONDecoder().decode(WorkerList.self, from: response.bodyData)
            return list.workers.map { RouterWorker(url: $0.url, model: $0.modelID ?? "") }
        } catch {
            throw RouterUnavailable("GET /workers answered an unexpected body: \(excerpt(response))")
        }
    }

    /// Registers `worker`. Idempotent: a worker already registered under the same model is left alone,
    /// one registered under another model is deleted first (an upsert would leave a ghost route).
    /// - Throws: `RouterUnavailable` when the router does not answer or refuses the worker.
    public func add(_ worker: RouterWorker) async throws {
        let current = try await workers().filter { $0.url == worker.url }
        if current.contains(where: { $0.model == worker.model }) && current.count == 1 { return }
        if !current.isEmpty { try await remove(url: worker.url) }
        let body = try JSONEncoder().encode(WorkerRequest(url: worker.url, modelID: worker.model))
        let response = try await admin(.post, "/workers", body: Array(body))
        guard response.isSuccess else { throw refused("POST /workers", response) }
    }

    /// Deregisters the worker at `url`; one the router does not know counts as removed.
    /// - Throws: `RouterUnavailable` when the router does not answer or refuses.
    public func remove(url: String) async throws {
        let response = try await admin(.delete, "/workers/" + Self.percentEncoded(url))
        if response.isSuccess || response.status == 404 { return }
        if response.status == 400, Self.errorCode(response) == "WORKER_NOT_FOUND" { return }
        throw refused("DELETE /workers", response)
    }

    /// One `POST /v1/completions` through the router, as a client would send it; any status is returned.
    /// - Throws: `RouterUnavailable` when no answer arrived within `timeout`.
    public func complete(model: String, prompt: String, maxTokens: Int, timeout: Duration) async throws
        -> EngineResponse
    {
        let body = try JSONEncoder().encode(CompletionRequest(model: model, prompt: prompt, maxTokens: maxTokens))
        let request = HTTPRequest(
            method: .post,
            url: baseURL + "/v1/completions",
            headers: ["Content-Type": "application/json", "Accept": "application/json"],
            body: Array(body),
            timeout: timeout
        )
        do {
            let response = try await http.send(request)
            return EngineResponse(status: response.status, body: response.bodyData)
        } catch let error as HTTPTransportError {
            throw RouterUnavailable("POST /v1/completions at \(baseURL): \(Self.summary(error))")
        }
    }

    /// Whether the router answers `GET /liveness` with 200 now; one attempt, no retries.
    public func isReachable() async -> Bool {
        let request = HTTPRequest(method: .get, url: baseURL + "/liveness", timeout: requestTimeout)
        return (try? await http.send(request))?.status == 200
    }

    // MARK: Admin calls with retries

    /// Sends an admin request, retrying connection failures, timeouts and 5xx answers.
    /// Returns the first answer below 500.
    private func admin(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> HTTPResponse {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if body != nil { headers.add("Content-Type", "application/json") }
        let request = HTTPRequest(
            method: method,
            url: baseURL + path,
            headers: headers,
            body: body,
            timeout: requestTimeout
        )
        let call = "\(method.rawValue) \(Self.routeName(path))"
        var lastProblem = ""
        for attempt in 1...retry.attempts {
            do {
                let response = try await http.send(request)
                if response.status < 500 { return response }
                lastProblem = "answered \(response.status) \(excerpt(response))"
            } catch let error as HTTPTransportError where !error.isTLSFailure {
                lastProblem = Self.summary(error)
            }
            if attempt < retry.attempts {
                try await Task.sleep(for: retry.backoff(afterAttempt: attempt))
            }
        }
        let tries = retry.attempts == 1 ? "1 attempt" : "\(retry.attempts) attempts"
        throw RouterUnavailable("\(call) at \(baseURL) failed after \(tries): \(lastProblem)")
    }

    private func refused(_ call: String, _ response: HTTPResponse) -> RouterUnavailable {
        RouterUnavailable("the router refused \(call) with \(response.status) \(excerpt(response))")
    }

    private func excerpt(_ response: HTTPResponse) -> String {
        let text = response.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    private static func summary(_ error: HTTPTransportError) -> String {
        if error.isConnectionFailure { return "connection refused" }
        if error.isTimeout { return "timed out" }
        return "curl error \(error.code) (\(error.message))"
    }

    /// `/workers/<encoded>` reads as `/workers/{url}` in messages.
    private static func routeName(_ path: String) -> String {
        path.hasPrefix("/workers/") ? "/workers/{url}" : path
    }

    private static func errorCode(_ response: HTTPResponse) -> String? {
        (try? JSONDecoder().decode(RouterError.self, from: response.bodyData))?.code
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters, so a whole URL (with its
    /// `:`, `/`, `?`) fits in one path segment, as `DELETE /workers/{url}` expects.
    public static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

// MARK: Wire formats

/// `GET /workers` in IGW mode: `{"workers":[{"id","url","model_id",...}],"total":N,"stats":{...}}`.
private struct WorkerList: Decodable {
    struct Worker: Decodable {
        var url: String
        var modelID: String?
        enum CodingKeys: String, CodingKey {
            case url
            case modelID = "model_id"
        }
    }
    var workers: [Worker]
}

/// `POST /workers`; the other fields (`priority`, `cost`, `labels`) are stored but ignored when routing.
private struct WorkerRequest: Encodable {
    var url: String
    var modelID: String
    enum CodingKeys: String, CodingKey {
        case url
        case modelID = "model_id"
    }
}

private struct CompletionRequest: Encodable {
    var model: String
    var prompt: String
    var maxTokens: Int
    enum CodingKeys: String, CodingKey {
        case model, prompt
        case maxTokens = "max_tokens"
    }
}

/// The router's own errors: `{"error":"Worker with URL … not found","code":"WORKER_NOT_FOUND"}`.
private struct RouterError: Decodable {
    var code: String?
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
