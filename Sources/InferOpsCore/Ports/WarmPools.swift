import Foundation

/// Keeps a release's previous revision running beside it, unrouted, after a deploy replaced it, so
/// a rollback within `keepPrevious` only switches the router (see ROLLOUTS.md, "Warm rollback").
///
/// A pool is the previous revision's pod template in a Deployment of its own, outside the release:
/// its pods carry neither the release's selector labels (so neither the release's Service nor its
/// rolling update touch them) nor its name in GPU accounting.
public protocol WarmPools: Sendable {
    /// What runs now, to be kept warm once an upgrade has replaced it: `nil` when the release has
    /// no Deployment (a first install).
    func capture(_ target: ReleaseTarget) async throws -> WarmTemplate?
    /// Starts keeping `template` (revision `revision`) until `until`, replacing any pool of `target`.
    /// - Returns: `false` when the release runs that same template now (nothing to keep).
    func keep(_ template: WarmTemplate, revision: Int, until: Date, for target: ReleaseTarget) async throws -> Bool
    /// The pool of `target`, with its pods, or `nil`.
    func pool(_ target: ReleaseTarget) async throws -> WarmPool?
    /// Marks the pool as serving from `since`: its replicas stand in for the release's until the
    /// release's own replicas started after that are back.
    func serve(_ target: ReleaseTarget, since: Date) async throws
    /// Deletes the pool; its pods stop as any pod does (preStop first).
    func release(_ target: ReleaseTarget) async throws
    /// Every pool in `namespace`, by the release it belongs to.
    func pools(namespace: String, kubeContext: String?) async throws -> [String: WarmPool]
}

/// A Deployment's pod template and size, as captured before an upgrade replaced it.
public struct WarmTemplate: Hashable, Sendable {
    /// The Deployment's `spec.template`, as the API returned it.
    public var template: JSONValue
    public var replicas: Int
    public var gpusPerReplica: Int

    public init(template: JSONValue, replicas: Int, gpusPerReplica: Int) {
        self.template = template
        self.replicas = replicas
        self.gpusPerReplica = gpusPerReplica
    }
}

/// A release's previous revision kept running, unrouted unless a rollback switched to it.
public struct WarmPool: Hashable, Sendable {
    /// The release revision whose pod template it runs.
    public var revision: Int
    public var desiredReplicas: Int
    public var gpusPerReplica: Int
    /// When it is deleted unless it serves by then.
    public var until: Date
    /// A rollback routed it: it serves until the release's own replicas of that revision are ready.
    public var serving: Bool
    /// When the rollback made it serve: only the release's replicas created after it are the ones
    /// that take over (those before are the revision being left).
    public var servingSince: Date?
    /// Its pods; `current` is true for all of them (they run the revision the pool stands for).
    public var pods: [PodSnapshot]

    public init(revision: Int, desiredReplicas: Int, gpusPerReplica: Int, until: Date, serving: Bool, servingSince: Date? = nil,
                pods: [PodSnapshot]) {
        self.servingSince = servingSince
        self.revision = revision
        self.desiredReplicas = desiredReplicas
        self.gpusPerReplica = gpusPerReplica
        self.until = until
        self.serving = serving
        self.pods = pods
    }

    /// Replicas that may be given requests now.
    public var servingReplicas: Int { pods.filter(\.serving).count }
    /// GPUs its pods hold or wait for (every pod not yet gone).
    public var gpusHeld: Int { pods.count * gpusPerReplica }
}

/// For daemons and tests without a cluster: nothing is kept warm.
public struct NoWarmPools: WarmPools {
    public init() {}
    public func capture(_ target: ReleaseTarget) async throws -> WarmTemplate? { nil }
    public func keep(_ template: WarmTemplate, revision: Int, until: Date, for target: ReleaseTarget) async throws -> Bool { false }
    public func pool(_ target: ReleaseTarget) async throws -> WarmPool? { nil }
    public func serve(_ target: ReleaseTarget, since: Date) async throws {}
    public func release(_ target: ReleaseTarget) async throws {}
    public func pools(namespace: String, kubeContext: String?) async throws -> [String: WarmPool] { [:] }
}
