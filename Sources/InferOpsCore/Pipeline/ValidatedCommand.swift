/// A command checked against the configuration: every name it uses exists.
public enum ValidatedCommand: Hashable, Sendable {
    /// `minReplicas`: the fewest replicas the requester accepts when the GPUs are short (`--min-replicas`).
    case deploy(model: ModelSpec, environment: EnvironmentSettings, chartVersion: String?, overrides: [String], dryRun: Bool, register: Bool,
                minReplicas: Int? = nil)
    case rollback(model: ModelSpec, environment: EnvironmentSettings, revision: Int?)
    /// Deploy to `environment` what was verified in `source`.
    case promote(model: ModelSpec, source: EnvironmentSettings, environment: EnvironmentSettings)
    case status(model: ModelSpec?, environment: EnvironmentSettings?)
    case history(model: ModelSpec, environment: EnvironmentSettings)
    case lock(environment: EnvironmentSettings, reason: String?)
    case unlock(environment: EnvironmentSettings, reason: String?)
    case cancel(OperationID)
    /// `approve` or `deny` an operation waiting for approval.
    case decide(ApprovalDecision, OperationID, reason: String?)
    /// `approve` or `deny` the one operation on `model` waiting for approval in `environment`.
    case decideWaiting(ApprovalDecision, model: ModelSpec, environment: EnvironmentSettings, reason: String?)
    case help(verb: String?)
    /// The service-level report over the last `days` days.
    case slo(environment: EnvironmentSettings?, days: Int)
    /// `register`, `deregister`, `enable` or `disable`.
    case routing(OperationKind, model: ModelSpec, environment: EnvironmentSettings, reason: String?)
    /// `remove`: out of the router, uninstalled, GPUs free.
    case remove(model: ModelSpec, environment: EnvironmentSettings, reason: String?)

    /// The environment the command acts in, when it names one.
    public var environment: EnvironmentSettings? {
        switch self {
        case .deploy(_, let environment, _, _, _, _, _), .rollback(_, let environment, _), .history(_, let environment),
            .lock(let environment, _), .unlock(let environment, _), .routing(_, _, let environment, _),
            .remove(_, let environment, _), .promote(_, _, let environment), .decideWaiting(_, _, let environment, _):
            environment
        case .status(_, let environment), .slo(let environment, _):
            environment
        case .cancel, .help, .decide:
            nil
        }
    }
}

/// The validate stage: resolves names against the catalog and configuration, with "did you mean".
public struct CommandValidator: Sendable {
    public let configuration: Configuration
    public let catalog: CommandCatalog

    public init(configuration: Configuration, catalog: CommandCatalog) {
        self.configuration = configuration
        self.catalog = catalog
    }

    public func validate(_ command: ParsedCommand) throws(Refusal) -> ValidatedCommand {
        switch command.verb {
        case "deploy":
            let model = try model(command.argument("model"))
            var environment = try environment(command.argument("environment"))
            if let text = command.option("wait-for-gpus") {
                // The deploy waits in its turn, saying what it waits for, instead of being refused.
                guard let patience = Self.patience(text) else {
                    throw Refusal(
                        "`--wait-for-gpus \(user: CommandParser.excerpt(text))` is not a time to wait: say minutes or hours, "
                            + "like `10m`, `90s` or `2h`, up to \(Self.longestWait.spoken).")
                }
                environment.capacity = .wait(patience)
            }
            if let version = command.option("chart-version") {
                guard version.count <= 64, version.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-+_".unicodeScalars.contains($0) }) else {
                    throw Refusal("`\(user: CommandParser.excerpt(version))` is not a chart version (like `0.1.0`).")
                }
            }
            if command.flag("register"), environment.router == nil {
                throw Refusal("`\(environment.name)` has no router configured, so `--register` cannot be done.",
                              hint: "Add `router:` to the environment in the configuration, or deploy without `--register`.")
            }
            var minReplicas: Int?
            if let text = command.option("min-replicas") {
                guard let count = Int(text), (1...DeployPlanner.maximumReplicas).contains(count) else {
                    throw Refusal(
                        "`--min-replicas \(user: CommandParser.excerpt(text))` is not a number of replicas: say how many the deploy may "
                            + "go down to when the GPUs are short, from 1 to \(DeployPlanner.maximumReplicas).",
                        hint: "For example `/infer deploy \(model.name) to \(environment.name) --set replicaCount=4 --min-replicas 2`.")
                }
                minReplicas = count
            }
            return .deploy(
                model: model, environment: environment, chartVersion: command.option("chart-version"),
                overrides: command.values("set"), dryRun: command.flag("dry-run"), register: command.flag("register"),
                minReplicas: minReplicas
            )
        case "rollback":
            if command.flag("break-glass"), (command.option("reason") ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
                throw Refusal("Breaking the glass needs a reason: it goes to the audit log and the review request.",
                              hint: "Add `--reason \"…\"`, e.g. the incident and what is wrong with the running revision.")
            }
            return .rollback(
                model: try model(command.argument("model")), environment: try environment(command.argument("environment")),
                revision: command.option("to").flatMap { Int($0) }
            )
        case "promote":
            let target = try environment(command.argument("environment"))
            let sourceName = command.argument("source") ?? target.promotion.defaultSource
            guard configuration.environments[sourceName.lowercased()] != nil || command.argument("source") != nil else {
                throw Refusal("`\(target.name)` names no environment to promote from, and there is no `\(sourceName)`.",
                              hint: "Name one: `/infer promote \(command.argument("model") ?? "<model>") from <environment> to \(target.name)`.")
            }
            let source = try environment(sourceName)
            guard source.name != target.name else {
                throw Refusal("A promotion goes from one environment to another, not from `\(target.name)` to itself.",
                              hint: "To deploy again there: `/infer deploy \(command.argument("model") ?? "<model>") to \(target.name)`.")
            }
            return .promote(model: try model(command.argument("model")), source: source, environment: target)
        case "status":
            return .status(
                model: try command.argument("model").map { name throws(Refusal) in try model(name) },
                environment: try command.argument("environment").map { name throws(Refusal) in try environment(name) }
            )
        case "history":
            return .history(model: try model(command.argument("model")), environment: try environment(command.argument("environment")))
        case "lock":
            return .lock(environment: try environment(command.argument("environment")), reason: command.option("reason"))
        case "unlock":
            return .unlock(environment: try environment(command.argument("environment")), reason: command.option("reason"))
        case "cancel":
            return .cancel(OperationID(command.argument("operation") ?? ""))
        case "approve", "deny":
            let decision: ApprovalDecision = command.verb == "approve" ? .approve : .deny
            let named = command.argument("operation") ?? ""
            if let environment = command.argument("environment") {
                guard CommandParser.isName(named.lowercased()) else {
                    throw Refusal("`\(CommandParser.excerpt(named))` is not a model name: with `in`, name the model whose operation waits.")
                }
                return .decideWaiting(decision, model: try model(named), environment: try self.environment(environment),
                                      reason: command.option("reason"))
            }
            guard OperationID.isWellFormed(named) else {
                throw Refusal("`\(CommandParser.excerpt(named))` is not an operation id (they look like `op-1a2b3c4d`).",
                              hint: "Or name the model and environment: `/infer \(command.verb) <model> in <environment>`.")
            }
            return .decide(decision, OperationID(named), reason: command.option("reason"))
        case "register", "deregister", "enable", "disable":
            let environment = try environment(command.argument("environment"))
            guard environment.router != nil else {
                throw Refusal("`\(environment.name)` has no router configured, so models cannot be routed there.",
                              hint: "Add `router:` to the environment in the configuration.")
            }
            return .routing(
                OperationKind(rawValue: command.verb)!, model: try model(command.argument("model")), environment: environment,
                reason: command.option("reason"))
        case "remove":
            return .remove(
                model: try model(command.argument("model")), environment: try environment(command.argument("environment")),
                reason: command.option("reason"))
        case "slo":
            let days = try command.option("days").map { text throws(Refusal) -> Int in
                guard let days = Int(text), (1...365).contains(days) else {
                    throw Refusal("`--days \(CommandParser.excerpt(text))` must be a whole number of days from 1 to 365.")
                }
                return days
            } ?? 30
            return .slo(environment: try command.argument("environment").map { name throws(Refusal) in try environment(name) },
                        days: days)
        case "help":
            if let verb = command.argument("verb") {
                guard catalog.spec(named: verb) != nil else {
                    throw Refusal(
                        "There is no command `\(CommandParser.excerpt(verb))`." + Suggestions.didYouMean(verb, in: catalog.names),
                        hint: "`/infer help` lists the commands."
                    )
                }
                return .help(verb: verb.lowercased())
            }
            return .help(verb: nil)
        default:
            throw Refusal("`\(command.verb)` is declared but this daemon does not run it yet.")
        }
    }

    func model(_ name: String?) throws(Refusal) -> ModelSpec {
        let name = (name ?? "").lowercased()
        guard let model = configuration.models[name] else {
            throw Refusal(
                "There is no model `\(CommandParser.excerpt(name))` in the catalog."
                    + Suggestions.didYouMean(name, in: configuration.modelNames),
                hint: "Models: " + configuration.modelNames.map { "`\($0)`" }.joined(separator: ", ") + "."
            )
        }
        return model
    }

    func environment(_ name: String?) throws(Refusal) -> EnvironmentSettings {
        let name = (name ?? "").lowercased()
        guard let environment = configuration.environments[name] else {
            throw Refusal(
                "There is no environment `\(CommandParser.excerpt(name))`."
                    + Suggestions.didYouMean(name, in: configuration.environmentNames),
                hint: "Environments: " + configuration.environmentNames.map { "`\($0)`" }.joined(separator: ", ") + "."
            )
        }
        return environment
    }
}

extension CommandValidator {
    /// The longest `--wait-for-gpus`: a deploy waiting longer than this is better planned again.
    static let longestWait = Duration.seconds(6 * 3600)

    /// `90s`, `10m`, `2h` → that duration, from 1 s up to `longestWait`; `nil` for anything else.
    static func patience(_ text: String) -> Duration? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600]
        guard let unit = text.last, let scale = units[unit], let count = Int(text.dropLast()), count > 0 else { return nil }
        let (seconds, overflow) = count.multipliedReportingOverflow(by: scale)
        guard !overflow, seconds <= Int(longestWait.components.seconds) else { return nil }
        return .seconds(seconds)
    }
}
