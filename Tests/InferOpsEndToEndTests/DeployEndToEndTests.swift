import Foundation
import InferOpsTestSupport
import Testing

/// The whole bot, through `inferops exec`, against the Kubernetes emulator with the real helm binary,
/// once with Helm 3.19.0 and once with Helm 4.1.4.
@Suite("End to end", .serialized)
struct DeployEndToEndTests {
    @Test("A deploy becomes ready, verifies and shows in status, history and the audit log", arguments: HelmBinary.allCases)
    func deployVerifies(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        let deploy = try sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(deploy.status == 0, "\(deploy.output)")
        #expect(deploy.output.contains("Deployed llama-3-8b to staging: revision 1, verified in"))
        #expect(deploy.output.contains("Test completion answered in"))
        #expect(deploy.output.contains("llama-3-8b-staging.inference-staging.svc.cluster.local:8000"))
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed")

        let status = try sandbox.exec("/infer status llama-3-8b", as: "bob")
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("deployed rev 1"))
        #expect(status.output.contains("1/1"))

        let history = try sandbox.exec("/infer history llama-3-8b in staging")
        #expect(history.output.contains("@alice"), "\(history.output)")

        let audit = try sandbox.auditLines()
        let outcomes = audit.filter { $0["action"] as? String == "deploy" }.compactMap { $0["outcome"] as? String }
        #expect(outcomes == ["accepted", "succeeded"])
    }

    @Test("A deploy that never becomes ready times out with a clear message", arguments: HelmBinary.allCases)
    func neverReady(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        let deploy = try sandbox.exec(
            #"/infer deploy llama-3-8b to quick --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=never"#)
        #expect(deploy.status == 1, "\(deploy.output)")
        #expect(deploy.output.contains("did not become ready within the readiness budget"), "\(deploy.output)")
        #expect(deploy.output.contains("kubectl describe pod"))
        #expect(try sandbox.releaseState("llama-3-8b-quick", namespace: "inference-quick")?.status == "failed")
    }

    @Test("With automatic rollback, a failed deploy restores the previous revision and verifies it", arguments: HelmBinary.allCases)
    func autoRollback(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        #expect(try sandbox.exec("/infer deploy mistral-7b to canary").status == 0)
        let broken = try sandbox.exec(
            #"/infer deploy mistral-7b to canary --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=never"#)
        #expect(broken.status == 1, "\(broken.output)")
        #expect(broken.output.contains("did not become ready"), "\(broken.output)")
        #expect(broken.output.contains("rolled back: revision 1 restored as revision 3 and verified"), "\(broken.output)")
        let state = try sandbox.releaseState("mistral-7b-canary", namespace: "inference-canary")
        #expect(state?.status == "deployed")
        #expect(state?.revision == 3)
    }

    @Test("A deploy needing more GPUs than are free is refused before Helm runs", arguments: HelmBinary.allCases)
    func notEnoughGPUs(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        let deploy = try sandbox.exec("/infer deploy llama-3-70b to staging --set replicaCount=3")
        #expect(deploy.status == 2, "\(deploy.output)")
        #expect(deploy.output.contains("Not enough free GPUs"), "\(deploy.output)")
        #expect(deploy.output.contains("needs 3 × 4 = 12 nvidia.com/gpu; free 8 of 8"), "\(deploy.output)")
        #expect(!deploy.output.contains("Running helm upgrade"))
        #expect(try sandbox.releaseState("llama-3-70b-staging", namespace: "inference-staging") == nil)
    }

    @Test("A rollback to a named revision restores it and verifies", arguments: HelmBinary.allCases)
    func rollbackToRevision(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging").status == 0)
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging --set replicaCount=2").status == 0)
        let rollback = try sandbox.exec("/infer rollback llama-3-8b in staging --to 1")
        #expect(rollback.status == 0, "\(rollback.output)")
        #expect(rollback.output.contains("back to revision 1 (now revision 3), verified in"), "\(rollback.output)")
        let history = try sandbox.exec("/infer history llama-3-8b in staging")
        #expect(history.output.contains("Rollback to 1"), "\(history.output)")

        let missing = try sandbox.exec("/infer rollback llama-3-8b in staging --to 99")
        #expect(missing.status == 1)
        // Helm's own history, listed: the rollback made revision 3 and left 1 and 2 superseded.
        #expect(
            missing.output.contains(
                "has no revision 99; it has revisions 3 (deployed, current), 2 (superseded), 1 (superseded)."
            ),
            "\(missing.output)"
        )
    }

    @Test("A second deploy of the same release while one runs is refused, never interleaved", arguments: HelmBinary.allCases)
    func concurrentDeploys(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        let first = try sandbox.start(
            #"/infer deploy llama-3-8b to staging --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=4"#)
        // Wait until the first holds the release: Helm has started writing it.
        try eventually("the first deploy to reach helm") {
            try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging") != nil
        }
        let second = try sandbox.exec("/infer deploy llama-3-8b to staging --set replicaCount=2")
        let firstRun = first.finished()
        let firstText = firstRun.output
        #expect(firstRun.status == 0, "\(firstText)")
        // While Helm waited, the thread reported what the cluster said about the pods.
        #expect(firstText.contains("0 of 1 replicas ready"), "\(firstText)")
        #expect(second.status == 2, "\(second.output)")
        #expect(second.output.contains("is already working on llama-3-8b-staging"), "\(second.output)")
        #expect(!second.output.contains("Running helm upgrade"))
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.revision == 1)
    }

    @Test("A release left pending-upgrade by a killed helm is refused, then recovered by rollback", arguments: HelmBinary.allCases)
    func pendingUpgradeRecovery(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging").status == 0)
        // An operator's helm upgrade that will never be ready, killed with SIGKILL mid-wait.
        let stuck = Process()
        stuck.executableURL = URL(fileURLWithPath: helm.path)
        stuck.arguments = [
            "upgrade", "llama-3-8b-staging", repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path,
            "--namespace", "inference-staging", "--reuse-values", "--wait", "--timeout", "120s",
            "--set", "podAnnotations.inferops\\.dev/simulate-ready-after-seconds=never",
            "--kubeconfig", sandbox.kubeconfig, "--kube-context", "emulator",
        ]
        stuck.standardOutput = FileHandle.nullDevice
        stuck.standardError = FileHandle.nullDevice
        try stuck.run()
        try eventually("the release to be pending-upgrade") {
            try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "pending-upgrade"
        }
        kill(stuck.processIdentifier, SIGKILL)
        stuck.waitUntilExit()

        let deploy = try sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(deploy.status == 1, "\(deploy.output)")
        #expect(deploy.output.contains("stuck in pending-upgrade"), "\(deploy.output)")
        #expect(deploy.output.contains("/infer rollback"))

        let rollback = try sandbox.exec("/infer rollback llama-3-8b in staging")
        #expect(rollback.status == 0, "\(rollback.output)")
        #expect(rollback.output.contains("recovering from pending-upgrade"), "\(rollback.output)")
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed")
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging").status == 0)
    }
}
