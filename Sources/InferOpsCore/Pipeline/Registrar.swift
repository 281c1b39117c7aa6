import Foundation

/// Makes one model's routing in one environment what an operator asked for: records the desired
/// state first, changes the router, and checks the result with a request through the router.
/// A change the router refuses half-way is undone, and the previous desired state restored.
struct Registrar: Sendable {
    let services: Services
    let environment: EnvironmentSettings
    let settings: RouterSettings
    let router: any ModelRouter

    /// The router side of `environment`, when it has a router configured and reachable by name.
    init?(services: Services, environment: EnvironmentSettings) {
        guard let settings = environment.router, let router = services.routers.router(for: environment) else { return nil }
        self.init(services: services, environment: environment, settings: settings, router: router)
    }

    init(services: Services, environment: EnvironmentSettings, settings: RouterSettings, router: any ModelRouter) {
        self.services = services
        self.environment = environment
        self.settings = settings
        self.router = router
    }

    /// The router worker URLs of the replicas that serve now and answered a direct test completion
    /// (verify, then route), how many replicas are ready, and how many there should be.
    /// - Parameter checkNew: check replicas never checked before (a warm-up and a completion each);
    ///   without it only replicas already checked count, which answers at once.
    func servingEndpoints(model: String, checkNew: Bool = true) async throws -> (urls: [String], ready: Int, desired: Int) {
        let replicas = try await routable(model: model)
        let urls = await checkedURLs(of: replicas.workload, model: model, checkNew: checkNew, standby: replicas.standby)
        return (urls, replicas.workload.readyReplicas, replicas.workload.desiredReplicas)
    }

    /// The replicas that may be routed for `model`: the release's pods, or, while a warm rollback's
    /// pool stands in for them, the pool's pods with the release's pods of the current revision (the
    /// replicas of the revision being left are not routed again). `standby`: a pool kept unrouted,
    /// whose replicas are checked ahead of a rollback but not routed.
    func routable(model: String) async throws -> (workload: WorkloadSnapshot, standby: [PodSnapshot]) {
        let target = environment.target(model: model)
        let release = try await services.cluster.workload(target)
        guard let pool = try await services.warmPools.pool(target) else { return (release, []) }
        guard pool.serving else { return (release, pool.pods) }
        let standIns = pool.pods.map { pod in
            var pod = pod
            pod.current = true
            return pod
        }
        return (WorkloadSnapshot(desiredReplicas: release.desiredReplicas, pods: release.pods.filter(\.current) + standIns), [])
    }

    /// The worker URLs of `workload`'s serving replicas that passed their check (see `servingEndpoints`).
    /// - Parameter standby: replicas checked along (when `checkNew`) and remembered, but not returned.
    func checkedURLs(of workload: WorkloadSnapshot, model: String, checkNew: Bool, standby: [PodSnapshot] = []) async -> [String] {
        let target = environment.target(model: model)
        // A stopping pod still reads Ready until its probe fails: it gets no new requests.
        let serving = workload.pods.filter(\.serving)
        let verifier = EngineVerifier(engines: services.engines, time: services.time, settings: replicaCheckSettings)
        let endpoint = EngineEndpoint(target: target, service: target.release)
        let logger = services.logger
        let environment = environment.name
        let checked = await services.replicaChecks.passed(
            serving + standby.filter(\.serving), model: model, environment: environment, checkNew: checkNew, now: services.time.now(),
            check: { _, replica in
                do {
                    let pod = endpoint.replica(replica)
                    _ = try await verifier.warmUp(pod, servedName: model)
                    _ = try await verifier.verify(pod, servedName: model)
                    return nil
                } catch let failure as VerificationFailure {
                    return failure.message
                } catch {
                    return "\(error)"
                }
            },
            failed: { pod, problem in
                logger.warning("a replica failed its check before routing", metadata: [
                    "environment": "\(environment)", "model": "\(model)", "pod": "\(pod.name)", "problem": "\(problem)",
                ])
            })
        let wanted = Set(serving.map(\.name))
        return checked.filter { wanted.contains($0.name) }.compactMap(\.address).map(settings.workerURL(podIP:)).sorted()
    }

    /// A replica's check before routing is bounded tighter than a deploy's verification: a replica
    /// that cannot answer in 10 s is not one to give traffic to, and the follower must move on.
    var replicaCheckSettings: VerificationSettings {
        var settings = environment.verification
        settings.requestTimeout = min(settings.requestTimeout, .seconds(10))
        return settings
    }

    /// Honest success: the router's workers for `model` are exactly the replicas of the current
    /// revision that serve, each of them checked, and the stored routing says the same.
    /// - Returns: `nil` when so; otherwise what differs, in words.
    func routingMismatch(model: String) async throws -> String? {
        let (workload, standby) = try await routable(model: model)
        let current = workload.pods.filter { $0.serving && $0.current }.compactMap(\.address).map(settings.workerURL(podIP:))
        let checked = Set(await checkedURLs(of: workload, model: model, checkNew: true, standby: standby))
        let routed = Set(try await router.workers().filter { $0.model == model }.map(\.url))
        // A replicated router: every replica that answers routes the same (a restarted one is
        // refilled by the repair within a pass; one that does not answer serves no client either).
        if router.replicas.count > 1 {
            for (index, (_, registry)) in try await RouterReconciliation.registries(of: router).enumerated() {
                let own = Set(registry.filter { $0.model == model }.map(\.url))
                if own != routed { return "a router replica (\(index + 1) of those answering) routes \(Self.list(own)), not \(Self.list(routed))" }
            }
        }
        let recorded = Set(try await services.store.registration(model: model, environment: environment.name)?.endpoints ?? [])
        let expected = Set(current)
        if expected.isEmpty { return "no replica of the new revision serves" }
        let unchecked = expected.subtracting(checked)
        if !unchecked.isEmpty { return "\(Self.list(unchecked)) \(unchecked.count == 1 ? "has" : "have") not answered a test completion" }
        let missing = expected.subtracting(routed)
        let extra = routed.subtracting(expected)
        if !missing.isEmpty || !extra.isEmpty {
            return "the router routes \(routed.isEmpty ? "nothing" : Self.list(routed)), not the new replicas \(Self.list(expected))"
        }
        if recorded != expected { return "the recorded routing (\(Self.list(recorded))) is not the new replicas" }
        return nil
    }

    /// Waits up to `budget` for `routingMismatch` to clear (the follower routes a replica within a
    /// pass or two of it serving).
    /// - Returns: the last mismatch, or `nil` once the router routes exactly the new replicas.
    func waitRoutedAsPlanned(model: String, budget: Duration) async throws -> String? {
        let deadline = services.time.now().addingTimeInterval(budget.seconds)
        let poll = Duration.milliseconds(250)
        // Counted as well as timed: a clock that does not move on its own still ends the wait.
        for _ in 0..<max(1, Int(budget.seconds / poll.seconds)) {
            guard let mismatch = try await routingMismatch(model: model) else { return nil }
            if services.time.now() >= deadline { return mismatch }
            try await services.time.sleep(for: poll)
        }
        return try await routingMismatch(model: model)
    }

    static func list(_ urls: Set<String>) -> String {
        urls.isEmpty ? "none" : urls.sorted().joined(separator: ", ")
    }

    /// Records `registration` in place of `previous` (the row the caller decided from) and applies it
    /// to the router (only this model's workers change).
    /// - Returns: the registration as recorded (with its version) and what was changed in the router.
    /// - Throws: `RegistrationChanged`, changing nothing, when the stored row is no longer `previous`;
    ///   `RouterUnavailable` after restoring `previous` in the store and undoing what was applied.
    func apply(
        _ registration: Registration, previous: Registration?
    ) async throws -> (recorded: Registration, actions: [RouterReconciler.Action]) {
        let recorded = try await services.store.updateRegistration(registration, expectedVersion: previous?.version)
        guard let recorded else {
            throw RegistrationChanged(model: registration.model, environment: registration.environment)
        }
        var applied: [RouterReconciler.Action] = []
        do {
            let actual = try await workers(of: registration.model)
            let actions = RouterReconciler.plan(desired: [recorded], actual: actual, settings: settings)
            for action in actions {
                try await perform(action)
                applied.append(action)
            }
            return (recorded, actions)
        } catch {
            try? await restore(previous, over: recorded)
            for action in applied.reversed() {
                switch action {
                case .add(let worker): try? await router.remove(url: worker.url)
                case .remove(let worker): try? await router.add(worker)
                }
            }
            throw error
        }
    }

    /// Puts `previous` back in the store in place of `recorded`, unless someone changed the row since.
    func restore(_ previous: Registration?, over recorded: Registration) async throws {
        if let previous {
            _ = try await services.store.updateRegistration(previous, expectedVersion: recorded.version)
        } else {
            _ = try await services.store.removeRegistration(
                model: recorded.model, environment: recorded.environment, expectedVersion: recorded.version)
        }
    }

    /// Takes a registration that never worked back out of the router and the store.
    func forget(_ recorded: Registration) async {
        for worker in RouterReconciler.desiredWorkers(recorded, settings: settings) {
            try? await router.remove(url: worker.url)
        }
        try? await restore(nil, over: recorded)
    }

    func perform(_ action: RouterReconciler.Action) async throws {
        try await perform(action, on: router)
    }

    /// `action` on one router process (a replica of a replicated router).
    func perform(_ action: RouterReconciler.Action, on router: any ModelRouter) async throws {
        switch action {
        case .add(let worker): try await router.add(worker)
        case .remove(let worker): try await router.remove(url: worker.url)
        }
    }

    /// The router's workers for `model`: its engines, or its deny backend.
    func workers(of model: String) async throws -> [RouterWorker] {
        try await router.workers().filter { $0.model == model || isDenyWorker($0, model: model) }
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

    /// How a failed deny check says a request was answered by something other than the denial; the
    /// service-level report counts those as disabled-model requests served.
    static let servedInsteadOfDenied = "instead of the denial"

    /// A request through the router for a denied model must get the deny backend's answer.
    func verifyDenied(model: String) async throws -> String {
        let response = try await router.complete(
            model: model, prompt: "deny check", maxTokens: 1, timeout: environment.verification.requestTimeout)
        guard response.status == 403 || response.status == 404, let message = Self.errorMessage(response.body),
            message.contains(model)
        else {
            throw VerificationFailure.badAnswer(
                detail: "a request for \(model) through the router answered HTTP \(response.status) \(Self.servedInsteadOfDenied)")
        }
        return message
    }

    /// `error.message` of an OpenAI-style error body.
    static func errorMessage(_ body: Data) -> String? {
        guard let json = try? JSONValue(parsing: body) else { return nil }
        return json["error"]?["message"]?.stringValue ?? json["message"]?.stringValue ?? json["error"]?.stringValue
    }
}

/// The registration changed between being read and being written (someone disabled the model, or
/// the reconciler followed a rollout): nothing was changed, so the other change stands.
public struct RegistrationChanged: UserFacingError, Equatable {
    public var model: String
    public var environment: String
    public init(model: String, environment: String) {
        self.model = model
        self.environment = environment
    }

    public var message: String {
        "The routing of \(model) in \(environment) changed while this ran (another command, or the router "
            + "repair following new replicas), so this changed nothing."
    }
    public var hint: String? {
        "`/infer status \(model) in \(environment)` shows it now; run the command again if it is still needed."
    }
}
