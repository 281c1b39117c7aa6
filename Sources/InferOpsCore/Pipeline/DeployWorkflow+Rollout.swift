/// The rollout side of a deploy: how the Deployment controller will replace pods, and why new pods
/// did not start when Helm gave up.
extension DeployWorkflow {
    /// How the plan would roll out, from a dry-run render compared with what runs. `nil` when the
    /// chart does not render (the upgrade reports that itself) or renders no Deployment.
    func plannedRollout() async throws -> Rollout? {
        let rendered: String
        do {
            rendered = try await services.releases.render(plan.upgrade)
        } catch is ReleaseFailure {
            return nil
        }
        return try await services.cluster.rollout(plan.target, rendered: rendered)
    }

    /// A timeout or failed rollout whose new pods the scheduler could not place is a scheduling
    /// failure, not slow readiness: says so, with the scheduler's own message.
    func explained(_ failure: ReleaseFailure) async -> any UserFacingError {
        switch failure {
        case .readinessTimeout, .rolloutFailed: break
        default: return failure
        }
        guard let workload = try? await services.cluster.workload(plan.target),
            let pod = workload.pods.first(where: { $0.current && $0.unschedulable })
        else { return failure }
        return SchedulingFailure(pod: pod.name, schedulerMessage: pod.reason ?? "no node fits the pod")
    }
}

/// New pods stayed Pending because no node could take them.
public struct SchedulingFailure: UserFacingError, Equatable {
    public var pod: String
    /// kube-scheduler's text, e.g. `0/2 nodes are available: 2 Insufficient nvidia.com/gpu.`
    public var schedulerMessage: String

    public init(pod: String, schedulerMessage: String) {
        self.pod = pod
        self.schedulerMessage = schedulerMessage
    }

    public var message: String {
        "The new pods could not be scheduled: \(pod) stayed Pending: \(schedulerMessage)"
    }

    public var hint: String? {
        "Free GPUs (`/infer remove <model> from <environment>` uninstalls a model), lower `replicaCount`, "
            + "or set the chart's `strategy` to "
            + "`{rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}` so an old pod stops before its replacement starts."
    }
}
