import Foundation
import InferOpsConsole
import InferOpsCore
import InferOpsHTTP
import InferOpsHelm
import InferOpsKube
import InferOpsStore
import Logging

/// The composition root: turns a validated configuration into the adapters behind every port,
/// and the dispatcher that drives them.
public struct Runtime: Sendable {
    public let dispatcher: Dispatcher
    public let store: SQLiteStore
    public let configuration: Configuration
    let kube: KubeRuntime
    let workFolder: String

    /// Stops the HTTP thread and removes the temporary folder for values files.
    public func shutdown() async {
        await kube.shutdown()
        try? FileManager.default.removeItem(atPath: workFolder)
    }

    /// - Throws: `Refusal` with a clear message when an adapter cannot start (no helm binary,
    ///   unreadable kubeconfig, unwritable database).
    public static func start(_ loaded: ConfigurationLoader.Loaded, output: @escaping @Sendable (String) -> Void) async throws -> Runtime {
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
        let workFolder = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-\(getpid())").path
        try FileManager.default.createDirectory(atPath: workFolder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let releases = HelmReleaseEngine(
            helmPath: helmPath, kubeconfig: configuration.kubernetes.kubeconfig,
            environment: ["HELM_DRIVER": configuration.helm.driver], workingDirectory: workFolder
        )
        do {
            _ = try await releases.version()
        } catch let failure as any UserFacingError {
            throw Refusal("Helm at \(helmPath) cannot be used: \(failure.message)", hint: "Install Helm 3 or 4 (scripts/install-tools).")
        }
        let kube = try KubeRuntime(kubeconfig: configuration.kubernetes.kubeconfig)
        // Environments that share a namespace share its engines, so the first one's access serves all.
        let access = Dictionary(
            configuration.environments.keys.sorted().compactMap { name in
                configuration.environments[name].map { ($0.namespace, $0.engineAccess) }
            },
            uniquingKeysWith: { first, _ in first })
        let engines = kube.engineClient(access: access)
        let services = Services(
            store: store, releases: releases, cluster: kube.clusterInspector(), engines: engines,
            chat: ConsoleTransport(output: output), logger: logger
        )
        return Runtime(
            dispatcher: Dispatcher(configuration: configuration, catalog: loaded.catalog, services: services),
            store: store, configuration: configuration, kube: kube, workFolder: workFolder
        )
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
