import Foundation
import InferOpsCore
import Testing

@testable import InferOpsHelm

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A daemon killed with SIGKILL leaves its helm running (helm has its own process group), holding
/// the release `pending-*`. These tests stand a shell script in for that helm: bash's `exec -a`
/// gives it the argument vector the daemon gives helm, and `setsid --fork` detaches it from the test
/// process, as a dead daemon's helm is detached from the daemon that takes over.
@Suite("Stopping helm processes a stopped daemon left running")
struct AbandonedHelmProcessesTests {
    /// Writes its pid, then waits; on SIGTERM it writes `terminated` (or ignores it, when asked). A
    /// shell, not Python: Python is often a shim that starts the real interpreter with another argv[0].
    static let fakeHelm = #"""
        if [ "$FAKE_HELM_IGNORE_TERM" = 1 ]; then trap '' TERM
        else trap 'touch "$FAKE_HELM_FOLDER/terminated"; exit 1' TERM; fi
        echo $$ > "$FAKE_HELM_FOLDER/pid.tmp" && mv "$FAKE_HELM_FOLDER/pid.tmp" "$FAKE_HELM_FOLDER/pid"
        sleep 120 & wait
        """#

    /// Starts the fake helm with `argv[0]` = `helm` and the given arguments; returns its pid. Detached,
    /// it leads a session of its own (`setsid --fork`, as helm leads its own process group) and its
    /// parent exits at once; otherwise it is a child of this process, run until `own` is cancelled.
    func start(helm: String, _ arguments: [String], folder: String, detached: Bool = true,
               ignoreTerm: Bool = false, own: inout Task<Void, Never>?) async throws -> pid_t {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let environment = ["FAKE_HELM_FOLDER": folder, "FAKE_HELM_IGNORE_TERM": ignoreTerm ? "1" : "0",
                           "PATH": "/usr/bin:/bin"]
        let fake = ["-c", #"exec -a "$0" "$@" >/dev/null 2>&1"#, helm, "/bin/bash", "-c", Self.fakeHelm] + arguments
        if detached {
            let output = try await ProcessRunner().run(
                executable: "setsid", arguments: ["--fork", "bash"] + fake,
                environment: environment)
            #expect(output.succeeded, "setsid: \(output.stderrText)")
        } else {
            own = Task {
                _ = try? await ProcessRunner(terminationGrace: .milliseconds(200))
                    .run(executable: "/bin/bash", arguments: fake, environment: environment)
            }
        }
        let pidFile = folder + "/pid"
        try await TestTools.waitUntil("the fake helm has started", timeout: .seconds(20)) {
            FileManager.default.fileExists(atPath: pidFile)
        }
        let text = try String(contentsOfFile: pidFile, encoding: .utf8)
        return try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    static func running(_ pid: pid_t) -> Bool {
        guard let info = AbandonedHelmProcesses.stat(of: pid, in: "/proc") else { return false }
        return info.state != "Z"
    }

    let target = ReleaseTarget(release: "llama-3-8b-staging", namespace: "inference-staging")

    func upgradeArguments(_ target: ReleaseTarget) -> [String] {
        let request = ReleaseUpgrade(target: target, chart: "/charts/vllm-engine", timeout: .seconds(60))
        return HelmCommand(version: .v4, kubeconfig: "/tmp/kubeconfig").upgrade(request, valuesFile: "/tmp/values.yaml")
    }

    @Test("the argument vectors HelmCommand builds are recognised by release, namespace and cluster, not by prefix")
    func matchesHelmCommands() {
        let finder = AbandonedHelmProcesses(helmPath: "/opt/helm", release: target.release, namespace: target.namespace,
                                            kubeconfig: "/tmp/kubeconfig")
        let command = HelmCommand(version: .v3, kubeconfig: "/tmp/kubeconfig")
        #expect(finder.matches(["/opt/helm"] + upgradeArguments(target)))
        let otherCluster = HelmCommand(version: .v4, kubeconfig: "/tmp/other-cluster")
        #expect(!finder.matches(["/opt/helm"] + otherCluster.rollback(target, to: 2, timeout: .seconds(60))))
        let noKubeconfig = HelmCommand(version: .v4)
        #expect(!finder.matches(["/opt/helm"] + noKubeconfig.rollback(target, to: 2, timeout: .seconds(60))))
        let inContext = ReleaseTarget(release: target.release, namespace: target.namespace, kubeContext: "emulator")
        #expect(!finder.matches(["/opt/helm"] + upgradeArguments(inContext)))
        #expect(finder.matches(["/opt/helm"] + command.rollback(target, to: 2, timeout: .seconds(60))))
        #expect(finder.matches(["/opt/helm"] + command.uninstall(target, timeout: .seconds(60))))
        #expect(!finder.matches(["/usr/bin/helm"] + upgradeArguments(target)))
        let longer = ReleaseTarget(release: target.release + "-2", namespace: target.namespace)
        #expect(!finder.matches(["/opt/helm"] + upgradeArguments(longer)))
        let elsewhere = ReleaseTarget(release: target.release, namespace: "inference-production")
        #expect(!finder.matches(["/opt/helm"] + upgradeArguments(elsewhere)))
    }

    @Test("a helm left running on the release gets SIGTERM and is stopped; other releases and our own children are not")
    func stopsTheAbandonedHelm() async throws {
        let folder = TestTools.temporaryPath("abandoned")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let helm = folder + "/helm"
        var ownRun: Task<Void, Never>?
        let abandoned = try await start(helm: helm, upgradeArguments(target), folder: folder + "/abandoned",
                                        own: &ownRun)
        let otherNamespace = ReleaseTarget(release: target.release, namespace: "inference-production")
        let other = try await start(helm: helm, upgradeArguments(otherNamespace), folder: folder + "/other",
                                    own: &ownRun)
        let own = try await start(helm: helm, upgradeArguments(target), folder: folder + "/own", detached: false,
                                  own: &ownRun)
        defer {
            for pid in [abandoned, other] { kill(pid, SIGKILL) }
            ownRun?.cancel()
        }
        #expect(Self.running(abandoned) && Self.running(other) && Self.running(own))

        let engine = HelmReleaseEngine(helmPath: helm, kubeconfig: "/tmp/kubeconfig", workingDirectory: folder,
                                       version: .v4)
        let stopped = await engine.stopAbandonedProcesses(for: target)

        #expect(stopped == 1)
        #expect(FileManager.default.fileExists(atPath: folder + "/abandoned/terminated"), "it got SIGTERM first")
        try await TestTools.waitUntil("the abandoned helm is gone", timeout: .seconds(10)) { !Self.running(abandoned) }
        #expect(Self.running(other), "a helm on another namespace's release is left alone")
        #expect(Self.running(own), "a helm this process started is its own business")
        #expect(await engine.stopAbandonedProcesses(for: target) == 0)
    }

    @Test("a helm that ignores SIGTERM gets SIGKILL after the grace period")
    func killsAfterGrace() async throws {
        let folder = TestTools.temporaryPath("abandoned-stubborn")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let helm = folder + "/helm"
        var unused: Task<Void, Never>?
        let stubborn = try await start(helm: helm, upgradeArguments(target), folder: folder + "/stubborn",
                                       ignoreTerm: true, own: &unused)
        defer { kill(stubborn, SIGKILL) }

        let engine = HelmReleaseEngine(helmPath: helm, kubeconfig: "/tmp/kubeconfig", workingDirectory: folder,
                                       version: .v4, abandonedProcessGrace: .milliseconds(300))
        #expect(await engine.stopAbandonedProcesses(for: target) == 1)
        try await TestTools.waitUntil("the stubborn helm is gone", timeout: .seconds(10)) { !Self.running(stubborn) }
        #expect(!FileManager.default.fileExists(atPath: folder + "/stubborn/terminated"))
    }
}
