import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// A deploy that does not fit as asked: an upgrade replaces its replicas one at a time instead of by
/// surge when that fits; `--min-replicas N` deploys fewer replicas, down to N; the thread says which.
@Suite(.timeLimit(.minutes(1))) struct CapacityAdaptationTests {
    static let release = "llama-3-8b-staging"

    /// One 4-GPU node with `free` GPUs free, the release holding `held` of the others.
    static func node(free: Int, held: Int) -> GPUCapacity {
        GPUCapacity(
            nodes: [NodeGPUs(node: "gpu-a", allocatable: 4, requested: 4 - free, requestedByRelease: held > 0 ? [release: held] : [:])],
            requestedByRelease: held > 0 ? [release: held] : [:])
    }

    static func upgrade(running: Int) -> Rollout {
        Rollout(strategy: .kubernetesDefault, running: .init(replicas: running, gpusPerReplica: 1), templateChanges: true)
    }

    @Test func anUpgradeWithNoSpareGPUReplacesOneReplicaAtATimeAndSaysSo() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        // 2 running, all 4 GPUs taken (2 by the release): no room for a surge pod.
        h.cluster.setCapacity(Self.node(free: 0, held: 2))
        h.cluster.setRollout(Self.upgrade(running: 2), for: Self.release)

        let outcome = await h.run("/infer deploy llama-3-8b to staging --set replicaCount=2")

        #expect(outcome.succeeded, "\(outcome)")
        let values = try #require(h.releases.upgrades.last?.values)
        #expect(values["strategy"]?["rollingUpdate"]?["maxSurge"] == .number(0))
        #expect(values["strategy"]?["rollingUpdate"]?["maxUnavailable"] == .number(1))
        #expect(values["replicaCount"] == .number(2))
        #expect(h.chat.transcript.contains("replacing the running replicas one at a time instead of by surge"), "\(h.chat.transcript)")
    }

    @Test func aSingleReplicaIsNeverReplacedOneAtATime() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        h.cluster.setCapacity(Self.node(free: 0, held: 1))
        h.cluster.setRollout(Self.upgrade(running: 1), for: Self.release)

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        // It would serve nothing while replaced: refused with the numbers, nothing applied.
        guard case .refused(let message) = outcome else { Issue.record("\(outcome)"); return }
        #expect(message.contains("Not enough free GPUs"), "\(message)")
        #expect(h.releases.upgrades.isEmpty)
    }

    @Test func minReplicasDeploysFewerReplicasWhenTheGPUsAreShort() async throws {
        let h = Harness()
        // A first install of 3 replicas with 2 GPUs free.
        h.cluster.setCapacity(Self.node(free: 2, held: 0))

        let outcome = await h.run("/infer deploy llama-3-8b to staging --set replicaCount=3 --min-replicas 1")

        #expect(outcome.succeeded, "\(outcome)")
        #expect(h.releases.upgrades.last?.values["replicaCount"] == .number(2))
        #expect(h.chat.transcript.contains("deploying 2 of the 3 replicas asked for (`--min-replicas 1` allows down to 1)"),
                "\(h.chat.transcript)")
    }

    @Test func withoutMinReplicasAShortDeployIsRefusedAsBefore() async throws {
        let h = Harness()
        h.cluster.setCapacity(Self.node(free: 2, held: 0))

        let outcome = await h.run("/infer deploy llama-3-8b to staging --set replicaCount=3")

        guard case .refused = outcome else { Issue.record("\(outcome)"); return }
        #expect(h.releases.upgrades.isEmpty)
    }

    @Test func minReplicasBelowWhatFitsIsStillRefused() async throws {
        let h = Harness()
        h.cluster.setCapacity(Self.node(free: 1, held: 0))

        let outcome = await h.run("/infer deploy llama-3-8b to staging --set replicaCount=3 --min-replicas 2")

        guard case .refused = outcome else { Issue.record("\(outcome)"); return }
        #expect(h.releases.upgrades.isEmpty)
    }

    @Test(arguments: [
        ("--min-replicas many", "`--min-replicas many` is not a number of replicas"),
        ("--min-replicas 0", "`--min-replicas 0` is not a number of replicas"),
        ("--set replicaCount=2 --min-replicas 3", "`--min-replicas 3` is more than the 2 replicas this deploy asks for."),
    ])
    func badMinReplicasIsRefusedAndChangesNothing(_ options: String, _ expected: String) async throws {
        let h = Harness()

        let outcome = await h.run("/infer deploy llama-3-8b to staging \(options)")

        guard case .refused(let message) = outcome else { Issue.record("\(outcome)"); return }
        #expect(message.contains(expected), "\(message)")
        #expect(h.releases.calls.isEmpty)
        #expect(await h.store.allOperations().isEmpty)
    }

    @Test func theApprovalRequestShowsHowFewReplicasItMayRun() async throws {
        let h = Harness { configuration in
            configuration.environments["production"]!.approval = ApprovalPolicy(verbs: ["deploy"])
        }
        h.cluster.setCapacity(Self.node(free: 4, held: 0))

        let outcome = await h.run("/infer deploy llama-3-8b to production --set replicaCount=2 --min-replicas 1")

        guard case .awaitingApproval = outcome else { Issue.record("\(outcome)"); return }
        #expect(h.chat.transcript.contains("2 × 1 GPU, down to 1 if the GPUs are short; running replicas replaced one at a time "
                                           + "if no GPU is spare for a surge"), "\(h.chat.transcript)")
    }
}
