import Logging

/// The ports the pipeline works through, gathered once by the composition root.
public struct Services: Sendable {
    public var store: any OperationStore
    public var releases: any ReleaseEngine
    public var cluster: any ClusterInspector
    public var engines: any EngineClient
    public var chat: any ChatTransport
    /// The router of each environment that has one.
    public var routers: any RouterDirectory
    /// Told of every finished step and operation (metrics).
    public var observer: any OperationObserver
    /// What a plan's chart and values files contain, for its digest.
    public var planContents: any PlanContentsReader
    public var time: any TimeSource
    public var logger: Logger
    /// Removes secrets from the journal and the audit log; `redacting(for:)` also puts it in front
    /// of the chat and the log, so every text that leaves the daemon passes it.
    public var redactor = SecretRedactor()
    /// Which replicas passed their check before routing; shared by every path that routes.
    public var replicaChecks = ReplicaChecks()
    /// Previous revisions kept running for a warm rollback (`keepPrevious`).
    public var warmPools: any WarmPools = NoWarmPools()

    public init(
        store: any OperationStore, releases: any ReleaseEngine, cluster: any ClusterInspector,
        engines: any EngineClient, chat: any ChatTransport, routers: any RouterDirectory = NoRouters(),
        observer: any OperationObserver = NoObserver(), time: any TimeSource = SystemTime(),
        logger: Logger = Logger(label: "inferops"), planContents: any PlanContentsReader = UnreadPlanContents()
    ) {
        self.store = store
        self.releases = releases
        self.cluster = cluster
        self.engines = engines
        self.chat = chat
        self.routers = routers
        self.observer = observer
        self.planContents = planContents
        self.time = time
        self.logger = logger
    }
}

extension Services {
    /// These services with the secrets of `configuration` (and `extra` ones the adapters know, such
    /// as the kubeconfig's token) removed from every chat reply, log line, journal entry and audit row.
    public func redacting(for configuration: Configuration, extra: [String] = []) -> Services {
        var services = self
        services.redactor = redactor.adding(SecretRedactor(configuration: configuration, extra: extra).secretsGiven)
        services.chat = RedactingChat(base: chat, redactor: services.redactor)
        services.logger = logger.redacting(services.redactor)
        return services
    }
}

/// A command as it arrives from chat.
public struct IncomingCommand: Hashable, Sendable {
    public var user: UserID
    public var text: String
    public var channel: String
    /// The operating-system account behind a console or `inferops exec` command, as the adapter
    /// found it; `nil` for chat platforms, whose user id is the identity.
    public var osUser: String?
    /// The thread it was typed in, when it was.
    public var thread: String?
    /// The platform's event id; without one, each command is a new event.
    public var event: String?

    public init(user: UserID, text: String, channel: String, osUser: String? = nil, thread: String? = nil,
                event: String? = nil) {
        self.user = user
        self.text = text
        self.channel = channel
        self.osUser = osUser
        self.thread = thread
        self.event = event
    }
}

/// How a command ended, for `inferops exec`'s exit status and for tests.
public enum CommandOutcome: Hashable, Sendable {
    /// Answered or done as asked.
    case completed(OperationID?)
    /// Not run: bad input, unknown names, denied, locked, no capacity.
    case refused(String)
    /// Run, and it failed (possibly rolled back).
    case failed(OperationID?, String)
    /// Recorded, and waiting for someone else's approval before it runs.
    case awaitingApproval(OperationID)

    public var succeeded: Bool {
        if case .completed = self { return true }
        return false
    }
}

/// Hears how operations go, for metrics. Calls must return at once.
public protocol OperationObserver: Sendable {
    func stepFinished(kind: OperationKind, step: OperationState, duration: Duration)
    func operationFinished(kind: OperationKind, outcome: OperationState)
}

public struct NoObserver: OperationObserver {
    public init() {}
    public func stepFinished(kind: OperationKind, step: OperationState, duration: Duration) {}
    public func operationFinished(kind: OperationKind, outcome: OperationState) {}
}
