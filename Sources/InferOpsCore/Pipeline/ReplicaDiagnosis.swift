/// What one replica of a model is doing, and the next step when it is not serving: the lines of
/// `/infer status <model> in <env>` that pinpoint a failing component. Pure: the pod as Kubernetes
/// reports it, whether its engine answered a direct check, and whether the router routes to it.
public struct ReplicaDiagnosis: Hashable, Sendable {
    public enum State: String, Hashable, Sendable {
        case serving
        case stopping
        case unschedulable
        case imagePullFailing = "image pull failing"
        case crashing
        case failed
        case notReady = "not ready"
        case notAnswering = "not answering"
        case notRouted = "ready, not routed"
        case pending
    }

    /// The engine's answer to a direct `/health`, when it was asked.
    public enum EngineCheck: Hashable, Sendable {
        case answering
        case notAnswering(String)
    }

    public var pod: String
    public var state: State
    /// What Kubernetes (or the engine) says, e.g. the scheduler's message or the last exit.
    public var detail: String?
    /// What to do about it; `nil` when there is nothing to do.
    public var next: String?

    /// - Parameters:
    ///   - engine: the direct check of a ready replica's engine; `nil` when not asked.
    ///   - routed: whether the router has this replica as a worker; `nil` when the model is not
    ///     meant to be routed here (no router, or not registered and enabled).
    public static func diagnose(
        _ pod: PodSnapshot, engine: EngineCheck?, routed: Bool?, model: String, environment: String,
        reconcileInterval: Duration
    ) -> ReplicaDiagnosis {
        func make(_ state: State, _ detail: String?, _ next: String?) -> ReplicaDiagnosis {
            ReplicaDiagnosis(pod: pod.name, state: state, detail: detail, next: next)
        }
        if pod.terminating {
            return make(.stopping, routed == true ? "still in the router" : nil,
                        routed == true ? "It leaves the router at the next repair; nothing to do." : nil)
        }
        if pod.unschedulable {
            return make(.unschedulable, pod.reason,
                        "It starts by itself once GPUs free up: `/infer status` shows what holds them, "
                            + "`/infer remove <model> from \(environment)` frees a model's.")
        }
        if let waiting = pod.waiting {
            switch waiting {
            case "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull":
                return make(.imagePullFailing, pod.reason ?? waiting,
                            "Check the image name and tag, and that the cluster may pull it (imagePullSecrets).")
            case "CrashLoopBackOff", "RunContainerError", "CreateContainerError", "CreateContainerConfigError":
                let exits = pod.restarts > 0 ? " after \(pod.restarts) restart\(pod.restarts == 1 ? "" : "s")" : ""
                if pod.lastExit == "OOMKilled" {
                    return make(.crashing, "\(waiting): OOMKilled\(exits)",
                                "The engine runs out of memory: raise `resources.memory` or lower `--max-model-len`; "
                                    + "`kubectl logs \(pod.name) --previous` shows its last run.")
                }
                return make(.crashing, (pod.reason ?? waiting) + exits,
                            "`kubectl logs \(pod.name) --previous` shows why it exits; `/infer rollback \(model) in \(environment)` "
                                + "returns to the last good revision.")
            default:
                return make(.pending, pod.reason ?? waiting, nil)
            }
        }
        if pod.phase == "Failed" {
            return make(.failed, pod.reason, "`kubectl describe pod \(pod.name)` says why; the Deployment replaces it.")
        }
        guard pod.ready else {
            if pod.phase == "Running" {
                return make(.notReady, "its readiness probe does not pass yet",
                            "Weights may still be loading; if it stays so, `kubectl describe pod \(pod.name)` shows the probe's answers.")
            }
            return make(.pending, pod.reason, nil)
        }
        if case .notAnswering(let why) = engine {
            return make(.notAnswering, why, "Ready by its probe but not answering: `kubectl delete pod \(pod.name)` replaces it.")
        }
        if routed == false {
            return make(.notRouted, nil,
                        "The router gets it within \(reconcileInterval.spoken) (the next repair); "
                            + "`/infer register \(model) in \(environment)` routes it now.")
        }
        return make(.serving, nil, nil)
    }

    /// One line of the report: `pod: state (detail). → next`.
    public var line: RichText {
        var text: RichText = "`\(pod)`: \(state.rawValue)"
        if let detail { text += " (" + RichText.user(detail) + ")" }
        if let next { text += ". → " + RichText(next) }
        return text
    }
}
