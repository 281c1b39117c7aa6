import Foundation
import InferOpsCore
import Testing

@testable import InferOpsKube

/// Fixtures are trimmed `kubectl get -o json` output: the fields the adapter reads, as the API writes them.
@Suite("GPU arithmetic")
struct GPUAccountingTests {
    static let nodesJSON = """
        {"kind":"NodeList","apiVersion":"v1","metadata":{},"items":[
          {"metadata":{"name":"gpu-b"},"spec":{},
           "status":{"allocatable":{"cpu":"32","nvidia.com/gpu":"4"},
                     "conditions":[{"type":"Ready","status":"True"}]}},
          {"metadata":{"name":"gpu-a"},
           "status":{"allocatable":{"cpu":"32","nvidia.com/gpu":"8"}}},
          {"metadata":{"name":"gpu-cordoned"},"spec":{"unschedulable":true},
           "status":{"allocatable":{"nvidia.com/gpu":"4"},"conditions":[{"type":"Ready","status":"True"}]}},
          {"metadata":{"name":"gpu-down"},
           "status":{"allocatable":{"nvidia.com/gpu":"2"},"conditions":[{"type":"Ready","status":"Unknown"}]}},
          {"metadata":{"name":"cpu-1"},"status":{"allocatable":{"cpu":"8","memory":"31Gi"}}},
          {"metadata":{"name":"gpu-zero"},"status":{"allocatable":{"nvidia.com/gpu":"0"}}}
        ]}
        """

    static func pod(
        _ name: String,
        node: String? = nil,
        phase: String = "Running",
        release: String? = nil,
        deleting: Bool = false,
        containers: String,
        initContainers: String? = nil
    ) -> String {
        var metadata = #""name":"\#(name)","namespace":"ml""#
        if let release { metadata += #","labels":{"app.kubernetes.io/instance":"\#(release)"}"# }
        if deleting { metadata += #","deletionTimestamp":"2026-01-01T00:00:00Z""# }
        var spec = #""containers":[\#(containers)]"#
        if let node { spec += #","nodeName":"\#(node)""# }
        if let initContainers { spec += #","initContainers":[\#(initContainers)]"# }
        return #"{"metadata":{\#(metadata)},"spec":{\#(spec)},"status":{"phase":"\#(phase)"}}"#
    }

    static func gpus(requests: Int? = nil, limits: Int? = nil, name: String = "c", sidecar: Bool = false) -> String {
        var resources: [String] = []
        if let requests { resources.append(#""requests":{"cpu":"1","nvidia.com/gpu":"\#(requests)"}"#) }
        if let limits { resources.append(#""limits":{"nvidia.com/gpu":"\#(limits)"}"#) }
        let policy = sidecar ? #","restartPolicy":"Always""# : ""
        return #"{"name":"\#(name)","resources":{\#(resources.joined(separator: ","))}\#(policy)}"#
    }

    static let podsJSON = """
        {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[
          \(pod("a-1", node: "gpu-a", release: "llama", containers: gpus(requests: 2, limits: 2))),
          \(pod("a-2", node: "gpu-a", release: "llama", containers: gpus(limits: 1))),
          \(pod("done", node: "gpu-a", phase: "Succeeded", release: "llama", containers: gpus(limits: 4))),
          \(pod("crashed", node: "gpu-a", phase: "Failed", release: "qwen", containers: gpus(limits: 4))),
          \(pod("leaving", node: "gpu-a", release: "qwen", deleting: true, containers: gpus(limits: 2))),
          \(pod("pending", phase: "Pending", release: "qwen", containers: gpus(limits: 8))),
          \(pod("b-1", node: "gpu-b", release: "mixtral",
              containers: gpus(requests: 1, name: "x") + "," + gpus(limits: 1, name: "y"),
              initContainers: gpus(limits: 3, name: "warmup"))),
          \(pod("c-1", node: "gpu-cordoned", release: "qwen", containers: gpus(requests: 1))),
          \(pod("web", node: "cpu-1", release: "ui", containers: #"{"name":"web","resources":{"requests":{"cpu":"100m"}}}"#)),
          \(pod("plain", node: "gpu-b", containers: gpus(requests: 1)))
        ]}
        """

    static func capacity() throws -> GPUCapacity {
        let nodes = try JSONDecoder().decode(KubeList<KubeNode>.self, from: Data(nodesJSON.utf8)).items ?? []
        let pods = try JSONDecoder().decode(KubeList<KubePod>.self, from: Data(podsJSON.utf8)).items ?? []
        return GPUAccounting.capacity(nodes: nodes, pods: pods)
    }

    @Test func perNodeAllocatableMinusBoundUnfinishedPods() throws {
        let capacity = try Self.capacity()
        #expect(
            capacity.nodes == [
                // 2 (requests) + 1 (limits only); Succeeded, Failed and deleting pods hold nothing.
                NodeGPUs(node: "gpu-a", allocatable: 8, requested: 3, requestedByRelease: ["llama": 3]),
                // max(1 + 1 app containers, 3 init) = 3, plus the unlabelled pod's 1.
                NodeGPUs(node: "gpu-b", allocatable: 4, requested: 4, requestedByRelease: ["mixtral": 3]),
                // Cordoned and NotReady nodes take no new pods: nothing is allocatable there.
                NodeGPUs(node: "gpu-cordoned", allocatable: 0, requested: 1, requestedByRelease: ["qwen": 1]),
                NodeGPUs(node: "gpu-down", allocatable: 0, requested: 0),
            ]
        )
        #expect(capacity.allocatable == 12)
        #expect(capacity.free == 5)
        #expect(capacity.nodes.first { $0.node == "gpu-b" }?.free == 0)
    }

    @Test func perReleaseSumsCountPendingPodsToo() throws {
        let capacity = try Self.capacity()
        #expect(capacity.requestedByRelease == ["llama": 3, "qwen": 9, "mixtral": 3])
    }

    @Test func requestsWinOverLimitsAndInitContainersUseTheMaxRule() throws {
        func request(_ containers: String, init initContainers: String? = nil) throws -> Int {
            let json = Self.pod("p", containers: containers, initContainers: initContainers)
            return GPUAccounting.request(of: try JSONDecoder().decode(KubePod.self, from: Data(json.utf8)).spec)
        }
        #expect(try request(Self.gpus(requests: 1, limits: 2)) == 1)
        #expect(try request(Self.gpus(limits: 2)) == 2)
        #expect(try request(#"{"name":"c"}"#) == 0)
        #expect(try request(Self.gpus(limits: 1), init: Self.gpus(limits: 2)) == 2)
        #expect(try request(Self.gpus(limits: 3), init: Self.gpus(limits: 2)) == 3)
        // A sidecar (restartPolicy Always) keeps its GPU while later init and app containers run.
        #expect(
            try request(
                Self.gpus(limits: 2),
                init: Self.gpus(limits: 1, name: "side", sidecar: true) + "," + Self.gpus(limits: 2, name: "init")
            ) == 3
        )
    }

    @Test func quantities() {
        #expect(Quantity("4").units == 4)
        #expect(Quantity("0").units == 0)
        #expect(Quantity("2k").units == 2000)
        #expect(Quantity("1Ki").units == 1024)
        #expect(Quantity("500m").units == 1)
        #expect(Quantity("1e1").units == 10)
        #expect(Quantity("junk").units == 0)
        let decoded = try? JSONDecoder().decode([String: Quantity].self, from: Data(#"{"a":2,"b":"3","c":1.0}"#.utf8))
        #expect(decoded?.mapValues(\.units) == ["a": 2, "b": 3, "c": 1])
    }
}

@Suite("Pod diagnosis")
struct PodDiagnosisTests {
    static func snapshot(_ json: String) throws -> PodSnapshot {
        PodDiagnosis.snapshot(try JSONDecoder().decode(KubePod.self, from: Data(json.utf8)))
    }

    static let schedulerMessage =
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."

    @Test func unschedulablePodCarriesTheSchedulerMessage() throws {
        let pod = try Self.snapshot(
            """
            {"metadata":{"name":"big-0"},"spec":{"containers":[{"name":"vllm"}]},
             "status":{"phase":"Pending","conditions":[
               {"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"\(Self.schedulerMessage)"}]}}
            """
        )
        #expect(
            pod
                == PodSnapshot(
                    name: "big-0", phase: "Pending", ready: false, node: nil, reason: Self.schedulerMessage,
                    unschedulable: true
                )
        )
    }

    @Test func aServingPodsTimelineIsReadFromItsConditionsAndContainer() throws {
        let pod = try Self.snapshot(
            """
            {"metadata":{"name":"p","creationTimestamp":"2026-12-03T07:00:00Z"},"spec":{"nodeName":"n"},
             "status":{"phase":"Running","conditions":[
               {"type":"PodScheduled","status":"True","lastTransitionTime":"2026-12-03T07:00:04Z"},
               {"type":"Ready","status":"True","lastTransitionTime":"2026-12-03T07:01:10Z"}],
               "containerStatuses":[{"name":"vllm","ready":true,"state":{"running":{"startedAt":"2026-12-03T07:00:30Z"}}}]}}
            """
        )
        let at = { (seconds: Double) in Date(timeIntervalSince1970: 1_796_281_200 + seconds) }
        #expect(pod.timeline == PodTimeline(created: at(0), scheduled: at(4), started: at(30), ready: at(70)))
    }

    @Test func imagePullBackOffGivesReasonAndMessage() throws {
        let pod = try Self.snapshot(
            """
            {"metadata":{"name":"p"},"spec":{"nodeName":"gpu-node-1"},
             "status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"True"}],
               "containerStatuses":[{"name":"vllm","ready":false,"state":{"waiting":{
                 "reason":"ImagePullBackOff","message":"Back-off pulling image \\"vllm/vllm-openai:v9\\""}}}]}}
            """
        )
        #expect(pod.node == "gpu-node-1")
        #expect(pod.reason == #"ImagePullBackOff: Back-off pulling image "vllm/vllm-openai:v9""#)
    }

    @Test func crashLoopAddsTheLastExit() throws {
        let pod = try Self.snapshot(
            """
            {"metadata":{"name":"p"},"spec":{"nodeName":"n"},
             "status":{"phase":"Running","conditions":[{"type":"Ready","status":"False"}],
               "containerStatuses":[{"name":"vllm","ready":false,
                 "state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 40s restarting failed container=vllm"}},
                 "lastState":{"terminated":{"reason":"OOMKilled","exitCode":137}}}]}}
            """
        )
        #expect(
            pod.reason
                == "CrashLoopBackOff: back-off 40s restarting failed container=vllm (last exit: OOMKilled, code 137)"
        )
        #expect(pod.phase == "Running")
        #expect(!pod.ready)
    }

    @Test func runningButNotReadyIsNotReadyYet() throws {
        let pod = try Self.snapshot(
            """
            {"metadata":{"name":"p"},"spec":{"nodeName":"n"},
             "status":{"phase":"Running","conditions":[{"type":"PodScheduled","status":"True"},{"type":"Ready","status":"False"}],
               "containerStatuses":[{"name":"vllm","ready":false,"state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}}}]}}
            """
        )
        #expect(pod.reason == "not ready yet")
    }

    @Test func readyPodHasNoReason() throws {
        let pod = try Self.snapshot(
            """
            {"metadata":{"name":"p"},"spec":{"nodeName":"n"},
             "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}
            """
        )
        #expect(pod == PodSnapshot(name: "p", phase: "Running", ready: true, node: "n", reason: nil))
    }

    @Test func deletingAndFailedPods() throws {
        let deleting = try Self.snapshot(
            """
            {"metadata":{"name":"p","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"nodeName":"n"},
             "status":{"phase":"Running","conditions":[{"type":"Ready","status":"False"}]}}
            """
        )
        #expect(deleting.reason == "terminating")
        let evicted = try Self.snapshot(
            """
            {"metadata":{"name":"p"},"spec":{"nodeName":"n"},
             "status":{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: memory."}}
            """
        )
        #expect(evicted.reason == "Evicted: The node was low on resource: memory.")
        let exited = try Self.snapshot(
            """
            {"metadata":{"name":"p"},"spec":{"nodeName":"n"},
             "status":{"phase":"Failed","containerStatuses":[{"name":"vllm","state":{"terminated":{"reason":"Error","exitCode":1}}}]}}
            """
        )
        #expect(exited.reason == "vllm exited: Error (code 1)")
        let fresh = try Self.snapshot(#"{"metadata":{"name":"p"}}"#)
        #expect(fresh == PodSnapshot(name: "p", phase: "Pending", ready: false, node: nil, reason: nil))
    }
}
