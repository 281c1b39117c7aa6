import Foundation
import InferOpsCore
import Testing

@testable import InferOpsHelm

/// What the integration tests need from the repository: the pinned helm binaries
/// (`scripts/install-tools`), the Kubernetes API emulator and the engine chart. A missing piece
/// fails the test with the command that provides it; it never skips silently.
struct IntegrationTools {
    let python3: String
    let emulatorPath: String
    let chart: String

    static func require(sourceLocation: SourceLocation = #_sourceLocation) throws -> IntegrationTools {
        let root = TestTools.repositoryRoot.path
        let python3 = try #require(
            TestTools.python3(),
            "python3 is needed to run the Kubernetes API emulator; install CPython 3.11+",
            sourceLocation: sourceLocation
        )
        let emulatorPath = root + "/Tests/KubeEmulator"
        try #require(
            FileManager.default.fileExists(atPath: emulatorPath + "/kubeemu/__main__.py"),
            "the Kubernetes API emulator is missing at \(emulatorPath)/kubeemu",
            sourceLocation: sourceLocation
        )
        let chart = root + "/deploy/charts/vllm-engine"
        try #require(
            FileManager.default.fileExists(atPath: chart + "/Chart.yaml"),
            "the engine chart is missing at \(chart)",
            sourceLocation: sourceLocation
        )
        return IntegrationTools(python3: python3, emulatorPath: emulatorPath, chart: chart)
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

/// The project's Kubernetes API emulator, run as a child process on a free port for one test.
///
/// It runs under the adapter's own `ProcessRunner`, so stopping it is a task cancellation: SIGTERM,
/// which the emulator handles by shutting down, and SIGKILL if it has not exited within 5 s.
final class KubeEmulator: Sendable {
    let port: Int
    /// A kubeconfig with the context `emulator`, written by the emulator itself.
    let kubeconfig: String
    let folder: String
    private let run: Task<ProcessOutput, any Error>

    private init(port: Int, kubeconfig: String, folder: String, run: Task<ProcessOutput, any Error>) {
        self.port = port
        self.kubeconfig = kubeconfig
        self.folder = folder
        self.run = run
    }

    /// Starts the emulator and returns once it has written its port file.
    static func start(_ tools: IntegrationTools, readyAfter: Double = 1) async throws -> KubeEmulator {
        let folder = TestTools.temporaryPath("emulator")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let portFile = folder + "/port"
        let kubeconfig = folder + "/kubeconfig"
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = tools.emulatorPath
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        let arguments = [
            "-m", "kubeemu", "--port", "0", "--port-file", portFile, "--kubeconfig-out", kubeconfig,
            "--ready-after", String(readyAfter),
        ]
        let run = Task {
            try await ProcessRunner(terminationGrace: .seconds(5))
                .run(executable: tools.python3, arguments: arguments, environment: environment)
        }
        var port: Int?
        do {
            try await TestTools.waitUntil("the emulator has written its port file", timeout: .seconds(30)) {
                if let text = try? String(contentsOfFile: portFile, encoding: .utf8),
                    let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                    FileManager.default.fileExists(atPath: kubeconfig)
                {
                    port = value
                    return true
                }
                return false
            }
        } catch {
            run.cancel()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            if case .success(let output) = await run.result {
                Issue.record("the emulator exited early (\(output.status)): \(output.stderrText.suffix(2000))")
            }
            throw error
        }
        return KubeEmulator(port: port!, kubeconfig: kubeconfig, folder: folder, run: run)
    }

    /// Stops the emulator and removes its folder (kubeconfig, helm's caches, values files).
    func stop() async {
        run.cancel()
        _ = await run.result
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// Runs `body` with a fresh emulator and stops it afterwards, whatever happens.
    static func with<T>(
        _ tools: IntegrationTools,
        _ body: (KubeEmulator) async throws -> T
    ) async throws -> T {
        let emulator = try await start(tools)
        do {
            let result = try await body(emulator)
            await emulator.stop()
            return result
        } catch {
            await emulator.stop()
            throw error
        }
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
