import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// The capacity check with the rollout known: how the Deployment controller replaces pods decides
/// whether a redeploy needs spare GPUs.
@Suite struct RolloutCapacityTests {
    static let release = "qwen-2-72b-staging"

    func plan(_ model: ModelSpec, replicas: Int = 1) throws -> DeployPlan {
        try DeployPlanner.plan(
            model: model,
            environment: Fixtures.settings("staging"),
            chartVersion: nil,
            overrides: ["replicaCount=\(replicas)"]
        )
    }

    /// Nodes as `(name, allocatable, requested, held by the release)`.
    static func pool(_ release: String, _ nodes: (String, Int, Int, Int)...) -> GPUCapacity {
        GPUCapacity(
            nodes: nodes.map {
                NodeGPUs(
                    node: $0.0,
                    allocatable: $0.1,
                    requested: $0.2,
                    requestedByRelease: $0.3 > 0 ? [release: $0.3] : [:]
                )
            },
            requestedByRelease: [release: nodes.reduce(0) { $0 + $1.3 }]
        )
    }

    static func rolling(_ surge: IntOrPercent, _ unavailable: IntOrPercent) -> Rollout.Strategy {
        .rollingUpdate(maxSurge: surge, maxUnavailable: unavailable)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var model: ModelSpec
        var replicas: Int
        var capacity: GPUCapacity
        var rollout: Rollout
        var fits: Bool
        var testDescription: String { name }
    }

    static let qwenPool = "qwen-2-72b-staging"
    static let llamaPool = "llama-3-8b-staging"

    /// Two 8-GPU nodes. qwen needs 4 GPUs per replica, llama 1.
    static let cases: [Case] = [
        // The regression: the only free GPUs are the ones the release holds.
        Case(
            name: "template change, default strategy, 1 replica, full pool: a surge pod has no room",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            fits: false
        ),
        Case(
            name: "template change, maxSurge 0, full pool: the old pod stops first",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0)),
            rollout: Rollout(
                strategy: rolling(.count(0), .count(1)),
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            fits: true
        ),
        Case(
            name: "maxSurge 0 and maxUnavailable 0% resolve to one unavailable pod (the controller's fencepost)",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0)),
            rollout: Rollout(
                strategy: rolling(.count(0), .percent(0)),
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            fits: true
        ),
        Case(
            name: "template change, Recreate, full pool",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0)),
            rollout: Rollout(
                strategy: .recreate,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            fits: true
        ),
        Case(
            name: "replica count alone on a full pool: nothing is added, nothing needed",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: false
            ),
            fits: true
        ),
        Case(
            name: "replica count alone, 1 to 2, with room for one more on a node",
            model: Fixtures.qwen,
            replicas: 2,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 4, 0)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: false
            ),
            fits: true
        ),
        Case(
            name: "replica count alone, 1 to 2, the 4 free GPUs split over two nodes",
            model: Fixtures.qwen,
            replicas: 2,
            capacity: pool(qwenPool, ("gpu-a", 8, 6, 4), ("gpu-b", 8, 6, 0)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: false
            ),
            fits: false
        ),
        Case(
            name: "template change, default strategy, 4 free GPUs on one node: the surge pod fits",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 4, 0)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            fits: true
        ),
        Case(
            name: "template change, default strategy, 4 free GPUs split over two nodes: no node takes the surge pod",
            model: Fixtures.qwen,
            replicas: 1,
            capacity: pool(qwenPool, ("gpu-a", 8, 6, 4), ("gpu-b", 8, 6, 0)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            fits: false
        ),
        Case(
            name: "template change, 4 replicas with 25%/25%: one old pod stops first, no spare needed",
            model: Fixtures.llama,
            replicas: 4,
            capacity: pool(llamaPool, ("gpu-a", 4, 4, 4)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 4, gpusPerReplica: 1),
                templateChanges: true
            ),
            fits: true
        ),
        Case(
            name: "template change, 3 replicas with 25%/25%: unavailable rounds down to 0, a spare GPU is needed",
            model: Fixtures.llama,
            replicas: 3,
            capacity: pool(llamaPool, ("gpu-a", 3, 3, 3)),
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 3, gpusPerReplica: 1),
                templateChanges: true
            ),
            fits: false
        ),
        Case(
            name: "template change, 3 replicas with maxSurge 50%, maxUnavailable 50%: unavailable is 1",
            model: Fixtures.llama,
            replicas: 3,
            capacity: pool(llamaPool, ("gpu-a", 3, 3, 3)),
            rollout: Rollout(
                strategy: rolling(.percent(50), .percent(50)),
                running: .init(replicas: 3, gpusPerReplica: 1),
                templateChanges: true
            ),
            fits: true
        ),
        Case(
            name: "template change while scaling 1 to 2 with maxSurge 0: the added replica needs a free GPU",
            model: Fixtures.llama,
            replicas: 2,
            capacity: pool(llamaPool, ("gpu-a", 1, 1, 1)),
            rollout: Rollout(
                strategy: rolling(.count(0), .count(1)),
                running: .init(replicas: 1, gpusPerReplica: 1),
                templateChanges: true
            ),
            fits: false
        ),
        Case(
            name: "first install: every replica needs free GPUs",
            model: Fixtures.qwen,
            replicas: 2,
            capacity: pool(qwenPool, ("gpu-a", 8, 4, 0)),
            rollout: Rollout(strategy: .kubernetesDefault, running: nil, templateChanges: true),
            fits: false
        ),
    ]

    @Test(arguments: cases)
    func rolloutArithmetic(_ example: Case) throws {
        let plan = try plan(example.model, replicas: example.replicas)
        let verdict = CapacityCheck.evaluate(plan, capacity: example.capacity, rollout: example.rollout)
        #expect(verdict.fits == example.fits, "\(verdict.summary)")
    }

    /// The case the issue describes: without the rollout the check approves, with it the check refuses
    /// and says why, with the numbers.
    @Test func aTemplateChangeOnAFullPoolNeedsASpareNodeSlot() throws {
        let plan = try plan(Fixtures.qwen)
        let full = Self.pool(Self.qwenPool, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0))
        #expect(CapacityCheck.evaluate(plan, capacity: full).fits)
        let verdict = CapacityCheck.evaluate(
            plan,
            capacity: full,
            rollout: Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            )
        )
        #expect(!verdict.fits)
        #expect(
            verdict.summary
                == "needs 1 × 4 = 4 nvidia.com/gpu; free 0 of 16 allocatable (+4 held by this release) "
                + "(gpu-a 0/8 free, gpu-b 0/8 free); the pod template changes; rolling update with maxSurge 25% (1 pod) "
                + "and maxUnavailable 25% (0 pods) of 1 starts a new pod before any old pod stops: it needs 4 free GPUs "
                + "on one node besides those the release holds (most free on one node: 0)"
        )
        #expect(verdict.hint?.contains("maxSurge: 0, maxUnavailable: 1") == true)
    }

    @Test(arguments: [
        (IntOrPercent.percent(25), 1, true, 1), (.percent(25), 1, false, 0), (.percent(25), 4, false, 1),
        (.percent(25), 5, true, 2), (.percent(50), 3, true, 2), (.percent(50), 3, false, 1), (.count(2), 9, true, 2),
        (.percent(0), 4, true, 0), (.percent(100), 3, false, 3),
    ])
    func kubernetesRounding(_ value: IntOrPercent, _ replicas: Int, _ roundUp: Bool, _ expected: Int) {
        #expect(value.resolve(replicas: replicas, roundUp: roundUp) == expected)
    }

    @Test func intOrPercentParsesWhatAManifestSays() {
        #expect(IntOrPercent(.number(1)) == .count(1))
        #expect(IntOrPercent(.string("1")) == .count(1))
        #expect(IntOrPercent(.string("25%")) == .percent(25))
        #expect(IntOrPercent(.string("a%")) == nil)
        #expect(IntOrPercent(.number(-1)) == nil)
        #expect(IntOrPercent(.bool(true)) == nil)
    }
}

/// The deploy workflow with the rollout port: refused before Helm, and scheduling failures named.
@Suite(.timeLimit(.minutes(1))) struct RolloutDeployTests {
    static let release = "qwen-2-72b-staging"
    static let fullPool = RolloutCapacityTests.pool(release, ("gpu-a", 8, 8, 4), ("gpu-b", 8, 8, 0))

    @Test func aTemplateChangingRedeployOnAFullPoolIsRefusedBeforeHelm() async throws {
        let h = Harness()
        let target = h.target("qwen-2-72b", in: "staging")
        h.releases.seed(target, [.deployed])
        h.cluster.setCapacity(Self.fullPool)
        h.cluster.setRollout(
            Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            for: Self.release
        )

        let outcome = await h.run("deploy qwen-2-72b to staging")

        guard case .refused(let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(message.hasPrefix("Not enough free GPUs for qwen-2-72b-staging: needs 1 × 4 = 4 nvidia.com/gpu"))
        #expect(message.contains("starts a new pod before any old pod stops: it needs 4 free GPUs on one node"))
        #expect(h.releases.upgrades.isEmpty)
        // The rollout was read from the plan's own render.
        #expect(h.releases.calls.contains { $0.method == .render })
        #expect(h.cluster.state.renderedForRollout.count == 1)
        #expect(h.chat.transcript.contains("maxSurge: 0, maxUnavailable: 1"))
    }

    @Test func maxSurgeZeroGoesThroughOnTheSamePool() async throws {
        let h = Harness()
        let target = h.target("qwen-2-72b", in: "staging")
        h.releases.seed(target, [.deployed])
        h.cluster.setCapacity(Self.fullPool)
        h.cluster.setRollout(
            Rollout(
                strategy: .rollingUpdate(maxSurge: .count(0), maxUnavailable: .count(1)),
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            for: Self.release
        )
        h.engines.script(Self.release, EngineScript(servedModels: ["qwen-2-72b"]))

        let outcome = await h.run("deploy qwen-2-72b to staging")

        #expect(outcome.succeeded, "\(outcome)")
        #expect(h.releases.upgrades.count == 1)
        let journal = await h.store.journal(of: try #require(outcome.operation)).map(\.message)
        #expect(
            journal.contains {
                $0.contains("GPU capacity is enough") && $0.contains("stops 1 old pod before new ones")
            }
        )
    }

    @Test func aDryRunSaysTheRolloutWouldBeRefused() async throws {
        let h = Harness()
        h.releases.seed(h.target("qwen-2-72b", in: "staging"), [.deployed])
        h.cluster.setCapacity(Self.fullPool)
        h.cluster.setRollout(
            Rollout(
                strategy: .kubernetesDefault,
                running: .init(replicas: 1, gpusPerReplica: 4),
                templateChanges: true
            ),
            for: Self.release
        )
        #expect(await h.run("deploy qwen-2-72b to staging --dry-run") == .completed(nil))
        let gpus = try #require(h.chat.posts.last?.reply.fields.first { $0.label == "GPUs" })
        #expect(gpus.value.plainText.hasPrefix("would be refused: needs 1 × 4 = 4 nvidia.com/gpu"), "\(gpus.value)")
        #expect(gpus.value.plainText.contains("starts a new pod before any old pod stops"))
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func aTimeoutWhoseNewPodsCannotBeScheduledIsReportedAsScheduling() async throws {
        let h = Harness()
        let target = h.target("qwen-2-72b", in: "staging")
        h.releases.seed(target, [.deployed])
        h.releases.script(.upgrade, .fail(.readinessTimeout(detail: "context deadline exceeded")))
        let scheduler =
            "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: "
            + "2 No preemption victims found for incoming pod."
        h.cluster.setWorkload(
            WorkloadSnapshot(
                desiredReplicas: 1,
                pods: [
                    PodSnapshot(name: "qwen-old", phase: "Running", ready: true, node: "gpu-a", current: false),
                    PodSnapshot(
                        name: "qwen-new",
                        phase: "Pending",
                        ready: false,
                        reason: scheduler,
                        unschedulable: true
                    ),
                ]
            ),
            for: Self.release
        )

        let outcome = await h.run("deploy qwen-2-72b to staging")

        guard case .failed(_, let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(message == "The new pods could not be scheduled: qwen-new stayed Pending: \(scheduler)")
        #expect(!h.chat.transcript.contains("did not become ready within the readiness budget"))
    }

    @Test func aTimeoutWithScheduledPodsStaysAReadinessTimeout() async throws {
        let h = Harness()
        let target = h.target("qwen-2-72b", in: "staging")
        h.releases.seed(target, [.deployed])
        h.releases.script(.upgrade, .fail(.readinessTimeout(detail: "context deadline exceeded")))
        h.cluster.setWorkload(
            WorkloadSnapshot(
                desiredReplicas: 1,
                pods: [
                    // An old pod the scheduler could not place is not why the new revision is late.
                    PodSnapshot(
                        name: "qwen-old",
                        phase: "Pending",
                        ready: false,
                        reason: "0/2 nodes",
                        unschedulable: true,
                        current: false
                    ),
                    PodSnapshot(
                        name: "qwen-new",
                        phase: "Running",
                        ready: false,
                        node: "gpu-b",
                        reason: "not ready yet"
                    ),
                ]
            ),
            for: Self.release
        )

        let outcome = await h.run("deploy qwen-2-72b to staging")

        #expect(outcome.message == ReleaseFailure.readinessTimeout(detail: "context deadline exceeded").message)
    }
}

/// Progress during a rollout counts the revision being rolled out, and shows the old pods apart.
@Suite(.timeLimit(.minutes(1))) struct RolloutProgressTests {
    static func pod(_ name: String, ready: Bool, current: Bool = true, reason: String? = nil) -> PodSnapshot {
        PodSnapshot(name: name, phase: ready ? "Running" : "Pending", ready: ready, reason: reason, current: current)
    }

    @Test(arguments: [
        (
            WorkloadSnapshot(desiredReplicas: 2, pods: [pod("a", ready: true), pod("b", ready: true)]),
            "2 of 2 replicas ready"
        ),
        (
            WorkloadSnapshot(
                desiredReplicas: 2,
                pods: [
                    pod("old-1", ready: true, current: false), pod("new-1", ready: true),
                    pod("new-2", ready: false, reason: "not ready yet"),
                ]
            ),
            "1 of 2 new replicas ready; 1 old still serving; new-2 Pending: not ready yet"
        ),
        (
            WorkloadSnapshot(
                desiredReplicas: 1,
                pods: [
                    pod("old-1", ready: true, current: false),
                    pod("new-1", ready: false, reason: "0/2 nodes are available"),
                ]
            ),
            "0 of 1 new replicas ready; 1 old still serving; new-1 Pending: 0/2 nodes are available"
        ),
        (
            WorkloadSnapshot(
                desiredReplicas: 1,
                pods: [pod("old-1", ready: false, current: false), pod("new-1", ready: true)]
            ),
            "1 of 1 new replicas ready; 1 old not ready (stopping)"
        ),
    ])
    func describe(_ workload: WorkloadSnapshot, _ expected: String) {
        #expect(ProgressSummary.describe(workload) == expected)
    }

    @Test func theDeployThreadCountsOnlyTheNewRevision() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        h.cluster.setWorkload(
            WorkloadSnapshot(
                desiredReplicas: 2,
                pods: [
                    Self.pod("llama-old", ready: true, current: false), Self.pod("llama-new-1", ready: true),
                    Self.pod("llama-new-2", ready: false, reason: "not ready yet"),
                ]
            ),
            for: "llama-3-8b-staging"
        )
        let task = h.start("deploy llama-3-8b to staging")
        try await h.chat.waitForEvent { $0.text.contains("1 of 2 new replicas ready; 1 old still serving") }
        #expect(!h.chat.transcript.contains("2 of 2 replicas ready"))
        gate.open()
        #expect(await task.value.succeeded)
    }
}

/// What the deploy's thread says about how the running replicas will be replaced.
@Suite struct RolloutReplacementTests {
    static func rollout(_ strategy: Rollout.Strategy, templateChanges: Bool = true, running: Bool = true) -> Rollout {
        Rollout(strategy: strategy, running: running ? .init(replicas: 2, gpusPerReplica: 1) : nil, templateChanges: templateChanges)
    }

    @Test func saysSurgeOrOneAtATimeOrAllAtOnce() {
        #expect(Self.rollout(.kubernetesDefault).replacement(replicas: 2, gpusPerReplica: 2)
            == "Replacing the replicas by surge: up to 1 new beside the old ones (2 extra GPUs while it runs), never fewer than 2 serving.")
        #expect(Self.rollout(.rollingUpdate(maxSurge: .count(0), maxUnavailable: .count(1))).replacement(replicas: 2, gpusPerReplica: 1)
            == "Replacing the replicas one at a time without extra GPUs (maxSurge 0): up to 1 fewer than 2 serving.")
        #expect(Self.rollout(.recreate).replacement(replicas: 2, gpusPerReplica: 1)
            == "Replacing the replicas all at once (strategy Recreate): the model serves nothing until a new one is ready.")
    }

    @Test func saysNothingWhenNoRunningPodIsReplaced() {
        #expect(Self.rollout(.kubernetesDefault, templateChanges: false).replacement(replicas: 3, gpusPerReplica: 1) == nil)
        #expect(Self.rollout(.kubernetesDefault, running: false).replacement(replicas: 3, gpusPerReplica: 1) == nil)
    }
}
