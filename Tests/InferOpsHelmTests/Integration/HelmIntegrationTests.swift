import Foundation
import InferOpsCore
import InferOpsTestSupport
import Testing

@testable import InferOpsHelm

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The real Helm 3.19.0 and Helm 4.1.4 binaries against the project's Kubernetes API emulator and
/// the engine chart. Every test starts its own emulator, so the cases run in parallel.
@Suite("HelmReleaseEngine with the real helm", .timeLimit(.minutes(2)))
struct HelmIntegrationTests {
    let tools: IntegrationTools

    init() throws {
        tools = try IntegrationTools.require()
    }

    func upgrade(
        _ release: String,
        _ values: JSONValue = readyAfter(1),
        timeout: Duration = .seconds(60)
    )
        -> ReleaseUpgrade
    {
        ReleaseUpgrade(
            target: ReleaseTarget(release: release, namespace: "models", kubeContext: "emulator"),
            chart: tools.chart,
            values: values,
            timeout: timeout
        )
    }

    @Test("install, status, upgrade, history, rollback to 1, uninstall", arguments: HelmVersion.allCases)
    func lifecycle(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version, detectVersion: true)
            #expect(try await engine.version() == version)

            var request = upgrade("llama-staging")
            request.values = request.values.merging(
                .object(["model": .object(["id": .string("meta-llama/Llama-3.1-8B")])])
            )
            let manifests = try await engine.render(request)
            #expect(manifests.contains("kind: Deployment"))
            #expect(manifests.contains("meta-llama/Llama-3.1-8B"))

            let installed = try await engine.upgrade(request)
            #expect(installed.state == .deployed)
            #expect(installed.revision == 1)
            #expect(installed.namespace == "models")
            #expect(installed.chart == "vllm-engine-0.1.0")
            #expect(installed.appVersion == "v0.6.3")

            let status = try #require(try await engine.status(request.target))
            #expect(status.state == .deployed)
            #expect(status.revision == 1)
            #expect(status.chart == "vllm-engine-0.1.0")
            #expect(status.lastDeployed != nil)

            request.values = request.values.merging(.object(["replicaCount": .number(2)]))
            let upgraded = try await engine.upgrade(request)
            #expect(upgraded.state == .deployed)
            #expect(upgraded.revision == 2)

            let history = try await engine.history(request.target)
            #expect(history.map(\.revision) == [1, 2])
            #expect(history.map(\.state) == [.superseded, .deployed])
            #expect(history.allSatisfy { $0.chart == "vllm-engine-0.1.0" && $0.updated != nil })

            let rolledBack = try await engine.rollback(request.target, to: 1, timeout: .seconds(60))
            #expect(rolledBack.state == .deployed)
            #expect(rolledBack.revision == 3)
            #expect(rolledBack.description == "Rollback to 1")

            try await engine.uninstall(request.target, timeout: .seconds(60))
            #expect(try await engine.status(request.target) == nil)
            #expect(try await engine.history(request.target).isEmpty)
        }
    }

    @Test("a workload that never becomes ready is a readiness timeout", arguments: HelmVersion.allCases)
    func readinessTimeout(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            let request = upgrade("slow", readyAfter(-1), timeout: .seconds(2))
            let failure = await releaseFailure { try await engine.upgrade(request) }
            switch (version, failure) {
            case (.v3, .readinessTimeout(let detail)):
                #expect(detail == "Helm's wait ran out (context deadline exceeded).")
            case (.v4, .readinessTimeout(let detail)):
                #expect(detail == "Still not ready: Deployment models/slow (InProgress: Available: 0/1).")
            default:
                Issue.record("expected a readiness timeout, got \(String(describing: failure))")
            }
            let status = try #require(try await engine.status(request.target))
            #expect(status.state == .failed)

            // One (failed) revision only: nothing to roll back to, and no revision 99.
            #expect(
                await releaseFailure { try await engine.rollback(request.target, to: 99, timeout: .seconds(5)) }
                    == .missingRevision(99)
            )
            #expect(
                await releaseFailure { try await engine.rollback(request.target, to: nil, timeout: .seconds(5)) }
                    == .missingRevision(nil)
            )
        }
    }

    @Test("a rollout that reports ProgressDeadlineExceeded", arguments: HelmVersion.allCases)
    func rolloutFailed(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            let failure = await releaseFailure {
                try await engine.upgrade(upgrade("broken", failingRollout, timeout: .seconds(3)))
            }
            switch version {
            case .v3:
                // Helm 3 does not read the Progressing condition: it waits out the timeout.
                #expect(failure == .readinessTimeout(detail: "Helm's wait ran out (context deadline exceeded)."))
            case .v4:
                #expect(failure == .rolloutFailed(detail: "Deployment models/broken: Progress deadline exceeded"))
            }
        }
    }

    @Test("missing releases and charts", arguments: HelmVersion.allCases)
    func missing(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            let target = ReleaseTarget(release: "nope", namespace: "models")
            #expect(try await engine.status(target) == nil)
            #expect(try await engine.history(target).isEmpty)
            #expect(
                await releaseFailure { try await engine.rollback(target, to: 1, timeout: .seconds(5)) }
                    == .releaseNotFound
            )
            #expect(
                await releaseFailure { try await engine.uninstall(target, timeout: .seconds(5)) } == .releaseNotFound
            )

            var request = upgrade("nochart")
            request.chart = emulator.folder + "/no-such-chart"
            #expect(
                await releaseFailure { try await engine.upgrade(request) }
                    == .chartError(detail: "path \"\(request.chart)\" not found")
            )
            #expect(
                await releaseFailure { try await engine.render(request) }
                    == .chartError(detail: "path \"\(request.chart)\" not found")
            )
        }
    }

    @Test(
        "helm killed during a wait leaves pending-upgrade: the upgrade says stuck, a rollback recovers",
        arguments: HelmVersion.allCases
    )
    func stuckPending(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            let request = upgrade("stuck")
            #expect(try await engine.upgrade(request).revision == 1)

            // A helm of our own, outside the engine, that is killed -9 while it waits.
            try await emulator.killHelmWhilePending(
                version,
                engine,
                upgrade("stuck", readyAfter(-1), timeout: .seconds(60)),
                state: .pendingUpgrade
            )
            #expect(try await engine.status(request.target)?.state == .pendingUpgrade)

            #expect(await releaseFailure { try await engine.upgrade(request) } == .stuckPending(.pendingUpgrade))

            let recovered = try await engine.rollback(request.target, to: nil, timeout: .seconds(60))
            #expect(recovered.state == .deployed)
            #expect(recovered.revision == 3)
            let history = try await engine.history(request.target)
            #expect(history.map(\.state) == [.superseded, .pendingUpgrade, .deployed])
            #expect(try await engine.upgrade(request).state == .deployed)
        }
    }

    @Test(
        "helm killed during an install leaves pending-install: the upgrade says stuck, an uninstall recovers",
        arguments: HelmVersion.allCases
    )
    func stuckPendingInstall(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            let request = upgrade("stuck-install")
            try await emulator.killHelmWhilePending(
                version,
                engine,
                upgrade("stuck-install", readyAfter(-1)),
                state: .pendingInstall
            )

            #expect(await releaseFailure { try await engine.upgrade(request) } == .stuckPending(.pendingInstall))
            // Probe §5: a rollback cannot help here, there is nothing before revision 1.
            #expect(
                await releaseFailure { try await engine.rollback(request.target, to: nil, timeout: .seconds(5)) }
                    == .missingRevision(nil)
            )
            try await engine.uninstall(request.target, timeout: .seconds(60))
            let installed = try await engine.upgrade(request)
            #expect(installed.state == .deployed)
            #expect(installed.revision == 1)
        }
    }

    @Test(
        "cancelling the task stops helm with SIGTERM and helm marks the revision failed",
        arguments: HelmVersion.allCases
    )
    func cancellation(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            let request = upgrade("cancelled")
            #expect(try await engine.upgrade(request).revision == 1)

            let hanging = upgrade("cancelled", readyAfter(-1), timeout: .seconds(60))
            let task = Task { try await engine.upgrade(hanging) }
            try await TestTools.waitUntil("the release is pending-upgrade", timeout: .seconds(30)) {
                try await engine.status(request.target)?.state == .pendingUpgrade
            }
            let clock = ContinuousClock()
            let cancelledAt = clock.now
            task.cancel()
            #expect(await releaseFailure { try await task.value } == .cancelled)
            #expect(clock.now - cancelledAt < .seconds(10))

            let status = try #require(try await engine.status(request.target))
            #expect(status.state == .failed)
            #expect(status.revision == 2)
            #expect(status.description.contains("context canceled"))
            #expect(try await engine.upgrade(request).state == .deployed)
        }
    }

    @Test(
        "HELM_NAMESPACE=elsewhere and other helm settings in the daemon's environment change nothing",
        arguments: HelmVersion.allCases
    )
    func daemonEnvironment(_ version: HelmVersion) async throws {
        try await KubeEmulator.with { emulator in
            let engine = try emulator.engine(version)
            // No kube context named: helm would take HELM_KUBECONTEXT's, which does not exist.
            var request = upgrade("clean-env")
            request.target.kubeContext = nil
            let planted = [
                "HELM_NAMESPACE": "elsewhere", "HELM_KUBECONTEXT": "elsewhere",
                "HELM_KUBETOKEN": "kubetoken-planted-4f1d", "SLACK_BOT_TOKEN": "xoxb-planted-9c2e",
            ]
            try await TestTools.withProcessEnvironment(planted) {
                #expect(ProcessInfo.processInfo.environment["HELM_NAMESPACE"] == "elsewhere")
                let installed = try await engine.upgrade(request)
                #expect(installed.state == .deployed)
                #expect(installed.namespace == "models")
                #expect(try await engine.status(request.target)?.namespace == "models")
                #expect(try await engine.status(ReleaseTarget(release: "clean-env", namespace: "elsewhere")) == nil)
            }
        }
    }

    @Test("an unreachable API server", arguments: HelmVersion.allCases)
    func unreachable(_ version: HelmVersion) async throws {
        let folder = TestTools.temporaryPath("unreachable")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let kubeconfig = try IntegrationTools.unreachableKubeconfig(in: folder)
        let engine = HelmReleaseEngine(
            helmPath: try IntegrationTools.helm(version),
            kubeconfig: kubeconfig,
            environment: ["HELM_CACHE_HOME": folder + "/cache", "HELM_CONFIG_HOME": folder + "/config"],
            workingDirectory: folder + "/work",
            version: version
        )
        let expected = ReleaseFailure.clusterUnreachable(
            detail: "Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused"
        )
        #expect(
            await releaseFailure { try await engine.status(ReleaseTarget(release: "x", namespace: "models")) }
                == expected
        )
        #expect(
            await releaseFailure { try await engine.history(ReleaseTarget(release: "x", namespace: "models")) }
                == expected
        )
        // A context the kubeconfig does not have is reported the same way, with its own reason.
        #expect(
            await releaseFailure { try await engine.upgrade(upgrade("x")) }
                == .clusterUnreachable(detail: "context \"emulator\" does not exist")
        )
    }
}
