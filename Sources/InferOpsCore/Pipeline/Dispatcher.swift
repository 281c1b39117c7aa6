import Foundation
import Logging

/// The fixed pipeline: parse → validate → authorize → plan → execute → report.
/// Each stage has its own type and error; authorization is a stage, never an `if` in a handler.
public final class Dispatcher: Sendable {
    public let configuration: Configuration
    public let catalog: CommandCatalog
    let services: Services
    let parser: CommandParser
    let validator: CommandValidator
    let gate = ReleaseGate()
    let running = RunningOperations()

    public init(configuration: Configuration, catalog: CommandCatalog, services: Services) {
        self.configuration = configuration
        self.catalog = catalog
        self.services = services.redacting(for: configuration)
        self.parser = CommandParser(catalog: catalog)
        self.validator = CommandValidator(configuration: configuration, catalog: catalog)
    }

    /// Handles one command to the end, operation included, and says how it ended.
    public func handle(_ command: IncomingCommand) async -> CommandOutcome {
        await CommandOrigin.$current.withValue(CommandOrigin(channel: command.channel, osUser: command.osUser)) {
            await handleCommand(command)
        }
    }

    func handleCommand(_ command: IncomingCommand) async -> CommandOutcome {
        let conversation = Conversation(channel: command.channel)
        do {
            let parsed: ParsedCommand
            let validated: ValidatedCommand
            do {
                parsed = try parser.parse(command.text)
                validated = try validator.validate(parsed)
            } catch let error as any UserFacingError {
                return try await refuse(error, in: conversation)
            }
            let spec = catalog.spec(named: parsed.verb)!
            let text = parsed.canonical(spec: spec)
            do {
                try await authorize(validated, spec: spec, user: command.user)
            } catch let denial as Denial {
                try await audit(command.user, spec.name, validated.environment?.name, subject(of: validated), "denied", detail: denial.message)
                try await services.chat.post(.error(denial), in: conversation, operation: nil)
                return .refused(denial.message)
            }
            return try await execute(validated, spec: spec, text: text, user: command.user, conversation: conversation)
        } catch let error as any UserFacingError {
            // A port's own classified failure (e.g. the cluster is unreachable) is safe to show.
            _ = try? await services.chat.post(.error(error), in: conversation, operation: nil)
            return .failed(nil, error.message)
        } catch is CancellationError {
            // The daemon (or `exec`) is stopping: not an internal error, and nothing more will run.
            _ = try? await services.chat.post(
                Reply(.warning, "Stopped: InferOps is shutting down.",
                      hint: "`/infer status` shows where things stand; an operation in its thread says how it ended."),
                in: conversation, operation: nil)
            return .failed(nil, "cancelled")
        } catch {
            // Not user-facing: log it in full with a correlation id, show only the id.
            let correlation = OperationID.random().rawValue.replacingOccurrences(of: "op-", with: "err-")
            services.logger.error("command failed", metadata: ["correlation": "\(correlation)", "error": "\(error)"])
            _ = try? await services.chat.post(
                Reply(.failure, "Something went wrong inside InferOps (reference \(correlation)).",
                      hint: "The daemon's log has the details under that reference."),
                in: conversation, operation: nil
            )
            return .failed(nil, "internal error \(correlation)")
        }
    }

    // MARK: authorize

    func authorize(_ command: ValidatedCommand, spec: CommandSpec, user: UserID) async throws {
        switch command {
        case .cancel(let id):
            let environment = try await services.store.operation(id)?.environment ?? "*"
            try configuration.policy.authorize(user, spec.permission, in: environment, verb: spec.name)
        case .status(_, nil):
            // Status across environments shows only those the user may view; it needs one of them.
            let viewable = configuration.environmentNames.contains { configuration.policy.allows(user, spec.permission, in: $0) }
            if !viewable {
                try configuration.policy.authorize(user, spec.permission, in: configuration.environmentNames.first ?? "*", verb: spec.name)
            }
        case .help:
            break
        case .deploy(_, let environment, _, _, _, true):
            // `--register` changes the router too, which takes the register permission.
            try configuration.policy.authorize(user, spec.permission, in: environment.name, verb: spec.name)
            try configuration.policy.authorize(user, "register", in: environment.name, verb: "deploy --register")
        default:
            try configuration.policy.authorize(user, spec.permission, in: command.environment?.name ?? "*", verb: spec.name)
        }
    }

    /// The router changes a deploy or rollback makes on its own (`router.autoRegister`, following
    /// new replicas) act for the requester, so they take the `register` permission too. Without it
    /// they are skipped, not the deploy; an explicit `--register` was refused above instead.
    func automaticRoutingDenial(_ user: UserID, in environment: EnvironmentSettings) -> Denial? {
        do {
            try configuration.policy.authorize(user, "register", in: environment.name, verb: "register")
            return nil
        } catch {
            return error
        }
    }

    // MARK: execute

    func execute(_ command: ValidatedCommand, spec: CommandSpec, text: String, user: UserID, conversation: Conversation) async throws -> CommandOutcome {
        let reports = Reports(services: services, configuration: configuration, catalog: catalog)
        switch command {
        case .help(let verb):
            try await services.chat.post(reports.help(verb: verb, user: user), in: conversation, operation: nil)
            return .completed(nil)
        case .status(let model, let environment):
            let status = try await reports.status(model: model, environment: environment, user: user)
            try await services.chat.post(status, in: conversation, operation: nil)
            // A status that could not reach a cluster is a failure, so scripts see it.
            return status.tone == .failure ? .failed(nil, status.title.plainText) : .completed(nil)
        case .history(let model, let environment):
            try await services.chat.post(try await reports.history(model: model, environment: environment), in: conversation, operation: nil)
            return .completed(nil)
        case .lock(let environment, let reason):
            return try await lock(environment, reason: reason, user: user, conversation: conversation)
        case .unlock(let environment, let reason):
            return try await unlock(environment, reason: reason, user: user, conversation: conversation)
        case .cancel(let id):
            return try await cancel(id, user: user, conversation: conversation)
        case .routing(let kind, let model, let environment, let reason):
            if let refusal = try await lockRefusal(environment, user: user) {
                return try await refuse(refusal, in: conversation, audit: (user, kind.rawValue, environment.name, model.name))
            }
            guard let registrar = registrar(for: environment) else {
                return try await refuse(Refusal("`\(environment.name)` has no router configured."), in: conversation)
            }
            let target = environment.target(model: model.name)
            let operation = OperationRecord(
                id: .random(), kind: kind, requester: user, environment: environment.name, model: model.name,
                target: target, command: text, createdAt: services.time.now()
            )
            let verb = kind.rawValue.prefix(1).uppercased() + kind.rawValue.dropFirst()
            return try await runOperation(operation, release: target.release, conversation: conversation,
                title: "\(verb) \(model.name) in \(environment.name), requested by \(mention: user)"
                    + (reason.map { ": \(user: $0)" } ?? ""),
                fields: [Reply.Field("router", registrar.settings.url)]
            ) { reporter in
                try await reporter.move(to: .planned, "\(verb) planned.")
                return { try await RegistrationWorkflow(services: self.services, model: model, environment: environment,
                                                        registrar: registrar, change: kind, reason: reason, reporter: reporter).run() }
            }
        case .remove(let model, let environment, let reason):
            if let refusal = try await lockRefusal(environment, user: user) {
                return try await refuse(refusal, in: conversation, audit: (user, "remove", environment.name, model.name))
            }
            let target = environment.target(model: model.name)
            let operation = OperationRecord(
                id: .random(), kind: .remove, requester: user, environment: environment.name, model: model.name,
                target: target, command: text, createdAt: services.time.now()
            )
            return try await runOperation(operation, release: target.release, conversation: conversation,
                title: "Remove \(model.name) from \(environment.name), requested by \(mention: user)"
                    + (reason.map { ": \(user: $0)" } ?? ""),
                fields: [Reply.Field("release", target.release)]
            ) { reporter in
                try await reporter.move(to: .planned, "Remove planned: router first, then helm uninstall, then the GPUs.")
                let registrar = self.registrar(for: environment)
                return { try await RemoveWorkflow(services: self.services, model: model, environment: environment,
                                                  reason: reason, reporter: reporter, registrar: registrar).run() }
            }
        case .deploy(let model, let environment, let chartVersion, let overrides, let dryRun, let register):
            let plan: DeployPlan
            do {
                plan = try DeployPlanner.plan(model: model, environment: environment, chartVersion: chartVersion, overrides: overrides)
            } catch {
                return try await refuse(error, in: conversation, audit: (user, "deploy", environment.name, model.name))
            }
            if dryRun { return try await dryRunDeploy(plan, user: user, conversation: conversation) }
            if let refusal = try await lockRefusal(environment, user: user) {
                return try await refuse(refusal, in: conversation, audit: (user, "deploy", environment.name, model.name))
            }
            let operation = OperationRecord(
                id: .random(), kind: .deploy, requester: user, environment: environment.name, model: model.name,
                target: plan.target, command: text, createdAt: services.time.now()
            )
            return try await runOperation(operation, release: plan.target.release, conversation: conversation,
                title: "Deploy \(model.name) to \(environment.name), requested by \(mention: user)",
                fields: [Reply.Field("release", plan.target.release), Reply.Field("endpoint", plan.endpoint.description)]
            ) { reporter in
                try await reporter.setPlan(plan.canonical, digest: plan.digest)
                try await reporter.move(
                    to: .planned, "Plan ready: \(plan.replicas) × \(model.modelID)@\(model.revision), \(plan.gpusPerReplica.counting("GPU")) each.",
                    fields: [Reply.Field("chart", plan.chart + (plan.chartVersion.map { " \($0)" } ?? "")), Reply.Field("digest", plan.shortDigest)]
                )
                let registrar = self.registrar(for: environment)
                let registers = register || environment.router?.autoRegister == true
                let denial = self.automaticRoutingDenial(user, in: environment)
                return { try await DeployWorkflow(services: self.services, plan: plan, environment: environment, reporter: reporter,
                                                  registrar: registrar, registers: registers,
                                                  routingDenial: denial).run() }
            }
        case .rollback(let model, let environment, let revision):
            if let refusal = try await lockRefusal(environment, user: user) {
                return try await refuse(refusal, in: conversation, audit: (user, "rollback", environment.name, model.name))
            }
            let target = environment.target(model: model.name)
            let operation = OperationRecord(
                id: .random(), kind: .rollback, requester: user, environment: environment.name, model: model.name,
                target: target, command: text, createdAt: services.time.now()
            )
            return try await runOperation(operation, release: target.release, conversation: conversation,
                title: "Roll back \(model.name) in \(environment.name)\(revision.map { " to revision \($0)" } ?? ""), requested by \(mention: user)",
                fields: [Reply.Field("release", target.release)]
            ) { reporter in
                try await reporter.move(to: .planned, "Rollback planned\(revision.map { " to revision \($0)" } ?? " to the previous good revision").")
                let registrar = self.registrar(for: environment)
                let denial = self.automaticRoutingDenial(user, in: environment)
                return { try await RollbackWorkflow(services: self.services, model: model, environment: environment,
                                                    requestedRevision: revision, reporter: reporter, registrar: registrar,
                                                    routingDenial: denial).run() }
            }
        }
    }

    /// Records the operation, queues it behind any other on the same release, claims the release in
    /// the store (refused if another process holds it), then runs the workflow as a cancellable task.
    func runOperation(
        _ operation: OperationRecord, release: String, conversation: Conversation, title: RichText, fields: [Reply.Field],
        prepare: @escaping @Sendable (OperationReporter) async throws -> @Sendable () async throws -> CommandOutcome
    ) async throws -> CommandOutcome {
        // Reserved before the record exists, so a `/infer cancel` can never miss it.
        await running.reserve(operation.id)
        defer { Task { await self.running.remove(operation.id) } }
        let reporter = OperationReporter(operation: operation, services: services, channel: conversation.channel)
        try await reporter.open(title: title, fields: fields)
        try await audit(operation.requester, operation.kind.rawValue, operation.environment, operation.model, "accepted", operation: operation.id)
        let workflow = try await prepare(reporter)
        if let holder = await gate.holder(of: release) {
            try await reporter.move(to: .queued, "Queued behind \(holder) on \(release); it starts when that one ends.")
        } else {
            try await reporter.move(to: .queued, "Queued.")
        }
        let task = Task<CommandOutcome, any Error> {
            await self.gate.acquire(release, for: operation.id)
            defer { Task { await self.gate.release(release) } }
            try Task.checkCancellation()
            if let holder = try await self.services.store.claimRelease(for: operation.id, release: release, at: self.services.time.now()) {
                let refusal = Refusal(
                    "\(holder.id) (\(holder.kind.rawValue) by \(mention: holder.requester), \(holder.state.rawValue)) is already working on \(release).",
                    hint: "Wait for it to end, or `/infer cancel \(holder.id)` if the daemon running it is gone."
                )
                try await reporter.finish(.failed, .error(refusal))
                return .refused(refusal.message)
            }
            await reporter.releaseClaimed()
            return try await workflow()
        }
        await running.attach(operation.id, task)
        do {
            return try await withTaskCancellationHandler {
                try await task.value
            } onCancel: {
                task.cancel()
            }
        } catch let ended as OperationAlreadyEnded {
            // Cancelled before it claimed the release: nothing ran, and the record is already closed.
            return .failed(operation.id, ended.state.rawValue)
        } catch is CancellationError {
            return try await finishCancelled(reporter)
        } catch ReleaseFailure.cancelled {
            return try await finishCancelled(reporter)
        } catch let failure as any UserFacingError where !task.isCancelled {
            try? await reporter.finish(.failed, .error(failure))
            return .failed(operation.id, failure.message)
        } catch _ where task.isCancelled {
            return try await finishCancelled(reporter)
        } catch {
            // The workflow could not record its own end; record a failure so nothing is left in flight.
            let correlation = OperationID.random().rawValue.replacingOccurrences(of: "op-", with: "err-")
            services.logger.error("operation failed", metadata: ["operation": "\(operation.id)", "correlation": "\(correlation)", "error": "\(error)"])
            try? await reporter.finish(.failed, Reply(.failure, "The operation stopped on an internal error (reference \(correlation)).",
                                                      hint: "The daemon's log has the details under that reference."))
            return .failed(operation.id, "internal error \(correlation)")
        }
    }

    func finishCancelled(_ reporter: OperationReporter) async throws -> CommandOutcome {
        let id = await reporter.operation.id
        try await reporter.finish(.cancelled, Reply(.warning, "Cancelled. Helm was stopped cleanly; `/infer status` shows where the release stands."))
        return .failed(id, "cancelled")
    }

    func dryRunDeploy(_ plan: DeployPlan, user: UserID, conversation: Conversation) async throws -> CommandOutcome {
        let rendered: String
        do {
            rendered = try await services.releases.render(plan.upgrade)
        } catch let failure as ReleaseFailure {
            try await services.chat.post(.error(failure), in: conversation, operation: nil)
            return .failed(nil, failure.message)
        }
        let current = try await services.releases.status(plan.target)
        let capacity = try await services.cluster.gpuCapacity(kubeContext: plan.target.kubeContext)
        let rollout = try await services.cluster.rollout(plan.target, rendered: rendered)
        let verdict = CapacityCheck.evaluate(plan, capacity: capacity, rollout: rollout)
        // Values and manifests carry whatever secrets the values hold; the plan's own (from `--set`)
        // join the configuration's before anything is shown. Whole text first: a key spans lines.
        let redactor = services.redactor.adding(SecretRedactor.sensitiveStrings(in: plan.values))
        let manifestLines = redactor.redact(rendered).split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
        let shown = manifestLines.prefix(80)
        try await audit(user, "deploy", plan.environment, plan.model.name, "dry-run", detail: plan.digest)
        try await services.chat.post(
            Reply(
                .info, "Dry run: deploy \(plan.model.name) to \(plan.environment) (nothing applied)",
                lines: ["Values set by the plan: \(redactor.redact(plan.values.canonical))", "Rendered manifests:"] + shown
                    + (manifestLines.count > shown.count ? ["… \(manifestLines.count - shown.count) more lines"] : []),
                fields: [
                    Reply.Field("release", plan.target.release),
                    Reply.Field("current revision", current.map { "\($0.revision) (\($0.state))" } ?? "none: this would install it"),
                    Reply.Field("endpoint", plan.endpoint.description),
                    Reply.Field("chart", plan.chart + (plan.chartVersion.map { " \($0)" } ?? "")),
                    Reply.Field("GPUs", (verdict.fits ? "fits: " : "would be refused: ") + verdict.summary),
                    Reply.Field("digest", plan.digest),
                ]
            ),
            in: conversation, operation: nil
        )
        return .completed(nil)
    }

    /// The router side of an environment, when it has a router.
    func registrar(for environment: EnvironmentSettings) -> Registrar? {
        guard let settings = environment.router, let router = services.routers.router(for: environment) else { return nil }
        return Registrar(services: services, environment: environment, settings: settings, router: router)
    }

    // MARK: locks and cancel

    func lockRefusal(_ environment: EnvironmentSettings, user: UserID) async throws -> Refusal? {
        guard let lock = try await services.store.locks().first(where: { $0.environment == environment.name }), lock.holder != user else {
            return nil
        }
        return Refusal(
            "`\(environment.name)` is locked by \(mention: lock.holder)" + (lock.reason.map { ": \(user: $0)" } ?? "") + ".",
            hint: "Ask them to `/infer unlock \(environment.name)` when they are done."
        )
    }

    func lock(_ environment: EnvironmentSettings, reason: String?, user: UserID, conversation: Conversation) async throws -> CommandOutcome {
        let lock = EnvironmentLock(environment: environment.name, holder: user, reason: reason, since: services.time.now())
        if let existing = try await services.store.acquireLock(lock) {
            let refusal = Refusal(
                "`\(environment.name)` is already locked by \(mention: existing.holder)" + (existing.reason.map { ": \(user: $0)" } ?? "") + ".")
            return try await refuse(refusal, in: conversation, audit: (user, "lock", environment.name, nil))
        }
        try await audit(user, "lock", environment.name, nil, "succeeded", detail: reason)
        try await services.chat.post(
            Reply(.success, "🔒 `\(environment.name)` is locked by \(mention: user)" + (reason.map { ": \(user: $0)" } ?? "") + ". Only you can change it until you unlock it."),
            in: conversation, operation: nil)
        return .completed(nil)
    }

    func unlock(_ environment: EnvironmentSettings, reason: String?, user: UserID, conversation: Conversation) async throws -> CommandOutcome {
        guard let released = try await services.store.releaseLock(environment: environment.name) else {
            let refusal = Refusal("`\(environment.name)` is not locked.")
            return try await refuse(refusal, in: conversation)
        }
        try await audit(user, "unlock", environment.name, nil, "succeeded",
                        detail: "held by \(released.holder)" + (reason.map { ": \($0)" } ?? ""))
        try await services.chat.post(
            Reply(.success, "🔓 `\(environment.name)` is unlocked" + (released.holder == user ? "." : " (it was held by \(mention: released.holder)).")),
            in: conversation, operation: nil)
        return .completed(nil)
    }

    func cancel(_ id: OperationID, user: UserID, conversation: Conversation) async throws -> CommandOutcome {
        guard let operation = try await services.store.operation(id) else {
            let refusal = Refusal("There is no operation \(id).", hint: "`/infer status` lists the operations in flight.")
            return try await refuse(refusal, in: conversation)
        }
        guard !operation.state.isFinished else {
            let refusal = Refusal("\(id) has already ended: \(operation.state.rawValue).")
            return try await refuse(refusal, in: conversation)
        }
        try await audit(user, "cancel", operation.environment, id.rawValue, "accepted", operation: id)
        if await running.cancel(id) {
            try await services.chat.post(Reply(.warning, "Cancelling \(id); its thread reports when it has stopped."), in: conversation, operation: nil)
            return .completed(id)
        }
        // Not running in this daemon: it was left behind by a daemon that stopped. Close its record.
        var closed = operation
        closed.state = .cancelled
        closed.outcome = "Cancelled by @\(user): no daemon was running it."
        closed.updatedAt = services.time.now()
        do {
            try await services.store.update(closed, from: operation.state)
        } catch is OperationAlreadyEnded, is OperationStateConflict {
            // It moved on since it was read: a daemon is running it after all, or it just ended.
            let refusal = Refusal(
                "\(id) changed while it was being closed; nothing was changed.",
                hint: "`/infer status` shows where it is now; cancel it again if it is still needed.")
            return try await refuse(refusal, in: conversation)
        }
        try await services.store.appendJournal(JournalEntry(operation: id, at: services.time.now(), state: .cancelled, message: closed.outcome!))
        try await services.chat.post(
            Reply(.warning, "\(id) was not running in this daemon; its record is now closed as cancelled.",
                  hint: "`/infer status` shows where the release stands; a release stuck in pending-* is recovered with `/infer rollback`."),
            in: conversation, operation: nil)
        return .completed(id)
    }

    // MARK: audit

    /// Posts a refusal and, for commands that change something, audits it: nothing ran.
    func refuse(
        _ refusal: any UserFacingError, in conversation: Conversation,
        audit subject: (user: UserID, action: String, environment: String?, subject: String?)? = nil
    ) async throws -> CommandOutcome {
        if let subject {
            try await audit(subject.user, subject.action, subject.environment, subject.subject, "refused", detail: refusal.message)
        }
        try await services.chat.post(.error(refusal), in: conversation, operation: nil)
        return .refused(refusal.message)
    }

    func audit(_ user: UserID, _ action: String, _ environment: String?, _ subject: String?, _ outcome: String,
               operation: OperationID? = nil, detail: String? = nil) async throws {
        try await services.store.appendAudit(
            AuditEntry(at: services.time.now(), actor: user, action: action, environment: environment, subject: subject,
                       outcome: outcome, operation: operation, detail: detail.map(services.redactor.redact)).stamped()
        )
    }

    func subject(of command: ValidatedCommand) -> String? {
        switch command {
        case .deploy(let model, _, _, _, _, _), .rollback(let model, _, _), .history(let model, _),
            .routing(_, let model, _, _), .remove(let model, _, _):
            model.name
        case .status(let model, _): model?.name
        case .cancel(let id): id.rawValue
        case .help(let verb): verb
        case .lock, .unlock: nil
        }
    }
}

/// The operations this daemon is running, so `/infer cancel` can stop them.
///
/// An operation is reserved before its record is written and its task attached once it exists; a
/// cancel in between is remembered and applied when the task is attached.
actor RunningOperations {
    var tasks: [OperationID: Task<CommandOutcome, any Error>?] = [:]
    var cancelRequested: Set<OperationID> = []

    func reserve(_ id: OperationID) { tasks[id] = .some(nil) }

    func attach(_ id: OperationID, _ task: Task<CommandOutcome, any Error>) {
        tasks[id] = task
        if cancelRequested.remove(id) != nil { task.cancel() }
    }

    func remove(_ id: OperationID) {
        tasks[id] = nil
        cancelRequested.remove(id)
    }

    /// Whether the operation runs in this daemon; if so it is (or will be) cancelled.
    func cancel(_ id: OperationID) -> Bool {
        guard let entry = tasks[id] else { return false }
        if let task = entry { task.cancel() } else { cancelRequested.insert(id) }
        return true
    }
}
