import Foundation
import Synchronization
import Logging

/// The front half of the fixed pipeline: parse → validate → authorize → plan → record, for one
/// inbound chat event, answered at once. A command that changes something becomes an operation
/// recorded with its whole request as data; the `OperationRunner` runs it. No transport ever waits
/// for an operation here: `handle(_:waiting:)` waits only when asked (the piped console, `exec`).
public final class Intake: Sendable {
    public let configuration: Configuration
    public let catalog: CommandCatalog
    public let runner: OperationRunner
    let services: Services
    let parser: CommandParser
    let validator: CommandValidator
    /// How long event ids are kept to drop redeliveries (chat platforms redeliver for minutes).
    let eventRetention: Duration
    let lastForgotten = Mutex<Date?>(nil)
    /// Status and history asked for at the same time share their reads of Helm and the cluster.
    let reads = SharedReads()
    /// Help replies, made once per verb and group of users.
    let helpReplies = HelpReplies()

    public init(configuration: Configuration, catalog: CommandCatalog, services: Services, runner: OperationRunner,
                eventRetention: Duration = .seconds(3600)) {
        self.configuration = configuration
        self.catalog = catalog
        self.services = services.redacting(for: configuration)
        self.runner = runner
        self.parser = CommandParser(catalog: catalog)
        self.validator = CommandValidator(configuration: configuration, catalog: catalog)
        self.eventRetention = eventRetention
    }

    /// What the intake did with an event.
    public enum Acknowledgement: Hashable, Sendable {
        /// The event id was seen before: nothing was done again.
        case duplicate
        /// Answered in full (help, status, a refusal, a lock).
        case answered(CommandOutcome)
        /// An operation was recorded and its status card posted; the runner runs it.
        case accepted(OperationID)
        /// An operation was recorded to wait for approval; it runs once approved.
        case awaitingApproval(OperationID)
    }

    /// Accepts one event and answers at once. Until the event is acknowledged (its operation's status
    /// card posted, or its id recorded for one answered in full) the runner holds back the operations
    /// it was given since, so a burst is acknowledged before it is worked on.
    public func accept(_ event: ChatEvent) async -> Acknowledgement {
        await runner.acknowledging.handling { acknowledgement in
            await Self.$acknowledgement.withValue(acknowledgement) {
                await CommandOrigin.$current.withValue(CommandOrigin(channel: event.channel, osUser: event.osUser, user: event.user)) {
                    await acceptEvent(event)
                }
            }
        }
    }

    /// The acknowledgement of the event being accepted.
    @TaskLocal static var acknowledgement: Acknowledging.Event?

    /// Accepts a command and, with `waiting`, waits until the operation it starts has ended: the piped
    /// console and `inferops exec` read like conversations. An operation that waits for someone else
    /// (an approval) does not hold the caller.
    public func handle(_ command: IncomingCommand, waiting: Bool = true) async -> CommandOutcome {
        let event = ChatEvent(
            id: command.event ?? "local:" + OperationID.random().rawValue, kind: .command(command.text),
            user: command.user, channel: command.channel, thread: command.thread, osUser: command.osUser)
        switch await accept(event) {
        case .duplicate: return .refused("already handled")
        case .answered(let outcome): return outcome
        case .accepted(let id):
            guard waiting else { return .completed(id) }
            return await runner.outcome(of: id)
        case .awaitingApproval(let id):
            // It waits for someone else: the caller goes on.
            return .awaitingApproval(id)
        }
    }

    func acceptEvent(_ event: ChatEvent) async -> Acknowledgement {
        let conversation = Conversation(channel: event.channel, thread: event.thread)
        let text: String
        switch event.kind {
        case .command(let command), .mention(let command):
            text = command
        case .action(let action):
            guard let decision = ApprovalDecision(rawValue: action.name) else {
                return await answer(event) {
                    try await self.refuse(
                        Refusal("The `\(action.name)` action on \(action.operation) is not available here."),
                        in: conversation)
                }
            }
            // A button takes the command's path: the same permission, the same rules.
            let environment = (try? await services.store.operation(action.operation))?.environment ?? "*"
            do {
                try configuration.policy.authorize(event.user, "approve", in: environment, verb: decision.rawValue)
                try checkChannel(environment, channel: event.channel)
            } catch let denial as any UserFacingError {
                return await answer(event, denied: denial, action: decision.rawValue, environment: environment,
                                    subject: action.operation.rawValue)
            } catch {
                return .answered(await report(error, in: conversation))
            }
            return await answer(event) {
                try await self.decide(decision, action.operation, reason: nil, digest: action.value, user: event.user,
                                      conversation: conversation)
            }
        }
        do {
            let parsed: ParsedCommand
            let validated: ValidatedCommand
            do {
                parsed = try parser.parse(text)
                validated = try validator.validate(parsed)
            } catch let error as any UserFacingError {
                return await answer(event) { try await self.refuse(error, in: conversation) }
            }
            let spec = catalog.spec(named: parsed.verb)!
            let request = OperationRequest(parsed, requester: event.user, channel: event.channel, thread: event.thread,
                                           osUser: event.osUser, event: event.id)
            do {
                try await authorize(validated, spec: spec, user: event.user)
                try await checkChannel(validated, spec: spec, channel: event.channel)
                try authorizeBreakGlass(validated, parsed: parsed, user: event.user)
            } catch let denial as BreakGlassDenied {
                return await answer(event, denied: denial, action: spec.name, environment: denial.environment,
                                    subject: subject(of: validated))
            } catch let denial as Denial {
                return await answer(event, denied: denial, action: spec.name, environment: validated.environment?.name,
                                    subject: subject(of: validated))
            } catch let refusal as WrongChannel {
                return await answer(event, denied: refusal, action: spec.name, environment: refusal.environment,
                                    subject: subject(of: validated))
            }
            return try await execute(validated, spec: spec, request: request, event: event, conversation: conversation)
        } catch {
            return .answered(await report(error, in: conversation))
        }
    }

    /// Answers an event that starts no operation: its id is recorded first, so a redelivery is dropped.
    func answer(_ event: ChatEvent, _ body: @escaping @Sendable () async throws -> CommandOutcome) async -> Acknowledgement {
        let conversation = Conversation(channel: event.channel, thread: event.thread)
        do {
            guard try await services.store.accept(event: event.id, at: services.time.now(), starting: nil) else {
                return .duplicate
            }
            // Recorded: the answer that follows may take its time (Helm, the cluster).
            Self.acknowledgement?.end()
            try await forgetOldEvents()
            return .answered(try await body())
        } catch {
            return .answered(await report(error, in: conversation))
        }
    }

    /// Answers an event that authorization refused: audited as denied, the denial posted.
    func answer(_ event: ChatEvent, denied denial: any UserFacingError, action: String, environment: String?, subject: String?)
        async -> Acknowledgement
    {
        await answer(event) {
            try await self.audit(event.user, action, environment, subject, "denied", detail: denial.message)
            try await self.services.chat.post(Self.privately(.error(denial)), in: Conversation(channel: event.channel, thread: event.thread),
                                              operation: nil)
            return .refused(denial.message)
        }
    }

    /// Drops event ids older than the retention, at most once a minute (not a write per command).
    func forgetOldEvents() async throws {
        let now = services.time.now()
        let due = lastForgotten.withLock { last -> Bool in
            guard last.map({ now.timeIntervalSince($0) >= 60 }) ?? true else { return false }
            last = now
            return true
        }
        if due { try await services.store.forgetEvents(before: now.addingTimeInterval(-eventRetention.seconds)) }
    }

    /// Says what went wrong: a port's classified failure as it is, anything else by reference only.
    func report(_ error: any Error, in conversation: Conversation) async -> CommandOutcome {
        switch error {
        case let error as any UserFacingError:
            // A port's own classified failure (e.g. the cluster is unreachable) is safe to show.
            _ = try? await services.chat.post(Self.privately(.error(error)), in: conversation, operation: nil)
            return .failed(nil, error.message)
        case is CancellationError:
            // The daemon (or `exec`) is stopping: not an internal error, and nothing more will run.
            _ = try? await services.chat.post(
                Self.privately(Reply(.warning, "Stopped: InferOps is shutting down.",
                      hint: "`/infer status` shows where things stand; an operation in its thread says how it ended.")),
                in: conversation, operation: nil)
            return .failed(nil, "cancelled")
        default:
            // Not user-facing: log it in full with a correlation id, show only the id.
            let correlation = OperationID.random().rawValue.replacingOccurrences(of: "op-", with: "err-")
            services.logger.error("command failed", metadata: ["correlation": "\(correlation)", "error": "\(error)"])
            _ = try? await services.chat.post(
                Self.privately(Reply(.failure, "Something went wrong inside InferOps (reference \(correlation)).",
                      hint: "The daemon's log has the details under that reference.")),
                in: conversation, operation: nil
            )
            return .failed(nil, "internal error \(correlation)")
        }
    }

    // MARK: authorize

    func authorize(_ command: ValidatedCommand, spec: CommandSpec, user: UserID) async throws {
        switch command {
        case .cancel(let id), .decide(_, let id, _):
            let environment = try await services.store.operation(id)?.environment ?? "*"
            try configuration.policy.authorize(user, spec.permission, in: environment, verb: spec.name)
        case .status(_, nil), .slo(nil, _):
            // Status across environments shows only those the user may view; it needs one of them.
            let viewable = configuration.environmentNames.contains { configuration.policy.allows(user, spec.permission, in: $0) }
            if !viewable {
                try configuration.policy.authorize(user, spec.permission, in: configuration.environmentNames.first ?? "*", verb: spec.name)
            }
        case .help:
            break
        case .deploy(_, let environment, _, _, _, true, _):
            // `--register` changes the router too, which takes the register permission.
            try configuration.policy.authorize(user, spec.permission, in: environment.name, verb: spec.name)
            try configuration.policy.authorize(user, "register", in: environment.name, verb: "deploy --register")
        default:
            try configuration.policy.authorize(user, spec.permission, in: command.environment?.name ?? "*", verb: spec.name)
        }
    }

    /// `--break-glass` (rollback only, by its declaration) is for the environment's break-glass role.
    func authorizeBreakGlass(_ command: ValidatedCommand, parsed: ParsedCommand, user: UserID) throws(BreakGlassDenied) {
        guard parsed.flag("break-glass"), let environment = command.environment else { return }
        guard let breakGlass = environment.breakGlass, configuration.policy.isMember(user, of: breakGlass.role) else {
            throw BreakGlassDenied(user: user, environment: environment.name, role: environment.breakGlass?.role)
        }
    }

    /// The separation stage: a change to an environment with `channels` is taken only from one of
    /// them (production's changes from production's channels); reading answers everywhere.
    func checkChannel(_ command: ValidatedCommand, spec: CommandSpec, channel: String) async throws {
        guard spec.changes else { return }
        switch command {
        case .cancel(let id), .decide(_, let id, _):
            if let environment = try await services.store.operation(id)?.environment {
                try checkChannel(environment, channel: channel)
            }
        default:
            if let environment = command.environment { try checkChannel(environment.name, channel: channel) }
        }
    }

    func checkChannel(_ environment: String, channel: String) throws(WrongChannel) {
        guard let settings = configuration.environments[environment], !settings.acceptsChanges(from: channel) else { return }
        throw WrongChannel(environment: environment, channel: channel, allowed: settings.channels)
    }

    // MARK: execute

    func execute(_ command: ValidatedCommand, spec: CommandSpec, request: OperationRequest, event: ChatEvent,
                 conversation: Conversation) async throws -> Acknowledgement {
        let reports = Reports(services: services, configuration: configuration, catalog: catalog, reads: reads,
                              helpReplies: helpReplies)
        let user = request.requester
        switch command {
        case .help(let verb):
            return await answer(event) {
                try await self.services.chat.post(reports.help(verb: verb, user: user), in: conversation, operation: nil)
                return .completed(nil)
            }
        case .status(let model, let environment):
            return await answer(event) {
                let status = try await reports.status(model: model, environment: environment, user: user)
                try await self.services.chat.post(status, in: conversation, operation: nil)
                // A status that could not reach a cluster is a failure, so scripts see it.
                return status.tone == .failure ? .failed(nil, status.title.plainText) : .completed(nil)
            }
        case .slo(let environment, let days):
            return await answer(event) {
                let names = environment.map { [$0.name] }
                    ?? self.configuration.environmentNames.filter { self.configuration.policy.allows(user, spec.permission, in: $0) }
                let report = try await ServiceLevels.read(from: self.services.store, environments: names, days: days,
                                                          now: self.services.time.now())
                try await self.services.chat.post(ServiceLevels.reply(report), in: conversation, operation: nil)
                return .completed(nil)
            }
        case .history(let model, let environment):
            return await answer(event) {
                try await self.services.chat.post(try await reports.history(model: model, environment: environment),
                                                  in: conversation, operation: nil)
                return .completed(nil)
            }
        case .lock(let environment, let reason):
            return await answer(event) { try await self.lock(environment, reason: reason, user: user, conversation: conversation) }
        case .unlock(let environment, let reason):
            return await answer(event) { try await self.unlock(environment, reason: reason, user: user, conversation: conversation) }
        case .cancel(let id):
            return await answer(event) { try await self.cancel(id, user: user, conversation: conversation) }
        case .decide(let decision, let id, let reason):
            let acknowledgement = await answer(event) {
                try await self.decide(decision, id, reason: reason, digest: nil, user: user, conversation: conversation)
            }
            // The approval that let it run: the piped console and `exec` wait for it like for a deploy.
            if case .answered(.completed(id)) = acknowledgement, await runner.isStarting(id) { return .accepted(id) }
            return acknowledgement
        case .decideWaiting(let decision, let model, let environment, let reason):
            let acknowledgement = await answer(event) {
                let waiting = try await self.services.store.unfinishedSummaries().filter {
                    $0.state == .awaitingApproval && $0.environment == environment.name && $0.model == model.name
                }
                guard waiting.count == 1, let id = waiting.first?.id else {
                    let refusal = waiting.isEmpty
                        ? Refusal("Nothing on \(model.name) waits for approval in `\(environment.name)`.",
                                  hint: "`/infer status \(model.name) in \(environment.name)` shows what is in flight.")
                        : Refusal("\(waiting.count) operations on \(model.name) wait for approval in `\(environment.name)`: "
                                  + waiting.map(\.id.rawValue).joined(separator: ", ") + ".",
                                  hint: "Name the one you mean: `/infer \(decision.rawValue) op-…`.")
                    return try await self.refuse(refusal, in: conversation,
                                                 audit: (user, decision.rawValue, environment.name, model.name))
                }
                return try await self.decide(decision, id, reason: reason, digest: nil, user: user, conversation: conversation)
            }
            if case .answered(.completed(let id?)) = acknowledgement, await runner.isStarting(id) { return .accepted(id) }
            return acknowledgement
        case .deploy(let model, let environment, _, _, true, _, _):
            return await answer(event) {
                let plan: DeployPlan
                do {
                    plan = try OperationPlanning.deployPlan(command, reading: self.services.planContents)
                } catch let refusal as Refusal {
                    return try await self.refuse(refusal, in: conversation, audit: (user, "deploy", environment.name, model.name))
                }
                return try await self.dryRunDeploy(plan, user: user, conversation: conversation)
            }
        case .deploy(let model, let environment, _, _, _, _, _), .rollback(let model, let environment, _),
            .routing(_, let model, let environment, _), .remove(let model, let environment, _),
            .promote(let model, _, let environment):
            let kind = OperationPlanning.kind(of: command)!
            if !kind.deploysPlan && kind != .rollback && kind != .remove,
               Registrar(services: services, environment: environment) == nil {
                return await answer(event) {
                    try await self.refuse(Refusal("`\(environment.name)` has no router configured."), in: conversation)
                }
            }
            // Breaking the glass (authorized above) is the one way past an approval.
            let breakGlass = request.parsed.flag("break-glass") ? environment.breakGlass : nil
            let approval = environment.approval.requires(spec.name) && breakGlass == nil ? environment.approval : nil
            var operation = OperationRecord(
                id: .random(), kind: kind, requester: user, environment: environment.name, model: model.name,
                target: environment.target(model: model.name), state: .planned,
                command: services.redactor.redact(request.parsed.canonical(spec: spec)),
                createdAt: services.time.now(), request: request)
            var deployPlan: DeployPlan?
            if kind.deploysPlan {
                let plan: DeployPlan
                do {
                    plan = kind == .promote
                        ? try await OperationPlanning.promotionPlan(command, pinned: nil, store: services.store,
                                                                    reading: services.planContents, now: services.time.now())
                        : try OperationPlanning.deployPlan(command, reading: services.planContents)
                } catch let refusal as Refusal {
                    return await answer(event) {
                        try await self.refuse(refusal, in: conversation, audit: (user, kind.rawValue, environment.name, model.name))
                    }
                }
                operation.plan = plan.canonical
                operation.planDigest = plan.digest
                deployPlan = plan
            }
            do {
                if let approval {
                    return try await recordAwaitingApproval(operation, policy: approval, plan: deployPlan, event: event)
                }
                if let breakGlass {
                    return try await recordBrokenGlass(operation, breakGlass: breakGlass, event: event)
                }
                return try await record(operation, event: event)
            } catch let locked as EnvironmentLocked {
                return await answer(event) {
                    try await self.refuse(Self.refusal(locked.lock), in: conversation,
                                          audit: (user, kind.rawValue, environment.name, model.name))
                }
            }
        }
    }

    /// Records the operation with the event that started it (one transaction: a redelivered event
    /// records nothing; an environment locked by someone else refuses it), audited and owned by this
    /// daemon's runner so no other picks it up meanwhile; posts its status card and hands both to the
    /// runner, which stores the card's reference.
    func record(_ operation: OperationRecord, event: ChatEvent, audited outcome: String = "accepted",
                detail: String? = nil) async throws -> Acknowledgement {
        var operation = operation
        operation.owner = runner.owner(at: services.time.now())
        let now = services.time.now()
        let acceptance = Acceptance(
            operation,
            journal: JournalEntry(
                operation: operation.id, at: now, state: .planned,
                message: "\(operation.kind.rawValue) requested by \(operation.requester): \(operation.command)"),
            audit: auditEntry(operation.requester, operation.kind.rawValue, operation.environment, operation.model,
                              outcome, operation: operation.id, detail: detail),
            respectsLocks: configuration.environments[operation.environment]?.whenLocked != .queue)
        guard try await services.store.accept(event: event.id, at: now, starting: acceptance) else {
            return .duplicate
        }
        var card: MessageRef?
        do {
            card = try await services.chat.post(
                StatusCard.reply(for: operation), in: Conversation(channel: event.channel, thread: event.thread),
                operation: operation.id)
        } catch {
            // Recorded but not announced: the runner still runs it, and posts the card itself.
            services.logger.warning("status card not posted", metadata: ["operation": "\(operation.id)", "error": "\(error)"])
        }
        Self.acknowledgement?.end()
        await runner.submit(operation.id, card: card)
        try await forgetOldEvents()
        return .accepted(operation.id)
    }

    /// A rollback run without a second approver, in an emergency: audited as `break-glass` with its
    /// reason, and announced in the environment's break-glass channel with a request for review.
    func recordBrokenGlass(_ operation: OperationRecord, breakGlass: BreakGlassSettings, event: ChatEvent)
        async throws -> Acknowledgement
    {
        let reason = operation.request?.reason ?? ""
        let acknowledgement = try await record(operation, event: event, audited: "break-glass", detail: reason)
        guard case .accepted(let id) = acknowledgement else { return acknowledgement }
        let reviewers = configuration.policy.rolesGranting("approve", in: operation.environment)
        var notice = Reply(
            .failure,
            "🚨 Break glass in \(operation.environment): \(mention: operation.requester) is rolling back "
                + "\(operation.model ?? "a model") without a second approver: \(user: reason)",
            lines: ["Review requested: someone with `approve` in `\(operation.environment)`"
                    + (reviewers.isEmpty ? "" : " (" + reviewers.map { "`\($0)`" }.joined(separator: ", ") + ")")
                    + " should read its thread and follow up; the audit log marks it `break-glass`."],
            fields: [Reply.Field("operation", id.rawValue), Reply.Field("command", "`/infer \(operation.command)`"),
                     Reply.Field("asked in", event.channel)])
        notice.hint = "`/infer status \(operation.model ?? "") in \(operation.environment)` shows where it stands."
        do {
            try await services.chat.post(notice, in: Conversation(channel: breakGlass.channel, thread: nil), operation: nil)
        } catch {
            // The rollback goes on: an emergency is not held up by the notice. The audit row stands.
            services.logger.error("break-glass notice not posted", metadata: ["operation": "\(id)", "error": "\(error)"])
        }
        return acknowledgement
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


    // MARK: locks and cancel

    /// Why an operation in a locked environment is refused.
    static func refusal(_ lock: EnvironmentLock) -> Refusal {
        Refusal(
            "`\(lock.environment)` is locked by \(mention: lock.holder)" + (lock.reason.map { ": \(user: $0)" } ?? "") + ".",
            hint: "Ask them to `/infer unlock \(lock.environment)` when they are done."
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
        // Truthful about who else may act: the lock stops others' operations, not others' unlock.
        let unlockers = configuration.policy.rolesGranting("unlock", in: environment.name)
        let others = unlockers.isEmpty
            ? "" : " or anyone with `unlock` there (role\(unlockers.count == 1 ? "" : "s") "
                + unlockers.map { "`\($0)`" }.joined(separator: ", ") + ")"
        try await services.chat.post(
            Reply(.success, "🔒 `\(environment.name)` is locked by \(mention: user)" + (reason.map { ": \(user: $0)" } ?? "")
                  + ". Until it is unlocked, changes there by anyone else are "
                  + (environment.whenLocked == .queue ? "queued" : "refused") + "; you\(others) can unlock it."),
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
        runner.lockReleased()
        try await services.chat.post(
            Reply(.success, "🔓 `\(environment.name)` is unlocked" + (released.holder == user ? "." : " (it was held by \(mention: released.holder)).")),
            in: conversation, operation: nil)
        return .completed(nil)
    }

    /// Records the cancel in the store; the operation's owner carries it out (at once when that is
    /// this daemon, within a heartbeat when it is another). One with no live owner is taken over by
    /// this daemon's runner, which puts its release in order before closing it.
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
        if operation.state == .awaitingApproval {
            // Nothing ran and nobody owns it: it ends here, and no approval can start it later.
            let reporter = OperationReporter(operation: operation, services: services,
                                             channel: operation.request?.channel ?? conversation.channel)
            do {
                try await reporter.finish(.cancelled, Reply(.warning, "Cancelled by \(mention: user) while it waited for approval; it will not run."))
            } catch is OperationStateConflict {
                return try await refuse(Refusal("\(id) was decided meanwhile; `/infer cancel \(id)` again to stop it."), in: conversation)
            } catch is OperationAlreadyEnded {
                return try await refuse(Refusal("\(id) has already ended."), in: conversation)
            }
            try await services.chat.post(Reply(.warning, "Cancelled \(id); it will not run."), in: conversation, operation: nil)
            return .completed(id)
        }
        let where_ = await runner.cancel(id, by: user)
        let message: String
        switch where_ {
        case .here:
            message = "Cancelling \(id); its thread reports when it has stopped."
        case .elsewhere(let owner):
            message = "Cancelling \(id); the daemon running it (\(owner.description)) stops it within a few seconds, "
                + "and its thread reports when it has."
        case .takenOver:
            message = "Cancelling \(id): the daemon that ran it is gone, so this one puts its release in order "
                + "and closes it; its thread reports how it ended."
        case .ended(let state):
            let refusal = Refusal("\(id) has already ended: \(state.rawValue).")
            return try await refuse(refusal, in: conversation)
        }
        try await services.chat.post(Reply(.warning, message), in: conversation, operation: nil)
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
        try await services.chat.post(Self.privately(.error(refusal)), in: conversation, operation: nil)
        return .refused(refusal.message)
    }

    /// `reply`, to be shown only to the one whose command it answers (a refusal concerns nobody else).
    static func privately(_ reply: Reply) -> Reply {
        var reply = reply
        reply.privateTo = CommandOrigin.current?.user
        return reply
    }

    func audit(_ user: UserID, _ action: String, _ environment: String?, _ subject: String?, _ outcome: String,
               operation: OperationID? = nil, detail: String? = nil) async throws {
        try await services.store.appendAudit(
            auditEntry(user, action, environment, subject, outcome, operation: operation, detail: detail))
    }

    func auditEntry(_ user: UserID, _ action: String, _ environment: String?, _ subject: String?, _ outcome: String,
                    operation: OperationID? = nil, detail: String? = nil) -> AuditEntry {
        AuditEntry(at: services.time.now(), actor: user, action: action, environment: environment, subject: subject,
                   outcome: outcome, operation: operation, detail: detail.map(services.redactor.redact)).stamped()
    }

    func subject(of command: ValidatedCommand) -> String? {
        switch command {
        case .deploy(let model, _, _, _, _, _, _), .rollback(let model, _, _), .history(let model, _),
            .routing(_, let model, _, _), .remove(let model, _, _), .promote(let model, _, _):
            model.name
        case .status(let model, _): model?.name
        case .cancel(let id), .decide(_, let id, _): id.rawValue
        case .decideWaiting(_, let model, _, _): model.name
        case .help(let verb): verb
        case .lock, .unlock, .slo: nil
        }
    }
}
