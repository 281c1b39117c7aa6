import Foundation
import InferOpsTestSupport
import Testing

/// The Helm versions every end-to-end case runs with.
enum HelmBinary: String, CaseIterable, CustomStringConvertible, Sendable {
    case helm3, helm4
    var path: String { repositoryRoot.appendingPathComponent(".tools/bin/\(rawValue)").path }
    var description: String { rawValue == "helm3" ? "Helm 3.19.0" : "Helm 4.1.4" }
}

/// Runs a program with an argv (no shell) and collects its combined output.
@discardableResult
func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil) throws -> Finished {
    try ChildProcess.run(executable, arguments, environment: environment, input: input)
}

/// Polls `condition` until it holds or `timeout` passes. Used for conditions that have no event to
/// wait on (a file appearing, a release reaching a state); the interval is short and the limit generous.
func eventually(_ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return }
        usleep(50_000)
    }
    Issue.record("timed out waiting for \(what)")
    throw CancellationError()
}

/// One Kubernetes API emulator with a simulated GPU pool, one configuration for it, and the
/// `inferops` binary run against them. Every case gets its own, in a fresh temporary folder.
final class Sandbox {
    let helm: HelmBinary
    let folder: URL
    let emulator: KubeEmulator
    let inferops = InferOpsDaemon.executable
    var kubeconfig: String { emulator.kubeconfig }
    var config: String { folder.appendingPathComponent("inferops.yaml").path }

    /// Extra top-level YAML and per-environment YAML, for routed sandboxes.
    var extraTopLevel = ""
    var extraEnvironment = ""
    /// Whole environments added after the three (with their own names and settings).
    var extraEnvironments = ""

    var emulatorURL: String { emulator.server }

    init(helm: HelmBinary, gpuNodes: Int = 2, gpusPerNode: Int = 4, readyAfter: Double = 1) throws {
        self.helm = helm
        guard FileManager.default.isExecutableFile(atPath: helm.path) else {
            Issue.record("\(helm.path) is missing: run scripts/install-tools")
            throw CancellationError()
        }
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // Its port file and kubeconfig go in the sandbox's folder, beside the configuration.
        emulator = try KubeEmulator(
            gpuNodes: gpuNodes, gpusPerNode: gpusPerNode, readyAfter: readyAfter, folder: folder)
        try writeConfiguration()
    }

    deinit {
        emulator.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    /// Three environments: `staging` (no automatic rollback), `canary` (automatic rollback) and
    /// `quick` (a short readiness budget, for cases that must time out).
    func writeConfiguration() throws {
        let root = repositoryRoot.path
        func environment(_ name: String, budget: String, autoRollback: Bool) -> String {
            """
              \(name):
                kubeContext: emulator
                namespace: inference-\(name)
                chart: \(root)/deploy/charts/vllm-engine
                valuesFiles: [\(root)/deploy/values/sandbox.yaml]
                readinessBudget: \(budget)
                autoRollback: \(autoRollback)
                allowedSetKeys: [replicaCount, podAnnotations.inferops\\.dev/simulate-ready-after-seconds,
                                 strategy.rollingUpdate.maxSurge, strategy.rollingUpdate.maxUnavailable]
                verification:
                  warmupRequests: 2
                  requestTimeout: 5s
                \(extraEnvironment)

            """
        }
        let yaml = """
            chat:
              transport: console
              console:
                user: alice
            kubernetes:
              kubeconfig: \(kubeconfig)
            helm:
              binary: \(helm.path)
            storage:
              path: \(folder.path)/inferops.sqlite
            \(extraTopLevel)
            models:
              directory: \(root)/config/models
            commands:
              directory: \(root)/commands
            environments:
            \(environment("staging", budget: "40s", autoRollback: false))\(environment("canary", budget: "12s", autoRollback: true))\(environment("quick", budget: "6s", autoRollback: false))\(extraEnvironments)
            policy:
              roles:
                - name: admin
                  members: [alice]
                  grants:
                    - permissions: ["*"]
                      environments: ["*"]
                - name: staging-deployer
                  members: [bob]
                  grants:
                    - permissions: [deploy, rollback, cancel, view]
                      environments: [staging]
                - name: approver
                  members: [carol]
                  grants:
                    - permissions: [approve, view]
                      environments: ["*"]
            """
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// `inferops exec --as user "command"`.
    @discardableResult
    func exec(_ command: String, as user: String = "alice") throws -> Finished {
        try run(inferops, ["exec", "--config", config, "--as", user, command])
    }

    /// Starts `inferops exec` without waiting for it.
    func start(_ command: String, as user: String = "alice") throws -> ChildProcess {
        try InferOpsDaemon.launch(["exec", "--config", config, "--as", user, command], input: false)
    }

    /// The real helm binary against the emulator.
    @discardableResult
    func helmRun(_ arguments: [String]) throws -> Finished {
        try run(helm.path, arguments + ["--kubeconfig", kubeconfig, "--kube-context", "emulator"])
    }

    /// `helm status -o json` → `info.status` and `version`, or nil when there is no release.
    func releaseState(_ release: String, namespace: String) throws -> (status: String, revision: Int)? {
        let result = try helmRun(["status", release, "--namespace", namespace, "-o", "json"])
        guard result.status == 0, let start = result.output.firstIndex(of: "{") else { return nil }
        let json = try JSONSerialization.jsonObject(with: Data(result.output[start...].utf8)) as? [String: Any]
        let info = json?["info"] as? [String: Any]
        guard let status = info?["status"] as? String, let version = json?["version"] as? Int else { return nil }
        return (status, version)
    }

    func auditLines() throws -> [[String: Any]] {
        let result = try run(inferops, ["audit", "--config", config])
        return result.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}
