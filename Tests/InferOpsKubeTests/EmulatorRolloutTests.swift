import Foundation
import InferOpsHTTP
import InferOpsKube
import InferOpsTestSupport
import Testing

@testable import InferOpsCore

/// Rollouts against the emulator: what the capacity check reads, what the scheduler does on a full
/// pool, and how progress counts pods while two ReplicaSets run.
@Suite("Rollouts against the API emulator")
struct EmulatorRolloutTests {
    typealias Cluster = EmulatorIntegrationTests.Cluster

    /// A Deployment as the chart renders it (JSON is YAML too), with a strategy and a pod annotation.
    static func manifest(
        _ release: String,
        replicas: Int,
        gpus: Int,
        strategy: String = "{}",
        annotations: String = "{}"
    ) -> String {
        let labels = #"{"app.kubernetes.io/instance":"\#(release)"}"#
        return #"""
            {"apiVersion":"apps/v1","kind":"Deployment",
             "metadata":{"name":"\#(release)","namespace":"default","labels":\#(labels)},
             "spec":{"replicas":\#(replicas),"strategy":\#(strategy),"selector":{"matchLabels":\#(labels)},
              "template":{"metadata":{"labels":\#(labels),"annotations":\#(annotations)},
               "spec":{"nodeSelector":{"nvidia.com/gpu.present":"true"},
                "tolerations":[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}],
                "containers":[{"name":"vllm","image":"vllm/vllm-openai:v0.6.3",
                 "args":["--model","m","--served-model-name","m"],"ports":[{"containerPort":8000}],
                 "resources":{"limits":{"nvidia.com/gpu":\#(gpus)}}}]}}}}
            """#
    }

    static func apply(_ cluster: Cluster, _ manifest: String, create: Bool) async throws {
        let api = try await cluster.contexts.context(nil)
        let path = "/apis/apps/v1/namespaces/default/deployments" + (create ? "" : "/" + name(of: manifest))
        let response = try await api.send(
            create ? .post : .put,
            path,
            body: Array(manifest.utf8),
            contentType: "application/json"
        )
        #expect(response.isSuccess, "\(response.text)")
    }

    static func name(of manifest: String) -> String {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(manifest.utf8)))?["metadata"]?["name"]?.stringValue ?? ""
    }

    /// Two 4-GPU replicas fill both GPU nodes. A template change under the default strategy cannot
    /// start: the check refuses it from what it reads, and the scheduler agrees, with its message.
    /// `maxSurge: 0` goes through on the same pool.
    @Test func aFullPoolRefusesTheSurgePodAndMaxSurgeZeroGoesThrough() async throws {
        let cluster = try await Cluster.start()
        let release = "qwen-dev"
        let target = ReleaseTarget(release: release, namespace: "default")
        try await Self.apply(cluster, Self.manifest(release, replicas: 2, gpus: 4), create: true)
        try await waitUntil("both replicas ready") { try await cluster.inspector.workload(target).readyReplicas == 2 }

        let same = try #require(
            try await cluster.inspector.rollout(target, rendered: Self.manifest(release, replicas: 2, gpus: 4))
        )
        #expect(
            same
                == Rollout(
                    strategy: .kubernetesDefault,
                    running: .init(replicas: 2, gpusPerReplica: 4),
                    templateChanges: false
                )
        )

        let changed = Self.manifest(release, replicas: 2, gpus: 4, annotations: #"{"v":"2"}"#)
        let rollout = try #require(try await cluster.inspector.rollout(target, rendered: changed))
        #expect(rollout.templateChanges)
        let capacity = try await cluster.inspector.gpuCapacity(kubeContext: nil)
        #expect(capacity.nodes.map { $0.requestedByRelease[release] } == [4, 4])
        let plan = DeployPlan(
            model: ModelSpec(name: "qwen", modelID: "q", revision: "main", gpusPerReplica: 4, image: "i:1"),
            environment: "dev",
            target: target,
            endpoint: EngineEndpoint(target: target, service: release),
            chart: "c",
            valuesFiles: [],
            values: .object([:]),
            replicas: 2,
            gpusPerReplica: 4,
            readinessBudget: .seconds(60)
        )
        #expect(CapacityCheck.evaluate(plan, capacity: capacity).fits, "without the rollout it is approved")
        let verdict = CapacityCheck.evaluate(plan, capacity: capacity, rollout: rollout)
        #expect(!verdict.fits, "\(verdict.summary)")

        // Applied anyway: the surge pod stays Pending with kube-scheduler's message, the old pods serve.
        try await Self.apply(cluster, changed, create: false)
        var workload = WorkloadSnapshot(desiredReplicas: 0, pods: [])
        try await waitUntil("the surge pod to be unschedulable") {
            workload = try await cluster.inspector.workload(target)
            return workload.pods.contains { $0.current && $0.unschedulable }
        }
        let pending = try #require(workload.pods.first { $0.current })
        let scheduler =
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
            + "2 Insufficient nvidia.com/gpu."
        let reason = pending.reason ?? ""
        #expect(reason.hasPrefix(scheduler), "\(reason)")
        #expect(workload.oldPods.filter(\.ready).count == 2)
        #expect(ProgressSummary.describe(workload).hasPrefix("0 of 2 new replicas ready; 2 old still serving; "))

        // The same change with maxSurge 0: the check approves it and the cluster rolls it out.
        let noSurge = Self.manifest(
            release,
            replicas: 2,
            gpus: 4,
            strategy: #"{"rollingUpdate":{"maxSurge":0,"maxUnavailable":1}}"#,
            annotations: #"{"v":"3"}"#
        )
        let noSurgeRollout = try #require(try await cluster.inspector.rollout(target, rendered: noSurge))
        #expect(noSurgeRollout.strategy == .rollingUpdate(maxSurge: .count(0), maxUnavailable: .count(1)))
        try await Self.apply(cluster, Self.manifest(release, replicas: 2, gpus: 4), create: false)
        try await waitUntil("the stuck rollout undone") {
            let w = try await cluster.inspector.workload(target)
            return w.pods.count == 2 && w.readyCurrentReplicas == 2
        }
        let full = try await cluster.inspector.gpuCapacity(kubeContext: nil)
        #expect(CapacityCheck.evaluate(plan, capacity: full, rollout: noSurgeRollout).fits)
        try await Self.apply(cluster, noSurge, create: false)
        try await waitUntil("the maxSurge 0 rollout to finish", timeout: .seconds(30)) {
            let w = try await cluster.inspector.workload(target)
            return w.pods.count == 2 && w.oldPods.isEmpty && w.readyCurrentReplicas == 2
        }
        await cluster.stop()
    }

    /// While the new ReplicaSet's pod is not ready, the old one's ready pod is not progress.
    @Test func progressCountsOnlyTheNewReplicaSet() async throws {
        let cluster = try await Cluster.start()
        let release = "llama-dev"
        let target = ReleaseTarget(release: release, namespace: "default")
        try await Self.apply(cluster, Self.manifest(release, replicas: 1, gpus: 1), create: true)
        try await waitUntil("the first replica ready") {
            try await cluster.inspector.workload(target).readyReplicas == 1
        }
        #expect(ProgressSummary.describe(try await cluster.inspector.workload(target)) == "1 of 1 replicas ready")

        try await Self.apply(
            cluster,
            Self.manifest(
                release,
                replicas: 1,
                gpus: 1,
                annotations: #"{"inferops.dev/simulate-ready-after-seconds":"never"}"#
            ),
            create: false
        )
        var workload = WorkloadSnapshot(desiredReplicas: 0, pods: [])
        try await waitUntil("the new pod to run beside the old one") {
            workload = try await cluster.inspector.workload(target)
            return workload.pods.count == 2 && workload.pods.contains { $0.current && $0.phase == "Running" }
        }
        #expect(workload.readyReplicas == 1, "the old pod still serves")
        #expect(workload.readyCurrentReplicas == 0)
        let new = try #require(workload.pods.first { $0.current })
        #expect(
            ProgressSummary.describe(workload)
                == "0 of 1 new replicas ready; 1 old still serving; \(new.name) Running: not ready yet"
        )
        await cluster.stop()
    }
}
