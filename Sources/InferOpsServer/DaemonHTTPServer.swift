import Hummingbird
import HummingbirdCore
import InferOpsCore
import Logging
import ServiceLifecycle

/// The daemon's own HTTP listener: liveness, readiness, Prometheus metrics and the deny backend.
///
/// It is a `Service`, so the daemon lists it in its one `ServiceGroup` and it stops gracefully on
/// SIGTERM with the rest (in-flight requests finish, idle connections close). It is started before
/// the parts that need it: the router reconciler registers this listener's deny-backend URL, which
/// it learns with ``boundPort()`` or the `onListening` callback once the socket is bound.
///
/// ```swift
/// let server = try DaemonHTTPServer(
///     configuration: .init(host: "0.0.0.0", port: 8470, deny: .init(defaultEnvironment: "staging")),
///     readiness: Readiness(checks: ["storage": { await store.ping() }]),
///     metrics: metrics,
///     denials: { environment, model in try await store.registration(of: model, in: environment) }
/// )
/// let group = ServiceGroup(configuration: .init(services: [server, reconciler], logger: logger))
/// ```
public struct DaemonHTTPServer: Service {
    public struct Configuration: Sendable, Hashable {
        /// The address to bind: `127.0.0.1` on a workstation, `0.0.0.0` in a pod.
        public var host: String
        /// The port to bind; 0 lets the kernel choose (tests, sandboxes), read it back with ``DaemonHTTPServer/boundPort()``.
        public var port: Int
        /// Sent as the `Server` header.
        public var serverName: String
        public var deny: DenyBackend.Configuration
        /// A connection with no request in it is closed after this long.
        public var idleTimeout: Duration
        /// A request must arrive whole within this long of its first byte, or its connection is
        /// closed: a client trickling bytes cannot hold a connection.
        public var readTimeout: Duration
        /// Connections open at once; the listener stops accepting at the cap, and further clients
        /// wait in the kernel's accept queue until a connection closes.
        public var maxConnections: Int

        /// The defaults are the configuration's (`ServerSettings`), so they are written once.
        public init(
            host: String = "127.0.0.1",
            port: Int = ServerSettings.defaultPort,
            serverName: String = "inferops",
            deny: DenyBackend.Configuration = .init(),
            idleTimeout: Duration = ServerSettings.defaultIdleTimeout,
            readTimeout: Duration = ServerSettings.defaultReadTimeout,
            maxConnections: Int = ServerSettings.defaultMaxConnections
        ) {
            self.host = host
            self.port = port
            self.serverName = serverName
            self.deny = deny
            self.idleTimeout = idleTimeout
            self.readTimeout = readTimeout
            self.maxConnections = maxConnections
        }
    }

    /// The configuration cannot work; start-up stops with this message (STYLE 8).
    public struct InvalidConfiguration: UserFacingError, Equatable {
        public var message: String
    }

    /// ``boundPort()`` was asked after the server stopped, or the server stopped without an error before binding.
    public struct Stopped: Error, Equatable {}

    public let configuration: Configuration
    /// What the daemon records; `/metrics` serves its registry.
    public let metrics: DaemonMetrics
    /// The Hummingbird application that `run()` runs. Tests drive it with HummingbirdTesting
    /// (`application.test(.router)`), which exercises every route without a socket.
    public let application: Application<RouterResponder<BasicRequestContext>>
    private let port: ListenerPort

    /// - Parameters:
    ///   - readiness: The named checks behind `/readyz`.
    ///   - metrics: The facade the daemon records into; this server exposes its registry.
    ///   - denials: Finds the registration of a model the router sent to the deny backend.
    ///   - logger: Request logs carry Hummingbird's request id, the correlation id of error answers.
    ///   - onListening: Called with the bound port once the server accepts connections, before any
    ///     request is served; keep it short, the server waits for it.
    /// - Throws: ``InvalidConfiguration`` for a port outside 0…65535, an empty host, a body limit below
    ///   1 byte, a timeout that is not positive or a connection cap below 1.
    public init(
        configuration: Configuration,
        readiness: Readiness = Readiness(),
        metrics: DaemonMetrics = DaemonMetrics(),
        denials: @escaping DenialLookup,
        logger: Logger = Logger(label: "inferops.http"),
        onListening: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) throws {
        guard (0...65_535).contains(configuration.port) else {
            throw InvalidConfiguration(message: "The HTTP port \(configuration.port) is not between 0 and 65535.")
        }
        guard !configuration.host.isEmpty else {
            throw InvalidConfiguration(message: "The HTTP listener has no host to bind; use 0.0.0.0 or 127.0.0.1.")
        }
        guard configuration.deny.maxBodySize > 0 else {
            throw InvalidConfiguration(message: "The deny backend's body limit must be at least 1 byte.")
        }
        guard configuration.idleTimeout > .zero, configuration.readTimeout > .zero else {
            throw InvalidConfiguration(message: "The HTTP listener's idle and read timeouts must be longer than zero.")
        }
        guard configuration.maxConnections > 0 else {
            throw InvalidConfiguration(message: "The HTTP listener must allow at least 1 connection.")
        }
        self.configuration = configuration
        self.metrics = metrics
        let port = ListenerPort()
        self.port = port
        let routes = DaemonRoutes(
            readiness: readiness,
            metrics: metrics,
            deny: DenyBackend(configuration: configuration.deny, metrics: metrics, lookup: denials)
        )
        let (idleTimeout, readTimeout) = (configuration.idleTimeout, configuration.readTimeout)
        self.application = Application(
            router: routes.router(),
            server: HTTPServerBuilder { responder in
                DeadlineHTTP1Channel(
                    http1: HTTP1Channel(responder: responder),
                    idleTimeout: idleTimeout,
                    readTimeout: readTimeout
                )
            },
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: configuration.serverName,
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections, logger: logger)
            ),
            onServerRunning: { channel in
                // The channel's local address carries the port the kernel chose for port 0.
                guard let bound = channel.localAddress?.port else { return }
                port.listening(on: bound)
                await onListening(bound)
            },
            logger: logger
        )
    }

    /// Runs the listener until graceful shutdown (or cancellation) of the service group it runs in.
    /// - Throws: What stopped the server, such as an address already in use.
    public func run() async throws {
        do {
            try await application.run()
            port.stopped(Stopped())
        } catch {
            port.stopped(error)
            throw error
        }
    }

    /// The port the listener is bound to, waiting until it is; with port 0 this is the kernel's choice.
    /// - Throws: The error that stopped the server before it bound, ``Stopped`` once it has stopped,
    ///   or `CancellationError` when the waiting task is cancelled.
    public func boundPort() async throws -> Int {
        try await port.wait()
    }
}

/// The routes of the listener, in one place so the URL space is easy to read.
struct DaemonRoutes: Sendable {
    let readiness: Readiness
    let metrics: DaemonMetrics
    let deny: DenyBackend

    func router() -> Router<BasicRequestContext> {
        // HEAD on every GET route, for probes and load balancers that check with HEAD.
        let router = Router(context: BasicRequestContext.self, options: .autoGenerateHeadEndpoints)

        router.get("healthz") { _, _ in
            Responses.text("ok\n")
        }
        router.get("readyz") { _, context in
            let report = await readiness.evaluate()
            // Debug, not info: orchestrators probe every few seconds, and `/readyz` itself says what fails.
            if !report.isReady {
                context.logger.debug(
                    "not ready",
                    metadata: ["readyz.failing": "\(report.failing.joined(separator: ","))"]
                )
            }
            return Responses.json(report, status: report.isReady ? .ok : .serviceUnavailable)
        }
        router.get("metrics") { _, _ in
            Responses.text(metrics.exposition(), contentType: DaemonMetrics.contentType)
        }

        // The deny backend, at the root and under /deny/{environment}/{model}. The router sends
        // inference requests to any path a client used (`/v1/chat/completions`, `/v1/responses`,
        // `/tokenize`, ...), so every POST that no other route claims is answered here. `**` matches
        // what literal routes leave, so `/v1/**` is needed beside `/v1/models`; a POST to the path of
        // a GET route (`/healthz`) is a 404. Routes with literal paths added later (chat callbacks)
        // take precedence over these wildcards.
        let deny = self.deny
        let atRoot: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, context in
            await deny.respond(to: request, context: context, pathEnvironment: nil, pathModel: nil)
        }
        let underPrefix: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, context in
            await deny.respond(
                to: request,
                context: context,
                pathEnvironment: context.parameters.get("environment"),
                pathModel: context.parameters.get("model")
            )
        }
        for prefix in ["", "deny/{environment}/{model}/"] {
            let handler = prefix.isEmpty ? atRoot : underPrefix
            router.post("\(prefix)**", use: handler)
            router.post("\(prefix)v1/**", use: handler)
            // The router health-checks its workers and may list their models.
            router.get("\(prefix)health") { _, _ in Responses.text("ok\n") }
            router.get("\(prefix)v1/models") { _, _ in Responses.json(ModelList()) }
        }
        return router
    }
}

/// An empty OpenAI model list: the deny backend serves no model.
private struct ModelList: Encodable {
    let object = "list"
    let data: [String] = []
}
