import Foundation

/// Makes one model's routing in one environment what an operator asked for: records the desired
/// state first, changes the router, and checks the result with a request through the router.
/// A change the router refuses half-way is undone, and the previous desired state restored.
struct Registrar: Sendable {
    let services: Services
    let environment: EnvironmentSettings
    let settings: RouterSettings
    let router: any ModelRouter

    /// The router worker URLs of the replicas that are ready now, and how many replicas there should be.
    func servingEndpoints(model: String) async throws -> (urls: [String], ready: Int, desired: Int) {
        let workload = try await services.cluster.workload(environment.target(model: model))
        let urls = workload.pods.filter(\.ready).compactMap(\.address).map(settings.workerURL(podIP:)).sorted()
        return (urls, workload.readyReplicas, workload.desiredReplicas)
    }

    /// Applies `registration` to the router (only this model's workers change).
    /// - Throws: `RouterUnavailable` after restoring `previous` in the store and undoing what was applied.
    func apply(_ registration: Registration, previous: Registration?) async throws -> [RouterReconciler.Action] {
        try await services.store.saveRegistration(registration)
        var applied: [RouterReconciler.Action] = []
        do {
            let actual = try await router.workers().filter { $0.model == registration.model || isDenyWorker($0, model: registration.model) }
            let actions = RouterReconciler.plan(desired: [registration], actual: actual, settings: settings)
            for action in actions {
                try await perform(action)
                applied.append(action)
            }
            return actions
        } catch {
            if let previous { try? await services.store.saveRegistration(previous) } else { try? await services.store.removeRegistration(model: registration.model, environment: registration.environment) }
            for action in applied.reversed() {
                switch action {
                case .add(let worker): try? await router.remove(url: worker.url)
                case .remove(let worker): try? await router.add(worker)
                }
            }
            throw error
        }
    }

    /// Takes a registration that never worked back out of the router and the store.
    func forget(_ registration: Registration) async {
        for worker in RouterReconciler.desiredWorkers(registration, settings: settings) {
            try? await router.remove(url: worker.url)
        }
        try? await services.store.removeRegistration(model: registration.model, environment: registration.environment)
    }

    func perform(_ action: RouterReconciler.Action) async throws {
        switch action {
        case .add(let worker): try await router.add(worker)
        case .remove(let worker): try await router.remove(url: worker.url)
        }
    }

    func isDenyWorker(_ worker: RouterWorker, model: String) -> Bool {
        worker.url == settings.denyWorkerURL(environment: environment.name, model: model)
    }

    /// A completion through the router by model name; returns its latency.
    /// - Throws: `VerificationFailure` when the router does not route it to an engine that answers.
    func verifyRouted(model: String) async throws -> (latency: Duration, text: String) {
        let started = ContinuousClock.now
        let response = try await router.complete(
            model: model, prompt: environment.verification.prompt, maxTokens: environment.verification.maxTokens,
            timeout: environment.verification.requestTimeout)
        let latency = started.duration(to: .now)
        guard response.status == 200, let text = EngineVerifier.completionText(response.body) else {
            throw VerificationFailure.badAnswer(
                detail: "the completion through the router answered HTTP \(response.status): \(Self.errorMessage(response.body) ?? "no answer")")
        }
        return (latency, text)
    }

    /// A request through the router for a denied model must get the deny backend's answer.
    func verifyDenied(model: String) async throws -> String {
        let response = try await router.complete(
            model: model, prompt: "deny check", maxTokens: 1, timeout: environment.verification.requestTimeout)
        guard response.status == 403 || response.status == 404, let message = Self.errorMessage(response.body),
            message.contains(model)
        else {
            throw VerificationFailure.badAnswer(
                detail: "a request for \(model) through the router answered HTTP \(response.status) instead of the denial")
        }
        return message
    }

    /// `error.message` of an OpenAI-style error body.
    static func errorMessage(_ body: Data) -> String? {
        guard let json = try? JSONDecoder().decode(JSONValue.self, from: body) else { return nil }
        return json["error"]?["message"]?.stringValue ?? json["message"]?.stringValue ?? json["error"]?.stringValue
    }
}
