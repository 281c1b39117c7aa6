import Foundation
import InferOpsCore

/// What a fake engine answers.
public enum EngineAnswer: Sendable, Hashable {
    case status(Int, body: Data = Data())
    /// Connection refused, timeout, DNS: thrown as `EngineUnreachable`.
    case unreachable(String)

    /// A 200 answer to `/v1/completions` whose first choice says `text`.
    public static func completion(_ text: String) -> EngineAnswer {
        let body: JSONValue = .object(["choices": .array([.object(["text": .string(text), "index": .number(0)])])])
        return .status(200, body: Data(body.canonical.utf8))
    }
}

/// How one engine service behaves: its `/health` answers in order (the last repeats), the models it
/// serves, and its completion answers in order (the last repeats).
public struct EngineScript: Sendable, Hashable {
    public var health: [EngineAnswer]
    public var servedModels: [String]
    public var completions: [EngineAnswer]
    /// How long each completion takes on the test's `ManualTime`, which the fake moves on.
    public var latency: Duration

    public init(
        health: [EngineAnswer] = [.status(200)], servedModels: [String],
        completions: [EngineAnswer] = [.completion("Hello! How can I help you today?")], latency: Duration = .zero
    ) {
        self.health = health
        self.servedModels = servedModels
        self.completions = completions
        self.latency = latency
    }

    /// Answers `/health` with these status codes in order, e.g. `[503, 503, 200]`.
    public init(healthStatuses: [Int], servedModels: [String]) {
        self.init(health: healthStatuses.map { .status($0) }, servedModels: servedModels)
    }

    public static func healthy(serving model: String) -> EngineScript {
        EngineScript(servedModels: [model])
    }
}

/// Model engines in memory, one script per service; unscripted services are unreachable.
public final class FakeEngineClient: EngineClient, Sendable {
    public struct Request: Sendable, Hashable {
        public var service: String
        public var method: String
        public var path: String
        public var body: Data?
    }

    public struct State: Sendable {
        public var scripts: [String: EngineScript] = [:]
        /// How many answers of each kind each service has given: `service` → path → count.
        var cursors: [String: [String: Int]] = [:]
        /// Requests per service and path.
        public var counts: [String: [String: Int]] = [:]
        /// The completion requests, in order (other requests are only counted).
        public var completionRequests: [Request] = []
    }

    private let observed = Observed(State())
    private let time: ManualTime?

    /// - Parameter time: Moved on by each completion's scripted latency.
    public init(time: ManualTime? = nil) {
        self.time = time
    }

    /// Sets (or replaces) a service's script and starts its answers from the beginning.
    public func script(_ service: String, _ script: EngineScript) {
        observed.update { state in
            state.scripts[service] = script
            state.cursors[service] = nil
        }
    }

    public var state: State { observed.value }

    /// Requests to `path`, for one service or all.
    public func requests(to path: String, service: String? = nil) -> Int {
        let counts = observed.value.counts
        if let service { return counts[service]?[path] ?? 0 }
        return counts.values.reduce(0) { $0 + ($1[path] ?? 0) }
    }

    public var totalRequests: Int {
        observed.value.counts.values.reduce(0) { $0 + $1.values.reduce(0, +) }
    }

    public func waitFor(_ condition: @escaping @Sendable (State) -> Bool) async throws {
        try await observed.wait(until: condition)
    }

    public func get(_ endpoint: EngineEndpoint, path: String, timeout: Duration) async throws -> EngineResponse {
        try answer(endpoint, method: "GET", path: path, body: nil)
    }

    public func post(
        _ endpoint: EngineEndpoint, path: String, json: Data, timeout: Duration
    ) async throws -> EngineResponse {
        let response = try answer(endpoint, method: "POST", path: path, body: json)
        if path == "/v1/completions", let time, let latency = observed.value.scripts[Self.key(endpoint, observed.value)]?.latency {
            time.advance(by: latency)
        }
        return response
    }

    /// A replica answers from its own script (keyed by its pod's name) when it has one, else as its service.
    static func key(_ endpoint: EngineEndpoint, _ state: State) -> String {
        guard let pod = endpoint.pod, state.scripts[pod.name] != nil else { return endpoint.service }
        return pod.name
    }

    private func answer(_ endpoint: EngineEndpoint, method: String, path: String, body: Data?) throws -> EngineResponse
    {
        let answer = observed.update { state -> EngineAnswer in
            let service = Self.key(endpoint, state)
            state.counts[service, default: [:]][path, default: 0] += 1
            if path == "/v1/completions" {
                state.completionRequests.append(Request(service: service, method: method, path: path, body: body))
            }
            guard let script = state.scripts[service] else {
                return .unreachable("dial tcp: lookup \(endpoint): no such host")
            }
            let cursor = state.cursors[service]?[path] ?? 0
            state.cursors[service, default: [:]][path] = cursor + 1
            switch (method, path) {
            case ("GET", "/health"):
                return script.health[min(cursor, script.health.count - 1)]
            case ("GET", "/v1/models"):
                let data = script.servedModels.map {
                    JSONValue.object(["id": .string($0), "object": .string("model")])
                }
                let list: JSONValue = .object(["object": .string("list"), "data": .array(data)])
                return .status(200, body: Data(list.canonical.utf8))
            case ("POST", "/v1/completions"):
                return script.completions[min(cursor, script.completions.count - 1)]
            default:
                return .status(404)
            }
        }
        switch answer {
        case .status(let status, let body): return EngineResponse(status: status, body: body)
        case .unreachable(let detail): throw EngineUnreachable(detail)
        }
    }
}
