import Foundation
import InferOpsCore
import Synchronization

/// A router that keeps its worker registry in memory, and answers completions the way vllm-router
/// in front of engines and the daemon's deny backend does: round robin over the model's workers, a
/// completion from an engine worker, a 403 naming the model from a deny worker.
///
/// It serves as the router of every environment that has router settings.
public final class FakeRouter: ModelRouter, RouterDirectory, Sendable {
    public struct State: Sendable {
        /// In the order they were added.
        public var workers: [RouterWorker] = []
        /// Adds and removes, in order, as `add …` / `remove …`.
        public var changes: [String] = []
        /// Completions asked for, by model.
        public var completions: [String] = []
        var turn = 0
        /// Set: every call throws it (the router is down).
        public var down: RouterUnavailable?
        /// Workers that stay registered whatever is asked (a removal answered 200 but not made).
        public var stuck: Set<String> = []
    }

    private let observed = Observed(State())

    public init() {}

    public var state: State { observed.value }

    /// The workers of `model` now, sorted by URL.
    public func workers(of model: String) -> [RouterWorker] {
        observed.value.workers.filter { $0.model == model }.sorted { $0.url < $1.url }
    }

    /// Whether every worker of `model` is a deny-backend worker (and it has at least one).
    public func denies(_ model: String) -> Bool {
        let workers = workers(of: model)
        return !workers.isEmpty && workers.allSatisfy { Self.isDenyWorker($0.url) }
    }

    /// Sets the registry directly, as a router restarted with these workers would have it.
    public func seed(_ workers: [RouterWorker]) {
        observed.update { $0.workers = workers }
    }

    /// Takes the router down (`nil`: up again).
    public func goDown(_ failure: RouterUnavailable?) {
        observed.update { $0.down = failure }
    }

    /// Makes the router keep the worker at `url` whatever removals say.
    public func keep(_ url: String) {
        observed.update { _ = $0.stuck.insert(url) }
    }

    public func waitFor(_ condition: @escaping @Sendable (State) -> Bool) async throws {
        try await observed.wait(until: condition)
    }

    static func isDenyWorker(_ url: String) -> Bool { url.contains("/deny/") }

    // MARK: RouterDirectory

    public func router(for environment: EnvironmentSettings) -> (any ModelRouter)? {
        environment.router == nil ? nil : self
    }

    // MARK: ModelRouter

    public func workers() async throws -> [RouterWorker] {
        if let down = observed.value.down { throw down }
        return observed.value.workers
    }

    /// Like vllm-router, a URL is one worker: adding it again replaces it.
    public func add(_ worker: RouterWorker) async throws {
        if let down = observed.value.down { throw down }
        observed.update { state in
            state.workers.removeAll { $0.url == worker.url }
            state.workers.append(worker)
            state.changes.append("add \(worker)")
        }
    }

    public func remove(url: String) async throws {
        if let down = observed.value.down { throw down }
        observed.update { state in
            if !state.stuck.contains(url) { state.workers.removeAll { $0.url == url } }
            state.changes.append("remove \(url)")
        }
    }

    public func complete(
        model: String, prompt: String, maxTokens: Int, timeout: Duration
    ) async throws -> EngineResponse {
        if let down = observed.value.down { throw down }
        let worker = observed.update { state -> RouterWorker? in
            state.completions.append(model)
            let workers = state.workers.filter { $0.model == model }
            guard !workers.isEmpty else { return nil }
            state.turn += 1
            return workers[state.turn % workers.count]
        }
        guard let worker else {
            return Self.answer(503, ["error": .object(["message": .string("no worker is available")])])
        }
        if Self.isDenyWorker(worker.url) {
            return Self.answer(403, ["error": .object(["message": .string("The model `\(model)` is denied here.")])])
        }
        return Self.answer(200, ["choices": .array([.object(["text": .string(" Hello from \(worker.url)")])])])
    }

    static func answer(_ status: Int, _ body: [String: JSONValue]) -> EngineResponse {
        EngineResponse(status: status, body: Data(JSONValue.object(body).canonical.utf8))
    }
}

/// One `FakeRouter` per router URL, as environments with routers of their own have: a change made
/// through one environment's router is never seen in another's.
public final class FakeRouterDirectory: RouterDirectory, Sendable {
    let routers = Mutex<[String: FakeRouter]>([:])

    public init() {}

    /// The router at `url`, made on first use.
    public func router(at url: String) -> FakeRouter {
        routers.withLock { routers in
            if let router = routers[url] { return router }
            let router = FakeRouter()
            routers[url] = router
            return router
        }
    }

    public func router(for environment: EnvironmentSettings) -> (any ModelRouter)? {
        environment.router.map { router(at: $0.url) }
    }
}
