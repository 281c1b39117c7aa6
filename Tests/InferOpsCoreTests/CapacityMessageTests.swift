import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// What a capacity refusal says: numbers that add up (free GPUs split over nodes are named as such),
/// suggestions that fit the case, and counts in the right number.
@Suite struct CapacityMessageTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var model: ModelSpec
        var replicas: Int
        /// Nodes as `(name, allocatable, requested)`.
        var nodes: [(String, Int, Int)]
        var rollout: Rollout?
        /// The end of the summary: what does not fit, after the arithmetic.
        var reason: String
        var suggestion: String
        var testDescription: String { name }
    }

    static let firstInstall = Rollout(strategy: .kubernetesDefault, running: nil, templateChanges: true)

    static let cases: [Case] = [
        Case(
            name: "4 GPUs per replica, 3 free on each of two nodes, first install",
            model: Fixtures.qwen,
            replicas: 1,
            nodes: [("gpu-node-1", 4, 1), ("gpu-node-2", 4, 1)],
            rollout: firstInstall,
            reason: "nothing runs yet, so the 1 replica needs free GPUs; no node has 4 free; largest free block is 3 "
                + "on gpu-node-1 (the 6 free GPUs are split over nodes; a replica's GPUs must be on one node)",
            suggestion: "Free 1 more GPU on gpu-node-1 (roll back or remove a model there) or ask for the deploy to wait."
        ),
        Case(
            name: "the same with the rollout unknown",
            model: Fixtures.qwen,
            replicas: 1,
            nodes: [("gpu-node-1", 4, 1), ("gpu-node-2", 4, 1)],
            rollout: nil,
            reason: "(gpu-node-1 3/4 free, gpu-node-2 3/4 free); no node has 4 free; largest free block is 3 "
                + "on gpu-node-1 (the 6 free GPUs are split over nodes; a replica's GPUs must be on one node)",
            suggestion: "Free 1 more GPU on gpu-node-1 (roll back or remove a model there) or ask for the deploy to wait."
        ),
        Case(
            name: "the largest block is named even when it is not the first node",
            model: Fixtures.qwen,
            replicas: 1,
            nodes: [("gpu-node-1", 4, 3), ("gpu-node-2", 4, 2)],
            rollout: firstInstall,
            reason: "no node has 4 free; largest free block is 2 on gpu-node-2",
            suggestion: "Free 2 more GPUs on gpu-node-2 (roll back or remove a model there) or ask for the deploy to wait."
        ),
        Case(
            name: "two replicas, room for one: lowering replicaCount is offered, with the number that fits",
            model: Fixtures.qwen,
            replicas: 2,
            nodes: [("gpu-node-1", 8, 4), ("gpu-node-2", 4, 1)],
            rollout: firstInstall,
            reason: "nothing runs yet, so all 2 replicas need free GPUs; room for 1 of 2 replicas "
                + "(4 GPUs each, all on one node)",
            suggestion: "Free 4 GPUs on one node for each replica that does not fit, lower `replicaCount` to 1, "
                + "or ask for the deploy to wait."
        ),
        Case(
            name: "one GPU per replica reads as 1 GPU each",
            model: Fixtures.llama,
            replicas: 3,
            nodes: [("gpu-node-1", 4, 2)],
            rollout: firstInstall,
            reason: "room for 2 of 3 replicas (1 GPU each, all on one node)",
            suggestion: "Free 1 GPU on one node for each replica that does not fit, lower `replicaCount` to 2, "
                + "or ask for the deploy to wait."
        ),
        Case(
            name: "nothing free anywhere",
            model: Fixtures.qwen,
            replicas: 1,
            nodes: [("gpu-node-1", 4, 4), ("gpu-node-2", 4, 4)],
            rollout: firstInstall,
            reason: "no GPU is free on any node",
            suggestion: "Free 4 GPUs on one node or ask for the deploy to wait."
        ),
        Case(
            name: "scaling 1 to 2 with the template unchanged: the added replica is what must fit",
            model: Fixtures.qwen,
            replicas: 2,
            nodes: [("gpu-node-1", 8, 6), ("gpu-node-2", 8, 6)],
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: false
            ),
            reason: "the pod template is unchanged: 1 running replica stays, 1 added need free GPUs; no node has 4 "
                + "free; largest free block is 2 on gpu-node-1 (the 4 free GPUs are split over nodes; a replica's "
                + "GPUs must be on one node)",
            suggestion: "Free 2 more GPUs on gpu-node-1 (roll back or remove a model there), lower `replicaCount` "
                + "to 1, or ask for the deploy to wait."
        ),
    ]

    @Test(arguments: cases)
    func refusal(_ example: Case) throws {
        let plan = try DeployPlanner.plan(
            model: example.model,
            environment: Fixtures.settings("staging"),
            chartVersion: nil,
            overrides: ["replicaCount=\(example.replicas)"]
        )
        let capacity = GPUCapacity(
            nodes: example.nodes.map { NodeGPUs(node: $0.0, allocatable: $0.1, requested: $0.2) }
        )
        let verdict = CapacityCheck.evaluate(plan, capacity: capacity, rollout: example.rollout)
        #expect(!verdict.fits)
        #expect(verdict.summary.hasSuffix(example.reason), "\(verdict.summary)")
        #expect(verdict.suggestion == example.suggestion)
    }

    @Test func aFittingPlanHasNoSuggestion() throws {
        let plan = try DeployPlanner.plan(
            model: Fixtures.qwen, environment: Fixtures.settings("staging"), chartVersion: nil, overrides: []
        )
        let verdict = CapacityCheck.evaluate(
            plan,
            capacity: GPUCapacity(nodes: [NodeGPUs(node: "gpu-node-1", allocatable: 4, requested: 0)]),
            rollout: Self.firstInstall
        )
        #expect(verdict.fits)
        #expect(verdict.suggestion == nil)
        #expect(!verdict.summary.contains("no node has"))
    }
}
