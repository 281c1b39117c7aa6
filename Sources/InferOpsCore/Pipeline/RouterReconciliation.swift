/// The background work on every router, each pass: follows the replicas of every enabled model
/// (a replica that stops serving leaves the router at once; a new one is routed once it answered a
/// direct test completion), then repairs drift between the router and the recorded routing (a
/// restarted router has an empty registry). Both go on while a deploy, rollback or promotion runs:
/// that is when replicas come and go. Only a change of the routing itself (`register`, `enable`,
/// `disable`, `deregister`, `remove`, a deploy's own routing step) is left to its operation.
public struct RouterReconciliation: Sendable {
    public struct Pass: Hashable, Sendable {
        public var environment: String
        /// Repairs: what was changed because the router did not match the recorded routing.
        public var actions: [RouterReconciler.Action]
        /// What was changed to follow the serving replicas (a rollout, a scale, a replica stopping
        /// or failing its check): routine, so not announced as a repair.
        public var followed: [RouterReconciler.Action] = []
        /// Set when the router could not be read or changed.
        public var failure: String?
    }

    /// Operations that change a model's routing themselves; the passes leave that model to them.
    static let changingRouting: Set<OperationKind> = [.register, .deregister, .enable, .disable, .remove]

    let configuration: Configuration
    let services: Services

    public init(configuration: Configuration, services: Services) {
        self.configuration = configuration
        self.services = services
    }

    /// Rounds of one pass when registrations keep changing under it; the next pass takes over after.
    static let maximumRounds = 3

    /// One pass over every environment that has a router.
    /// - Parameter operation: the operation the pass is made for (one bringing the router in line
    ///   after a restart): its own model is repaired, not left to it.
    public func reconcileOnce(for operation: OperationID? = nil) async -> [Pass] {
        var passes: [Pass] = []
        for name in configuration.environmentNames {
            guard let environment = configuration.environments[name],
                let registrar = Registrar(services: services, environment: environment)
            else { continue }
            let router = registrar.router
            let settings = registrar.settings
            do {
                // A model whose routing an operation is changing now (an enable, a disable, a deploy's
                // routing step) is that operation's to route: repairing it halfway would race it and
                // announce its change as drift. The first pass after it ends repairs what is still off.
                let changingNow = { @Sendable () async throws -> Set<String> in
                    Set(try await services.store.unfinishedSummaries()
                        .filter {
                            $0.environment == name && $0.id != operation && OperationState.holdingRelease.contains($0.state)
                                && (Self.changingRouting.contains($0.kind) || $0.state == .registering)
                        }
                        .compactMap(\.model))
                }
                try await tendWarmPools(registrar, environment: environment)
                let changing = try await changingNow()
                let ours = { (model: String) in !changing.contains(model) }
                // Follow the replicas: first without checking new ones, so a replica that stopped
                // serving leaves the router without waiting on another's check; then with the checks.
                var followed = try await follow(registrar, environment: name, models: ours, checkNew: false)
                followed += try await follow(registrar, environment: name, models: ours, checkNew: true)
                // Act on the router from a fresh read, and read again afterwards: a change recorded
                // while the router was being changed gets another round (up to `maximumRounds`; the
                // next pass takes over after), rather than waiting a whole interval on a replaced state.
                var actions: [RouterReconciler.Action] = []
                var desired = try await services.store.registrations().filter { $0.environment == name && ours($0.model) }
                for _ in 0..<Self.maximumRounds {
                    // Each router process on its own (a replicated router's replicas each have their
                    // own registry: a restarted one is empty while the others are full).
                    let actuals = try await Self.registries(of: router)
                    // Asked again after both reads: an operation that began meanwhile may have recorded
                    // its change (read above as desired) and not yet made it in the router. One that
                    // begins after this records its change after the read of the desired state.
                    let busy = try await changingNow()
                    for (member, actual) in actuals {
                        let round = RouterReconciler.plan(
                            desired: desired.filter { !busy.contains($0.model) },
                            actual: actual.filter { ours($0.model) && !busy.contains($0.model) }, settings: settings)
                        for action in round { try await registrar.perform(action, on: member) }
                        actions += round.filter { !actions.contains($0) }
                    }
                    let now = try await services.store.registrations().filter { $0.environment == name && ours($0.model) }
                    if now == desired { break }
                    desired = now
                }
                passes.append(Pass(environment: name, actions: actions, followed: followed, failure: nil))
            } catch let error as any UserFacingError {
                passes.append(Pass(environment: name, actions: [], failure: error.message))
            } catch is CancellationError {
                // The daemon is stopping: an unfinished pass is no failure to report.
                return passes
            } catch {
                // Not user-facing: logged in full under a reference, reported by the reference only.
                let correlation = OperationID.random().rawValue.replacingOccurrences(of: "op-", with: "err-")
                services.logger.error(
                    "router reconciliation failed",
                    metadata: ["environment": "\(name)", "correlation": "\(correlation)", "error": "\(error)"])
                passes.append(
                    Pass(environment: name, actions: [], failure: "an internal error (reference \(correlation))"))
            }
        }
        return passes
    }

    /// Points every enabled registration of `environment` at its serving, checked replicas, and the
    /// router with it at once. Each write names the version it was read at, so a row changed while
    /// the cluster was asked (a `disable`) is left as that change made it. With no replica serving
    /// (mid-rollout, or the only one stopping), the routing stays where it was rather than nowhere:
    /// a stopping replica still serves until its preStop hook ends.
    /// - Returns: what was changed in the router.
    func follow(
        _ registrar: Registrar, environment name: String, models ours: (String) -> Bool, checkNew: Bool
    ) async throws -> [RouterReconciler.Action] {
        var followed: [RouterReconciler.Action] = []
        let enabled = try await services.store.registrations()
            .filter { $0.environment == name && $0.state == .enabled && ours($0.model) }
        for registration in enabled {
            let serving = try await registrar.servingEndpoints(model: registration.model, checkNew: checkNew)
            guard !serving.urls.isEmpty, serving.urls != registration.endpoints else { continue }
            var moved = registration
            moved.endpoints = serving.urls
            guard let recorded = try await services.store.updateRegistration(moved, expectedVersion: registration.version)
            else { continue }
            let actual = try await registrar.workers(of: recorded.model)
            // New workers first, then the old ones out: the model never has fewer workers in between.
            let actions = RouterReconciler.plan(desired: [recorded], actual: actual, settings: registrar.settings)
                .sorted { if case .add = $0, case .remove = $1 { true } else { false } }
            for action in actions { try await registrar.perform(action) }
            followed += actions
            services.logger.info("following the replicas", metadata: [
                "environment": "\(name)", "model": "\(recorded.model)",
                "changes": "\(actions.map(\.description).joined(separator: "; "))",
            ])
        }
        return followed
    }

    /// The registry of each of `router`'s processes that answers. A replica that does not (it is
    /// restarting) is filled by a later pass; only when none answers is that a failure.
    static func registries(of router: any ModelRouter) async throws -> [(any ModelRouter, [RouterWorker])] {
        var found: [(any ModelRouter, [RouterWorker])] = []
        var firstError: (any Error)?
        for member in router.replicas {
            do {
                found.append((member, try await member.workers()))
            } catch let error as CancellationError {
                throw error
            } catch {
                firstError = firstError ?? error
            }
        }
        if found.isEmpty, let firstError { throw firstError }
        return found
    }

    /// Releases the warm pools of `environment` that are done: one kept past its time and never
    /// routed; one standing in after a warm rollback once the release's own replicas of the current
    /// revision all serve and are routed (its replicas then leave the router at the follower's next
    /// pass, while their preStop keeps them serving); one whose release is gone.
    func tendWarmPools(_ registrar: Registrar, environment: EnvironmentSettings) async throws {
        let pools = try await services.warmPools.pools(namespace: environment.namespace, kubeContext: environment.kubeContext)
        guard !pools.isEmpty else { return }
        let registrations = try await services.store.registrations().filter { $0.environment == environment.name }
        // Environments may share a namespace: each tends the pools of its own releases.
        let ours = Set(configuration.modelNames.map { environment.target(model: $0).release })
        for (release, pool) in pools.sorted(by: { $0.key < $1.key }) where ours.contains(release) {
            let target = ReleaseTarget(release: release, namespace: environment.namespace, kubeContext: environment.kubeContext)
            let why: String
            let workload = try await services.cluster.workload(target)
            if workload.desiredReplicas == 0, workload.pods.isEmpty {
                why = "its release is gone"
            } else if !pool.serving {
                guard pool.until <= services.time.now() else { continue }
                why = "kept until \(Reports.timestamp(pool.until))"
            } else {
                // The release's replicas started by the rollback, not those of the revision it leaves
                // (still current until Helm has applied the rollback). Creation times are whole seconds.
                let since = (pool.servingSince ?? .distantFuture).addingTimeInterval(-1)
                let own = workload.pods.filter { $0.current && $0.serving && ($0.timeline?.created).map { $0 >= since } == true }
                    .compactMap(\.address).map(registrar.settings.workerURL(podIP:))
                guard own.count >= max(1, workload.desiredReplicas) else { continue }
                let registration = registrations.first { environment.target(model: $0.model).release == release }
                if let registration, registration.state == .enabled, !Set(own).isSubset(of: Set(registration.endpoints)) { continue }
                why = "the release's own \(own.count) replica\(own.count == 1 ? "" : "s") of the current revision serve and are routed"
            }
            try await services.warmPools.release(target)
            services.logger.info("released a warm pool", metadata: [
                "environment": "\(environment.name)", "release": "\(release)", "revision": "\(pool.revision)", "why": "\(why)",
            ])
        }
    }

    /// Reconciles every `interval` until cancelled, reporting repairs and outages (once each) on
    /// `channel`, or only in the log without one.
    public func run(every interval: Duration, channel: String?, observe: @Sendable ([Pass]) -> Void = { _ in }) async {
        var failing: Set<String> = []
        while !Task.isCancelled {
            // Passes start `interval` apart (a pass that checked new replicas took part of it), so a
            // replica's deletion is seen within about one interval of the pass before.
            let started = ContinuousClock.now
            let passes = await reconcileOnce()
            if Task.isCancelled { break }
            observe(passes)
            for pass in passes {
                if let failure = pass.failure {
                    if failing.insert(pass.environment).inserted {
                        await notice(Reply(.warning, "Router in \(pass.environment) cannot be reconciled: \(failure)",
                                           hint: "InferOps keeps trying and reports when it has repaired it."),
                                     on: channel)
                    }
                    continue
                }
                let recovered = failing.remove(pass.environment) != nil
                guard !pass.actions.isEmpty || recovered else { continue }
                let what = pass.actions.isEmpty ? "it matches the desired state again" : pass.actions.map(\.description).joined(separator: "; ")
                await notice(Reply(.warning, "Router in \(pass.environment) repaired: \(what)."), on: channel)
            }
            let elapsed = started.duration(to: .now)
            try? await services.time.sleep(for: max(interval - elapsed, interval / 10))
        }
    }

    /// A notice for the operators: posted on `channel`, always logged.
    func notice(_ reply: Reply, on channel: String?) async {
        services.logger.warning("\(reply.title.plainText)")
        guard let channel else { return }
        _ = try? await services.chat.post(reply, in: Conversation(channel: channel), operation: nil)
    }
}
