import InferOpsCore
import InferOpsTesting
import Testing

/// Each state a replica can be in, and the next step `/infer status <model> in <env>` gives for it.
@Suite struct ReplicaDiagnosisTests {
    static func diagnose(_ pod: PodSnapshot, engine: ReplicaDiagnosis.EngineCheck? = nil, routed: Bool? = nil) -> ReplicaDiagnosis {
        ReplicaDiagnosis.diagnose(pod, engine: engine, routed: routed, model: "llama-3-8b", environment: "staging",
                                  reconcileInterval: .seconds(2))
    }

    @Test func eachStateAndItsNextStep() {
        let scheduler = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        let cases: [(PodSnapshot, ReplicaDiagnosis.EngineCheck?, Bool?, ReplicaDiagnosis.State, String?, String?)] = [
            (PodSnapshot(name: "p", phase: "Pending", ready: false, reason: scheduler, unschedulable: true), nil, nil,
             .unschedulable, scheduler, "once GPUs free up"),
            (PodSnapshot(name: "p", phase: "Pending", ready: false, reason: "ImagePullBackOff: Back-off pulling image",
                         waiting: "ImagePullBackOff"), nil, nil,
             .imagePullFailing, "ImagePullBackOff: Back-off pulling image", "imagePullSecrets"),
            (PodSnapshot(name: "p", phase: "Running", ready: false, reason: "CrashLoopBackOff", waiting: "CrashLoopBackOff",
                         lastExit: "OOMKilled", restarts: 4), nil, nil,
             .crashing, "CrashLoopBackOff: OOMKilled after 4 restarts", "raise `resources.memory`"),
            (PodSnapshot(name: "p", phase: "Running", ready: false, reason: "CrashLoopBackOff (last exit: Error, code 1)",
                         waiting: "CrashLoopBackOff", lastExit: "Error", restarts: 1), nil, nil,
             .crashing, "CrashLoopBackOff (last exit: Error, code 1) after 1 restart", "kubectl logs p --previous"),
            (PodSnapshot(name: "p", phase: "Running", ready: false, reason: "not ready yet"), nil, nil,
             .notReady, "its readiness probe does not pass yet", "kubectl describe pod p"),
            (PodSnapshot(name: "p", phase: "Running", ready: true, address: "10.0.0.7"), .notAnswering("connection refused"), true,
             .notAnswering, "connection refused", "kubectl delete pod p"),
            (PodSnapshot(name: "p", phase: "Running", ready: true, address: "10.0.0.7"), .answering, false,
             .notRouted, nil, "`/infer register llama-3-8b in staging`"),
            (PodSnapshot(name: "p", phase: "Running", ready: true, address: "10.0.0.7", terminating: true), nil, true,
             .stopping, "still in the router", nil),
            (PodSnapshot(name: "p", phase: "Running", ready: true, address: "10.0.0.7"), .answering, true, .serving, nil, nil),
            // Not meant to be routed (no router, or not registered): ready and answering is serving.
            (PodSnapshot(name: "p", phase: "Running", ready: true, address: "10.0.0.7"), .answering, nil, .serving, nil, nil),
        ]
        for (pod, engine, routed, state, detail, next) in cases {
            let diagnosis = Self.diagnose(pod, engine: engine, routed: routed)
            #expect(diagnosis.state == state, "\(pod)")
            #expect(diagnosis.detail == detail, "\(pod)")
            if let next {
                #expect(diagnosis.next?.contains(next) == true, "\(diagnosis.next ?? "no next step") for \(pod)")
            } else if state == .serving {
                #expect(diagnosis.next == nil)
            }
        }
    }

    @Test func statusOfOneModelInOneEnvironmentListsEachReplica() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        h.cluster.setWorkload(
            WorkloadSnapshot(desiredReplicas: 3, pods: [
                PodSnapshot(name: "llama-3-8b-staging-a", phase: "Running", ready: true, address: "10.0.0.7"),
                PodSnapshot(name: "llama-3-8b-staging-b", phase: "Running", ready: true, address: "10.0.0.8"),
                PodSnapshot(name: "llama-3-8b-staging-c", phase: "Pending", ready: false,
                            reason: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.", unschedulable: true),
            ]),
            for: "llama-3-8b-staging")
        // Replica a answers; b is ready by its probe but its engine does not answer.
        h.engines.script("llama-3-8b-staging-a", .healthy(serving: "llama-3-8b"))
        h.engines.script("llama-3-8b-staging-b", EngineScript(health: [.unreachable("connection refused")], servedModels: []))

        #expect(await h.run("status llama-3-8b in staging", as: Fixtures.viewer) == .completed(nil))

        let lines = try #require(h.chat.posts.last?.reply.lines).map(\.plainText)
        #expect(lines.first == "Replicas of llama-3-8b-staging (1 of 3 serving):", "\(lines)")
        #expect(lines.contains("• `llama-3-8b-staging-a`: serving"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("• `llama-3-8b-staging-b`: not answering (connection refused). → ") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("• `llama-3-8b-staging-c`: unschedulable (0/2 nodes are available") }, "\(lines)")
        // A status of everything stays one line per model and environment.
        #expect(await h.run("status", as: Fixtures.viewer) == .completed(nil))
        #expect(h.chat.posts.last?.reply.lines.contains { $0.plainText.hasPrefix("Replicas") } == false)
    }
}
