import Foundation
import InferOpsCore

/// The GPU arithmetic of the scheduler, done on lists the API returned: pure, so fixtures can test it.
enum GPUAccounting {
    static let resource = "nvidia.com/gpu"
    static let releaseLabel = "app.kubernetes.io/instance"

    /// Free GPUs per node and what each release holds.
    ///
    /// A node counts its allocatable GPUs unless it is cordoned or not Ready, because the scheduler
    /// will place nothing new there; its bound pods still count as requested. Nodes without GPUs are
    /// left out. A pod holds GPUs until it has finished (Succeeded/Failed) or is being deleted.
    static func capacity(nodes: [KubeNode], pods: [KubePod]) -> GPUCapacity {
        var requestedOnNode: [String: Int] = [:]
        var requestedByRelease: [String: Int] = [:]
        var requestedOnNodeByRelease: [String: [String: Int]] = [:]
        for pod in pods where holdsGPUs(pod) {
            let gpus = request(of: pod.spec)
            guard gpus > 0 else { continue }
            if let node = pod.spec?.nodeName, !node.isEmpty {
                requestedOnNode[node, default: 0] += gpus
            }
            if let release = pod.metadata.labels?[releaseLabel], !release.isEmpty {
                requestedByRelease[release, default: 0] += gpus
                if let node = pod.spec?.nodeName, !node.isEmpty {
                    requestedOnNodeByRelease[node, default: [:]][release, default: 0] += gpus
                }
            }
        }
        var result: [NodeGPUs] = []
        for node in nodes {
            let allocatable = node.status?.allocatable?[resource]?.units ?? 0
            guard allocatable > 0 else { continue }
            result.append(
                NodeGPUs(
                    node: node.metadata.name,
                    allocatable: acceptsPods(node) ? allocatable : 0,
                    requested: requestedOnNode[node.metadata.name] ?? 0,
                    requestedByRelease: requestedOnNodeByRelease[node.metadata.name] ?? [:]
                )
            )
        }
        result.sort { $0.node < $1.node }
        return GPUCapacity(nodes: result, requestedByRelease: requestedByRelease)
    }

    /// Not cordoned, and Ready unless the node reports no Ready condition at all.
    static func acceptsPods(_ node: KubeNode) -> Bool {
        if node.spec?.unschedulable == true { return false }
        if let ready = node.status?.conditions?.first(where: { $0.type == "Ready" }) {
            return ready.status == "True"
        }
        return true
    }

    /// Still holding (or about to hold) its resources: not finished and not being deleted.
    static func holdsGPUs(_ pod: KubePod) -> Bool {
        let phase = pod.status?.phase ?? "Pending"
        return phase != "Succeeded" && phase != "Failed" && pod.metadata.deletionTimestamp == nil
    }

    /// One container's GPUs: its request, or its limit when no request is given (the API server
    /// defaults requests to limits for extended resources).
    static func request(of container: KubeContainer) -> Int {
        let resources = container.resources
        return (resources?.requests?[resource] ?? resources?.limits?[resource])?.units ?? 0
    }

    /// The pod's effective request, as the scheduler computes it: the larger of the app containers
    /// plus sidecars, and the peak during init (each init container plus the sidecars started before
    /// it), plus the pod overhead.
    static func request(of spec: PodSpec?) -> Int {
        guard let spec else { return 0 }
        var sidecars = 0
        var initPeak = 0
        for container in spec.initContainers ?? [] {
            let gpus = request(of: container)
            if container.restartPolicy == "Always" {
                sidecars += gpus
                initPeak = max(initPeak, sidecars)
            } else {
                initPeak = max(initPeak, sidecars + gpus)
            }
        }
        let running = (spec.containers ?? []).reduce(0) { $0 + request(of: $1) } + sidecars
        return max(running, initPeak) + (spec.overhead?[resource]?.units ?? 0)
    }
}

/// Turns pods into what a person needs to know: ready or not, and why not.
enum PodDiagnosis {
    static let notReadyYet = "not ready yet"

    static func snapshot(_ pod: KubePod) -> PodSnapshot {
        let phase = pod.status?.phase ?? "Pending"
        let ready = pod.status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } ?? false
        let node = pod.spec?.nodeName.flatMap { $0.isEmpty ? nil : $0 }
        let engine = pod.status?.containerStatuses?.first { $0.name == "vllm" } ?? pod.status?.containerStatuses?.first
        return PodSnapshot(
            name: pod.metadata.name,
            phase: phase,
            ready: ready,
            node: node,
            address: pod.status?.podIP.flatMap { $0.isEmpty ? nil : $0 },
            reason: ready ? nil : reason(pod, phase: phase),
            unschedulable: pod.metadata.deletionTimestamp == nil && node == nil
                && pod.status?.conditions?.contains { $0.type == "PodScheduled" && $0.status == "False" } == true,
            terminating: pod.metadata.deletionTimestamp != nil,
            waiting: engine?.state?.waiting?.reason,
            lastExit: engine?.lastState?.terminated?.reason,
            restarts: engine?.restartCount ?? 0,
            timeline: timeline(pod, engine: engine)
        )
    }

    /// When the pod was created, scheduled, its engine started, and it became ready (seconds, as
    /// the API gives them).
    static func timeline(_ pod: KubePod, engine: ContainerStatus?) -> PodTimeline? {
        func when(_ text: String?) -> Date? { text.flatMap { try? Date($0, strategy: .iso8601) } }
        func since(_ type: String) -> Date? {
            pod.status?.conditions?.first { $0.type == type && $0.status == "True" }.flatMap { when($0.lastTransitionTime) }
        }
        let timeline = PodTimeline(
            created: when(pod.metadata.creationTimestamp), scheduled: since("PodScheduled"),
            started: when(engine?.state?.running?.startedAt), ready: since("Ready"))
        return timeline == PodTimeline() ? nil : timeline
    }

    /// The most useful single explanation, in the order a person would look:
    /// being deleted; the scheduler's message; a container stuck waiting (ImagePullBackOff,
    /// CrashLoopBackOff with the last exit); why a pod failed; running but not passing readiness.
    static func reason(_ pod: KubePod, phase: String) -> String? {
        if pod.metadata.deletionTimestamp != nil { return "terminating" }
        let status = pod.status
        if let scheduled = status?.conditions?.first(where: { $0.type == "PodScheduled" }), scheduled.status == "False"
        {
            return scheduled.message ?? scheduled.reason ?? "waiting to be scheduled"
        }
        let statuses = (status?.initContainerStatuses ?? []) + (status?.containerStatuses ?? [])
        for container in statuses {
            guard let waiting = container.state?.waiting, let waitingReason = waiting.reason else { continue }
            var text = waitingReason
            if let message = waiting.message, !message.isEmpty { text += ": " + message }
            if let last = container.lastState?.terminated {
                text += " (last exit: \(last.reason ?? "Error")"
                if let code = last.exitCode { text += ", code \(code)" }
                text += ")"
            }
            return text
        }
        if phase == "Failed" {
            if let reason = status?.reason {
                return [reason, status?.message].compactMap { $0 }.joined(separator: ": ")
            }
            for container in statuses {
                if let terminated = container.state?.terminated, terminated.exitCode != 0 {
                    return
                        "\(container.name) exited: \(terminated.reason ?? "Error") (code \(terminated.exitCode ?? -1))"
                }
            }
            return "failed"
        }
        if phase == "Running" { return notReadyYet }
        return nil
    }
}
