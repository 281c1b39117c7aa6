import Foundation

/// The LLM router in front of the engines: one OpenAI-compatible entrypoint that routes by model name.
///
/// The router's own registry is not the truth: routers keep it in memory and lose it on restart,
/// and vllm-router has no enable/disable. The desired state lives in the store (`Registration`);
/// adapters only make the router match it.
public protocol ModelRouter: Sendable {
    /// Every worker the router knows now.
    func workers() async throws -> [RouterWorker]
    /// Adds a worker serving `worker.model` at `worker.url`.
    func add(_ worker: RouterWorker) async throws
    /// Removes the worker at `url`; a worker the router does not know is not an error.
    func remove(url: String) async throws
    /// A completion through the router, by model name, as a client would send it.
    func complete(model: String, prompt: String, maxTokens: Int, timeout: Duration) async throws -> EngineResponse
    /// The router processes whose registries are kept each on its own: one for a single router;
    /// each replica of a replicated one (`ReplicatedRouter`), which the routing repair fills one by one.
    var replicas: [any ModelRouter] { get }
}

extension ModelRouter {
    public var replicas: [any ModelRouter] { [self] }
}

/// Several router processes behind one address (a Kubernetes Service over the router's pods, each
/// with its own in-memory registry): changes go to every replica, reads see what any replica has,
/// completions go through the shared address as a client's would. A replica that does not answer
/// (restarting) is left out of a change and filled by the routing repair once it is back; the
/// change fails only when no replica answers.
public struct ReplicatedRouter: ModelRouter {
    /// The address clients use, for completions.
    public let front: any ModelRouter
    public let members: [any ModelRouter]
    /// Told of each replica left out of a change.
    let unreachable: @Sendable (Int, any Error) -> Void
    /// How long a completion through the shared address may find no replica taking traffic: a
    /// replica joins the Service only once its readiness probe sees it filled, so right after the
    /// first registration into empty routers none does for up to a probe period.
    let propagation: Duration

    public init(front: any ModelRouter, members: [any ModelRouter], propagation: Duration = .seconds(5),
                unreachable: @escaping @Sendable (Int, any Error) -> Void = { _, _ in }) {
        self.front = front
        self.members = members
        self.propagation = propagation
        self.unreachable = unreachable
    }

    public var replicas: [any ModelRouter] { members }

    /// Every worker some replica has (a worker one replica lacks is the repair's to add there).
    public func workers() async throws -> [RouterWorker] {
        var seen = Set<RouterWorker>()
        var all: [RouterWorker] = []
        for list in try await eachReachable({ try await $0.workers() }) {
            for worker in list where seen.insert(worker).inserted { all.append(worker) }
        }
        return all
    }

    public func add(_ worker: RouterWorker) async throws {
        _ = try await eachReachable { try await $0.add(worker) }
    }

    public func remove(url: String) async throws {
        _ = try await eachReachable { try await $0.remove(url: url) }
    }

    /// Through the shared address; while no replica takes traffic there (no answer, or 503), asked
    /// again every 250 ms for up to `propagation`.
    public func complete(model: String, prompt: String, maxTokens: Int, timeout: Duration) async throws -> EngineResponse {
        let clock = ContinuousClock()
        let deadline = clock.now + propagation
        while true {
            do {
                let answer = try await front.complete(model: model, prompt: prompt, maxTokens: maxTokens, timeout: timeout)
                if answer.status != 503 || clock.now >= deadline { return answer }
            } catch let unavailable as RouterUnavailable {
                if clock.now >= deadline { throw unavailable }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// `body` on every replica side by side; the answers of those that answered.
    /// - Throws: the first replica's error when none answered.
    func eachReachable<T: Sendable>(_ body: @escaping @Sendable (any ModelRouter) async throws -> T) async throws -> [T] {
        let results = await withTaskGroup(of: (Int, Result<T, any Error>).self) { group in
            for (index, member) in members.enumerated() {
                group.addTask {
                    do { return (index, .success(try await body(member))) } catch { return (index, .failure(error)) }
                }
            }
            var results: [(Int, Result<T, any Error>)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }
        }
        var answers: [T] = []
        var firstError: (any Error)?
        for (index, result) in results {
            switch result {
            case .success(let answer): answers.append(answer)
            case .failure(let error as CancellationError): throw error
            case .failure(let error):
                firstError = firstError ?? error
                unreachable(index, error)
            }
        }
        if answers.isEmpty, let firstError { throw firstError }
        return answers
    }
}

/// One router worker: an engine replica, or the daemon's deny backend standing in for a model.
public struct RouterWorker: Hashable, Sendable, Codable, CustomStringConvertible {
    public var url: String
    public var model: String

    public init(url: String, model: String) {
        self.url = url
        self.model = model
    }

    public var description: String { "\(model) → \(url)" }
}

/// The router did not answer (connection refused, timeout) or refused the change.
public struct RouterUnavailable: UserFacingError, Equatable {
    public var detail: String
    public init(_ detail: String) { self.detail = detail }
    public var message: String { "The router is unreachable: \(detail)." }
    public var hint: String? { "Check that the router runs; InferOps repairs its registry when it is back." }
}

/// What operators asked the router to do with a model in an environment.
public enum RegistrationState: String, Hashable, Sendable, Codable, CaseIterable {
    /// Routed to its engines.
    case enabled
    /// Kept registered but denied: requests get the deny backend's message.
    case disabled
    /// Deregistered: requests get the deny backend's message, too.
    case removed
}

/// The desired routing of one model in one environment, with who changed it, when and why.
public struct Registration: Hashable, Sendable, Codable {
    public var model: String
    public var environment: String
    public var state: RegistrationState
    /// The worker URLs of the engine replicas that serve now (empty unless enabled).
    public var endpoints: [String]
    public var changedBy: UserID
    public var changedAt: Date
    public var reason: String?
    /// How many times the store has recorded this row (0 before the first time). Writes name the
    /// version they decided from, so a change made in between is never overwritten.
    public var version: Int

    public init(
        model: String, environment: String, state: RegistrationState, endpoints: [String], changedBy: UserID,
        changedAt: Date, reason: String? = nil, version: Int = 0
    ) {
        self.model = model
        self.environment = environment
        self.state = state
        self.endpoints = endpoints
        self.changedBy = changedBy
        self.changedAt = changedAt
        self.reason = reason
        self.version = version
    }
}

/// Finds the router client of an environment.
public protocol RouterDirectory: Sendable {
    func router(for environment: EnvironmentSettings) -> (any ModelRouter)?
}

/// For daemons and tests with no router configured anywhere.
public struct NoRouters: RouterDirectory {
    public init() {}
    public func router(for environment: EnvironmentSettings) -> (any ModelRouter)? { nil }
}
