import Foundation
import InferOpsCore
import Testing

@Suite struct TimeBreakdownTests {
    static let start = Date(timeIntervalSince1970: 1_796_281_200)
    static func at(_ seconds: Double) -> Date { start.addingTimeInterval(seconds) }

    static func pod(_ name: String, created: Double, scheduled: Double, started: Double, ready: Double,
                    current: Bool = true) -> PodSnapshot {
        PodSnapshot(name: name, phase: "Running", ready: true, current: current,
                    timeline: PodTimeline(created: at(created), scheduled: at(scheduled), started: at(started), ready: at(ready)))
    }

    @Test func stepsAndTheNewReplicasPhasesAddUp() {
        // Two replicas one after the other (a rolling update): the second waited 20 s for a GPU.
        let pods = [
            Self.pod("a", created: 1, scheduled: 1, started: 3, ready: 13),
            Self.pod("b", created: 13, scheduled: 33, started: 35, ready: 45),
            // An old replica (another revision) and one long up before the deploy are not this deploy's time.
            Self.pod("old", created: -500, scheduled: -500, started: -499, ready: -490, current: false),
        ]
        let breakdown = TimeBreakdown.make(
            steps: [.prechecking: .milliseconds(200), .applying: .seconds(46), .warming: .milliseconds(300),
                    .verifying: .milliseconds(400), .registering: .milliseconds(100)],
            routing: .milliseconds(500), pods: pods, from: Self.at(0), to: Self.at(50))

        #expect(breakdown.text == "47.5 s: checks 200 ms, helm and the rollout 46.0 s (scheduling 20.0 s, "
            + "image pull and start 4.0 s, loading until ready 20.0 s), warm-up 300 ms, "
            + "verification 400 ms, routing 600 ms")
    }

    /// The deploy waited 30 s in the daemon for GPUs, then replica b had no node for 20 s: both are
    /// waiting for GPUs, said apart from the checks and from scheduling.
    @Test func waitingForGPUsIsSaidApart() {
        let pods = [
            Self.pod("a", created: 31, scheduled: 31, started: 33, ready: 43),
            Self.pod("b", created: 43, scheduled: 63, started: 65, ready: 75),
        ]
        let breakdown = TimeBreakdown.make(
            steps: [.prechecking: .milliseconds(30_200), .applying: .seconds(46), .verifying: .milliseconds(400)],
            gpuWait: .seconds(30), pods: pods, unschedulable: ["b"], from: Self.at(0), to: Self.at(80))

        #expect(breakdown.text == "1 min 17 s: waiting for GPUs 30.0 s, checks 200 ms, helm and the rollout 46.0 s (waiting for "
            + "GPUs 20.0 s, scheduling 0 ms, image pull and start 4.0 s, loading until ready 20.0 s), verification 400 ms")
    }

    @Test func overlappingReplicasAreCountedOnce() {
        let pods = [
            Self.pod("a", created: 0, scheduled: 0, started: 0, ready: 10),
            Self.pod("b", created: 0, scheduled: 0, started: 5, ready: 12),
        ]
        let breakdown = TimeBreakdown.make(steps: [.applying: .seconds(12)], pods: pods, from: Self.at(0), to: Self.at(12))
        let loading = breakdown.parts.first { $0.name == "helm and the rollout" }?.within.last
        #expect(loading?.duration == .seconds(12))
        #expect(breakdown.parts.first { $0.name == "helm and the rollout" }?.within.dropLast().map(\.duration) == [.zero, .seconds(5)])
    }
}
