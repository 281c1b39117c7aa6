import Foundation
import InferOpsCore
import Yams

/// Reads `inferops.yaml`, the model catalog and `commands/`, validates them once, and reports every
/// problem with file, line and a fix. Relative paths are resolved against the configuration file's folder.
public struct ConfigurationLoader {
    public struct Loaded: Sendable {
        public var configuration: Configuration
        public var catalog: CommandCatalog
        public var problems: [ConfigurationProblem]
        public var critical: [ConfigurationProblem] { problems.filter(\.critical) }
    }

    public let path: String
    public init(path: String) { self.path = path }

    var folder: URL { URL(fileURLWithPath: path).deletingLastPathComponent() }

    func resolve(_ relative: String) -> String {
        if relative.hasPrefix("~/") { return (relative as NSString).expandingTildeInPath }
        return relative.hasPrefix("/") ? relative : folder.appendingPathComponent(relative).standardizedFileURL.path
    }

    public func load() -> Loaded {
        let reader = YAMLReader(file: path)
        var problems: [ConfigurationProblem] = []
        guard let root = reader.load() else {
            return Loaded(configuration: Self.empty, catalog: CommandCatalog(specs: []), problems: reader.problems)
        }
        reader.checkKeys(root, known: ["chat", "kubernetes", "helm", "storage", "server", "models", "commands", "environments", "policy"], in: "the top level")
        Self.refuseLiteralSecrets(in: root, reader: reader)
        var chat = ChatSettings()
        if let node = reader.mapping(root, "chat", in: "the top level") {
            reader.checkKeys(node, known: ["transport", "console", "slack", "notices"], in: "chat")
            chat.notices = reader.string(node, "notices", in: "chat")
            if let transport = reader.string(node, "transport", in: "chat") {
                if ["console", "slack"].contains(transport) { chat.transport = transport } else {
                    reader.problem(node["transport"], "the chat transport `\(transport)` is not available; `console` and `slack` are.",
                                   fix: "set `transport: console` or `transport: slack`")
                }
            }
            if let slack = reader.mapping(node, "slack", in: "chat") {
                chat.slack = slackSettings(slack, reader: reader)
            }
            if let console = reader.mapping(node, "console", in: "chat") {
                reader.checkKeys(console, known: ["user"], in: "chat.console")
                chat.consoleUser = reader.string(console, "user", in: "chat.console") ?? chat.consoleUser
            }
        }
        var kubernetes = KubernetesSettings()
        if let node = reader.mapping(root, "kubernetes", in: "the top level") {
            reader.checkKeys(node, known: ["kubeconfig"], in: "kubernetes")
            kubernetes.kubeconfig = reader.string(node, "kubeconfig", in: "kubernetes").map(resolve)
        }
        var helm = HelmSettings()
        if let node = reader.mapping(root, "helm", in: "the top level") {
            reader.checkKeys(node, known: ["binary", "driver"], in: "helm")
            if let binary = reader.string(node, "binary", in: "helm") {
                helm.binary = binary.contains("/") ? resolve(binary) : binary
            }
            if let driver = reader.string(node, "driver", in: "helm") {
                if ["secret", "configmap"].contains(driver) { helm.driver = driver } else {
                    reader.problem(node["driver"], "the Helm driver `\(driver)` is not supported.", fix: "use `secret` or `configmap`")
                }
            }
        }
        var storage = StorageSettings()
        if let node = reader.mapping(root, "storage", in: "the top level") {
            reader.checkKeys(node, known: ["path"], in: "storage")
            if let file = reader.string(node, "path", in: "storage") {
                storage.path = file == ":memory:" ? file : resolve(file)
            }
        }
        var server = ServerSettings()
        if let node = reader.mapping(root, "server", in: "the top level") {
            reader.checkKeys(node, known: ["host", "port", "publicURL", "reconcileInterval", "idleTimeout",
                                           "readTimeout", "maxConnections", "shutdownGrace"], in: "server")
            server.host = reader.string(node, "host", in: "server") ?? server.host
            server.port = reader.int(node, "port", in: "server", range: 0...65535, suggested: ServerSettings.defaultPort)
                ?? server.port
            server.publicURL = reader.string(node, "publicURL", in: "server")
            server.reconcileInterval =
                reader.duration(node, "reconcileInterval", in: "server", suggested: server.reconcileInterval)
                ?? server.reconcileInterval
            server.idleTimeout =
                reader.duration(node, "idleTimeout", in: "server", suggested: server.idleTimeout) ?? server.idleTimeout
            server.readTimeout =
                reader.duration(node, "readTimeout", in: "server", suggested: server.readTimeout) ?? server.readTimeout
            server.maxConnections =
                reader.int(node, "maxConnections", in: "server", range: 1...65_536, suggested: server.maxConnections)
                ?? server.maxConnections
            server.shutdownGrace =
                reader.duration(node, "shutdownGrace", in: "server", suggested: server.shutdownGrace) ?? server.shutdownGrace
        }
        let modelsNode = reader.mapping(root, "models", in: "the top level")
        let commandsNode = reader.mapping(root, "commands", in: "the top level")
        for (node, section) in [(modelsNode, "models"), (commandsNode, "commands")] {
            if let node { reader.checkKeys(node, known: ["directory"], in: section) }
        }
        let modelsFolder = resolve(reader.string(modelsNode, "directory", in: "models") ?? "models")
        let commandsFolder = resolve(reader.string(commandsNode, "directory", in: "commands") ?? "../commands")
        let (models, modelProblems) = Self.loadModels(in: modelsFolder)
        problems += modelProblems
        let (catalog, commandProblems) = Self.loadCommands(in: commandsFolder)
        problems += commandProblems

        var environments: [String: EnvironmentSettings] = [:]
        var environmentKeys: [(name: String, key: Node)] = []
        if let node = reader.mapping(root, "environments", in: "the top level", required: true), let mapping = node.mapping {
            for (key, value) in mapping {
                guard let name = key.string else { continue }
                if let problem = Naming.dnsLabelProblem(name) {
                    reader.problem(key, "the environment name `\(name)` is not a DNS label: \(problem).",
                                   fix: "rename it, e.g. `staging` or `gpu-prod-2`")
                    continue
                }
                if let environment = environmentSettings(name: name, node: value, reader: reader, server: server) {
                    environments[name] = environment
                    environmentKeys.append((name, key))
                }
            }
            if mapping.count == 0 { reader.problem(node, "no environments are configured.", fix: "add one under `environments:`") }
        }
        checkReleaseNames(environments: environments, keys: environmentKeys, models: models, reader: reader)
        let policy = policySettings(root, reader: reader, environments: Array(environments.keys), catalog: catalog)
        checkReferences(environments, policy: policy, root: root, reader: reader)
        problems += Self.checkModelValues(in: modelsFolder, charts: Set(environments.values.map(\.chart)).sorted())
        let valuesFiles = Set(environments.values.flatMap(\.valuesFiles)).sorted()
        let (valuesSecrets, valuesProblems) = Self.checkValuesFiles(valuesFiles)
        problems = reader.problems + problems + valuesProblems
        var configuration = Configuration(chat: chat, kubernetes: kubernetes, helm: helm, environments: environments,
                                          models: models, policy: policy, storage: storage, server: server)
        configuration.knownSecrets = valuesSecrets
        return Loaded(configuration: configuration, catalog: catalog, problems: problems)
    }

    func slackSettings(_ node: Node, reader: YAMLReader) -> SlackSettings {
        var slack = SlackSettings()
        reader.checkKeys(node, known: ["apiURL", "appToken", "botToken", "command", "watchdog"], in: "chat.slack")
        if let url = reader.string(node, "apiURL", in: "chat.slack") {
            if url.hasPrefix("https://") || url.hasPrefix("http://") { slack.apiURL = url } else {
                reader.problem(node["apiURL"], "`chat.slack.apiURL` must be an http(s) URL.", fix: "leave it out for https://slack.com/api/")
            }
        }
        for (key, keyPath) in [("appToken", \SlackSettings.appToken), ("botToken", \SlackSettings.botToken)] {
            guard let value = node[key] else { continue }
            if let source = secretSource(value, key: "chat.slack.\(key)", reader: reader) { slack[keyPath: keyPath] = source }
        }
        if let command = reader.string(node, "command", in: "chat.slack") {
            if command.hasPrefix("/"), command.count > 1, !command.contains(" ") { slack.command = command } else {
                reader.problem(node["command"], "`chat.slack.command` must be a slash command such as `/infer`.",
                               fix: "write the command the app's manifest declares, with its slash")
            }
        }
        slack.watchdog = reader.duration(node, "watchdog", in: "chat.slack", suggested: slack.watchdog) ?? slack.watchdog
        if slack.watchdog < .seconds(2) {
            reader.problem(node["watchdog"], "`chat.slack.watchdog` must be at least 2s (it pings at a third of it).",
                           fix: "write `watchdog: 30s`")
            slack.watchdog = SlackSettings().watchdog
        }
        return slack
    }

    /// `{env: NAME}` or `{file: PATH}`; a literal value was refused already (`refuseLiteralSecrets`).
    func secretSource(_ node: Node, key: String, reader: YAMLReader) -> SecretSource? {
        guard let mapping = node.mapping, mapping.count == 1 else {
            if node.mapping != nil {
                reader.problem(node, "`\(key)` must name one source.", fix: "write `{env: VARIABLE}` or `{file: /path/to/secret}`")
            }
            return nil
        }
        if let name = node["env"]?.string, !name.isEmpty { return .environment(name) }
        if let path = node["file"]?.string, !path.isEmpty { return .file(resolve(path)) }
        reader.problem(node, "`\(key)` must be `{env: VARIABLE}` or `{file: /path/to/secret}`.",
                       fix: "write `\(key.split(separator: ".").last!): {env: SLACK_BOT_TOKEN}`, for example")
        return nil
    }

    /// Secrets come from the environment or mounted files, never from this file: a key that names a
    /// secret must hold `{env: NAME}` or `{file: PATH}`, not the secret itself.
    static func refuseLiteralSecrets(in node: Node, reader: YAMLReader) {
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                let name = (key.string ?? "").lowercased().replacingOccurrences(of: "_", with: "")
                let secretLike = ["token", "password", "secret", "apikey", "privatekey", "clientkey"].contains { name.hasSuffix($0) }
                if secretLike, value.scalar != nil, !(value.string ?? "").isEmpty {
                    reader.problem(key, "`\(key.string ?? "")` holds a secret in the configuration file.",
                                   fix: "write `\(key.string ?? ""): {env: VARIABLE}` or `{file: /path/to/secret}` and remove the value from the file (and its history)")
                }
                refuseLiteralSecrets(in: value, reader: reader)
            }
        case .sequence(let sequence):
            for item in sequence { refuseLiteralSecrets(in: item, reader: reader) }
        case .scalar:
            break
        }
    }

    /// Values reach the engine's pod spec and Helm's release records, which anyone who may read the
    /// namespace's Secrets (Helm's storage) or describe its pods can read, and a dry run shows them.
    /// A secret belongs in a Kubernetes Secret the pod references, never in a value.
    static let secretReferenceFix = "keep it in a Kubernetes Secret and reference it: "
        + "`{name: HF_TOKEN, valueFrom: {secretKeyRef: {name: hf-token, key: token}}}` under `engine.env`, "
        + "or `engine.hfToken.secretName` for the Hugging Face token; "
        + "then remove the value from the file (and its history)"

    /// Whether a key or an env var name names a secret by its last word (`hfToken`, `DB_PASSWORD`,
    /// `OPENAI_API_KEY`), so `secretName` or `tokenizerMode` are not mistaken for one.
    static func namesSecret(_ name: String) -> Bool {
        let squashed = name.lowercased().filter { $0.isLetter || $0.isNumber }
        return ["token", "password", "passwd", "secret", "apikey", "accesskey", "privatekey", "clientkey", "credential",
                "credentials"].contains { squashed.hasSuffix($0) }
    }

    /// Refuses secrets written by value anywhere in values (a model's `values`, a values file): a key
    /// that names a secret holding a string, an env entry `{name: HF_TOKEN, value: …}`, and any string
    /// shaped like a well-known access token.
    static func refuseSecretValues(in node: Node, reader: YAMLReader) {
        switch node {
        case .mapping(let mapping):
            let envName = node["name"]?.string.flatMap { namesSecret($0) ? $0 : nil }
            for (key, value) in mapping {
                let name = key.string ?? ""
                let literal = value.scalar != nil && !(value.string ?? "").isEmpty && value.null == nil
                if literal, name == "value", let envName {
                    reader.problem(value, "the env entry `\(envName)` holds its secret by value.",
                                   fix: secretReferenceFix)
                } else if literal, namesSecret(name) {
                    reader.problem(value, "`\(name)` holds a secret by value.", fix: secretReferenceFix)
                } else {
                    refuseSecretValues(in: value, reader: reader)
                }
            }
        case .sequence(let sequence):
            for item in sequence { refuseSecretValues(in: item, reader: reader) }
        case .scalar:
            if let text = node.string, SecretRedactor.containsToken(text) {
                reader.problem(node, "a value is shaped like an access token.", fix: secretReferenceFix)
            }
        }
    }

    /// Every model's release in every environment (`{model}-{env}`) must fit Helm's limit, and no
    /// two environments may put a release of the same name in the same namespace of the same
    /// cluster: `a` + `b-c` and `a-b` + `c` both make `a-b-c`, and each deploy would overwrite the
    /// other's release.
    func checkReleaseNames(
        environments: [String: EnvironmentSettings], keys: [(name: String, key: Node)], models: [String: ModelSpec],
        reader: YAMLReader
    ) {
        var owners: [ReleaseTarget: (environment: String, key: Node)] = [:]
        for (name, key) in keys {
            guard let environment = environments[name] else { continue }
            var collided: Set<String> = []
            for model in models.keys.sorted() {
                let target = environment.target(model: model)
                if target.release.count > Naming.maxReleaseLength {
                    reader.problem(key, "the release `\(target.release)` of model `\(model)` in `\(name)` is "
                                   + "\(target.release.count) characters long; Helm allows at most "
                                   + "\(Naming.maxReleaseLength).",
                                   fix: "shorten the environment name or the model name")
                }
                guard let owner = owners[target] else {
                    owners[target] = (name, key)
                    continue
                }
                guard collided.insert(owner.environment).inserted else { continue }
                let context = environment.kubeContext.map { "context `\($0)`" } ?? "the kubeconfig's current context"
                let first = "\(reader.file):\(YAMLReader.line(owner.key))"
                let second = "\(reader.file):\(YAMLReader.line(key))"
                reader.problem(key, "the environments `\(owner.environment)` (\(first)) and `\(name)` (\(second)) "
                               + "both put the release `\(target.release)` (model `\(model)`) in namespace "
                               + "`\(target.namespace)` of \(context); each would overwrite the other's.",
                               fix: "give one of them its own namespace or kubeContext, or rename it")
            }
        }
    }

    /// Checks every values file the environments name, once each, and returns the secrets they hold
    /// by value so that, should a file change after the check, replies still never show them.
    static func checkValuesFiles(_ files: [String]) -> (secrets: [String], problems: [ConfigurationProblem]) {
        var secrets: [String] = []
        var problems: [ConfigurationProblem] = []
        for file in files where FileManager.default.fileExists(atPath: file) {
            let reader = YAMLReader(file: file)
            if let root = reader.load() {
                refuseSecretValues(in: root, reader: reader)
                secrets += SecretRedactor.sensitiveStrings(in: jsonValue(root))
            }
            problems += reader.problems
        }
        return (secrets, problems)
    }

    static let empty = Configuration(environments: [:], models: [:], policy: Policy(roles: []))

    /// `approval:` of an environment: the verbs that wait for a second person, how many approvals,
    /// and how long a request stays open. Without it, production's verbs wait for one approval
    /// (`ApprovalPolicy.defaultPolicy`), other environments' nothing.
    func approvalPolicy(_ node: Node, environment name: String, reader: YAMLReader, section: String) -> ApprovalPolicy {
        var policy = ApprovalPolicy.defaultPolicy(forEnvironment: name)
        guard let approval = reader.mapping(node, "approval", in: section) else { return policy }
        let sub = section + ".approval"
        reader.checkKeys(approval, known: ["verbs", "approvals", "validFor"], in: sub)
        if let verbs = reader.strings(approval, "verbs", in: sub) {
            for (index, verb) in verbs.enumerated() where !ApprovalPolicy.productionVerbs.contains(verb) {
                reader.problem(approval["verbs"]?.sequence?[index],
                               "`\(verb)` is not a verb that can wait for approval."
                               + Suggestions.didYouMean(verb, in: ApprovalPolicy.productionVerbs.sorted()),
                               fix: "use some of " + ApprovalPolicy.productionVerbs.sorted().map { "`\($0)`" }.joined(separator: ", ")
                               + ", or `[]` for none")
            }
            policy.verbs = Set(verbs).intersection(ApprovalPolicy.productionVerbs)
        }
        policy.approvals = reader.int(approval, "approvals", in: sub, range: 1...10, suggested: 1) ?? policy.approvals
        policy.validFor = reader.duration(approval, "validFor", in: sub, suggested: policy.validFor) ?? policy.validFor
        return policy
    }

    func environmentSettings(name: String, node: Node, reader: YAMLReader, server: ServerSettings) -> EnvironmentSettings? {
        let section = "environments.\(name)"
        guard node.mapping != nil else {
            reader.problem(node, "`\(name)` must be a mapping.", fix: "indent its keys under `\(name):`")
            return nil
        }
        reader.checkKeys(node, known: ["kubeContext", "namespace", "chart", "chartVersion", "valuesFiles", "replicas", "readinessBudget",
                                       "verification", "allowedSetKeys", "autoRollback", "capacity", "engineAccess", "router",
                                       "approval", "promotion", "channels", "whenLocked", "breakGlass", "keepPrevious"], in: section)
        guard let namespace = reader.string(node, "namespace", in: section, required: true),
              let chart = reader.string(node, "chart", in: section, required: true)
        else { return nil }
        let chartPath = chart.hasPrefix(".") || chart.hasPrefix("/") ? resolve(chart) : chart
        // helm runs with its own empty settings folders (never the host's `helm repo add` list), so
        // a `repo/chart` reference would fail at the first deploy; say so now.
        if !chartPath.hasPrefix("/"), !chartPath.hasPrefix("oci://") {
            reader.problem(node["chart"], "`\(chart)` is neither a chart folder, a packaged .tgz nor an oci:// reference; "
                           + "helm runs with its own settings, so repositories added with `helm repo add` are not seen.",
                           fix: "point `chart` at a folder or .tgz (relative paths start with ./ or ../), "
                               + "or use `oci://registry/path/chart` with `chartVersion`")
        }
        if chartPath.hasPrefix("/"), !FileManager.default.fileExists(atPath: chartPath + "/Chart.yaml"), !chartPath.hasSuffix(".tgz") {
            reader.problem(node["chart"], "no chart at \(chartPath).", fix: "point `chart` at a folder with a Chart.yaml")
        }
        var environment = EnvironmentSettings(name: name, namespace: namespace, chart: chartPath)
        environment.kubeContext = reader.string(node, "kubeContext", in: section)
        environment.chartVersion = reader.string(node, "chartVersion", in: section)
        environment.valuesFiles = (reader.strings(node, "valuesFiles", in: section) ?? []).map(resolve)
        for (index, file) in environment.valuesFiles.enumerated() where !FileManager.default.fileExists(atPath: file) {
            reader.problem(node["valuesFiles"]?.sequence?[index], "the values file \(file) does not exist.", fix: "correct the path")
        }
        environment.replicas = reader.int(node, "replicas", in: section, range: 0...64, suggested: environment.replicas)
            ?? environment.replicas
        environment.readinessBudget =
            reader.duration(node, "readinessBudget", in: section, suggested: environment.readinessBudget)
            ?? environment.readinessBudget
        environment.allowedSetKeys = reader.strings(node, "allowedSetKeys", in: section) ?? []
        for (index, key) in environment.allowedSetKeys.enumerated()
        where Self.namesSecret(String(key.split(separator: ".").last ?? "")) {
            reader.problem(node["allowedSetKeys"]?.sequence?[index],
                           "`--set \(key)` would make people type a secret in chat.",
                           fix: "remove it from `allowedSetKeys`; " + Self.secretReferenceFix)
        }
        if let values = Self.chartValues(chartPath) {
            for (index, key) in environment.allowedSetKeys.enumerated() {
                guard let missing = Self.missingValue(DeployPlanner.valuePath(key), in: values) else { continue }
                reader.problem(node["allowedSetKeys"]?.sequence?[index],
                               "the allowed `--set` key `\(key)` is not in the chart's values "
                               + "(\(chartPath)/values.yaml has no `\(missing.path)`), so helm would ignore it."
                               + Suggestions.didYouMean(missing.path, in: missing.candidates),
                               fix: "correct the key, or add it with its default to the chart's values.yaml")
            }
        }
        environment.autoRollback = reader.bool(node, "autoRollback", in: section) ?? false
        if let verification = reader.mapping(node, "verification", in: section) {
            let sub = section + ".verification"
            reader.checkKeys(verification, known: ["warmupRequests", "prompt", "maxTokens", "requestTimeout", "latencyTarget"], in: sub)
            var settings = VerificationSettings()
            settings.warmupRequests = reader.int(verification, "warmupRequests", in: sub, range: 0...100,
                                                     suggested: settings.warmupRequests) ?? settings.warmupRequests
            settings.prompt = reader.string(verification, "prompt", in: sub) ?? settings.prompt
            settings.maxTokens =
                reader.int(verification, "maxTokens", in: sub, range: 1...4096, suggested: settings.maxTokens)
                ?? settings.maxTokens
            settings.requestTimeout =
                reader.duration(verification, "requestTimeout", in: sub, suggested: settings.requestTimeout)
                ?? settings.requestTimeout
            settings.latencyTarget =
                reader.duration(verification, "latencyTarget", in: sub, suggested: settings.latencyTarget)
                ?? settings.latencyTarget
            environment.verification = settings
        }
        environment.approval = approvalPolicy(node, environment: name, reader: reader, section: section)
        if let promotion = reader.mapping(node, "promotion", in: section) {
            let sub = section + ".promotion"
            reader.checkKeys(promotion, known: ["from", "evidenceWindow"], in: sub)
            environment.promotion.from = reader.string(promotion, "from", in: sub)
            environment.promotion.evidenceWindow =
                reader.duration(promotion, "evidenceWindow", in: sub, suggested: environment.promotion.evidenceWindow)
                ?? environment.promotion.evidenceWindow
        }
        environment.channels = reader.strings(node, "channels", in: section) ?? []
        if let whenLocked = reader.string(node, "whenLocked", in: section) {
            if let policy = LockedEnvironmentPolicy(rawValue: whenLocked) {
                environment.whenLocked = policy
            } else {
                reader.problem(node["whenLocked"], "`whenLocked: \(whenLocked)` is not a choice."
                               + Suggestions.didYouMean(whenLocked, in: LockedEnvironmentPolicy.allCases.map(\.rawValue)),
                               fix: "use `refuse` (the default) or `queue`")
            }
        }
        if let breakGlass = reader.mapping(node, "breakGlass", in: section) {
            let sub = section + ".breakGlass"
            reader.checkKeys(breakGlass, known: ["role", "channel"], in: sub)
            if let role = reader.string(breakGlass, "role", in: sub, required: true),
               let channel = reader.string(breakGlass, "channel", in: sub, required: true) {
                environment.breakGlass = BreakGlassSettings(role: role, channel: channel)
            }
        }
        if let capacity = reader.mapping(node, "capacity", in: section) {
            let sub = section + ".capacity"
            reader.checkKeys(capacity, known: ["whenShort", "waitUpTo"], in: sub)
            switch reader.string(capacity, "whenShort", in: sub) ?? "refuse" {
            case "refuse": environment.capacity = .refuse
            case "wait":
                let waitUpTo = reader.duration(capacity, "waitUpTo", in: sub, suggested: .seconds(600))
                environment.capacity = .wait(waitUpTo ?? .seconds(600))
            case let other:
                reader.problem(capacity["whenShort"], "`whenShort: \(other)` is not a choice.", fix: "use `refuse` or `wait`")
            }
        }
        if let router = reader.mapping(node, "router", in: section) {
            let sub = section + ".router"
            reader.checkKeys(router, known: ["url", "autoRegister", "workerURL", "enginePort", "denyBackendURL", "replicas"], in: sub)
            if let url = reader.string(router, "url", in: sub, required: true) {
                if !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                    reader.problem(router["url"], "the router URL `\(url)` is not an http(s) URL.", fix: "write e.g. `url: http://vllm-router:30000`")
                }
                let template = reader.string(router, "workerURL", in: sub) ?? "http://{podIP}:{port}"
                if !template.contains("{podIP}") {
                    reader.problem(router["workerURL"], "`workerURL` must contain `{podIP}`.", fix: "write e.g. `workerURL: http://{podIP}:{port}`")
                }
                environment.router = RouterSettings(
                    url: url, autoRegister: reader.bool(router, "autoRegister", in: sub) ?? false, workerURLTemplate: template,
                    enginePort: reader.int(router, "enginePort", in: sub, range: 1...65535, suggested: 8000) ?? 8000,
                    denyBackendURL: reader.string(router, "denyBackendURL", in: sub)
                        ?? server.publicURL ?? "http://\(server.host):\(server.port)")
                let replicas = reader.strings(router, "replicas", in: sub) ?? []
                for (index, replica) in replicas.enumerated() where !(replica.hasPrefix("http://") || replica.hasPrefix("https://")) {
                    reader.problem(router["replicas"]?.sequence?[index], "the router replica `\(replica)` is not an http(s) URL.",
                                   fix: "list each router process's own address, e.g. `http://vllm-router-0.vllm-router:30000`")
                }
                if replicas.count == 1 {
                    reader.problem(router["replicas"], "one router replica is the router itself.",
                                   fix: "list every replica behind `url` (two or more), or remove `replicas`")
                } else if replicas.count > 1 {
                    environment.router?.replicas = replicas
                }
            }
        }
        if node["keepPrevious"] != nil,
           let keep = reader.duration(node, "keepPrevious", in: section, suggested: .seconds(1800)) {
            if environment.router == nil {
                reader.problem(node["keepPrevious"], "`keepPrevious` keeps the previous revision for a rollback that only switches "
                               + "the router, and `\(name)` has no router.",
                               fix: "add a `router:` section, or remove `keepPrevious`")
            } else if keep > .seconds(7 * 24 * 3600) {
                reader.problem(node["keepPrevious"], "`keepPrevious: \(keep.spoken)` would hold the previous revision's GPUs for "
                               + "over a week.", fix: "use at most `168h`, e.g. `keepPrevious: 30m`")
            } else {
                environment.keepPrevious = keep
            }
        }
        if let access = node["engineAccess"] {
            let unknownKeys = (access.mapping.map { $0.keys.compactMap(\.string) } ?? []).filter { $0 != "direct" }
            if access.string == "serviceProxy" {
                environment.engineAccess = .serviceProxy
            } else if !unknownKeys.isEmpty {
                reader.checkKeys(access, known: ["direct"], in: section + ".engineAccess")
            } else if let template = reader.string(access, "direct", in: section + ".engineAccess") {
                environment.engineAccess = .direct(urlTemplate: template)
            } else {
                reader.problem(access, "`engineAccess` must be `serviceProxy` or `{direct: \"http://{service}.{namespace}…:{port}\"}`.",
                               fix: "write `engineAccess: serviceProxy`")
            }
        }
        return environment
    }

    /// The values.yaml of a chart folder; nil for packaged and oci:// charts, which are not read here.
    static func chartValues(_ chart: String) -> Node? {
        guard chart.hasPrefix("/"), let text = try? String(contentsOfFile: chart + "/values.yaml", encoding: .utf8)
        else {
            return nil
        }
        return (try? Yams.compose(yaml: text)) ?? nil
    }

    /// Where a `--set` path leaves the chart's values, with the keys that exist there; nil when the
    /// chart takes it. An empty map (`podAnnotations: {}`), a list or a null takes any child, so
    /// `podAnnotations.inferops\.dev/simulate-ready-after-seconds` is a key the chart has.
    static func missingValue(_ path: [String], in values: Node) -> (path: String, candidates: [String])? {
        var node = values
        var walked: [String] = []
        for part in path {
            let name = part.firstIndex(of: "[").map { String(part[..<$0]) } ?? part
            guard let mapping = node.mapping else {
                let null = node.null != nil && !node.tag.description.hasSuffix(":str")  // `""` is a string
                if node.sequence != nil || null { return nil }
                return (walked.joined(separator: "."), [])  // a single value has no children
            }
            if mapping.count == 0 { return nil }
            guard let child = node[name] else {
                let keys = Array(mapping.keys.compactMap(\.string)).map { (walked + [$0]).joined(separator: ".") }
                return ((walked + [name]).joined(separator: "."), keys)
            }
            walked.append(name)
            node = child
            if name != part { return nil }  // an index into a list: the list's items are not checked
        }
        return nil
    }

    /// Names one environment's settings give to other parts: the environment promoted from and
    /// the break-glass role must exist.
    func checkReferences(_ environments: [String: EnvironmentSettings], policy: Policy, root: Node, reader: YAMLReader) {
        let roles = policy.roles.map(\.name)
        for (name, environment) in environments.sorted(by: { $0.key < $1.key }) {
            let node = root["environments"]?[name]
            if let from = environment.promotion.from, environments[from] == nil || from == name {
                reader.problem(node?["promotion"]?["from"],
                               "`promotion.from: \(from)` of `\(name)` is not another environment."
                               + Suggestions.didYouMean(from, in: environments.keys.sorted()),
                               fix: "name the environment whose verified deploys are promoted to `\(name)`")
            }
            if let router = environment.router,
               let other = environments.keys.sorted().first(where: { $0 < name && environments[$0]?.router?.url == router.url }) {
                reader.problem(node?["router"]?["url"],
                               "`\(name)` and `\(other)` share the router \(router.url): it routes by model name, so the same "
                               + "model in both would replace the other's workers.",
                               fix: "give each environment a router of its own", critical: false)
            }
            if let breakGlass = environment.breakGlass, !roles.contains(breakGlass.role) {
                reader.problem(node?["breakGlass"]?["role"],
                               "the break-glass role `\(breakGlass.role)` of `\(name)` is not a policy role."
                               + Suggestions.didYouMean(breakGlass.role, in: roles),
                               fix: "name a role from `policy.roles`")
            }
        }
    }

    func policySettings(_ root: Node, reader: YAMLReader, environments: [String], catalog: CommandCatalog) -> Policy {
        guard let node = reader.mapping(root, "policy", in: "the top level", required: true) else { return Policy(roles: []) }
        reader.checkKeys(node, known: ["roles"], in: "policy")
        guard let roles = node["roles"]?.sequence else {
            reader.problem(node, "policy needs a list of `roles`.", fix: "see config/inferops.example.yaml")
            return Policy(roles: [])
        }
        let permissions = Set(catalog.specs.map(\.permission)).subtracting(["none"]).sorted()
        return Policy(roles: roles.compactMap { role in
            reader.checkKeys(role, known: ["name", "members", "grants"], in: "a policy role")
            guard let name = reader.string(role, "name", in: "a policy role", required: true) else { return nil }
            let section = "policy role `\(name)`"
            let members = reader.strings(role, "members", in: section) ?? []
            if members.isEmpty { reader.problem(role, "the role `\(name)` has no members.", fix: "list immutable user ids under `members`", critical: false) }
            let grants: [Policy.Grant] = (role["grants"]?.sequence ?? []).map { grant in
                reader.checkKeys(grant, known: ["permissions", "environments"], in: "a grant of \(section)")
                let granted = reader.strings(grant, "permissions", in: section) ?? []
                let where_ = reader.strings(grant, "environments", in: section) ?? []
                for permission in granted where permission != "*" && !permissions.contains(permission) {
                    reader.problem(grant, "unknown permission `\(permission)`." + Suggestions.didYouMean(permission, in: permissions),
                                   fix: "use one of: \(permissions.joined(separator: ", ")), or `*`")
                }
                for environment in where_ where environment != "*" && !environments.contains(environment) {
                    reader.problem(grant, "unknown environment `\(environment)`." + Suggestions.didYouMean(environment, in: environments),
                                   fix: "use a configured environment or `*`")
                }
                return Policy.Grant(permissions: Set(granted), environments: Set(where_))
            }
            return Policy.Role(name: name, members: Set(members), grants: grants)
        })
    }

    static func yamlFiles(in folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { folder + "/" + $0 }
    }

    static func loadModels(in folder: String) -> ([String: ModelSpec], [ConfigurationProblem]) {
        var models: [String: ModelSpec] = [:]
        var problems: [ConfigurationProblem] = []
        let files = yamlFiles(in: folder)
        if files.isEmpty {
            problems.append(ConfigurationProblem(file: folder, line: 0, message: "the model catalog is empty.",
                                                 fix: "add a file per model, e.g. models/llama-3-8b.yaml", critical: true))
        }
        for file in files {
            let reader = YAMLReader(file: file)
            defer { problems += reader.problems }
            guard let node = reader.load() else { continue }
            reader.checkKeys(node, known: ["name", "modelId", "revision", "gpusPerReplica", "image", "engineArgs", "values"], in: "a model")
            guard let name = reader.string(node, "name", in: "the model", required: true),
                  let modelID = reader.string(node, "modelId", in: "the model", required: true) else { continue }
            if let problem = Naming.dnsLabelProblem(name) {
                reader.problem(node["name"], "the model name `\(name)` is not a DNS label: \(problem).",
                               fix: "use e.g. `llama-3-8b`")
                continue
            }
            if models[name] != nil { reader.problem(node["name"], "the model `\(name)` is declared twice.", fix: "remove one") }
            var model = ModelSpec(name: name, modelID: modelID)
            model.revision = reader.string(node, "revision", in: "the model") ?? model.revision
            model.gpusPerReplica = reader.int(node, "gpusPerReplica", in: "the model", range: 0...16, suggested: model.gpusPerReplica)
                ?? model.gpusPerReplica
            model.image = reader.string(node, "image", in: "the model") ?? model.image
            model.engineArguments = reader.strings(node, "engineArgs", in: "the model") ?? []
            if let values = node["values"] {
                refuseSecretValues(in: values, reader: reader)
                model.values = jsonValue(values)
            }
            models[name] = model
        }
        return (models, problems)
    }

    /// A model's `values` are chart values: a key that an environment's chart lacks (`replicacount`)
    /// would be ignored by helm without a word, so it is reported at its line.
    static func checkModelValues(in folder: String, charts: [String]) -> [ConfigurationProblem] {
        let chartValues = charts.compactMap { chart in Self.chartValues(chart).map { (chart, $0) } }
        guard !chartValues.isEmpty else { return [] }
        var problems: [ConfigurationProblem] = []
        for file in yamlFiles(in: folder) {
            let reader = YAMLReader(file: file)
            guard let values = (try? String(contentsOfFile: file, encoding: .utf8)).flatMap({ try? Yams.compose(yaml: $0) })?["values"]
            else { continue }
            func walk(_ node: Node, _ path: [String]) {
                guard let mapping = node.mapping, mapping.count > 0 else {
                    for (chart, chartNode) in chartValues {
                        guard let missing = missingValue(path, in: chartNode) else { continue }
                        reader.problem(node, "`values.\(path.joined(separator: "."))` is not in the chart's values "
                                       + "(\(chart)/values.yaml has no `\(missing.path)`), so helm would ignore it."
                                       + Suggestions.didYouMean(missing.path, in: missing.candidates),
                                       fix: "correct the key, or add it with its default to the chart's values.yaml")
                        return
                    }
                    return
                }
                for (key, child) in mapping { walk(child, path + [key.string ?? ""]) }
            }
            if values.mapping != nil { walk(values, []) }
            problems += reader.problems
        }
        return problems
    }

    public static func loadCommands(in folder: String) -> (CommandCatalog, [ConfigurationProblem]) {
        var specs: [CommandSpec] = []
        var problems: [ConfigurationProblem] = []
        let files = yamlFiles(in: folder)
        if files.isEmpty {
            problems.append(ConfigurationProblem(file: folder, line: 0, message: "no command declarations found.",
                                                 fix: "point `commands.directory` at the commands/ folder", critical: true))
        }
        for file in files {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                let spec = try YAMLDecoder().decode(CommandSpec.self, from: text)
                for problem in CommandCatalog.problems(in: spec) {
                    problems.append(ConfigurationProblem(file: file, line: 1, message: ConfigurationProblem.sentence(problem),
                                                         fix: "correct the declaration", critical: true))
                }
                let expected = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
                if spec.name != expected {
                    problems.append(ConfigurationProblem(file: file, line: 1, message: "the file declares `\(spec.name)`.",
                                                         fix: "name the file \(spec.name).yaml", critical: false))
                }
                specs.append(spec)
            } catch {
                let message = ConfigurationProblem.sentence("the declaration cannot be read: \(error)")
                problems.append(ConfigurationProblem(file: file, line: 1, message: message,
                                                     fix: "compare it with commands/deploy.yaml", critical: true))
            }
        }
        return (CommandCatalog(specs: specs), problems)
    }

    static func jsonValue(_ node: Node) -> JSONValue {
        switch node {
        case .scalar:
            if node.tag.description.hasSuffix(":str") || node.scalar?.style == .doubleQuoted || node.scalar?.style == .singleQuoted {
                return .string(node.string ?? "")
            }
            if let int = node.int { return .number(Double(int)) }
            if let bool = node.bool { return .bool(bool) }
            if let double = node.float { return .number(double) }
            if node.null != nil { return .null }
            return .string(node.string ?? "")
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping { object[key.string ?? ""] = jsonValue(value) }
            return .object(object)
        case .sequence(let sequence):
            return .array(sequence.map(jsonValue))
        }
    }
}
