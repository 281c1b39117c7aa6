import Foundation

/// Installs, upgrades and rolls back releases of a chart: Helm in production and in tests.
public protocol ReleaseEngine: Sendable {
    /// `upgrade --install --wait`: returns when every replica is ready, throws `ReleaseFailure` otherwise.
    /// Cancelling the task stops the engine cleanly (Helm gets SIGTERM and marks the revision failed).
    func upgrade(_ request: ReleaseUpgrade) async throws -> ReleaseStatus
    /// Renders the manifests the upgrade would apply, without touching the cluster.
    func render(_ request: ReleaseUpgrade) async throws -> String
    /// `rollback` to `revision`, or to the previous revision when `nil`; with `wait`, returns when
    /// every replica is ready, without it once the objects are applied (a warm rollback, whose
    /// stand-ins serve meanwhile).
    func rollback(_ target: ReleaseTarget, to revision: Int?, timeout: Duration, wait: Bool) async throws -> ReleaseStatus
    /// The release's current state, or `nil` when there is no such release.
    func status(_ target: ReleaseTarget) async throws -> ReleaseStatus?
    /// Every revision still kept, oldest first; empty when there is no such release.
    func history(_ target: ReleaseTarget) async throws -> [ReleaseRevision]
    /// Removes a release: the documented way out of a release stuck in `pending-install`.
    func uninstall(_ target: ReleaseTarget, timeout: Duration) async throws
    /// Stops Helm processes that a daemon which is gone left running on `target` (they run in
    /// their own process group, so they outlive a killed daemon and keep the release `pending-*`).
    /// - Returns: how many were stopped.
    func stopAbandonedProcesses(for target: ReleaseTarget) async -> Int
}

/// Everything one `upgrade --install` needs.
public struct ReleaseUpgrade: Sendable, Hashable {
    public var target: ReleaseTarget
    /// A chart directory, a packaged chart, or `repo/name`.
    public var chart: String
    public var chartVersion: String?
    /// Values files, applied in order before `values`.
    public var valuesFiles: [String]
    /// Values set by the plan: passed in a temporary values file, never on the command line.
    public var values: JSONValue
    public var timeout: Duration
    public var createNamespace: Bool

    public init(
        target: ReleaseTarget, chart: String, chartVersion: String? = nil, valuesFiles: [String] = [],
        values: JSONValue = .object([:]), timeout: Duration, createNamespace: Bool = true
    ) {
        self.target = target
        self.chart = chart
        self.chartVersion = chartVersion
        self.valuesFiles = valuesFiles
        self.values = values
        self.timeout = timeout
        self.createNamespace = createNamespace
    }
}

/// Helm's release states (`info.status`).
public enum ReleaseState: Hashable, Sendable, Codable, CustomStringConvertible {
    case deployed, failed, superseded, uninstalling, uninstalled
    case pendingInstall, pendingUpgrade, pendingRollback
    case unknown(String)

    public init(helm text: String) {
        switch text {
        case "deployed": self = .deployed
        case "failed": self = .failed
        case "superseded": self = .superseded
        case "uninstalling": self = .uninstalling
        case "uninstalled": self = .uninstalled
        case "pending-install": self = .pendingInstall
        case "pending-upgrade": self = .pendingUpgrade
        case "pending-rollback": self = .pendingRollback
        default: self = .unknown(text)
        }
    }

    public var description: String {
        switch self {
        case .deployed: "deployed"
        case .failed: "failed"
        case .superseded: "superseded"
        case .uninstalling: "uninstalling"
        case .uninstalled: "uninstalled"
        case .pendingInstall: "pending-install"
        case .pendingUpgrade: "pending-upgrade"
        case .pendingRollback: "pending-rollback"
        case .unknown(let text): text
        }
    }

    public var isPending: Bool {
        switch self {
        case .pendingInstall, .pendingUpgrade, .pendingRollback: true
        default: false
        }
    }

    public init(from decoder: any Decoder) throws {
        self.init(helm: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A release as `helm status` reports it.
public struct ReleaseStatus: Hashable, Sendable, Codable {
    public var name: String
    public var namespace: String
    public var revision: Int
    public var state: ReleaseState
    public var description: String
    /// `name-version`, e.g. `vllm-engine-0.1.0`, when known.
    public var chart: String?
    public var appVersion: String?
    public var lastDeployed: Date?

    public init(
        name: String, namespace: String, revision: Int, state: ReleaseState, description: String = "",
        chart: String? = nil, appVersion: String? = nil, lastDeployed: Date? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.revision = revision
        self.state = state
        self.description = description
        self.chart = chart
        self.appVersion = appVersion
        self.lastDeployed = lastDeployed
    }
}

/// One row of `helm history`.
public struct ReleaseRevision: Hashable, Sendable, Codable {
    public var revision: Int
    public var state: ReleaseState
    public var chart: String
    public var appVersion: String
    public var description: String
    public var updated: Date?

    public init(
        revision: Int, state: ReleaseState, chart: String, appVersion: String, description: String,
        updated: Date?
    ) {
        self.revision = revision
        self.state = state
        self.chart = chart
        self.appVersion = appVersion
        self.description = description
        self.updated = updated
    }
}

/// Why a release engine call failed, classified so each case gets its own message and next step.
public enum ReleaseFailure: UserFacingError, Equatable {
    /// The workload did not become ready within the budget. `detail` is what the engine said.
    case readinessTimeout(detail: String)
    /// The workload reported that it can never become ready (e.g. progress deadline exceeded).
    case rolloutFailed(detail: String)
    /// Another install, upgrade or rollback holds the release.
    case operationInProgress
    /// The release is stuck in a `pending-*` state left by an interrupted engine.
    case stuckPending(ReleaseState)
    /// An upgrade without `--install`, or a rollback, found no deployed revision.
    case noDeployedRelease
    /// The named revision does not exist (`nil`: there is no previous revision).
    case missingRevision(Int?)
    case releaseNotFound
    /// The chart could not be found, rendered or applied.
    case chartError(detail: String)
    case clusterUnreachable(detail: String)
    case cancelled
    /// Anything else; `detail` is the engine's own text, already free of secrets.
    case unclassified(detail: String)

    public var message: String {
        switch self {
        case .readinessTimeout(let detail):
            "The engine did not become ready within the readiness budget. \(detail)"
        case .rolloutFailed(let detail):
            "The rollout failed: \(detail)"
        case .operationInProgress:
            "Helm reports another operation (install/upgrade/rollback) in progress on this release."
        case .stuckPending(let state):
            "The release is stuck in \(state), left by an interrupted Helm run."
        case .noDeployedRelease:
            "The release has no deployed revision."
        case .missingRevision(let revision?):
            "The release has no revision \(revision)."
        case .missingRevision(nil):
            "The release has no earlier revision to roll back to."
        case .releaseNotFound:
            "There is no such release."
        case .chartError(let detail):
            "The chart could not be rendered or applied: \(detail)"
        case .clusterUnreachable(let detail):
            "The Kubernetes API is unreachable: \(detail)"
        case .cancelled:
            "The operation was cancelled; Helm marked the revision failed."
        case .unclassified(let detail):
            "Helm failed: \(detail)"
        }
    }

    public var hint: String? {
        switch self {
        case .readinessTimeout:
            "Look at the pods' events (`kubectl describe pod`), or raise the environment's readiness budget."
        case .rolloutFailed:
            "Look at the pods' events, fix the values, and deploy again or roll back."
        case .operationInProgress:
            "Wait for it to finish; if nothing is running, the release is stuck: see `/infer status`."
        case .stuckPending(.pendingInstall):
            "Recover with `/infer remove` (helm uninstall of the release), then deploy again."
        case .stuckPending:
            "Recover with `/infer rollback` (helm rollback to the last good revision), then deploy again."
        case .noDeployedRelease:
            "Deploy it first with `/infer deploy`."
        case .missingRevision:
            "List the revisions with `/infer history`."
        case .releaseNotFound:
            "Check the model and environment, or deploy it first."
        case .chartError:
            "Run `inferops check` and `helm lint` on the chart."
        case .clusterUnreachable:
            "Check the environment's kube context and the API server."
        case .cancelled, .unclassified:
            nil
        }
    }
}

extension ReleaseEngine {
    /// `rollback --wait`.
    public func rollback(_ target: ReleaseTarget, to revision: Int?, timeout: Duration) async throws -> ReleaseStatus {
        try await rollback(target, to: revision, timeout: timeout, wait: true)
    }

    /// Engines that start no processes have none to stop.
    public func stopAbandonedProcesses(for target: ReleaseTarget) async -> Int { 0 }
}
