import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// The verbs of `commands/*.yaml`, as `CommandSpec` values (the test target reads no YAML;
/// `CatalogFixtureTests` checks that the two stay in step).
enum Fixtures {
    static let specs: [CommandSpec] = [
        decision(
            "approve", summary: "Approve an operation that waits for a second person (production changes).",
            operation: "The operation id, as shown in its approval request (op-…), or a model with `in`.",
            reason: "Why; kept in the audit log and shown in the operation's thread.",
            examples: ["/infer approve op-1a2b3c4d",
                       "/infer approve op-1a2b3c4d --reason \"checked the values diff with the on-call\"",
                       "/infer approve llama-3-8b in production"]),
        CommandSpec(
            name: "cancel", summary: "Cancel an operation that is still queued or running.", permission: "cancel",
            changes: true,
            arguments: [
                ArgumentSpec(
                    name: "operation", kind: .operation, summary: "The operation id, as shown in its thread (op-…).")
            ],
            examples: ["/infer cancel op-1a2b3c4d"]
        ),
        CommandSpec(
            name: "deploy", summary: "Deploy a model engine to an environment and verify it with a test completion.",
            permission: "deploy", changes: true,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, summary: "The model's name in the catalog (config/models)."),
                ArgumentSpec(
                    name: "environment", kind: .environment, keyword: "to", summary: "The environment to deploy to."),
            ],
            options: [
                OptionSpec(
                    name: "chart-version", kind: .string,
                    summary: "Deploy this version of the engine chart instead of the environment's default."
                ),
                OptionSpec(
                    name: "set", kind: .keyvalue, repeatable: true,
                    summary: "Override a chart value; only the keys the environment allows."
                ),
                OptionSpec(
                    name: "dry-run", kind: .flag,
                    summary: "Show the plan and the rendered change without applying anything."
                ),
                OptionSpec(
                    name: "register", kind: .flag,
                    summary: "Once verified, route the model by name through the environment's router."
                ),
                OptionSpec(
                    name: "wait-for-gpus", kind: .string,
                    summary: "Wait up to this long (10m, 2h) for free GPUs instead of being refused."
                ),
                OptionSpec(
                    name: "min-replicas", kind: .string,
                    summary: "If the GPUs are short, deploy fewer replicas, down to this many."
                ),
            ],
            examples: [
                "/infer deploy llama-3-8b to staging",
                "/infer deploy llama-3-8b to staging --set replicaCount=2",
                "/infer deploy llama-3-8b to staging --dry-run",
                "/infer deploy llama-3-8b to staging --register",
                "/infer deploy llama-3-8b to staging --wait-for-gpus 15m",
                "/infer deploy llama-3-8b to staging --set replicaCount=4 --min-replicas 2",
            ]
        ),
        decision(
            "deny", summary: "Deny an operation that waits for approval; it ends and never runs.",
            operation: "The operation id, as shown in its approval request (op-…), or a model with `in`.",
            reason: "Why; shown in the operation's thread and kept in the audit log.",
            examples: ["/infer deny op-1a2b3c4d --reason \"not during the launch freeze\""]),
        routing(
            "deregister", summary: "Take a model out of the router; requests for it get a clear refusal.",
            permission: "register", model: "The registered model.",
            reason: "Why; shown to every client that asks for the model.",
            example: "/infer deregister mistral-7b in staging --reason \"replaced by llama-3-8b\""),
        routing(
            "disable", summary: "Deny every request for a model through the router, with a message saying who and why.",
            permission: "disable", model: "The registered model.",
            reason: "Why; shown to every client that asks for the model.",
            example: "/infer disable llama-3-8b in production --reason \"wrong answers under load, see INC-4711\""),
        routing(
            "enable", summary: "Route a disabled model to its engines again, and verify it through the router.",
            permission: "disable", model: "The disabled model.", reason: "Why; recorded with the registration.",
            example: "/infer enable llama-3-8b in production --reason \"fixed in revision 7\""),
        routing(
            "register", summary: "Route a deployed model by name through the environment's router, and verify it.",
            permission: "register", model: "The model, deployed and ready in the environment.",
            reason: "Why; recorded with the registration.", example: "/infer register llama-3-8b in staging"),
        CommandSpec(
            name: "help", summary: "List the commands, or explain one.", permission: "none", changes: false,
            arguments: [ArgumentSpec(name: "verb", kind: .verb, optional: true, summary: "The command to explain.")],
            examples: ["/infer help", "/infer help deploy"]
        ),
        CommandSpec(
            name: "history", summary: "List a release's revisions with who deployed what and when.", permission: "view",
            changes: false,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, summary: "The model."),
                ArgumentSpec(name: "environment", kind: .environment, keyword: "in", summary: "The environment."),
            ],
            examples: ["/infer history llama-3-8b in staging"]
        ),
        CommandSpec(
            name: "lock", summary: "Lock an environment so that only you can change it until you unlock it.",
            permission: "lock", changes: true,
            arguments: [ArgumentSpec(name: "environment", kind: .environment, summary: "The environment to lock.")],
            options: [OptionSpec(name: "reason", kind: .string, summary: "Why; shown to anyone the lock stops.")],
            examples: ["/infer lock production --reason \"incident 4711\""]
        ),
        CommandSpec(
            name: "promote", summary: "Deploy to an environment what was verified in another (staging unless named).",
            permission: "promote", changes: true,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, summary: "The model to promote."),
                ArgumentSpec(
                    name: "source", kind: .environment, keyword: "from", optional: true,
                    summary: "Where it was verified; the target's `promotion.from`, or staging."),
                ArgumentSpec(name: "environment", kind: .environment, keyword: "to", summary: "Where to deploy it."),
            ],
            examples: ["/infer promote llama-3-8b to production", "/infer promote llama-3-8b from staging to production"]
        ),
        CommandSpec(
            name: "remove", summary: "Take a model out of the router, uninstall its release and free its GPUs.",
            permission: "remove", changes: true,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, summary: "The deployed model."),
                ArgumentSpec(
                    name: "environment", kind: .environment, keyword: "from", summary: "The environment it runs in."),
            ],
            options: [
                OptionSpec(
                    name: "reason", kind: .string,
                    summary: "Why; recorded in the audit log and shown to every client that asks for the model.")
            ],
            examples: ["/infer remove mistral-7b from staging --reason \"make room for llama-3-8b\""]
        ),
        CommandSpec(
            name: "rollback", summary: "Roll a model back to its previous revision (or the one named) and verify it.",
            permission: "rollback", changes: true,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, summary: "The model to roll back."),
                ArgumentSpec(
                    name: "environment", kind: .environment, keyword: "in", summary: "The environment it runs in."),
            ],
            options: [
                OptionSpec(
                    name: "to", kind: .revision,
                    summary: "The Helm revision to return to; the previous one when omitted. See /infer history."
                ),
                OptionSpec(
                    name: "reason", kind: .string,
                    summary: "Why; kept in the audit log and shown in the thread. Required with --break-glass."),
                OptionSpec(
                    name: "break-glass", kind: .flag,
                    summary: "Emergency only, for the environment's break-glass role; runs without waiting for approval, "
                        + "with a reason, announced and sent for review."),
            ],
            examples: ["/infer rollback llama-3-8b in staging", "/infer rollback llama-3-8b in staging --to 3",
                       "/infer rollback llama-3-8b in production --break-glass --reason \"INC-4711 bad answers\""]
        ),
        CommandSpec(
            name: "slo", summary: "Show how the service levels were met over the last days (30 unless told).",
            permission: "view", changes: false,
            arguments: [
                ArgumentSpec(
                    name: "environment", kind: .environment, optional: true,
                    summary: "Only this environment; every one you may view when omitted.")
            ],
            options: [
                OptionSpec(name: "days", kind: .string, summary: "The window in days, from 1 to 365 (30 when omitted).")
            ],
            examples: ["/infer slo", "/infer slo production --days 7"]
        ),
        CommandSpec(
            name: "status", summary: "Show what runs where, how it is doing, and what is in flight.",
            permission: "view",
            changes: false,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, optional: true, summary: "Only this model."),
                ArgumentSpec(
                    name: "environment", kind: .environment, keyword: "in", optional: true,
                    summary: "Only this environment."
                ),
            ],
            examples: ["/infer status", "/infer status llama-3-8b", "/infer status in staging"]
        ),
        CommandSpec(
            name: "unlock", summary: "Release an environment lock (yours, or anyone's with the unlock permission).",
            permission: "unlock", changes: true,
            arguments: [ArgumentSpec(name: "environment", kind: .environment, summary: "The environment to unlock.")],
            options: [OptionSpec(name: "reason", kind: .string, summary: "Why; recorded in the audit log.")],
            examples: ["/infer unlock production"]
        ),
    ]

    /// `approve` and `deny` share one shape.
    static func decision(_ name: String, summary: String, operation: String, reason: String, examples: [String]) -> CommandSpec {
        CommandSpec(
            name: name, summary: summary, permission: "approve", changes: true,
            arguments: [
                ArgumentSpec(name: "operation", kind: .text, summary: operation),
                ArgumentSpec(
                    name: "environment", kind: .environment, keyword: "in", optional: true,
                    summary: "With a model instead of an id, the one operation on it waiting for approval there."),
            ],
            options: [OptionSpec(name: "reason", kind: .string, summary: reason)],
            examples: examples
        )
    }

    /// The four routing verbs share one shape.
    static func routing(
        _ name: String, summary: String, permission: String, model: String, reason: String, example: String
    ) -> CommandSpec {
        CommandSpec(
            name: name, summary: summary, permission: permission, changes: true,
            arguments: [
                ArgumentSpec(name: "model", kind: .model, summary: model),
                ArgumentSpec(
                    name: "environment", kind: .environment, keyword: "in",
                    summary: "The environment whose router routes it."),
            ],
            options: [OptionSpec(name: "reason", kind: .string, summary: reason)],
            examples: [example]
        )
    }

    static let catalog = CommandCatalog(specs: specs)
    static let parser = CommandParser(catalog: catalog)

    // MARK: people and policy

    static let admin = UserID("U0ADMIN")
    static let deployer = UserID("U0DEPLOYER")
    static let viewer = UserID("U0VIEWER")
    static let releaser = UserID("U0RELEASER")

    /// admin: everything everywhere; staging-deployer: changes in staging, view in production;
    /// releaser: deploys in dev without routing it, disables in production; viewer: everyone may view
    /// everywhere.
    static let policy = Policy(roles: [
        Policy.Role(
            name: "admin", members: [admin.rawValue],
            grants: [Policy.Grant(permissions: ["*"], environments: ["*"])]
        ),
        Policy.Role(
            name: "staging-deployer", members: [deployer.rawValue],
            grants: [
                Policy.Grant(
                    permissions: ["deploy", "rollback", "cancel", "lock", "unlock", "view", "register", "remove"],
                    environments: ["staging"]
                ),
                Policy.Grant(permissions: ["view"], environments: ["production"]),
            ]
        ),
        Policy.Role(
            name: "releaser", members: [releaser.rawValue],
            grants: [
                Policy.Grant(permissions: ["deploy", "rollback", "cancel", "view"], environments: ["dev"]),
                Policy.Grant(permissions: ["disable", "view"], environments: ["production"]),
            ]
        ),
        Policy.Role(
            name: "viewer", members: ["*"],
            grants: [Policy.Grant(permissions: ["view"], environments: ["*"])]
        ),
    ])

    // MARK: models and environments

    static let llama = ModelSpec(
        name: "llama-3-8b", modelID: "meta-llama/Meta-Llama-3-8B-Instruct", revision: "main", gpusPerReplica: 1,
        image: "vllm/vllm-openai:v0.6.3", engineArguments: ["--max-model-len", "8192"]
    )
    static let qwen = ModelSpec(
        name: "qwen-2-72b", modelID: "Qwen/Qwen2-72B-Instruct", revision: "main", gpusPerReplica: 4,
        image: "vllm/vllm-openai:v0.6.3", engineArguments: ["--tensor-parallel-size", "4"]
    )

    static let verification = VerificationSettings(
        warmupRequests: 2, prompt: "Say hello in five words.", maxTokens: 16, requestTimeout: .seconds(30),
        latencyTarget: .seconds(3)
    )

    static func environment(_ name: String, autoRollback: Bool = false, allowedSetKeys: [String]) -> EnvironmentSettings
    {
        EnvironmentSettings(
            name: name, kubeContext: "kind-inferops", namespace: "inferops-\(name)", chart: "charts/vllm-engine",
            chartVersion: nil, valuesFiles: ["values/\(name).yaml"], replicas: 1, readinessBudget: .seconds(600),
            verification: verification, allowedSetKeys: allowedSetKeys, autoRollback: autoRollback, capacity: .refuse
        )
    }

    static func configuration(_ adjust: (inout Configuration) -> Void = { _ in }) -> Configuration {
        var configuration = Configuration(
            environments: [
                "dev": environment(
                    "dev", allowedSetKeys: ["replicaCount", "engine.maxModelLen", "engine.gpuMemoryUtilization"]),
                "staging": environment(
                    "staging", allowedSetKeys: ["replicaCount", "engine.maxModelLen", "engine.gpuMemoryUtilization"]),
                "production": environment("production", autoRollback: true, allowedSetKeys: ["replicaCount"]),
            ],
            models: ["llama-3-8b": llama, "qwen-2-72b": qwen],
            policy: policy
        )
        adjust(&configuration)
        return configuration
    }

    static let validator = CommandValidator(configuration: configuration(), catalog: catalog)

    /// `staging`, and so on, as the core resolves them.
    static func settings(_ environment: String) -> EnvironmentSettings {
        configuration().environments[environment]!
    }

    static func target(_ model: String, in environment: String) -> ReleaseTarget {
        settings(environment).target(model: model)
    }
}

/// The intake and the runner on fakes, with every model answering in every environment.
struct Harness {
    let fakes: FakeServices
    let configuration: Configuration
    let daemon: TestDaemon

    var time: ManualTime { fakes.time }
    var store: InMemoryOperationStore { fakes.store }
    var releases: FakeReleaseEngine { fakes.releases }
    var cluster: FakeCluster { fakes.cluster }
    var engines: FakeEngineClient { fakes.engines }
    var chat: RecordingChat { fakes.chat }

    init(fakes: FakeServices = FakeServices(), _ adjust: (inout Configuration) -> Void = { _ in }) {
        self.fakes = fakes
        configuration = Fixtures.configuration(adjust)
        daemon = TestDaemon(configuration: configuration, catalog: Fixtures.catalog, services: fakes.services)
        for environment in configuration.environments.values {
            for model in configuration.models.values {
                fakes.engines.script(environment.target(model: model.name).release, .healthy(serving: model.name))
            }
        }
    }

    /// Another daemon on the same store, cluster and chat: the next start after a stop, or a second
    /// process. Its runner renews every 50 ms unless `shutdownBound` says otherwise.
    func anotherDaemon(shutdownBound: Duration? = nil) -> TestDaemon {
        var settings = OperationRunner.Settings(heartbeatInterval: .milliseconds(50))
        if let shutdownBound { settings.shutdownBound = shutdownBound }
        return TestDaemon(configuration: configuration, catalog: Fixtures.catalog, services: fakes.services, settings: settings)
    }

    @discardableResult
    func run(_ text: String, as user: UserID = Fixtures.admin, channel: String = "C0OPS") async -> CommandOutcome {
        await daemon.handle(IncomingCommand(user: user, text: text, channel: channel))
    }

    /// Runs a command in a task of its own, for commands the test holds in flight.
    func start(_ text: String, as user: UserID = Fixtures.admin) -> Task<CommandOutcome, Never> {
        let daemon = daemon
        return Task { await daemon.handle(IncomingCommand(user: user, text: text, channel: "C0OPS")) }
    }

    func target(_ model: String, in environment: String) -> ReleaseTarget {
        configuration.environments[environment]!.target(model: model)
    }

    /// The operation whose status card is the first post with this title prefix.
    func operation(titled prefix: String) async throws -> OperationID {
        let card = try await chat.waitForEvent { $0.kind == .post && $0.operation != nil && $0.title.hasPrefix(prefix) }
        return card.operation!
    }

    /// Waits until `id` is in `state`.
    func waitUntil(_ id: OperationID, is state: OperationState) async throws {
        try await store.waitFor { $0.operation(id)?.state == state }
    }

    func record(_ id: OperationID) async -> OperationRecord? { await store.operation(id) }
}

extension CommandOutcome {
    var operation: OperationID? {
        switch self {
        case .completed(let id): id
        case .failed(let id, _): id
        case .awaitingApproval(let id): id
        case .refused: nil
        }
    }

    var message: String? {
        switch self {
        case .completed, .awaitingApproval: nil
        case .refused(let message), .failed(_, let message): message
        }
    }
}

/// Whether `items` contains `expected` in this order, with anything in between.
func containsInOrder<T>(_ items: [T], _ expected: [T], by matches: (T, T) -> Bool) -> Bool {
    var remaining = expected[...]
    for item in items {
        guard let next = remaining.first else { break }
        if matches(item, next) { remaining = remaining.dropFirst() }
    }
    return remaining.isEmpty
}

func containsInOrder(_ items: [String], prefixes: [String]) -> Bool {
    containsInOrder(items, prefixes) { $0.hasPrefix($1) }
}

/// Moves in a state history that `OperationState` does not allow, as "from → to".
func illegalMoves(_ history: [OperationState]) -> [String] {
    zip(history, history.dropFirst()).filter { !$0.canMove(to: $1) }.map { "\($0.rawValue) → \($1.rawValue)" }
}
