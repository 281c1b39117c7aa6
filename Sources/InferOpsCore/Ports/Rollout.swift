/// How a Deployment update will use the cluster: Kubernetes starts and stops pods by its strategy,
/// and a rolling update may need room for new pods before any old pod gives its GPUs back.
public struct Rollout: Hashable, Sendable {
    public enum Strategy: Hashable, Sendable {
        /// Every old pod stops before a new one starts.
        case recreate
        /// Old pods are replaced a few at a time, bounded by `maxSurge` and `maxUnavailable`.
        case rollingUpdate(maxSurge: IntOrPercent, maxUnavailable: IntOrPercent)

        /// What a Deployment without `spec.strategy` gets.
        public static let kubernetesDefault = Strategy.rollingUpdate(
            maxSurge: .percent(25),
            maxUnavailable: .percent(25)
        )
    }

    /// The Deployment as it runs now.
    public struct Running: Hashable, Sendable {
        public var replicas: Int
        public var gpusPerReplica: Int

        public init(replicas: Int, gpusPerReplica: Int) {
            self.replicas = replicas
            self.gpusPerReplica = gpusPerReplica
        }
    }

    /// The strategy of the Deployment being applied (the new spec decides how it rolls out).
    public var strategy: Strategy
    /// `nil` when the release has no Deployment yet: everything starts fresh.
    public var running: Running?
    /// The pod template differs from what runs, so every pod is replaced; otherwise only the replica
    /// count (if anything) changes and running pods stay where they are.
    public var templateChanges: Bool

    public init(strategy: Strategy, running: Running?, templateChanges: Bool) {
        self.strategy = strategy
        self.running = running
        self.templateChanges = templateChanges
    }
}

extension Rollout {
    /// How replacing the running pods with `replicas` new ones will go, for the deploy's thread:
    /// with extra GPUs (surge) or one replica less (no extra GPUs), or everything stopped first.
    /// `nil` when no running pod is replaced (a first install, or only the count changes).
    public func replacement(replicas: Int, gpusPerReplica: Int) -> String? {
        guard templateChanges, running != nil else { return nil }
        switch strategy {
        case .recreate:
            return "Replacing the replicas all at once (strategy Recreate): the model serves nothing until a new one is ready."
        case .rollingUpdate(let maxSurge, let maxUnavailable):
            let surge = maxSurge.resolve(replicas: replicas, roundUp: true)
            let unavailable = maxUnavailable.resolve(replicas: replicas, roundUp: false)
            let fewer = unavailable == 0 ? "never fewer than \(replicas) serving"
                : "up to \(unavailable) fewer than \(replicas) serving"
            if surge > 0 {
                return "Replacing the replicas by surge: up to \(surge) new beside the old ones "
                    + "(\(surge * gpusPerReplica) extra GPU\(surge * gpusPerReplica == 1 ? "" : "s") while it runs), \(fewer)."
            }
            return "Replacing the replicas one at a time without extra GPUs (maxSurge 0): \(fewer)."
        }
    }
}

/// Kubernetes' `IntOrString` for `maxSurge` and `maxUnavailable`: a pod count or a percentage.
public enum IntOrPercent: Hashable, Sendable, CustomStringConvertible {
    case count(Int)
    case percent(Int)

    /// Parses `1`, `"1"` or `"25%"`; `nil` for anything else.
    public init?(_ value: JSONValue) {
        switch value {
        case .number(let number) where number == number.rounded() && number >= 0:
            self = .count(Int(number))
        case .string(let text) where text.hasSuffix("%"):
            guard let percent = Int(text.dropLast()), percent >= 0 else { return nil }
            self = .percent(percent)
        case .string(let text):
            guard let count = Int(text), count >= 0 else { return nil }
            self = .count(count)
        default:
            return nil
        }
    }

    /// Pods for `replicas`, rounded as the Deployment controller does: up for surge, down for unavailable.
    public func resolve(replicas: Int, roundUp: Bool) -> Int {
        switch self {
        case .count(let count): return count
        case .percent(let percent):
            let scaled = percent * replicas
            return roundUp ? (scaled + 99) / 100 : scaled / 100
        }
    }

    public var description: String {
        switch self {
        case .count(let count): "\(count)"
        case .percent(let percent): "\(percent)%"
        }
    }
}
