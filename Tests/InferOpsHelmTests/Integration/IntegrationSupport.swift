import Foundation
import InferOpsCore
import InferOpsKube
import InferOpsTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@testable import InferOpsHelm

/// What the integration tests need from the repository besides the emulator (which its launcher
/// checks for): the pinned helm binaries (`scripts/install-tools`) and the engine chart. A missing
/// piece fails the test with the command that provides it; it never skips silently.
struct IntegrationTools {
    let chart: String

    static func require(sourceLocation: SourceLocation = #_sourceLocation) throws -> IntegrationTools {
        let chart = TestTools.repositoryRoot.path + "/deploy/charts/vllm-engine"
        try #require(
            FileManager.default.fileExists(atPath: chart + "/Chart.yaml"),
            "the engine chart is missing at \(chart)",
            sourceLocation: sourceLocation
        )
        return IntegrationTools(chart: chart)
    }

    /// Writes a kubeconfig in `folder` whose only cluster is a port nothing listens on, and returns its path.
    static func unreachableKubeconfig(in folder: String) throws -> String {
        let kubeconfig = folder + "/kubeconfig"
        try """
        apiVersion: v1
        kind: Config
        clusters: [{name: gone, cluster: {server: "http://127.0.0.1:1"}}]
        contexts: [{name: gone, context: {cluster: gone, user: gone}}]
        current-context: gone
        users: [{name: gone, user: {}}]
        """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        return kubeconfig
    }

    /// `.tools/bin/helm3` or `.tools/bin/helm4`.
    static func helm(_ version: HelmVersion, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let path = TestTools.repositoryRoot.path + "/.tools/bin/helm\(version.rawValue)"
        try #require(
            FileManager.default.isExecutableFile(atPath: path),
            "\(path) is missing: run scripts/install-tools (pinned Helm 3.19.0 and Helm 4.1.4)",
            sourceLocation: sourceLocation
        )
        return path
    }
}

/// The emulator as these tests use it: one for a test body, with helm's caches in its folder.
extension KubeEmulator {
    /// Runs `body` with a fresh emulator and stops it afterwards (SIGKILL, and its folder removed:
    /// kubeconfig, helm's caches, values files), whatever happens.
    static func with<T>(_ body: (KubeEmulator) async throws -> T) async throws -> T {
        let emulator = try await start()
        defer { emulator.stop() }
        return try await body(emulator)
    }

    /// An engine for `version` against this emulator, with helm's caches in the test's own folder.
    /// - Parameters:
    ///   - driver: where helm keeps its records (`HELM_DRIVER`).
    ///   - storage: read `status` and `history` from the records (`HelmStorage`) rather than with helm.
    func engine(
        _ version: HelmVersion, detectVersion: Bool = false, driver: String = "secret", storage: KubeContexts? = nil
    ) throws -> HelmReleaseEngine {
        HelmReleaseEngine(
            helmPath: try IntegrationTools.helm(version),
            kubeconfig: kubeconfig,
            environment: [
                "HELM_CACHE_HOME": folder + "/helm/cache", "HELM_CONFIG_HOME": folder + "/helm/config",
                "HELM_DATA_HOME": folder + "/helm/data", "HELM_DRIVER": driver,
            ],
            workingDirectory: folder + "/work",
            version: detectVersion ? nil : version,
            storage: storage.flatMap { HelmStorage(driver: driver, contexts: $0) }
        )
    }

    /// Starts `helm upgrade --install` outside the engine, waits until the release shows `state`,
    /// and kills helm with SIGKILL, as a crash of the daemon's host would.
    func killHelmWhilePending(
        _ version: HelmVersion,
        _ engine: HelmReleaseEngine,
        _ request: ReleaseUpgrade,
        state: ReleaseState
    ) async throws {
        let valuesFile = try ValuesFile.write(request.values, in: folder + "/work")
        defer { unlink(valuesFile) }
        let helm = Process()
        helm.executableURL = URL(fileURLWithPath: try IntegrationTools.helm(version))
        helm.arguments = HelmCommand(version: version, kubeconfig: kubeconfig)
            .upgrade(request, valuesFile: valuesFile)
        helm.environment = [
            "HOME": folder, "HELM_CACHE_HOME": folder + "/helm/cache",
            "HELM_CONFIG_HOME": folder + "/helm/config", "HELM_DATA_HOME": folder + "/helm/data",
            "HELM_DRIVER": engine.environment["HELM_DRIVER"] ?? "secret",
        ]
        helm.standardOutput = FileHandle.nullDevice
        helm.standardError = FileHandle.nullDevice
        try helm.run()
        try await TestTools.waitUntil("the release is \(state)", timeout: .seconds(30)) {
            try await engine.status(request.target)?.state == state
        }
        kill(helm.processIdentifier, SIGKILL)
        try await TestTools.waitUntil("the killed helm has exited", timeout: .seconds(10)) { !helm.isRunning }
    }
}

/// Values that make the emulator's pods ready after `seconds` (`-1`: never).
func readyAfter(_ seconds: Int) -> JSONValue {
    .object(["podAnnotations": .object(["inferops.dev/simulate-ready-after-seconds": .string(String(seconds))])])
}

/// Values that make the emulator report `ProgressDeadlineExceeded` for the Deployment.
let failingRollout: JSONValue = .object(["podAnnotations": .object(["inferops.dev/simulate-failure": .string("true")])])

/// Runs `body` and returns the `ReleaseFailure` it threw, recording an issue when it threw nothing
/// or something else.
func releaseFailure<T>(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> T
) async -> ReleaseFailure? {
    do {
        let value = try await body()
        Issue.record("expected a ReleaseFailure, got \(value)", sourceLocation: sourceLocation)
    } catch let failure as ReleaseFailure {
        return failure
    } catch {
        Issue.record("expected a ReleaseFailure, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
