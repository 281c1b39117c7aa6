import Foundation
import InferOpsCore
import InferOpsTestSupport
import Testing

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
    func engine(_ version: HelmVersion, detectVersion: Bool = false) throws -> HelmReleaseEngine {
        HelmReleaseEngine(
            helmPath: try IntegrationTools.helm(version),
            kubeconfig: kubeconfig,
            environment: [
                "HELM_CACHE_HOME": folder + "/helm/cache", "HELM_CONFIG_HOME": folder + "/helm/config",
                "HELM_DATA_HOME": folder + "/helm/data", "HELM_DRIVER": "secret",
            ],
            workingDirectory: folder + "/work",
            version: detectVersion ? nil : version
        )
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
