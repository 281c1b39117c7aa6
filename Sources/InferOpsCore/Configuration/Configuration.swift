/// The daemon's configuration: plain values with defaults, read and validated once at start-up.
/// The YAML reader lives in the app; this is what it produces.
public struct Configuration: Hashable, Sendable {
    public var chat: ChatSettings
    public var kubernetes: KubernetesSettings
    public var helm: HelmSettings
    public var environments: [String: EnvironmentSettings]
    public var models: [String: ModelSpec]
    public var policy: Policy
    public var storage: StorageSettings
    public var server: ServerSettings
    /// Secrets the loader found written by value (in values files): replies and logs must never
    /// show them. `inferops check` refuses such files; this is the defence if one gets through.
    public var knownSecrets: [String] = []

    public init(
        chat: ChatSettings = ChatSettings(), kubernetes: KubernetesSettings = KubernetesSettings(),
        helm: HelmSettings = HelmSettings(), environments: [String: EnvironmentSettings],
        models: [String: ModelSpec], policy: Policy, storage: StorageSettings = StorageSettings(),
        server: ServerSettings = ServerSettings()
    ) {
        self.chat = chat
        self.kubernetes = kubernetes
        self.helm = helm
        self.environments = environments
        self.models = models
        self.policy = policy
        self.storage = storage
        self.server = server
    }

    public var environmentNames: [String] { environments.keys.sorted() }
    public var modelNames: [String] { models.keys.sorted() }
}

public struct ChatSettings: Hashable, Sendable {
    /// `console` or `slack`.
    public var transport: String
    /// The console's user at start; `/as <user>` switches.
    public var consoleUser: String
    /// How to reach Slack, when `transport` is `slack`.
    public var slack: SlackSettings
    /// Where the daemon's own notices go (a router it cannot reconcile, a repair it made); the
    /// console shows them by default, a chat platform only where one is set (they are logged anyway).
    public var notices: String?

    /// `notices`, or the console itself.
    public var noticesChannel: String? { notices ?? (transport == "console" ? "console" : nil) }

    public init(transport: String = "console", consoleUser: String = "console", slack: SlackSettings = SlackSettings()) {
        self.transport = transport
        self.consoleUser = consoleUser
        self.slack = slack
    }
}

/// Where a secret is read from when the daemon starts: an environment variable, or a file (a
/// mounted Kubernetes Secret). Never the configuration file itself.
public enum SecretSource: Hashable, Sendable, CustomStringConvertible {
    case environment(String)
    case file(String)

    public var description: String {
        switch self {
        case .environment(let name): "the environment variable \(name)"
        case .file(let path): "the file \(path)"
        }
    }
}

/// The Slack app InferOps runs as (Socket Mode: no public URL needed).
public struct SlackSettings: Hashable, Sendable {
    /// Slack's Web API; the emulator's in tests.
    public var apiURL: String
    /// The app-level token (`xapp-…`, scope `connections:write`) that opens Socket Mode connections.
    public var appToken: SecretSource
    /// The bot token (`xoxb-…`) that posts.
    public var botToken: SecretSource
    /// The slash command, as the app's manifest declares it.
    public var command: String
    /// A connection that carries no traffic (not even a pong) for this long is replaced.
    public var watchdog: Duration

    public init(apiURL: String = "https://slack.com/api/", appToken: SecretSource = .environment("SLACK_APP_TOKEN"),
                botToken: SecretSource = .environment("SLACK_BOT_TOKEN"), command: String = "/infer",
                watchdog: Duration = .seconds(30)) {
        self.apiURL = apiURL
        self.appToken = appToken
        self.botToken = botToken
        self.command = command
        self.watchdog = watchdog
    }
}

public struct KubernetesSettings: Hashable, Sendable {
    /// A kubeconfig file; `nil` means in-cluster service account, else `$KUBECONFIG` or `~/.kube/config`.
    public var kubeconfig: String?
    public init(kubeconfig: String? = nil) { self.kubeconfig = kubeconfig }
}

public struct HelmSettings: Hashable, Sendable {
    /// The helm binary: a path, or a name looked up on `PATH`.
    public var binary: String
    /// `secret` (Helm's default) or `configmap`.
    public var driver: String
    public init(binary: String = "helm", driver: String = "secret") {
        self.binary = binary
        self.driver = driver
    }
}

/// The daemon's own HTTP listener: health, readiness, metrics and the deny backend.
public struct ServerSettings: Hashable, Sendable {
    /// The listener's port when the configuration names none; the listener itself uses the same default.
    public static let defaultPort = 8470
    /// Long enough for a router's keep-alive pool to reuse a connection between requests, short
    /// enough that abandoned connections do not pile up.
    public static let defaultIdleTimeout: Duration = .seconds(60)
    /// Every request the daemon serves is small (probes, the deny backend's bounded bodies), so a
    /// client still sending one after this long is trickling bytes to hold a connection open.
    public static let defaultReadTimeout: Duration = .seconds(10)
    /// Far above what probes, scrapers and routers open, far below a process's usual descriptor limit.
    public static let defaultMaxConnections = 1024

    public var host: String
    /// 0 picks a free port (tests); the deny backend's URL then follows the port actually bound.
    public var port: Int
    /// How routers reach this daemon; `http://{host}:{port}` when not set.
    public var publicURL: String?
    /// How often the replicas of every routed model are followed and every router is compared with
    /// the desired state and repaired; well under a chart's preStop time.
    public var reconcileInterval: Duration
    /// How long a connection may stay open with no request in it before the listener closes it.
    public var idleTimeout: Duration
    /// How long a request may take to arrive whole, head and body, from its first byte.
    public var readTimeout: Duration
    /// Connections open at once; further clients wait in the kernel's accept queue until one closes.
    public var maxConnections: Int
    /// How long a graceful stop (SIGTERM, Ctrl-C) waits for running steps to reach a safe point
    /// before stopping them where they are; either way the next start resumes them.
    public var shutdownGrace: Duration = .seconds(30)

    public init(
        host: String = "127.0.0.1", port: Int = ServerSettings.defaultPort, publicURL: String? = nil,
        reconcileInterval: Duration = .milliseconds(500), idleTimeout: Duration = ServerSettings.defaultIdleTimeout,
        readTimeout: Duration = ServerSettings.defaultReadTimeout,
        maxConnections: Int = ServerSettings.defaultMaxConnections
    ) {
        self.host = host
        self.port = port
        self.publicURL = publicURL
        self.reconcileInterval = reconcileInterval
        self.idleTimeout = idleTimeout
        self.readTimeout = readTimeout
        self.maxConnections = maxConnections
    }
}

public struct StorageSettings: Hashable, Sendable {
    /// The SQLite file; `:memory:` keeps nothing across restarts (tests only).
    public var path: String
    public init(path: String = "inferops.sqlite") { self.path = path }
}

/// How the daemon reaches engines for readiness checks and test completions.
public enum EngineAccess: Hashable, Sendable {
    /// Through the Kubernetes API server's service proxy: works from outside the cluster.
    case serviceProxy
    /// Straight to a URL built from a template with `{service}`, `{namespace}`, `{port}`, `{release}`.
    case direct(urlTemplate: String)
}

/// What to do when a deploy needs more GPUs than are free.
public enum CapacityPolicy: Hashable, Sendable {
    case refuse
    /// Wait up to the given time for GPUs to free up, reporting what it waits for.
    case wait(Duration)
}

public struct VerificationSettings: Hashable, Sendable {
    public var warmupRequests: Int
    public var prompt: String
    public var maxTokens: Int
    /// Each engine request's timeout.
    public var requestTimeout: Duration
    /// The latency the test completion should stay under (SC-002: 3 s); slower is reported, not failed.
    public var latencyTarget: Duration

    public init(
        warmupRequests: Int = 3, prompt: String = "Say hello in five words.", maxTokens: Int = 16,
        requestTimeout: Duration = .seconds(30), latencyTarget: Duration = .seconds(3)
    ) {
        self.warmupRequests = warmupRequests
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.requestTimeout = requestTimeout
        self.latencyTarget = latencyTarget
    }
}

public struct EnvironmentSettings: Hashable, Sendable {
    public var name: String
    public var kubeContext: String?
    public var namespace: String
    /// The engine chart: a folder, a packaged chart or an `oci://` reference (helm runs with its own
    /// settings folders, so no `helm repo add` repository is known to it).
    public var chart: String
    public var chartVersion: String?
    public var valuesFiles: [String]
    /// Replicas per model unless `--set replicaCount=N` says otherwise.
    public var replicas: Int
    /// How long a deploy may take to become ready (F1: 10 minutes by default).
    public var readinessBudget: Duration
    public var verification: VerificationSettings
    /// The value keys `--set` may change, as dotted paths (`replicaCount`, `engine.maxModelLen`).
    public var allowedSetKeys: [String]
    /// Roll a failed deploy back to the last good revision and verify it again.
    public var autoRollback: Bool
    public var capacity: CapacityPolicy
    public var engineAccess: EngineAccess
    /// The LLM router that fronts this environment's engines, if any.
    public var router: RouterSettings?
    /// The verbs whose operations wait for a second person here (production's by default).
    public var approval: ApprovalPolicy
    /// Where promotions into this environment take their evidence from, and how fresh it must be.
    public var promotion: PromotionSettings = PromotionSettings()
    /// The chat channels this environment's changes may be asked for from; empty: any channel.
    /// Read-only commands (status, history, help) answer everywhere.
    public var channels: [String] = []
    /// What a lock held by someone else does to a new operation here: refuse it, or queue it until
    /// the lock is released.
    public var whenLocked: LockedEnvironmentPolicy = .refuse
    /// The emergency path: `rollback --break-glass` without a second approver, for one role.
    public var breakGlass: BreakGlassSettings?
    /// How long a deploy keeps the revision it replaced running, unrouted, so a rollback to it within
    /// that time only switches the router (warm rollback); `nil`: not kept. Needs a router.
    public var keepPrevious: Duration?

    public init(
        name: String, kubeContext: String? = nil, namespace: String, chart: String, chartVersion: String? = nil,
        valuesFiles: [String] = [], replicas: Int = 1, readinessBudget: Duration = .seconds(600),
        verification: VerificationSettings = VerificationSettings(), allowedSetKeys: [String] = [],
        autoRollback: Bool = false, capacity: CapacityPolicy = .refuse, engineAccess: EngineAccess = .serviceProxy,
        router: RouterSettings? = nil, approval: ApprovalPolicy = .noApproval
    ) {
        self.name = name
        self.kubeContext = kubeContext
        self.namespace = namespace
        self.chart = chart
        self.chartVersion = chartVersion
        self.valuesFiles = valuesFiles
        self.replicas = replicas
        self.readinessBudget = readinessBudget
        self.verification = verification
        self.allowedSetKeys = allowedSetKeys
        self.autoRollback = autoRollback
        self.capacity = capacity
        self.engineAccess = engineAccess
        self.router = router
        self.approval = approval
    }

    /// Whether a change here may be asked for from `channel`.
    public func acceptsChanges(from channel: String) -> Bool {
        channels.isEmpty || channels.contains(channel)
    }

    public func target(model: String) -> ReleaseTarget {
        ReleaseTarget(release: Naming.release(model: model, environment: name), namespace: namespace, kubeContext: kubeContext)
    }
}

/// Where a promotion into an environment takes its evidence from.
public struct PromotionSettings: Hashable, Sendable {
    /// The environment promoted from when the command names none; `nil`: `staging`.
    public var from: String?
    /// How recent the source's verified deploy must be (24 hours by default).
    public var evidenceWindow: Duration

    public init(from: String? = nil, evidenceWindow: Duration = .seconds(24 * 3600)) {
        self.from = from
        self.evidenceWindow = evidenceWindow
    }

    /// The source environment when the command names none.
    public var defaultSource: String { from ?? "staging" }
}

/// What an environment locked by someone else does with a new operation.
public enum LockedEnvironmentPolicy: String, Hashable, Sendable, CaseIterable {
    /// Refused at once, saying who holds the lock and why.
    case refuse
    /// Recorded and queued; it starts when the lock is released (or is cancelled meanwhile).
    case queue
}

/// The emergency path: a rollback that runs without a second approver. Only `rollback`, only for
/// `role`, only with a reason; it posts a notice and a review request to `channel`.
public struct BreakGlassSettings: Hashable, Sendable {
    /// The role whose members may break the glass here.
    public var role: String
    /// Where the notice and the review request go (the on-call or incident channel).
    public var channel: String

    public init(role: String, channel: String) {
        self.role = role
        self.channel = channel
    }
}

/// How an environment's router is reached and how its workers are named.
public struct RouterSettings: Hashable, Sendable {
    /// The router's base URL (its admin API and its OpenAI entrypoint share it).
    public var url: String
    /// Register every verified deploy without asking for `--register`.
    public var autoRegister: Bool
    /// The URL the router reaches an engine replica at: `{podIP}` and `{port}` are filled in.
    public var workerURLTemplate: String
    /// The engine port in each pod.
    public var enginePort: Int
    /// The base URL of this daemon's deny backend as the router reaches it; each denied model gets
    /// its own worker URL under it.
    public var denyBackendURL: String
    /// Each router process's own address, when several serve behind `url` (a Kubernetes Service over
    /// a router StatefulSet): each has its own registry, and each is kept filled. Empty: `url` is
    /// the one router.
    public var replicas: [String] = []

    public init(
        url: String, autoRegister: Bool = false, workerURLTemplate: String = "http://{podIP}:{port}", enginePort: Int = 8000,
        denyBackendURL: String
    ) {
        self.url = url
        self.autoRegister = autoRegister
        self.workerURLTemplate = workerURLTemplate
        self.enginePort = enginePort
        self.denyBackendURL = denyBackendURL
    }

    /// The worker URL of one ready replica.
    public func workerURL(podIP: String) -> String {
        workerURLTemplate.replacingOccurrences(of: "{podIP}", with: podIP)
            .replacingOccurrences(of: "{port}", with: String(enginePort))
    }

    /// The worker URL that stands in for a denied model: the deny backend, under a path naming the
    /// environment and model so each denied model is its own worker.
    public func denyWorkerURL(environment: String, model: String) -> String {
        let base = denyBackendURL.hasSuffix("/") ? String(denyBackendURL.dropLast()) : denyBackendURL
        return "\(base)/deny/\(environment)/\(model)"
    }
}

/// A model in the catalog (`config/models/<name>.yaml`).
public struct ModelSpec: Hashable, Sendable {
    /// The short name used in commands and release names.
    public var name: String
    /// The Hugging Face model id the engine loads.
    public var modelID: String
    public var revision: String
    public var gpusPerReplica: Int
    /// The engine image, `repository:tag`.
    public var image: String
    public var engineArguments: [String]
    /// Extra chart values for this model (merged under the plan's own values).
    public var values: JSONValue

    public init(
        name: String, modelID: String, revision: String = "main", gpusPerReplica: Int = 1,
        image: String = "vllm/vllm-openai:v0.6.3", engineArguments: [String] = [], values: JSONValue = .object([:])
    ) {
        self.name = name
        self.modelID = modelID
        self.revision = revision
        self.gpusPerReplica = gpusPerReplica
        self.image = image
        self.engineArguments = engineArguments
        self.values = values
    }
}
