import Foundation
import InferOpsConsole
import InferOpsCore
import InferOpsHTTP
import InferOpsHelm
import InferOpsKube
import InferOpsRouter
import InferOpsServer
import InferOpsStore
import Logging
import ServiceLifecycle
import Synchronization

/// The composition root: turns a validated configuration into the adapters behind every port,
/// the intake that accepts commands and the runner that runs operations.
public struct Runtime: Sendable {
    public let intake: Intake
    public var runner: OperationRunner { intake.runner }
    public let store: SQLiteStore
    public let configuration: Configuration
    let kube: KubeRuntime
    let workFolder: PrivateWorkFolder
    public let services: Services
    public let metrics: DaemonMetrics

    /// Stops the HTTP thread and removes the private work folder (values files, helm's caches).
    public func shutdown() async {
        await kube.shutdown()
        workFolder.remove()
    }

    /// - Parameters:
    ///   - chat: where replies go; the console (`output`) when `nil`.
    ///   - secrets: more secrets the adapters hold (the chat's tokens), kept out of every reply and log.
    /// - Throws: `Refusal` with a clear message when an adapter cannot start (no helm binary,
    ///   unwritable database). An unreadable kubeconfig fails the first command that needs the cluster.
    public static func start(
        _ loaded: ConfigurationLoader.Loaded, output: @escaping @Sendable (String) -> Void,
        runnerSettings: OperationRunner.Settings = OperationRunner.Settings(), chat: (any ChatTransport)? = nil,
        secrets: [String] = []
    ) async throws -> Runtime {
        let configuration = loaded.configuration
        var logger = Logger(label: "inferops")
        logger.logLevel = ProcessInfo.processInfo.environment["INFEROPS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        let store: SQLiteStore
        do {
            store = configuration.storage.path == ":memory:" ? try SQLiteStore.inMemory() : try SQLiteStore(path: configuration.storage.path)
        } catch {
            throw Refusal("Cannot open the database at \(configuration.storage.path): \(error).",
                          hint: "Check `storage.path` and that its folder is writable.")
        }
        let helmPath = try Self.locate(configuration.helm.binary)
        let abandoned = PrivateWorkFolder.removeAbandoned()  // outside the log call: its metadata may not be evaluated
        logger.info("abandoned work folders removed", metadata: ["count": "\(abandoned)"])
        let workFolder: PrivateWorkFolder
        do {
            workFolder = try PrivateWorkFolder()
        } catch {
            throw Refusal("Cannot create a private work folder: \(error).",
                          hint: "Point TMPDIR at a folder only this user can change.")
        }
        // A start that fails after this point leaves no folder behind.
        var started = false
        defer { if !started { workFolder.remove() } }
        // Read on first use: help, refusals and locks answer without a cluster (or a kubeconfig).
        let kube = try KubeRuntime(kubeconfig: configuration.kubernetes.kubeconfig, reading: .onFirstUse)
        // helm and the storage reads use the same kubeconfig and driver, so they see the same records.
        let releases = HelmReleaseEngine(
            helmPath: helmPath, kubeconfig: configuration.kubernetes.kubeconfig,
            environment: ["HELM_DRIVER": configuration.helm.driver], workingDirectory: workFolder.path,
            storage: HelmStorage(driver: configuration.helm.driver, contexts: kube.contexts)
        )
        do {
            _ = try await releases.version()
        } catch let failure as any UserFacingError {
            throw Refusal("Helm at \(helmPath) cannot be used: \(failure.message)", hint: "Install Helm 3 or 4 (scripts/install-tools).")
        }
        // Environments that share a namespace share its engines, so the first one's access serves all.
        let access = Dictionary(
            configuration.environments.keys.sorted().compactMap { name in
                configuration.environments[name].map { ($0.namespace, $0.engineAccess) }
            },
            uniquingKeysWith: { first, _ in first })
        let engines = kube.engineClient(access: access)
        let metrics = DaemonMetrics()
        let routers = ConfiguredRouters(
            routers: configuration.environments.compactMapValues { environment -> (any ModelRouter)? in
                guard let settings = environment.router else { return nil }
                let front = VLLMRouter(baseURL: settings.url, http: kube.http)
                guard !settings.replicas.isEmpty else { return front }
                // A replica that is restarting is left to the repair's next pass: retried briefly only.
                let members = settings.replicas.map {
                    VLLMRouter(baseURL: $0, http: kube.http, retry: .init(attempts: 2, initialBackoff: .milliseconds(100)))
                }
                let name = environment.name
                let log = logger
                return ReplicatedRouter(front: front, members: members) { index, error in
                    log.warning("a router replica did not answer; the repair fills it when it is back", metadata: [
                        "environment": "\(name)", "replica": "\(settings.replicas[index])", "error": "\(error)",
                    ])
                }
            })
        var services = Services(
            store: store, releases: releases, cluster: kube.clusterInspector(), engines: engines,
            chat: chat ?? ConsoleTransport(output: output), routers: routers, observer: MetricsObserver(metrics: metrics),
            logger: logger, planContents: ChartContents()
        )
        services.warmPools = KubernetesWarmPools(contexts: kube.contexts)
        services = services.redacting(for: configuration, extra: kube.credentialLiterals + secrets)
        started = true
        let identity = OperationRunner.Identity.random(host: ProcessInfo.processInfo.hostName, pid: getpid())
        var settings = runnerSettings
        if runnerSettings.shutdownBound == OperationRunner.Settings().shutdownBound {
            settings.shutdownBound = configuration.server.shutdownGrace
        }
        settings.ownerIsGone = { owner in Self.ownerIsGone(owner, host: identity.host) }
        let runner = OperationRunner(configuration: configuration, catalog: loaded.catalog, services: services,
                                     identity: identity, settings: settings)
        return Runtime(
            intake: Intake(configuration: configuration, catalog: loaded.catalog, services: services, runner: runner),
            store: store, configuration: configuration, kube: kube, workFolder: workFolder, services: services,
            metrics: metrics
        )
    }

    /// Whether the daemon that owns an operation is known to be gone: it ran on this host and its
    /// process no longer exists. Owners elsewhere are judged by their heartbeat alone.
    static func ownerIsGone(_ owner: OperationOwner, host: String) -> Bool {
        guard owner.host == host, owner.pid > 0, owner.pid != getpid() else { return false }
        return kill(owner.pid, 0) != 0 && errno == ESRCH
    }

    /// A path, or a name found on `PATH`.
    static func locate(_ binary: String) throws -> String {
        if binary.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: binary) else {
                throw Refusal("The helm binary \(binary) does not exist or is not executable.",
                              hint: "Run scripts/install-tools, or set `helm.binary`.")
            }
            return binary
        }
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(folder)/\(binary)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw Refusal("`\(binary)` is not on PATH.", hint: "Install Helm, or set `helm.binary` to its path.")
    }
}

/// The router client of each environment that configures one.
struct ConfiguredRouters: RouterDirectory {
    let routers: [String: any ModelRouter]
    func router(for environment: EnvironmentSettings) -> (any ModelRouter)? { routers[environment.name] }
}

/// Records operations and their steps in the daemon's Prometheus metrics.
struct MetricsObserver: OperationObserver {
    let metrics: DaemonMetrics
    func stepFinished(kind: OperationKind, step: OperationState, duration: Duration) {
        metrics.recordStep(kind: kind, step: step, duration: duration)
    }
    func operationFinished(kind: OperationKind, outcome: OperationState) {
        metrics.recordOperation(kind: kind, outcome: outcome)
    }
}

extension Runtime {
    /// The daemon as one service group, in dependency order (a graceful stop goes in reverse): the
    /// HTTP listener (health, readiness, metrics, the deny backend), the routing repair, the runner
    /// and the chat port, so a stop first stops reading commands (and says so at once), then lets
    /// running steps reach a safe point, and the listener answers to the end.
    /// - Parameters:
    ///   - chat: the chat transport's inbound side, when there is one (`nil` for `exec`).
    ///   - ready: called with the listener's port once it accepts connections.
    public func serviceGroup(
        chat: (any Service)?, listen: Bool = true, ready: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> ServiceGroup {
        let configuration = self.configuration
        let store = self.store
        let services = self.services
        let metrics = self.metrics
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if listen {
            let readiness = Readiness(checks: [
                "storage": { (try? await store.locks()) != nil },
                "router": {
                    for environment in configuration.environments.values {
                        guard let router = services.routers.router(for: environment) else { continue }
                        if (try? await router.workers()) == nil { return false }
                    }
                    return true
                },
                "chat": { await services.chat.isConnected },
            ])
            let server = try DaemonHTTPServer(
                configuration: .init(
                    host: configuration.server.host, port: configuration.server.port,
                    deny: .init(
                        defaultEnvironment: configuration.environmentNames.first,
                        environments: Set(configuration.environmentNames)),
                    idleTimeout: configuration.server.idleTimeout, readTimeout: configuration.server.readTimeout,
                    maxConnections: configuration.server.maxConnections),
                readiness: readiness, metrics: metrics,
                denials: { environment, model in
                    if let environment { return try await store.registration(model: model, environment: environment) }
                    return try await store.registrations().first { $0.model == model }
                },
                onListening: ready)
            members.append(.init(service: server))
        }
        if configuration.environments.values.contains(where: { $0.router != nil }) {
            members.append(.init(service: RoutingRepairService(
                reconciliation: RouterReconciliation(configuration: configuration, services: services),
                interval: configuration.server.reconcileInterval, channel: configuration.chat.noticesChannel,
                metrics: metrics)))
        }
        // The chat port's graceful stop asks the runner to stop too (so a line waiting for its
        // operation is answered as it pauses); the runner may then end before the group reaches it,
        // which continues the graceful stop rather than failing it.
        members.append(.init(service: RunnerService(runner: runner), successTerminationBehavior: .gracefullyShutdownGroup))
        if let chat {
            // The chat port ending (end of piped input, `/quit`, Ctrl-C) stops the daemon gracefully.
            // So does its failure (Slack disabled the app's link), after which the group's run throws it.
            members.append(.init(service: chat, successTerminationBehavior: .gracefullyShutdownGroup,
                                 failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        var logger = Logger(label: "inferops.services")
        logger.logLevel = ProcessInfo.processInfo.environment["INFEROPS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return ServiceGroup(configuration: .init(
            services: members, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    }
}

/// The runner as a service: a graceful stop lets running steps reach a safe point.
struct RunnerService: Service {
    let runner: OperationRunner
    func run() async throws {
        await withGracefulShutdownHandler {
            await runner.run()
        } onGracefulShutdown: {
            runner.stop()
        }
    }
}

/// Keeps every router in line with the desired registrations, and counts what it repaired.
struct RoutingRepairService: Service {
    let reconciliation: RouterReconciliation
    let interval: Duration
    let channel: String?
    let metrics: DaemonMetrics

    func run() async throws {
        let metrics = self.metrics
        await cancelWhenGracefulShutdown {
            await reconciliation.run(every: interval, channel: channel) { passes in
                for pass in passes {
                    if pass.failure != nil {
                        metrics.recordReconciliation(.failed)
                    } else if pass.actions.isEmpty {
                        metrics.recordReconciliation(.inSync)
                    } else {
                        metrics.recordReconciliation(.repaired)
                        for action in pass.actions {
                            switch action {
                            case .add: metrics.recordRepair(.add)
                            case .remove: metrics.recordRepair(.remove)
                            }
                        }
                    }
                }
            }
        }
    }
}
