import Foundation

/// Readiness, warm-up and the test completion, against a model engine's OpenAI-compatible API.
public struct EngineVerifier: Sendable {
    let engines: any EngineClient
    let time: any TimeSource
    let settings: VerificationSettings
    /// How often readiness is polled while the engine loads.
    let pollInterval: Duration

    public init(engines: any EngineClient, time: any TimeSource, settings: VerificationSettings, pollInterval: Duration = .milliseconds(250)) {
        self.engines = engines
        self.time = time
        self.settings = settings
        self.pollInterval = pollInterval
    }

    /// Waits until `/health` answers 200 and `/v1/models` lists `servedName`.
    /// - Throws: `VerificationFailure.notReady` with the last thing the engine said once `budget` is spent.
    public func waitReady(_ endpoint: EngineEndpoint, servedName: String, budget: Duration) async throws {
        // Budgets are waiting, which the time source owns (tests spend them without waiting).
        let deadline = time.now().addingTimeInterval(budget.seconds)
        var last = "no answer yet"
        while true {
            try Task.checkCancellation()
            do {
                let health = try await engines.get(endpoint, path: "/health", timeout: settings.requestTimeout)
                if health.status == 200 {
                    let models = try await engines.get(endpoint, path: "/v1/models", timeout: settings.requestTimeout)
                    let served = Self.servedModels(models.body)
                    if models.status == 200, served.contains(servedName) { return }
                    last = models.status == 200
                        ? "/v1/models lists \(served.isEmpty ? "nothing" : served.joined(separator: ", ")), not \(servedName)"
                        : "/v1/models answered \(models.status)"
                } else {
                    last = "/health answered \(health.status) (weights still loading)"
                }
            } catch let error as EngineUnreachable {
                last = "unreachable: \(error.detail)"
            }
            guard time.now().addingTimeInterval(pollInterval.seconds) < deadline else {
                throw VerificationFailure.notReady(endpoint: endpoint.description, last: last)
            }
            try await time.sleep(for: pollInterval)
        }
    }

    /// Sends the configured number of warm-up completions; their results only need to be 200.
    public func warmUp(_ endpoint: EngineEndpoint, servedName: String) async throws -> Int {
        for index in 0..<settings.warmupRequests {
            let response = try await complete(endpoint, servedName: servedName, prompt: "warm-up \(index + 1)", maxTokens: 4)
            guard response.status == 200 else {
                throw VerificationFailure.badAnswer(detail: "warm-up request \(index + 1) answered \(response.status)")
            }
        }
        return settings.warmupRequests
    }

    /// One test completion; returns its latency and the first words of the answer.
    public func verify(_ endpoint: EngineEndpoint, servedName: String) async throws -> (latency: Duration, text: String) {
        let started = ContinuousClock.now
        let response = try await complete(endpoint, servedName: servedName, prompt: settings.prompt, maxTokens: settings.maxTokens)
        let latency = started.duration(to: .now)
        guard response.status == 200 else {
            throw VerificationFailure.badAnswer(detail: "the test completion answered HTTP \(response.status)")
        }
        guard let text = Self.completionText(response.body) else {
            throw VerificationFailure.badAnswer(detail: "the test completion's answer has no choices")
        }
        return (latency, text)
    }

    func complete(_ endpoint: EngineEndpoint, servedName: String, prompt: String, maxTokens: Int) async throws -> EngineResponse {
        let body: JSONValue = .object([
            "model": .string(servedName), "prompt": .string(prompt), "max_tokens": .number(Double(maxTokens)),
            "temperature": .number(0),
        ])
        do {
            return try await engines.post(endpoint, path: "/v1/completions", json: Data(body.canonical.utf8), timeout: settings.requestTimeout)
        } catch let error as EngineUnreachable {
            throw VerificationFailure.badAnswer(detail: "the engine is unreachable: \(error.detail)")
        }
    }

    static func servedModels(_ body: Data) -> [String] {
        guard let list = try? JSONValue(parsing: body), case .array(let data)? = list["data"] else {
            return []
        }
        return data.compactMap { $0["id"]?.stringValue }
    }

    static func completionText(_ body: Data) -> String? {
        guard let answer = try? JSONValue(parsing: body),
            case .array(let choices)? = answer["choices"], let first = choices.first
        else { return nil }
        let text = first["text"]?.stringValue ?? first["message"]?["content"]?.stringValue ?? ""
        return String(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(80))
    }
}

public enum VerificationFailure: UserFacingError, Equatable {
    case notReady(endpoint: String, last: String)
    case badAnswer(detail: String)

    public var message: String {
        switch self {
        case .notReady(let endpoint, let last):
            "The engine at \(endpoint) did not become ready within the budget: \(last)."
        case .badAnswer(let detail):
            "Verification failed: \(detail)."
        }
    }

    public var hint: String? {
        "Look at the engine's logs (`kubectl logs`) and the pods' events."
    }
}
