import Foundation
import Synchronization

/// Verify, then route: which replicas answered a direct test completion (their warm-up included),
/// so the router may be given them. Every path that routes a model (the replica follower, `register`,
/// the routing after a deploy) asks here, so a replica is checked once, when it first serves, and a
/// replica that failed is asked again only after `retryAfter`.
///
/// Kept in memory: a restarted daemon checks each serving replica again on its first pass, which
/// costs one warm-up and one completion per replica and routes nothing unchecked.
public final class ReplicaChecks: Sendable {
    struct Key: Hashable, Sendable {
        var environment: String
        var model: String
        var pod: String
        var address: String
    }

    struct State: Sendable {
        var passed: Set<Key> = []
        /// When each failed replica may be checked again.
        var failed: [Key: Date] = [:]
    }

    private let state = Mutex(State())
    let retryAfter: TimeInterval

    public init(retryAfter: Duration = .seconds(5)) {
        self.retryAfter = retryAfter.seconds
    }

    /// The pods of `pods` that have passed their check, checking (concurrently) those never checked
    /// when `checkNew` is set. Forgets pods no longer listed, so a new pod at a reused address is
    /// checked again.
    /// - Parameter check: `nil` when the replica answered; otherwise what was wrong.
    func passed(
        _ pods: [PodSnapshot], model: String, environment: String, checkNew: Bool, now: Date,
        check: @escaping @Sendable (PodSnapshot, EngineEndpoint.Replica) async -> String?,
        failed report: @Sendable (PodSnapshot, String) -> Void = { _, _ in }
    ) async -> [PodSnapshot] {
        let keyed: [(PodSnapshot, Key)] = pods.compactMap { pod in
            pod.address.map { (pod, Key(environment: environment, model: model, pod: pod.name, address: $0)) }
        }
        let listed = Set(keyed.map(\.1))
        let unchecked = state.withLock { state -> [(PodSnapshot, Key)] in
            let ours = { (key: Key) in key.environment == environment && key.model == model }
            state.passed = state.passed.filter { !ours($0) || listed.contains($0) }
            state.failed = state.failed.filter { !ours($0.key) || listed.contains($0.key) }
            return keyed.filter { !state.passed.contains($0.1) && (state.failed[$0.1].map { $0 <= now } ?? true) }
        }
        if checkNew, !unchecked.isEmpty {
            let results = await withTaskGroup(of: (Key, PodSnapshot, String?).self) { group in
                for (pod, key) in unchecked {
                    group.addTask { (key, pod, await check(pod, .init(name: key.pod, address: key.address))) }
                }
                var results: [(Key, PodSnapshot, String?)] = []
                for await result in group { results.append(result) }
                return results
            }
            state.withLock { state in
                for (key, _, problem) in results {
                    if problem == nil {
                        state.passed.insert(key)
                        state.failed[key] = nil
                    } else {
                        state.failed[key] = now.addingTimeInterval(retryAfter)
                    }
                }
            }
            for case (_, let pod, let problem?) in results { report(pod, problem) }
        }
        let passed = state.withLock { $0.passed }
        return keyed.filter { passed.contains($0.1) }.map(\.0)
    }
}
