import Crypto
import Foundation

/// Operations that wait for a second person: recorded as `awaiting_approval` with a request in
/// their thread, then approved (by enough distinct approvers, none of them the requester, each
/// holding `approve` in the environment), denied, or expired. Commands and buttons take the same
/// path, and every request, decision and refusal is audited.
extension Intake {
    /// The digest an approval binds to: a deploy's plan digest; for the other verbs, the digest of
    /// what they change (kind, environment, model, release and the command as parsed).
    static func approvalDigest(of operation: OperationRecord) -> String {
        if let digest = operation.planDigest { return digest }
        var object: [String: JSONValue] = [
            "kind": .string(operation.kind.rawValue),
            "environment": .string(operation.environment),
            "command": .string(operation.command),
        ]
        if let model = operation.model { object["model"] = .string(model) }
        if let target = operation.target {
            object["release"] = .string(target.release)
            object["namespace"] = .string(target.namespace)
        }
        return "sha256:" + hex(SHA256.hash(data: Data(JSONValue.object(object).canonical.utf8)))
    }

    /// Records an operation that waits for approval: no owner (no runner may start it), its request
    /// with the digest, the approvals needed and the expiry, in the same transaction as the event.
    /// Posts its status card and the approval request in its thread.
    func recordAwaitingApproval(
        _ operation: OperationRecord, policy: ApprovalPolicy, plan: DeployPlan?, event: ChatEvent
    ) async throws -> Acknowledgement {
        var operation = operation
        let now = services.time.now()
        let digest = Self.approvalDigest(of: operation)
        operation.planDigest = digest
        operation.state = .awaitingApproval
        operation.owner = nil
        operation.approval = ApprovalRequest(
            digest: digest, required: policy.approvals, requestedAt: now,
            expiresAt: now.addingTimeInterval(policy.validFor.seconds))
        let acceptance = Acceptance(
            operation,
            journal: JournalEntry(
                operation: operation.id, at: now, state: .awaitingApproval,
                message: "\(operation.kind.rawValue) requested by \(operation.requester): \(operation.command); "
                    + "awaiting \(policy.approvals.counting("approval"))"),
            audit: auditEntry(operation.requester, operation.kind.rawValue, operation.environment, operation.model,
                              "approval-requested", operation: operation.id, detail: digest),
            respectsLocks: configuration.environments[operation.environment]?.whenLocked != .queue)
        guard try await services.store.accept(event: event.id, at: now, starting: acceptance) else {
            return .duplicate
        }
        let conversation = Conversation(channel: event.channel, thread: event.thread)
        do {
            let card = try await services.chat.post(StatusCard.reply(for: operation), in: conversation, operation: operation.id)
            operation.card = card
            operation.thread = card.threadRoot
        } catch {
            services.logger.warning("status card not posted", metadata: ["operation": "\(operation.id)", "error": "\(error)"])
        }
        Self.acknowledgement?.end()
        var failure: (any Error)?
        do {
            // Where the request is, so its buttons can be replaced by the decision.
            let posted = try await services.chat.post(
                Self.approvalRequest(operation, plan: plan, running: await Self.running(operation, services: services),
                                     configuration: configuration, redactor: services.redactor),
                in: Conversation(channel: event.channel, thread: operation.thread ?? event.thread), operation: operation.id)
            operation.approval?.message = posted
        } catch {
            failure = error
        }
        if operation.card != nil {
            do {
                try await services.store.update(operation, from: .awaitingApproval)
            } catch {
                services.logger.warning("status card not recorded", metadata: ["operation": "\(operation.id)", "error": "\(error)"])
            }
        }
        if let failure { throw failure }
        try await forgetOldEvents()
        return .awaitingApproval(operation.id)
    }

    /// What runs now where an operation would change it: Helm's release and the values of the last
    /// deploy that succeeded there, to show an approver what changes. Unknown parts are left out.
    static func running(_ operation: OperationRecord, services: Services) async -> RunningRelease {
        var running = RunningRelease()
        if let target = operation.target {
            running.release = try? await services.releases.status(target)
        }
        if let model = operation.model,
           let last = try? await services.store.recentOperations(model: model, environment: operation.environment, limit: 20)
            .first(where: { $0.kind.deploysPlan && $0.state == .succeeded }) {
            running.values = last.plan?["values"]
            running.operation = last.id
        }
        return running
    }

    /// What the approver sees: what will change, who asked, the digest, until when, and the actions.
    /// - Parameter redactor: the values diff shows values; whatever secrets they hold (the plan's
    ///   and the running ones') are redacted, as a dry run's values are.
    static func approvalRequest(_ operation: OperationRecord, plan: DeployPlan?, running: RunningRelease = RunningRelease(),
                                configuration: Configuration, redactor: SecretRedactor) -> Reply {
        let request = operation.approval!
        var fields = [Reply.Field("requested by", "\(mention: operation.requester)" as RichText),
                      Reply.Field("command", "`/infer \(operation.command)`")]
        var lines: [String] = []
        if let release = running.release {
            fields.append(Reply.Field("running now", "revision \(release.revision) (\(release.state))"
                                      + (release.chart.map { ", chart \($0)" } ?? "")))
        } else if operation.target != nil {
            fields.append(Reply.Field("running now", "nothing: this installs it"))
        }
        if let plan {
            if let promotion = plan.promotion {
                fields.append(Reply.Field(
                    "promoted from",
                    "\(promotion.operation) in \(promotion.environment), plan \(DeployPlan.short(promotion.digest))"))
                fields.append(Reply.Field(
                    "its verification",
                    "answered in \(promotion.latency.spoken) at \(Reports.timestamp(promotion.verifiedAt))"
                        + (promotion.revision.map { ", revision \($0)" } ?? "")))
                if let criteria = plan.verification {
                    fields.append(Reply.Field(
                        "success criteria", "\(criteria.warmupRequests) warm-up requests, test completion within \(criteria.latencyTarget.spoken)"))
                }
            }
            fields.append(Reply.Field("model values", DeployPlan.short(plan.modelValuesDigest)
                                      + (plan.promotion.map { $0.valuesDigest == plan.modelValuesDigest ? " (same as the source)" : " (differs from the source)" } ?? "")))
            if let version = plan.contents?.chartVersion, version != plan.chartVersion {
                fields.append(Reply.Field("chart", plan.chart + " \(version)" + (plan.chartVersion == nil ? " (as the chart says)" : " (asked: \(plan.chartVersion!))")))
            } else {
                fields.append(Reply.Field("chart", plan.chart + (plan.chartVersion.map { " \($0)" } ?? " (version from the chart)")))
            }
            if let values = running.values {
                let shown = redactor.adding(SecretRedactor.sensitiveStrings(in: plan.values) + SecretRedactor.sensitiveStrings(in: values))
                let diff = ValuesDiff.lines(from: values, to: plan.values).map(shown.redact)
                lines.append(diff.isEmpty
                    ? "Values: the same as the last successful deploy here (\(running.operation?.rawValue ?? "?"))."
                    : "Values against the last successful deploy here (\(running.operation?.rawValue ?? "?")):")
                lines += diff.map { "  " + $0 }
            } else if running.release != nil {
                lines.append("Values: InferOps has no record of what runs here, so no diff is shown.")
            }
            if case .object(let image)? = plan.values["image"],
               case .string(let repository)? = image["repository"], case .string(let tag)? = image["tag"] {
                fields.append(Reply.Field("image", "\(repository):\(tag)"))
            }
            fields.append(Reply.Field("model", "\(plan.model.modelID)@\(plan.model.revision)"))
            // What the run may adapt when the GPUs are short (`CapacityCheck.adapt`), approved with the rest.
            var replicas = "\(plan.replicas) × \(plan.gpusPerReplica.counting("GPU"))"
            if let fewest = plan.minReplicas { replicas += ", down to \(fewest) if the GPUs are short" }
            if plan.replicas >= 2 { replicas += "; running replicas replaced one at a time if no GPU is spare for a surge" }
            fields.append(Reply.Field("replicas", replicas))
            fields.append(Reply.Field("values files", plan.valuesFiles.isEmpty ? "none" : plan.valuesFiles.joined(separator: ", ")))
        }
        if let target = operation.target { fields.append(Reply.Field("release", target.release)) }
        let routing: String? = switch operation.kind {
        case .register: "adds \(operation.model ?? "the model") to the router"
        case .deregister: "takes \(operation.model ?? "the model") out of the router"
        case .enable: "routes requests for \(operation.model ?? "the model") again"
        case .disable: "denies every request for \(operation.model ?? "the model")"
        case .remove: "takes \(operation.model ?? "the model") out of the router, then uninstalls it"
        case .deploy where operation.request?.parsed.flag("register") == true: "routes the model once verified"
        default: nil
        }
        if let routing { fields.append(Reply.Field("router", routing)) }
        fields.append(Reply.Field("plan digest", request.digest))
        fields.append(Reply.Field("approvals", "\(request.approvals.count) of \(request.required)"))
        fields.append(Reply.Field("valid until", Reports.timestamp(request.expiresAt)))
        let approvers = configuration.policy.rolesGranting("approve", in: operation.environment)
        var reply = Reply(
            .warning, "Approval needed: \(operation.kind.rawValue) in \(operation.environment) (\(operation.id))",
            lines: ["Nothing runs until \(request.required.counting("person", plural: "people")) other than the requester "
                + (request.required == 1 ? "approves" : "approve") + " this exact plan."]
                + lines,
            fields: fields,
            hint: approvers.isEmpty
                ? "No role grants `approve` in `\(operation.environment)`: ask an administrator to add one."
                : "Anyone with the role " + approvers.map { "`\($0)`" }.joined(separator: ", ") + " may approve, except the requester."
        )
        reply.actions = approvalActions(operation)
        return reply
    }

    /// Approve (confirmed first) and Deny, bound to the plan the request shows.
    static func approvalActions(_ operation: OperationRecord) -> [Reply.Action] {
        let digest = operation.approval?.digest ?? operation.planDigest ?? ""
        return [
            Reply.Action(name: "approve", label: "Approve", value: digest, style: .primary,
                         confirmation: "Approve \(operation.kind.rawValue) in \(operation.environment), plan \(DeployPlan.short(digest))?",
                         command: "/infer approve \(operation.id)"),
            Reply.Action(name: "deny", label: "Deny", value: digest, style: .danger,
                         command: "/infer deny \(operation.id) --reason \"…\""),
        ]
    }

    /// `approve` or `deny`, from a command (`digest` nil: the request as it stands) or a button
    /// (`digest`: the plan the button was shown with).
    func decide(
        _ decision: ApprovalDecision, _ id: OperationID, reason: String?, digest shownDigest: String?, user: UserID,
        conversation: Conversation
    ) async throws -> CommandOutcome {
        let verb = decision.rawValue
        guard let operation = try await services.store.operation(id) else {
            return try await refuse(Refusal("There is no operation \(id).", hint: "`/infer status` lists the operations in flight."),
                                    in: conversation, audit: (user, verb, nil, id.rawValue))
        }
        let audited = (user: user, action: verb, environment: Optional(operation.environment), subject: Optional(id.rawValue))
        guard operation.state == .awaitingApproval, let request = operation.approval else {
            let refusal: Refusal =
                if operation.state.isFinished {
                    Refusal("\(id) has already ended: \(operation.state.rawValue.replacingOccurrences(of: "_", with: " ")).")
                } else if operation.approval != nil {
                    Refusal("\(id) is already approved; it is \(operation.state.rawValue.replacingOccurrences(of: "_", with: " ")).")
                } else {
                    Refusal("\(id) does not wait for approval.")
                }
            return try await refuse(refusal, in: conversation, audit: audited)
        }
        if let shownDigest, shownDigest != request.digest {
            return try await refuse(Refusal(
                "That \(verb) was for plan \(DeployPlan.short(shownDigest)), but \(id) now waits for plan \(DeployPlan.short(request.digest)).",
                hint: "Read the newer approval request in its thread first."), in: conversation, audit: audited)
        }
        guard user != operation.requester else {
            return try await refuse(Refusal(
                "\(mention: user) asked for \(id), so someone else must \(verb) it.",
                hint: "Anyone else with `approve` in `\(operation.environment)` can."), in: conversation, audit: audited)
        }
        let now = services.time.now()
        if request.isExpired(at: now) {
            await runner.wakeFullRound()
            return try await refuse(expiredRefusal(operation), in: conversation, audit: audited)
        }
        let reporter = OperationReporter(operation: operation, services: services,
                                         channel: operation.request?.channel ?? conversation.channel)
        switch decision {
        case .deny:
            do {
                try await reporter.finish(.denied, Reply(
                    .failure, "Denied by \(mention: user)" + (reason.map { ": \(user: $0)" } ?? "") + ". It will not run."))
            } catch is OperationAlreadyEnded {
                return try await refuse(Refusal("\(id) was decided meanwhile."), in: conversation, audit: audited)
            } catch is OperationStateConflict {
                return try await refuse(Refusal("\(id) was decided meanwhile."), in: conversation, audit: audited)
            }
            try await audit(user, "deny", operation.environment, id.rawValue, "succeeded", operation: id, detail: reason)
            await services.closeApprovalRequest(
                of: operation, .failure, "Denied by \(mention: user)" + (reason.map { ": \(user: $0)" } ?? "") + ".")
            try await services.chat.post(Reply(.success, "Denied \(id); it will not run."), in: conversation, operation: nil)
            return .completed(id)
        case .approve:
            let tally = try await services.store.recordApproval(
                Approval(by: user, at: now, reason: reason), of: id, digest: request.digest,
                audit: auditEntry(user, "approve", operation.environment, id.rawValue, "counted", operation: id,
                                  detail: reason.map { "\(request.digest): \($0)" } ?? request.digest))
            switch tally {
            case .unknown:
                return try await refuse(Refusal("There is no operation \(id)."), in: conversation, audit: audited)
            case .notAwaiting(let record):
                return try await refuse(Refusal(
                    "\(id) no longer waits for this approval; it is \(record.state.rawValue.replacingOccurrences(of: "_", with: " ")).",
                    hint: "A changed plan posts a new approval request in its thread."), in: conversation, audit: audited)
            case .expired(let record):
                await runner.wakeFullRound()
                return try await refuse(expiredRefusal(record), in: conversation, audit: audited)
            case .alreadyApproved:
                return try await refuse(Refusal(
                    "You have already approved \(id); one person's approval counts once.",
                    hint: "It needs \(request.required.counting("approval")) from different people."), in: conversation, audit: audited)
            case .counted(let record):
                return try await approved(record, by: user, reason: reason, conversation: conversation)
            }
        }
    }

    /// An approval was counted: the request is either satisfied (the operation moves to `approved`
    /// and a runner starts it) or still waits for more.
    func approved(_ record: OperationRecord, by user: UserID, reason: String?, conversation: Conversation) async throws -> CommandOutcome {
        let request = record.approval!
        let given = Set(request.approvals.map(\.by)).count
        let said: RichText = "Approved by \(mention: user)" + (reason.map { ": \(user: $0)" } ?? "")
            + " (\(given) of \(request.required))."
        let reporter = OperationReporter(operation: record, services: services,
                                         channel: record.request?.channel ?? conversation.channel)
        guard request.isSatisfied else {
            let missing = request.required - given
            try await reporter.report(Reply(.progress, said + " It waits for \(missing.counting("more approval"))."))
            await services.noteApproval(of: record, said + " It waits for \(missing.counting("more approval")).")
            try await services.chat.post(
                Reply(.success, "Approved \(record.id): \(given) of \(request.required); it waits for \(missing) more."),
                in: conversation, operation: nil)
            return .completed(record.id)
        }
        do {
            try await reporter.move(to: .approved, said + " It runs now.")
            await services.closeApprovalRequest(of: record, .success, said)
        } catch is OperationStateConflict {
            // Another approver's satisfied request moved it first; that one starts it.
        } catch is OperationAlreadyEnded {
            return try await refuse(Refusal("\(record.id) ended meanwhile."), in: conversation)
        }
        let now = services.time.now()
        if let claimed = try await services.store.claimOwnership(of: record.id, by: runner.owner(at: now), staleBefore: now),
           claimed.state == .approved {
            await runner.submit(record.id, card: claimed.card)
        }
        try await services.chat.post(Reply(.success, "Approved \(record.id); it runs now."), in: conversation, operation: nil)
        return .completed(record.id)
    }

    func expiredRefusal(_ operation: OperationRecord) -> Refusal {
        Refusal(
            "\(operation.id)'s approval request expired at \(Reports.timestamp(operation.approval?.expiresAt ?? operation.updatedAt)); it will not run.",
            hint: "Ask again: `/infer \(operation.command)`.")
    }
}

/// What runs where an operation would act, for its approval request.
struct RunningRelease: Sendable {
    var release: ReleaseStatus?
    /// The values of the last successful deploy there, and that operation.
    var values: JSONValue?
    var operation: OperationID?
}

extension OperationRunner {
    /// An approved deploy whose plan changed before it ran (a values file or the chart was edited):
    /// nothing is applied; it goes back to waiting, for the new digest, with a fresh request and no
    /// approvals, and this runner lets it go so whoever approves next runs it.
    nonisolated func askApprovalAgain(
        _ record: OperationRecord, plan: DeployPlan, environment: EnvironmentSettings, reporter: OperationReporter
    ) async throws {
        let now = services.time.now()
        let old = record.planDigest.map(DeployPlan.short) ?? "?"
        let request = ApprovalRequest(
            digest: plan.digest, required: environment.approval.approvals, requestedAt: now,
            expiresAt: now.addingTimeInterval(environment.approval.validFor.seconds))
        await services.closeApprovalRequest(of: record, .warning, "Superseded: the plan changed after this was approved.")
        try await reporter.askApprovalAgain(
            plan: plan.canonical, digest: plan.digest, request: request,
            "The plan changed after it was approved (digest \(old) is now \(plan.shortDigest)): nothing was applied, "
                + "and it waits for approval of the new plan.")
        try await services.store.releaseOwnership(of: record.id, instance: identity.instance)
        let waiting = await reporter.operation
        let message = try await services.chat.post(
            Intake.approvalRequest(waiting, plan: plan, running: await Intake.running(waiting, services: services),
                                   configuration: configuration, redactor: services.redactor),
            in: Conversation(channel: waiting.request?.channel ?? "console", thread: waiting.thread), operation: waiting.id)
        await services.remember(message, ofRequestFor: waiting)
    }

    /// Ends every operation whose approval request has expired: `expired`, its thread told, nothing
    /// run. Called each full round and when a decision finds a request expired.
    nonisolated func expireOverdue(_ summaries: [OperationSummary], now: Date) async {
        for summary in summaries where summary.state == .awaitingApproval {
            guard let record = try? await services.store.operation(summary.id), record.state == .awaitingApproval,
                  let request = record.approval, request.isExpired(at: now)
            else { continue }
            let reporter = OperationReporter(operation: record, services: services, channel: record.request?.channel ?? "console")
            await services.closeApprovalRequest(of: record, .failure, "Expired: it will not run.")
            do {
                try await reporter.finish(.expired, Reply(
                    .failure,
                    "Expired: \(request.approvals.count) of \(request.required) approvals came within "
                        + "\(Duration.seconds(request.expiresAt.timeIntervalSince(request.requestedAt)).spoken). It will not run.",
                    hint: "Ask again: `/infer \(record.command)`."))
            } catch is OperationAlreadyEnded {
                // Decided or expired by another daemon meanwhile.
            } catch is OperationStateConflict {
            } catch {
                services.logger.error("expired approval not recorded", metadata: ["operation": "\(record.id)", "error": "\(error)"])
            }
        }
    }

    /// Asks for a full round now (a decision found an expired request).
    func wakeFullRound() {
        fullRoundDue = true
        wake.yield()
    }
}

extension Services {
    /// Keeps where an approval request was posted, so its buttons can be replaced by the decision.
    /// Best effort: without it, pressing a button of a decided request is refused as before.
    func remember(_ message: MessageRef, ofRequestFor operation: OperationRecord) async {
        do {
            guard var current = try await store.operation(operation.id), current.state == .awaitingApproval,
                  current.approval?.digest == operation.approval?.digest else { return }
            current.approval?.message = message
            try await store.update(current, from: .awaitingApproval)
        } catch {
            logger.warning("approval request not remembered", metadata: ["operation": "\(operation.id)", "error": "\(error)"])
        }
    }

    /// Edits a decided request: the decision and who made it instead of its buttons.
    func closeApprovalRequest(of operation: OperationRecord, _ tone: Reply.Tone, _ decision: RichText) async {
        await editApprovalRequest(of: operation, Reply(tone, decision + " " + Self.requestSubject(operation)))
    }

    /// Edits a request that still waits for more approvals: who has approved so far; the buttons stay.
    func noteApproval(of operation: OperationRecord, _ progress: RichText) async {
        var reply = Reply(.warning, progress + " " + Self.requestSubject(operation))
        reply.actions = Intake.approvalActions(operation)
        await editApprovalRequest(of: operation, reply)
    }

    static func requestSubject(_ operation: OperationRecord) -> RichText {
        RichText("(\(operation.kind.rawValue) in \(operation.environment), \(operation.id), plan \(DeployPlan.short(operation.approval?.digest ?? operation.planDigest ?? "?")))")
    }

    func editApprovalRequest(of operation: OperationRecord, _ reply: Reply) async {
        // Every caller holds the record as stored, with the message the request was posted as.
        guard let message = operation.approval?.message else { return }
        do {
            try await chat.update(message, with: reply, operation: operation.id)
        } catch {
            logger.warning("approval request not edited", metadata: ["operation": "\(operation.id)", "error": "\(error)"])
        }
    }
}
