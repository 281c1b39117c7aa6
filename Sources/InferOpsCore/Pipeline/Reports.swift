import Foundation

/// The read-only answers: help, status and history.
struct Reports: Sendable {
    let services: Services
    let configuration: Configuration
    let catalog: CommandCatalog

    func help(verb: String?) -> Reply {
        if let verb, let spec = catalog.spec(named: verb) {
            var lines = ["Usage: `/infer \(spec.usage)`"]
            for argument in spec.arguments {
                lines.append("  <\(argument.name)>\(argument.optional ? " (optional)" : ""): \(argument.summary)")
            }
            for option in spec.options {
                lines.append("  --\(option.name)\(option.repeatable ? " (repeatable)" : ""): \(option.summary)")
            }
            lines.append("Needs the permission `\(spec.permission)`.")
            lines.append("Examples:")
            lines.append(contentsOf: spec.examples.map { "  \($0)" })
            return Reply(.info, "\(spec.name): \(spec.summary)", lines: lines)
        }
        let rows = catalog.specs.map { ["/infer " + $0.usage, $0.summary] }
        return Reply(
            .info, "InferOps commands", table: Reply.Table(headers: ["command", "what it does"], rows: rows),
            hint: "`/infer help <command>` explains one."
        )
    }

    func status(model: ModelSpec?, environment: EnvironmentSettings?, user: UserID) async throws -> Reply {
        let environments = (environment.map { [$0] } ?? configuration.environmentNames.compactMap { configuration.environments[$0] })
            .filter { configuration.policy.allows(user, "view", in: $0.name) }
        let models = model.map { [$0] } ?? configuration.modelNames.compactMap { configuration.models[$0] }
        // When the user names a model, say so even where it is not deployed; otherwise list what runs.
        let filtered = model != nil
        let unfinished = try await services.store.unfinishedOperations()
        var rows: [[any RichTextConvertible]] = []
        // One failure per cluster (kube context): the first environment on a cluster that cannot
        // be reached says so, and the others on it are not asked again, row after row.
        var unreachable: [(context: String?, failure: ReleaseFailure)] = []
        for env in environments where !unreachable.contains(where: { $0.context == env.kubeContext }) {
            let routerWorkers: [RouterWorker]?
            if env.router != nil, let router = services.routers.router(for: env) {
                routerWorkers = try? await router.workers()
            } else {
                routerWorkers = nil
            }
            models: for model in models {
                let routing = try await routingState(model: model.name, environment: env, workers: routerWorkers)
                let target = env.target(model: model.name)
                let release: ReleaseStatus?
                do {
                    release = try await services.releases.status(target)
                } catch let failure as ReleaseFailure {
                    if case .clusterUnreachable = failure {
                        unreachable.append((env.kubeContext, failure))
                        break models
                    }
                    rows.append([model.name, env.name, "unknown: \(failure.text)" as RichText, "", "", "", routing, ""])
                    continue
                }
                let inFlight = unfinished.filter { $0.target?.release == target.release }
                    .map { "\($0.id) \($0.kind.rawValue) (\($0.state.rawValue))" }
                guard let release else {
                    if filtered || !inFlight.isEmpty {
                        rows.append([model.name, env.name, "not deployed", "", "", "", routing, inFlight.joined(separator: ", ")])
                    }
                    continue
                }
                let workload = try? await services.cluster.workload(target)
                let ready = workload.map { "\($0.readyReplicas)/\($0.desiredReplicas)" } ?? "?"
                let verification = try await services.store.lastVerification(model: model.name, environment: env.name)
                let verified = verification.map {
                    "\(Self.ago($0.at, now: services.time.now())), \($0.latency.spoken)" + ($0.revision.map { " (rev \($0))" } ?? "")
                } ?? "never"
                rows.append([
                    model.name, env.name, "\(release.state) rev \(release.revision)",
                    [release.chart, release.appVersion].compactMap { $0 }.joined(separator: " / "), ready, verified, routing,
                    inFlight.isEmpty ? "–" : inFlight.joined(separator: ", "),
                ])
            }
        }
        let locks = try await services.store.locks().filter { lock in environments.contains { $0.name == lock.environment } }
        let lockLines = locks.map { lock -> RichText in
            "🔒 \(lock.environment) locked by \(mention: lock.holder) \(Self.ago(lock.since, now: services.time.now()))" + (lock.reason.map { ": \(user: $0)" } ?? "")
        }
        let headers = ["model", "env", "helm", "chart / app", "ready", "last verified", "routing", "in flight"]
        if let first = unreachable.first?.failure {
            let clusters = unreachable.map { entry -> RichText in
                "\(entry.context.map { "`\($0)`" } ?? "The kubeconfig's current context"): \(entry.failure.text)"
            }
            return Reply(
                .failure,
                unreachable.count == 1
                    ? "Status is incomplete: a cluster is unreachable."
                    : "Status is incomplete: \(unreachable.count) clusters are unreachable.",
                lines: clusters + lockLines,
                table: rows.isEmpty ? nil : Reply.Table(headers: headers, rows: rows),
                hint: first.hint
            )
        }
        if rows.isEmpty {
            return Reply(.info, environments.isEmpty ? "You may not view any environment." : "Nothing is deployed yet.", lines: lockLines)
        }
        return Reply(
            .info, "Status",
            lines: lockLines,
            table: Reply.Table(headers: ["model", "env", "helm", "chart / app", "ready", "last verified", "routing", "in flight"], rows: rows)
        )
    }

    /// Enabled, disabled (with who and why), removed, or drifted when the router does not match.
    func routingState(model: String, environment: EnvironmentSettings, workers: [RouterWorker]?) async throws -> RichText {
        guard let settings = environment.router else { return "–" }
        guard let registration = try await services.store.registration(model: model, environment: environment.name) else {
            return "not registered"
        }
        var text: RichText
        switch registration.state {
        case .enabled: text = "enabled (\(registration.endpoints.count) replica\(registration.endpoints.count == 1 ? "" : "s"))"
        case .disabled: text = "disabled by \(mention: registration.changedBy)" + (registration.reason.map { ": \(user: $0)" } ?? "")
        case .removed: text = "removed by \(mention: registration.changedBy)" + (registration.reason.map { ": \(user: $0)" } ?? "")
        }
        guard let workers else { return text + "; router unreachable" }
        let desired = Set(RouterReconciler.desiredWorkers(registration, settings: settings))
        let actual = Set(workers.filter { $0.model == model })
        if desired != actual {
            text = "drifted: router has \(actual.intersection(desired).count) of \(desired.count) workers (\(text))"
        }
        return text
    }

    func history(model: ModelSpec, environment: EnvironmentSettings) async throws -> Reply {
        let target = environment.target(model: model.name)
        let revisions = try await services.releases.history(target)
        guard !revisions.isEmpty else {
            return Reply(.info, "\(target.release) has no revisions: it was never deployed.")
        }
        let operations = try await services.store.recentOperations(model: model.name, environment: environment.name, limit: 500)
        // Newest first: a revision number reused after an uninstall belongs to the newer operation.
        var byRevision: [Int: OperationRecord] = [:]
        for operation in operations {
            let made = operation.revisions + [operation.revision].compactMap { $0 }
            for revision in made where byRevision[revision] == nil { byRevision[revision] = operation }
        }
        let rows = revisions.reversed().map { revision -> [any RichTextConvertible] in
            let operation = byRevision[revision.revision]
            return [
                "\(revision.revision)", revision.state.description,
                revision.updated.map { Self.timestamp($0) } ?? "",
                operation.map { "\(mention: $0.requester)" as RichText } ?? "(outside InferOps)",
                operation.map { "\($0.kind.rawValue) \($0.id)" } ?? "",
                revision.chart + (revision.appVersion.isEmpty ? "" : " / \(revision.appVersion)"),
                RichText.user(Self.oneLine(revision.description, redactor: services.redactor)),
            ]
        }
        return Reply(
            .info, "History of \(target.release)",
            table: Reply.Table(headers: ["rev", "status", "updated", "by", "operation", "chart / app", "description"], rows: rows),
            hint: "`/infer rollback \(model.name) in \(environment.name) --to N` returns to revision N."
        )
    }

    /// Helm's description of a failed revision is its raw error: several lines, possibly quoting
    /// values. In a table cell it is redacted first (a cut could split a secret), then kept to one
    /// short line.
    static func oneLine(_ text: String, redactor: SecretRedactor, limit: Int = 120) -> String {
        let words = redactor.redact(text).split { $0.isWhitespace || $0.isNewline || ($0.asciiValue ?? 32) < 32 }
        let line = words.joined(separator: " ")
        return line.count > limit ? String(line.prefix(limit - 1)) + "…" : line
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func ago(_ date: Date, now: Date) -> String {
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        if seconds < 60 { return "\(seconds) s ago" }
        if seconds < 3600 { return "\(seconds / 60) min ago" }
        if seconds < 86400 { return "\(seconds / 3600) h ago" }
        return "\(seconds / 86400) d ago"
    }
}
