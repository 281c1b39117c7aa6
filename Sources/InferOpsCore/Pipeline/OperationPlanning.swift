import Foundation

/// What an operation is, worked out from its request alone, the same way at intake and when a
/// runner (perhaps after a restart) picks it up: its kind, its deploy plan, its status card.
enum OperationPlanning {
    /// The kind of operation a command starts; `nil` for commands that only answer.
    static func kind(of command: ValidatedCommand) -> OperationKind? {
        switch command {
        case .deploy(_, _, _, _, false, _, _): .deploy
        case .promote: .promote
        case .rollback: .rollback
        case .remove: .remove
        case .routing(let kind, _, _, _): kind
        case .deploy, .status, .history, .lock, .unlock, .cancel, .help, .decide, .decideWaiting, .slo: nil
        }
    }

    static func deployPlan(_ command: ValidatedCommand) throws(Refusal) -> DeployPlan {
        guard case .deploy(let model, let environment, let chartVersion, let overrides, _, _, let minReplicas) = command else {
            preconditionFailure("not a deploy: \(command)")
        }
        return try DeployPlanner.plan(model: model, environment: environment, chartVersion: chartVersion, overrides: overrides,
                                      minReplicas: minReplicas)
    }

    /// The deploy plan with what its chart and values files contain now, so its digest binds to them.
    /// - Throws: `Refusal` for bad input, or a file the plan names that cannot be read.
    static func deployPlan(_ command: ValidatedCommand, reading reader: any PlanContentsReader) throws -> DeployPlan {
        var plan = try deployPlan(command)
        plan.contents = try reader.contents(chart: plan.chart, chartVersion: plan.chartVersion, valuesFiles: plan.valuesFiles)
        return plan
    }

    /// A promotion's plan, from the newest evidence in the source environment or, for one already
    /// recorded, from the source its stored plan names (so what was approved is what runs).
    /// - Throws: `Refusal` when there is no evidence, it no longer holds, or the chart changed since.
    static func promotionPlan(
        _ command: ValidatedCommand, pinned: OperationID?, store: any OperationStore, reading reader: any PlanContentsReader,
        now: Date
    ) async throws -> DeployPlan {
        guard case .promote(let model, let source, let environment) = command else {
            preconditionFailure("not a promotion: \(command)")
        }
        let evidence = PromotionEvidence(store: store)
        let found: (OperationRecord, Verification)
        if let pinned {
            guard let still = try await evidence.pinned(pinned) else {
                throw Refusal("\(pinned), the deploy this promotion carries, is no longer a verified success in `\(source.name)`.",
                              hint: "Promote again to carry the newest verified deploy.")
            }
            found = still
        } else {
            found = try await evidence.newest(model: model.name, in: source, window: environment.promotion.evidenceWindow,
                                              now: now)
        }
        var plan = try PromotionPlanner.plan(model: model, source: found.0, verification: found.1,
                                             sourceEnvironment: source, target: environment)
        plan.contents = try reader.contents(chart: plan.chart, chartVersion: plan.chartVersion, valuesFiles: plan.valuesFiles)
        try PromotionPlanner.checkChart(plan, source: found.0)
        return plan
    }
}

/// The status card at the top of an operation's thread: what it is, who asked, where it stands.
/// Posted when the operation is accepted and edited in place as it moves.
public enum StatusCard {
    public static func reply(for operation: OperationRecord, detail: RichText? = nil) -> Reply {
        let model = operation.model ?? "?"
        let environment = operation.environment
        let reason: RichText = operation.request?.reason.map { ": \(user: $0)" } ?? ""
        let revision = operation.request?.options["to"]?.last.map { " to revision \($0)" } ?? ""
        let what: RichText = switch operation.kind {
        case .deploy: "Deploy \(model) to \(environment)"
        case .promote:
            "Promote \(model) to \(environment)"
                + RichText(PromotionSource.environment(inPlan: operation.plan).map { " from \($0)" } ?? "")
        case .rollback: "Roll back \(model) in \(environment)\(revision)"
        case .remove: "Remove \(model) from \(environment)"
        case .register: "Register \(model) in \(environment)"
        case .deregister: "Deregister \(model) in \(environment)"
        case .enable: "Enable \(model) in \(environment)"
        case .disable: "Disable \(model) in \(environment)"
        case .lock, .unlock, .cancel: "\(operation.kind.rawValue) \(environment)"
        }
        var fields: [Reply.Field] = []
        if let release = operation.target?.release { fields.append(Reply.Field("release", release)) }
        if let digest = operation.planDigest {
            fields.append(Reply.Field("digest", DeployPlan.short(digest)))
        }
        fields.append(Reply.Field("state", operation.state.rawValue.replacingOccurrences(of: "_", with: " ")))
        if let detail { fields.append(Reply.Field("now", detail)) }
        fields.append(Reply.Field("operation", operation.id.rawValue))
        let tone: Reply.Tone = switch operation.state {
        case .succeeded: .success
        case .failed, .interrupted, .denied, .expired: .failure
        case .rolledBack, .cancelled: .warning
        default: .progress
        }
        // Run without a second approver: it says so wherever its card is seen.
        let glass: RichText = operation.request?.parsed.flag("break-glass") == true ? "🚨 Break glass: " : ""
        return Reply(tone, glass + what + ", requested by \(mention: operation.requester)" + reason, fields: fields)
    }
}
