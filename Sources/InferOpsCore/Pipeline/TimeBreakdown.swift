import Foundation

/// Where a deploy's or rollback's time went: its own steps, and inside Helm's step what the new
/// replicas waited for (a node with free GPUs, the image, the weights), from their pods' timelines.
public struct TimeBreakdown: Hashable, Sendable {
    public struct Part: Hashable, Sendable {
        public var name: String
        public var duration: Duration
        /// The parts of this part (the replicas' phases inside Helm's step).
        public var within: [Part] = []
    }

    public var total: Duration
    public var parts: [Part]

    /// - Parameters:
    ///   - steps: time spent in each state of the operation.
    ///   - routing: time spent routing beyond the `registering` state (the wait for the router to
    ///     route exactly the new replicas).
    ///   - gpuWait: time the deploy waited in the daemon for free GPUs before Helm ran (part of its
    ///     checks, said apart).
    ///   - pods: the release's pods of the current revision; only what happened between `from` and
    ///     `to` counts (a scale-up's existing replicas started long before).
    ///   - unschedulable: the pods seen without a node for want of GPUs: their time from creation to
    ///     a node is waiting for GPUs; the others' is scheduling.
    public static func make(
        steps: [OperationState: Duration], routing: Duration = .zero, gpuWait: Duration = .zero, pods: [PodSnapshot],
        unschedulable: Set<String> = [], from: Date, to: Date
    ) -> TimeBreakdown {
        func spent(_ states: OperationState...) -> Duration { states.reduce(.zero) { $0 + (steps[$1] ?? .zero) } }
        let current = pods.filter { $0.current && $0.timeline != nil }
        let waited = current.filter { unschedulable.contains($0.name) }.compactMap(\.timeline)
        let placed = current.filter { !unschedulable.contains($0.name) }.compactMap(\.timeline)
        let timelines = current.compactMap(\.timeline)
        func phase(_ name: String, _ start: (PodTimeline) -> Date?, _ end: (PodTimeline) -> Date?,
                   of timelines: [PodTimeline] = timelines) -> Part {
            let intervals = timelines.compactMap { timeline -> (Date, Date)? in
                guard let start = start(timeline), let end = end(timeline) else { return nil }
                let clipped = (max(start, from), min(end, to))
                return clipped.0 < clipped.1 ? clipped : nil
            }
            return Part(name: name, duration: .seconds(union(intervals)))
        }
        var rollout = Part(name: "helm and the rollout", duration: spent(.applying, .waitingReady))
        rollout.within = [
            phase("waiting for GPUs", \.created, \.scheduled, of: waited),
            phase("scheduling", \.created, \.scheduled, of: placed),
            phase("image pull and start", \.scheduled, \.started),
            phase("loading until ready", \.started, \.ready),
        ].filter { $0.duration > .zero || $0.name != "waiting for GPUs" }
        let checks = spent(.prechecking)
        let parts = [
            Part(name: "queue", duration: spent(.queued)),
            Part(name: "waiting for GPUs", duration: min(gpuWait, checks)),
            Part(name: "checks", duration: checks - min(gpuWait, checks)),
            rollout,
            Part(name: "warm-up", duration: spent(.warming)),
            Part(name: "verification", duration: spent(.verifying)),
            Part(name: "routing", duration: spent(.registering) + routing),
            Part(name: "rolling back", duration: spent(.rollingBack)),
        ].filter { $0.duration > .zero || $0.name == "helm and the rollout" }
        return TimeBreakdown(total: steps.values.reduce(.zero, +) + routing, parts: parts)
    }

    /// The length of the union of `intervals`, in seconds.
    static func union(_ intervals: [(Date, Date)]) -> Double {
        var total = 0.0
        var reach: Date?
        for (start, end) in intervals.sorted(by: { $0.0 < $1.0 }) {
            let from = max(start, reach ?? start)
            if end > from { total += end.timeIntervalSince(from) }
            reach = max(reach ?? end, end)
        }
        return total
    }

    /// "12.4 s: checks 0.1 s, helm and the rollout 10.2 s (scheduling … 0 s, …), warm-up 0.4 s, …"
    public var text: String {
        func say(_ part: Part) -> String {
            let inner = part.within.isEmpty ? "" : " (" + part.within.map(say).joined(separator: ", ") + ")"
            return "\(part.name) \(part.duration.spoken)\(inner)"
        }
        return "\(total.spoken): " + parts.map(say).joined(separator: ", ")
    }
}
