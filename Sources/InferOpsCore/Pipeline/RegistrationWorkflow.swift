/// `register`, `deregister`, `enable` and `disable`: changes a model's routing in an environment.
struct RegistrationWorkflow: Sendable {
    let services: Services
    let model: ModelSpec
    let environment: EnvironmentSettings
    let registrar: Registrar
    let change: OperationKind
    let reason: String?
    let reporter: OperationReporter

    func run() async throws -> CommandOutcome {
        let id = await reporter.operation.id
        let requester = await reporter.operation.requester
        let previous = try await services.store.registration(model: model.name, environment: environment.name)
        try await reporter.move(to: .prechecking, "Checking \(model.name) in \(environment.name).")
        let next: Registration
        switch change {
        case .register, .enable:
            if change == .register, let previous, previous.state == .disabled {
                // `register` is the deployer's verb; only `enable` (the `disable` permission) undoes a `disable`.
                return try await refuse(Refusal(
                    "\(model.name) is \(Self.describe(previous)). `register` does not switch a disabled model back on.",
                    hint: Self.wayBack(previous)))
            }
            if change == .enable, previous == nil || previous?.state == .removed {
                return try await refuse(Refusal(
                    "\(model.name) is not registered in \(environment.name), so there is nothing to enable.",
                    hint: "Register it with `/infer register \(model.name) in \(environment.name)`."))
            }
            if let refusal = try await readinessRefusal() { return try await refuse(refusal) }
            let serving = try await registrar.servingEndpoints(model: model.name)
            next = Registration(model: model.name, environment: environment.name, state: .enabled, endpoints: serving.urls,
                                changedBy: requester, changedAt: services.time.now(), reason: reason)
        case .disable, .deregister:
            guard let previous, previous.state != .removed else {
                return try await refuse(Refusal("\(model.name) is not registered in \(environment.name).",
                                                hint: "`/infer status \(model.name)` shows its routing."))
            }
            if change == .disable, previous.state == .disabled {
                return try await refuse(Refusal("\(model.name) is already disabled in \(environment.name)."))
            }
            next = Registration(model: model.name, environment: environment.name,
                                state: change == .disable ? .disabled : .removed, endpoints: [],
                                changedBy: requester, changedAt: services.time.now(), reason: reason)
        default:
            preconditionFailure("not a registration change: \(change)")
        }
        let outcome = try await RegistrationStep(registrar: registrar, reporter: reporter).apply(next, previous: previous)
        guard case .routed(let summary) = outcome else {
            if case .failed(let failure) = outcome { return try await fail(failure) }
            return .failed(id, "registration failed")
        }
        try await reporter.finish(.succeeded, Reply(.success, summary, fields: [Reply.Field("router", registrar.settings.url)]))
        return .completed(id)
    }

    /// Goes on from where a stopped daemon left the change. Once the desired state was recorded
    /// (`registering`), the router is made to match the store, which completes the change; a change
    /// that was never recorded is made from the start.
    func resume(configuration: Configuration) async throws -> CommandOutcome {
        let record = await reporter.operation
        guard record.state == .registering || record.state == .verifying else { return try await run() }
        let intended: RegistrationState = switch change {
        case .register, .enable: .enabled
        case .disable: .disabled
        default: .removed
        }
        let stored = try await services.store.registration(model: model.name, environment: environment.name)
        guard let stored, stored.state == intended, stored.changedBy == record.requester,
              stored.changedAt >= record.createdAt
        else {
            try await reporter.move(to: .prechecking, "The change had not been recorded when InferOps stopped; making it now.")
            return try await run()
        }
        try await reporter.move(to: .prechecking, "The change was recorded before InferOps stopped; bringing the router in line.")
        let passes = await RouterReconciliation(configuration: configuration, services: services)
            .reconcileOnce(for: record.id)
        if let failure = passes.first(where: { $0.environment == environment.name })?.failure {
            return try await fail(Refusal("The router of \(environment.name) could not be brought in line: \(failure)",
                                          hint: "The background repair keeps trying; `/infer status \(model.name)` shows the routing."))
        }
        try await reporter.move(to: .registering, "The router matches the recorded routing.")
        try await reporter.finish(.succeeded, Reply(
            .success, "\(model.name) is \(Self.describe(stored)) (completed after InferOps restarted).",
            fields: [Reply.Field("router", registrar.settings.url)]))
        return .completed(record.id)
    }

    /// A registration needs a deployed release whose replicas are all ready and whose engine answers.
    func readinessRefusal() async throws -> Refusal? {
        let target = environment.target(model: model.name)
        guard let release = try await services.releases.status(target), release.state == .deployed else {
            return Refusal("\(model.name) is not deployed in \(environment.name), so there is no engine to route to.",
                           hint: "Deploy it first: `/infer deploy \(model.name) to \(environment.name) --register`.")
        }
        let serving = try await registrar.servingEndpoints(model: model.name)
        guard serving.ready > 0, serving.ready >= serving.desired, serving.urls.count == serving.ready else {
            return Refusal(
                "\(model.name) in \(environment.name) is not ready: \(serving.ready) of \(serving.desired) replicas ready.",
                hint: "Wait for the rollout (`/infer status \(model.name) in \(environment.name)`), then register.")
        }
        let verifier = EngineVerifier(engines: services.engines, time: services.time, settings: environment.verification)
        let endpoint = EngineEndpoint(target: target, service: target.release)
        do {
            try await verifier.waitReady(endpoint, servedName: model.name, budget: environment.verification.requestTimeout)
            _ = try await verifier.verify(endpoint, servedName: model.name)
        } catch let failure as VerificationFailure {
            return Refusal("\(model.name)'s engine in \(environment.name) does not answer: \(failure.text)",
                           hint: failure.hint)
        }
        return nil
    }

    /// "disabled in staging by @alice since 2026-12-01T18:00:00Z: wrong answers": who (a mention),
    /// when and why (the user's own words, marked).
    static func describe(_ registration: Registration) -> RichText {
        let state = switch registration.state {
        case .enabled: "enabled in \(registration.environment)"
        case .disabled: "disabled in \(registration.environment)"
        case .removed: "deregistered from \(registration.environment)"
        }
        let why: RichText = registration.reason.map { ": \(user: $0)" } ?? " (no reason given)"
        return "\(state) by \(mention: registration.changedBy) since \(Reports.timestamp(registration.changedAt))\(why)"
    }

    /// The verb that routes a disabled or deregistered model again, and the permission it takes.
    static func wayBack(_ registration: Registration) -> String {
        switch registration.state {
        case .disabled:
            "`/infer enable \(registration.model) in \(registration.environment)` routes it again; "
                + "it takes the `disable` permission, like `disable`."
        case .removed, .enabled:
            "`/infer register \(registration.model) in \(registration.environment)` routes it again."
        }
    }

    func refuse(_ refusal: Refusal) async throws -> CommandOutcome {
        try await reporter.finish(.failed, .error(refusal))
        return .refused(refusal.message)
    }

    func fail(_ failure: any UserFacingError) async throws -> CommandOutcome {
        try await reporter.finish(.failed, .error(failure))
        return .failed(await reporter.operation.id, failure.message)
    }
}

/// The router part shared by the registration verbs and by `deploy --register`: record, apply,
/// verify through the router, and report each step in the operation's thread.
struct RegistrationStep: Sendable {
    let registrar: Registrar
    let reporter: OperationReporter

    enum Outcome: Sendable {
        case routed(RichText)
        case failed(any UserFacingError)
    }

    func apply(_ next: Registration, previous: Registration?) async throws -> Outcome {
        let model = next.model
        let environment = next.environment
        try await reporter.move(
            to: .registering,
            next.state == .enabled
                ? "Routing \(model) to \(next.endpoints.count) engine replica\(next.endpoints.count == 1 ? "" : "s") in the router."
                : "Routing \(model) to the deny backend (\(next.state.rawValue)).")
        let recorded: Registration
        let actions: [RouterReconciler.Action]
        do {
            (recorded, actions) = try await registrar.apply(next, previous: previous)
        } catch let changed as RegistrationChanged {
            return .failed(changed)
        } catch let failure as RouterUnavailable {
            return .failed(Refusal(failure.message + " Nothing was changed: the previous routing is restored.", hint: failure.hint))
        }
        try await reporter.report(Reply(.progress, actions.isEmpty
            ? "The router already matched." : "Router updated: " + actions.map(\.description).joined(separator: "; ") + "."))
        try await reporter.move(to: .verifying, "Sending a request for \(model) through the router.")
        do {
            if next.state == .enabled {
                let (latency, text) = try await registrar.verifyRouted(model: model)
                try await reporter.report(Reply(.progress, "Completion through the router answered in \(latency.spoken): “\(user: text)”"))
                return .routed("\(model) is routable in \(environment) through the router, verified in \(latency.spoken).")
            }
            let message = try await registrar.verifyDenied(model: model)
            return .routed("\(model) is \(next.state.rawValue) in \(environment); requests for it get: “\(user: message)”")
        } catch let failure as VerificationFailure {
            if let previous {
                _ = try? await registrar.apply(previous, previous: recorded)
            } else {
                await registrar.forget(recorded)
            }
            return .failed(Refusal(failure.message + (previous == nil ? "" : " The previous routing is restored.")))
        } catch let failure as RouterUnavailable {
            return .failed(failure)
        }
    }
}

/// After a deploy or rollback: registers the model when asked, and otherwise keeps an enabled
/// registration pointing at the replicas that serve now (their addresses change with every rollout).
///
/// Both act for the requester, so both need the `register` permission (checked at authorization,
/// passed in as `denial`); without it the router is left alone and the thread says why. Neither
/// ever changes a disabled or deregistered model: only `enable` and `register` do that.
struct RoutingRefresh: Sendable {
    let registrar: Registrar
    let reporter: OperationReporter

    /// Ends a deploy or rollback that Helm and the engine verified: with `success`, plus what the
    /// routing did; or failed, when the routing failed.
    static func finish(
        registrar: Registrar?, reporter: OperationReporter, model: String, target: ReleaseTarget, register: Bool,
        denial: Denial?, success: Reply, replicasWaitedFor: Bool = true
    ) async throws -> CommandOutcome {
        let id = await reporter.operation.id
        var reply = success
        var routing = Duration.zero
        // The steps as they were before the wait for the router: the wait is said as routing, not
        // again as the state it happens in.
        var steps = await reporter.timeSpent()
        if let registrar {
            let refresh = RoutingRefresh(registrar: registrar, reporter: reporter)
            switch try await refresh.run(model: model, register: register, denial: denial) {
            case .routed(let routed)?:
                reply.title += " " + routed
            case .failed(let changed as RegistrationChanged)?:
                // Someone else's change to the routing wins; the release itself is fine.
                try await reporter.report(
                    Reply(.warning, "The router was left as it is: " + changed.message, hint: changed.hint))
            case .failed(let failure)?:
                try await reporter.finish(
                    .failed, Reply(.failure, success.title + " But routing failed: " + failure.text, hint: failure.hint))
                return .failed(id, failure.message)
            case nil:
                break
            }
            // Success only when the router routes what was deployed: every new replica, checked, and
            // no old one. (A requester without `register` was told the routing is left to the
            // daemon's follower; the deploy is theirs, the routing is not.)
            let stored = try await registrar.services.store.registration(model: model, environment: registrar.environment.name)
            steps = await reporter.timeSpent()
            let waitStarted = ContinuousClock.now
            let mismatch = denial == nil && stored?.state == .enabled
                ? try await registrar.waitRoutedAsPlanned(model: model, budget: routingBudget(registrar)) : nil
            routing = waitStarted.duration(to: .now)
            if let mismatch {
                let failure = Refusal(
                    "The router does not route the new replicas: \(mismatch).",
                    hint: "`/infer status \(model) in \(registrar.environment.name)` shows each replica and what it needs.")
                try await reporter.finish(
                    .failed, Reply(.failure, success.title + " But " + RichText(failure.message), hint: failure.hint))
                return .failed(id, failure.message)
            }
        }
        // Where the time went, in the last reply and in the record.
        let services = reporter.services
        // A warm rollback did not wait for the release's replicas: their loading is not its time.
        let pods = replicasWaitedFor ? (try? await services.cluster.workload(target).pods) ?? [] : []
        let breakdown = TimeBreakdown.make(
            steps: steps, routing: routing, gpuWait: await reporter.gpuWait, pods: pods,
            unschedulable: await reporter.unschedulablePods, from: reporter.began, to: services.time.now())
        try await reporter.journal("Time: " + breakdown.text)
        reply.fields.append(Reply.Field("time", breakdown.text))
        try await reporter.finish(.succeeded, reply)
        return .completed(id)
    }

    /// How long a deploy waits for the router to route exactly its replicas: a few passes of the
    /// follower, plus a replica's check.
    static func routingBudget(_ registrar: Registrar) -> Duration {
        registrar.replicaCheckSettings.requestTimeout * (registrar.environment.verification.warmupRequests + 1) + .seconds(5)
    }

    /// `nil` when there was nothing to do, or nothing this requester may do (said in the thread).
    /// The replica follower may move the routing between this read and its write (it follows the
    /// rollout this ends); that is read again, up to three times, rather than reported as a conflict.
    func run(model: String, register: Bool, denial: Denial?) async throws -> RegistrationStep.Outcome? {
        for round in 1...3 {
            let outcome = try await attempt(model: model, register: register, denial: denial)
            if case .failed(let changed as RegistrationChanged)? = outcome, round < 3 {
                registrar.services.logger.info("routing moved under the refresh; reading it again",
                                               metadata: ["model": "\(changed.model)", "environment": "\(changed.environment)"])
                continue
            }
            return outcome
        }
        return nil
    }

    func attempt(model: String, register: Bool, denial: Denial?) async throws -> RegistrationStep.Outcome? {
        let services = registrar.services
        let environment = registrar.environment.name
        let previous = try await services.store.registration(model: model, environment: environment)
        if register, let previous, previous.state != .enabled {
            try await reporter.report(Reply(
                .warning,
                "Not registering \(model): it is \(RegistrationWorkflow.describe(previous)). Registering after a "
                    + "deploy never changes a \(previous.state == .disabled ? "disabled" : "deregistered") model.",
                hint: RegistrationWorkflow.wayBack(previous)))
            return nil
        }
        guard register || previous?.state == .enabled else { return nil }
        let serving = try await registrar.servingEndpoints(model: model)
        // Already where it should be: nothing to change (a requester without `register` re-verifies nothing).
        if let previous, previous.endpoints == serving.urls, !register || denial != nil { return nil }
        if let denial {
            try await reporter.report(Reply(
                .warning,
                register
                    ? "Not registering \(model) in \(environment) automatically: \(denial.message)"
                    : "The router still routes \(model) to the replicas before this change: \(denial.message)",
                hint: register
                    ? denial.hint
                    : "A running daemon's router repair follows the new replicas; or someone with `register` runs "
                        + "`/infer register \(model) in \(environment)`."))
            return nil
        }
        // Never route a model to nothing: with no replica serving and checked, the router keeps
        // what it has, and the operation says why.
        guard !serving.urls.isEmpty else {
            return .failed(Refusal(
                "No replica of \(model) in \(environment) serves and answered a test completion straight to its pod "
                    + "(\(serving.ready) of \(serving.desired) ready), so the router keeps its current workers.",
                hint: "`/infer status \(model) in \(environment)` shows each replica and what it needs."))
        }
        let requester = await reporter.operation.requester
        let next = Registration(
            model: model, environment: environment, state: .enabled, endpoints: serving.urls,
            changedBy: register ? requester : previous?.changedBy ?? requester,
            changedAt: register ? services.time.now() : previous?.changedAt ?? services.time.now(),
            reason: register ? nil : previous?.reason)
        return try await RegistrationStep(registrar: registrar, reporter: reporter).apply(next, previous: previous)
    }
}
