import Foundation
import Synchronization

/// The read-only answers: help, status and history.
struct Reports: Sendable {
    let services: Services
    let configuration: Configuration
    let catalog: CommandCatalog
    /// Shared by the reports being answered at the same time (see `SharedReads`).
    var reads = SharedReads()
    /// Help as made for each verb and group of users (see `help(verb:user:)`).
    var helpReplies = HelpReplies()

    /// How wide a help line may be: a terminal's 100 columns less the renderers' indent. Help is
    /// lines, not a table: a table of usages and summaries is wider than a terminal.
    static let helpWidth = 96

    /// The testing-only pod annotations the Kubernetes API emulator understands (see
    /// `Tests/KubeEmulator/README.md`), with the values a reader may set: help names them where an
    /// environment allows them as `--set` keys, and only there.
    static let simulationKnobs: [(annotation: String, values: String)] = [
        ("inferops.dev/simulate-ready-after-seconds", "N (Ready N seconds after scheduling; slow engine) or never"),
        ("inferops.dev/simulate-failure", "true (the engine crash-loops)"),
        ("inferops.dev/simulate-image-pull-error", "true (the image never pulls)"),
        ("inferops.dev/simulate-latency-ms", "N (each completion takes N ms)"),
    ]

    /// Help for `verb` (or all commands) as `user` sees it: the same for everyone who may deploy to
    /// the same environments, so it is made once per such group and verb and kept (the
    /// configuration does not change while the daemon runs).
    func help(verb: String?, user: UserID) -> Reply {
        // Only known verbs make keys of their own: anything else is answered with the whole help.
        let spec = verb.flatMap { catalog.spec(named: $0) }
        let environments = deployableEnvironments(for: user).map(\.name)
        let key = (spec?.name ?? "") + "|" + environments.joined(separator: ",")
        return helpReplies.reply(for: key) { makeHelp(spec, user: user) }
    }

    /// Help for one command, or for all of them when `spec` is `nil`.
    func makeHelp(_ spec: CommandSpec?, user: UserID) -> Reply {
        if let spec {
            let usage = "Usage: `/infer \(spec.usage)`"
            var lines =
                usage.count <= Self.helpWidth
                ? [usage] : ["Usage:"] + Self.wrapCode("/infer \(spec.usage)", indent: "    ")
            for argument in spec.arguments {
                let name = "<\(argument.name)>\(argument.optional ? " (optional)" : "")"
                lines += Self.wrap("  \(name): \(argument.summary)", continuation: "      ")
            }
            for option in spec.options {
                let name = "--\(option.name)\(option.repeatable ? " (repeatable)" : "")"
                lines += Self.wrap("  \(name): \(option.summary)", continuation: "      ")
            }
            lines.append("Needs the permission `\(spec.permission)`.")
            if spec.name == "deploy" { lines += deployChoices(for: user) }
            lines.append("Examples:")
            lines += spec.examples.flatMap { Self.wrap("  \($0)", continuation: "      ") }
            return Reply(.info, "\(spec.name): \(spec.summary)", lines: lines)
        }
        var lines: [String] = []
        for spec in catalog.specs {
            lines += Self.wrap("\(spec.name) — \(spec.summary)", continuation: "    ")
            lines += Self.wrapCode("/infer \(spec.usage)", indent: "    ")
        }
        lines += testingKnobs(for: user)
        return Reply(.info, "InferOps commands", lines: lines, hint: "`/infer help <command>` explains one.")
    }

    /// Environments `user` may deploy to, in configuration order.
    func deployableEnvironments(for user: UserID) -> [EnvironmentSettings] {
        configuration.environmentNames.compactMap { configuration.environments[$0] }
            .filter { configuration.policy.allows(user, "deploy", in: $0.name) }
    }

    /// What `/infer help deploy` can be given: the models, where this user may deploy, and the `--set`
    /// keys each of those environments allows.
    func deployChoices(for user: UserID) -> [String] {
        let models = configuration.modelNames.compactMap { configuration.models[$0] }
            .map { "\($0.name) (\($0.gpusPerReplica.counting("GPU")) each)" }
        var lines = Self.wrap("Models: " + (models.isEmpty ? "none configured" : models.joined(separator: ", ")) + ".",
                              continuation: "    ")
        let environments = deployableEnvironments(for: user)
        guard !environments.isEmpty else {
            lines.append("You may not deploy to any environment; ask an admin for the `deploy` permission.")
            return lines
        }
        lines += Self.wrap("You may deploy to: " + environments.map(\.name).joined(separator: ", ") + ".",
                           continuation: "    ")
        lines.append("`--set` keys each environment allows:")
        for environment in environments {
            let keys = environment.allowedSetKeys.map { "`\($0)`" }.joined(separator: ", ")
            lines += Self.wrap("  \(environment.name): " + (keys.isEmpty ? "none" : keys), continuation: "      ")
        }
        return lines
    }

    /// The emulator's testing knobs, for the environments this user may deploy to that allow them.
    func testingKnobs(for user: UserID) -> [String] {
        var lines: [String] = []
        for environment in deployableEnvironments(for: user) {
            for key in environment.allowedSetKeys {
                let unescaped = key.replacingOccurrences(of: "\\.", with: ".")
                guard let knob = Self.simulationKnobs.first(where: { unescaped.hasSuffix("." + $0.annotation) }) else {
                    continue
                }
                if lines.isEmpty { lines.append("Testing knobs (the sandbox's simulated cluster only):") }
                lines += Self.wrap("  in \(environment.name): `--set \(key)=…`", continuation: "      ")
                lines += Self.wrap("      values: \(knob.values)", continuation: "        ")
            }
        }
        return lines
    }

    /// `text` broken at spaces into lines of at most `helpWidth` characters; later lines start with
    /// `continuation`. A word longer than a line stays whole.
    /// A command as code, broken like `wrap` with each line its own code span (a span that runs over
    /// a line break is not code in chat), continued four columns further in.
    static func wrapCode(_ code: String, indent: String) -> [String] {
        wrap(indent + code, continuation: indent + "    ", width: helpWidth - 2).map { line in
            let text = line.drop { $0 == " " }
            return String(line.prefix { $0 == " " }) + "`" + text + "`"
        }
    }

    static func wrap(_ text: String, continuation: String, width: Int = helpWidth) -> [String] {
        var lines: [String] = []
        var line = String(text.prefix { $0 == " " })
        // Characters of `line`, kept as it grows: counting a String walks it.
        var length = line.count
        let continuationLength = continuation.count
        var started = false
        for word in text.split(separator: " ") {
            let wordLength = word.count
            if !started {
                line += word
                length += wordLength
                started = true
            } else if length + 1 + wordLength <= width {
                line += " " + word
                length += 1 + wordLength
            } else {
                lines.append(line)
                line = continuation + word
                length = continuationLength + wordLength
            }
        }
        lines.append(line)
        return lines
    }

    /// One model in one environment of a status report.
    enum StatusLine: Sendable {
        case row([any RichTextConvertible])
        /// Not deployed, nothing in flight, and not asked for by name.
        case nothing
        case unreachable(ReleaseFailure)
    }

    func status(model: ModelSpec?, environment: EnvironmentSettings?, user: UserID) async throws -> Reply {
        let environments = (environment.map { [$0] } ?? configuration.environmentNames.compactMap { configuration.environments[$0] })
            .filter { configuration.policy.allows(user, "view", in: $0.name) }
        let models = model.map { [$0] } ?? configuration.modelNames.compactMap { configuration.models[$0] }
        // When the user names a model, say so even where it is not deployed; otherwise list what runs.
        // The store's answers are shared like the cluster's: a burst of `status` costs one read of
        // each, not one per command.
        let filtered = model != nil
        let unfinished = try await reads.read("unfinished-summaries") { try await services.store.unfinishedSummaries() }
        // Every model in every environment is read side by side: a report takes as long as its
        // slowest line, not the sum of them all.
        let pairs = environments.flatMap { env in models.map { (env, $0) } }
        let lines = try await withThrowingTaskGroup(of: (Int, StatusLine).self) { group in
            for (index, (env, model)) in pairs.enumerated() {
                group.addTask {
                    (index, try await statusLine(model: model, environment: env, unfinished: unfinished, named: filtered))
                }
            }
            var lines = [StatusLine](repeating: .nothing, count: pairs.count)
            for try await (index, line) in group { lines[index] = line }
            return lines
        }
        var rows: [[any RichTextConvertible]] = []
        // One failure per cluster (kube context): the first environment on a cluster that cannot
        // be reached says so, and no line of any environment on it is shown.
        var unreachable: [(context: String?, failure: ReleaseFailure)] = []
        for ((env, _), line) in zip(pairs, lines) {
            if case .unreachable(let failure) = line, !unreachable.contains(where: { $0.context == env.kubeContext }) {
                unreachable.append((env.kubeContext, failure))
            }
        }
        for ((env, _), line) in zip(pairs, lines) where !unreachable.contains(where: { $0.context == env.kubeContext }) {
            if case .row(let row) = line { rows.append(row) }
        }
        let locks = try await reads.read("locks") { try await services.store.locks() }
            .filter { lock in environments.contains { $0.name == lock.environment } }
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
        // One model in one environment: each replica, and what to do about one that does not serve.
        var replicas: [RichText] = []
        if let model, let environment = environments.first, environments.count == 1, rows.count == 1 {
            replicas = await replicaLines(model: model, environment: environment)
        }
        return Reply(
            .info, "Status",
            lines: lockLines + replicas,
            table: Reply.Table(headers: ["model", "env", "helm", "chart / app", "ready", "last verified", "routing", "in flight"], rows: rows)
        )
    }

    /// The line of one model in one environment: its release, replicas, last verification, routing
    /// and operations in flight, read side by side (reads of the same thing in flight are shared).
    func statusLine(
        model: ModelSpec, environment env: EnvironmentSettings, unfinished: [OperationSummary], named: Bool
    ) async throws -> StatusLine {
        async let routerWorkers: [RouterWorker]? = {
            guard env.router != nil, let router = services.routers.router(for: env) else { return nil }
            return try? await reads.read("router-workers|\(env.name)") { try await router.workers() }
        }()
        async let verification = reads.read("last-verification|\(env.name)|\(model.name)") {
            try await services.store.lastVerification(model: model.name, environment: env.name)
        }
        let target = env.target(model: model.name)
        let readWorkload = { @Sendable in
            try? await reads.read("workload|\(target.readKey)") { try await services.cluster.workload(target) }
        }
        // A model asked for by name is most likely deployed: its replicas are read with its release.
        // Otherwise only once the release is known to exist (most pairs of a full report are not).
        async let namedWorkload = named ? readWorkload() : nil
        let release: ReleaseStatus?
        do {
            release = try await reads.read("release-status|\(target.readKey)") { try await services.releases.status(target) }
        } catch let failure as ReleaseFailure {
            if case .clusterUnreachable = failure { return .unreachable(failure) }
            let routing = try await routingState(model: model.name, environment: env, workers: await routerWorkers)
            return .row([model.name, env.name, "unknown: \(failure.text)" as RichText, "", "", "", routing, ""])
        }
        let inFlight = unfinished.filter { $0.release == target.release }
            .map { "\($0.id) \($0.kind.rawValue) (\($0.state.rawValue))" }
        guard let release else {
            guard named || !inFlight.isEmpty else { return .nothing }
            let routing = try await routingState(model: model.name, environment: env, workers: await routerWorkers)
            return .row([model.name, env.name, "not deployed", "", "", "", routing, inFlight.joined(separator: ", ")])
        }
        async let laterWorkload = named ? nil : readWorkload()
        let routing = try await routingState(model: model.name, environment: env, workers: await routerWorkers)
        let workload = named ? await namedWorkload : await laterWorkload
        let ready = workload.map { "\($0.readyReplicas)/\($0.desiredReplicas)" } ?? "?"
        let verified = try await verification.map {
            "\(Self.ago($0.at, now: services.time.now())), \($0.latency.spoken)" + ($0.revision.map { " (rev \($0))" } ?? "")
        } ?? "never"
        return .row([
            model.name, env.name, "\(release.state) rev \(release.revision)",
            [release.chart, release.appVersion].compactMap { $0 }.joined(separator: " / "), ready, verified, routing,
            inFlight.isEmpty ? "–" : inFlight.joined(separator: ", "),
        ])
    }

    /// Each replica of a model in an environment, diagnosed (`ReplicaDiagnosis`): Kubernetes' view of
    /// its pod, a direct check of each ready one's engine (`/health`, then a one-token completion: an
    /// engine can answer its health check and still hang on work), and whether the router has it.
    func replicaLines(model: ModelSpec, environment env: EnvironmentSettings) async -> [RichText] {
        let target = env.target(model: model.name)
        let pool = (try? await services.warmPools.pool(target)).flatMap { $0 }
        return await releaseReplicaLines(model: model, environment: env) + (pool.map { [warmLine($0, model: model.name, environment: env)] } ?? [])
    }

    /// The warm pool's line: what it holds, whether it serves, when it is released.
    func warmLine(_ pool: WarmPool, model: String, environment env: EnvironmentSettings) -> RichText {
        let gpus = "\(pool.gpusHeld) GPU\(pool.gpusHeld == 1 ? "" : "s")"
        let ready = "\(pool.servingReplicas) of \(pool.desiredReplicas) ready"
        if pool.serving {
            return "Warm: revision \(pool.revision) (\(ready), \(gpus)) serves in place of the release since a warm rollback; "
                + "released once the release's own replicas serve and are routed."
        }
        let now = services.time.now()
        let left = pool.until > now ? " (in \(Duration.seconds(pool.until.timeIntervalSince(now).rounded()).spoken))" : " (due now)"
        return "Warm: revision \(pool.revision) kept unrouted (\(ready)), holding \(gpus) until \(Self.timestamp(pool.until))\(left); "
            + "`/infer rollback \(model) in \(env.name)` to it only switches the router."
    }

    func releaseReplicaLines(model: ModelSpec, environment env: EnvironmentSettings) async -> [RichText] {
        let target = env.target(model: model.name)
        guard let workload = try? await reads.read("workload|\(target.readKey)", { try await services.cluster.workload(target) }),
              !workload.pods.isEmpty
        else { return [] }
        // Routing is only expected of a model registered and enabled where a router is configured.
        // Read the way the status line read them, so the report shares those reads.
        var routing: (settings: RouterSettings, urls: Set<String>)?
        if let settings = env.router, let router = services.routers.router(for: env),
           let registration = try? await reads.read("registration|\(env.name)|\(model.name)", {
               try await services.store.registration(model: model.name, environment: env.name)
           }),
           registration.state == .enabled,
           let workers = try? await reads.read("router-workers|\(env.name)", { try await router.workers() }) {
            routing = (settings, Set(workers.filter { $0.model == model.name }.map(\.url)))
        }
        let endpoint = EngineEndpoint(target: target, service: target.release)
        let engines = services.engines
        let checks = await withTaskGroup(of: (String, ReplicaDiagnosis.EngineCheck).self) { group in
            for pod in workload.pods where pod.serving {
                guard let address = pod.address else { continue }
                group.addTask {
                    let replica = endpoint.replica(.init(name: pod.name, address: address))
                    do {
                        let health = try await engines.get(replica, path: "/health", timeout: .seconds(2))
                        guard health.status == 200 else { return (pod.name, .notAnswering("/health answered \(health.status)")) }
                        let ping = JSONValue.object([
                            "model": .string(model.name), "prompt": .string("ping"), "max_tokens": .number(1),
                            "temperature": .number(0),
                        ])
                        let completion = try await engines.post(replica, path: "/v1/completions",
                                                                json: Data(ping.canonical.utf8), timeout: .seconds(5))
                        return (pod.name, completion.status == 200
                                ? .answering : .notAnswering("a one-token completion answered \(completion.status)"))
                    } catch let unreachable as EngineUnreachable {
                        return (pod.name, .notAnswering(unreachable.detail))
                    } catch {
                        return (pod.name, .notAnswering("\(error)"))
                    }
                }
            }
            var checks: [String: ReplicaDiagnosis.EngineCheck] = [:]
            for await (pod, check) in group { checks[pod] = check }
            return checks
        }
        let diagnoses = workload.pods.map { pod in
            let routed = routing.map { routing in pod.address.map { routing.urls.contains(routing.settings.workerURL(podIP: $0)) } ?? false }
            return ReplicaDiagnosis.diagnose(
                pod, engine: checks[pod.name], routed: routed, model: model.name, environment: env.name,
                reconcileInterval: configuration.server.reconcileInterval)
        }
        return ["Replicas of \(target.release) (\(diagnoses.filter { $0.state == .serving }.count) of \(workload.desiredReplicas) serving):"]
            + diagnoses.map { "• " + $0.line }
    }

    /// Enabled, disabled (with who and why), removed, or drifted when the router does not match.
    func routingState(model: String, environment: EnvironmentSettings, workers: [RouterWorker]?) async throws -> RichText {
        guard let settings = environment.router else { return "–" }
        guard let registration = try await reads.read("registration|\(environment.name)|\(model)", {
            try await services.store.registration(model: model, environment: environment.name)
        }) else {
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
        // The store is read while helm's records are.
        async let makers = reads.read("revision-makers|\(environment.name)|\(model.name)") {
            try await services.store.revisionMakers(model: model.name, environment: environment.name, limit: 500)
        }
        let revisions = try await reads.read("release-history|\(target.readKey)") {
            try await services.releases.history(target)
        }
        guard !revisions.isEmpty else {
            return Reply(.info, "\(target.release) has no revisions: it was never deployed.")
        }
        let operations = try await makers
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

    /// `date` in UTC as RFC 3339 to the second (`2026-12-02T09:24:49Z`), computed from the days since
    /// 1970 (a history table has a date per row, and `ISO8601DateFormatter` costs far more).
    static func timestamp(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        // The civil date of a day count, in the proleptic Gregorian calendar (eras of 400 years).
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let yearText = String(year)
        let paddedYear = String(repeating: "0", count: max(0, 4 - yearText.count)) + yearText
        return "\(paddedYear)-\(two(month))-\(two(day))T\(two(secondOfDay / 3_600)):\(two(secondOfDay % 3_600 / 60)):\(two(secondOfDay % 60))Z"
    }

    static func ago(_ date: Date, now: Date) -> String {
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        if seconds < 60 { return "\(seconds) s ago" }
        if seconds < 3600 { return "\(seconds / 60) min ago" }
        if seconds < 86400 { return "\(seconds / 3600) h ago" }
        return "\(seconds / 86400) d ago"
    }
}

/// Help replies made once and kept, by verb and by what the asker may do.
final class HelpReplies: Sendable {
    let replies = Mutex<[String: Reply]>([:])

    func reply(for key: String, make: () -> Reply) -> Reply {
        if let made = replies.withLock({ $0[key] }) { return made }
        let made = make()
        replies.withLock { $0[key] = made }
        return made
    }
}
