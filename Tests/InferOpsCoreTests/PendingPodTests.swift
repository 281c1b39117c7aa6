import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// A replica the scheduler finds no node for is reported in the deploy's thread once it has waited
/// over a minute, with the scheduler's message; once only.
@Suite(.timeLimit(.minutes(1))) struct PendingPodTests {
    static let message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."

    @Test func aPodUnschedulableForOverAMinuteIsReportedOnceWithTheSchedulersMessage() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let created = h.time.now()
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [
            PodSnapshot(name: "llama-3-8b-staging-new", phase: "Pending", ready: false, reason: Self.message,
                        unschedulable: true, timeline: PodTimeline(created: created)),
        ]), for: target.release)
        let deploy = h.start("deploy llama-3-8b to staging")
        try await gate.waitUntilReached()
        let warning = "llama-3-8b-staging-new has waited over 1 min for a node: \(Self.message)"

        // Not before the minute is up…
        h.time.advance(by: .seconds(59))
        // Two reads of the pods after the clock moved: at least one whole round of the progress watch.
        let reads = h.cluster.workloadCalls
        try await h.cluster.waitFor { $0.workloadCalls >= reads + 2 }
        #expect(h.chat.transcript.contains("0 of 1 replicas ready; llama-3-8b-staging-new Pending: \(Self.message)"))
        #expect(!h.chat.transcript.contains(warning))
        // …then once.
        h.time.advance(by: .seconds(2))
        try await h.chat.waitFor { events in events.contains { $0.text.contains(warning) } }
        h.time.advance(by: .seconds(30))
        await Task.yield()
        gate.open()
        _ = await deploy.value
        #expect(h.chat.transcript.components(separatedBy: warning).count == 2, "\(h.chat.transcript)")
    }
}
