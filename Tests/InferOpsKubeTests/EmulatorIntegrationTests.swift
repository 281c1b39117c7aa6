import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsKube
import InferOpsTestSupport
import Testing

/// The adapter against the Kubernetes API emulator: 2 simulated GPU nodes with 4 GPUs each, a
/// scheduler, and one fake OpenAI engine per running pod behind the service proxy.
@Suite("Kubernetes adapter against the API emulator")
struct EmulatorIntegrationTests {
    /// Everything one test needs; each test gets its own emulator so tests can run in parallel.
    struct Cluster {
        let emulator: KubeEmulator
        let http: CurlHTTPClient
        let contexts: KubeContexts
        var inspector: KubernetesClusterInspector { KubernetesClusterInspector(contexts: contexts) }

        static func start() async throws -> Cluster {
            let emulator = try await KubeEmulator.start(gpuNodes: 2, gpusPerNode: 4, readyAfter: 1)
            let http = try CurlHTTPClient()
            return Cluster(emulator: emulator, http: http, contexts: try emulator.contexts(http: http))
        }

        func stop() async {
            await http.shutdown()
            emulator.stop()
        }

        /// A vLLM-like Deployment as the chart renders it: GPUs as a limit, pinned to GPU nodes.
        func deploy(_ release: String, gpus: Int, replicas: Int = 1) async throws {
            let labels = #"{"app.kubernetes.io/instance":"\#(release)"}"#
            let deployment = #"""
                {"apiVersion":"apps/v1","kind":"Deployment",
                 "metadata":{"name":"\#(release)","namespace":"default","labels":\#(labels)},
                 "spec":{"replicas":\#(replicas),"selector":{"matchLabels":\#(labels)},
                  "template":{"metadata":{"labels":\#(labels)},
                   "spec":{"nodeSelector":{"nvidia.com/gpu.present":"true"},
                    "tolerations":[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}],
                    "containers":[{"name":"vllm","image":"vllm/vllm-openai:v0.6.3",
                     "args":["--model","m","--served-model-name","m"],
                     "ports":[{"containerPort":8000}],
                     "resources":{"limits":{"nvidia.com/gpu":"\#(gpus)"}}}]}}}}
                """#
            let service = #"""
                {"apiVersion":"v1","kind":"Service",
                 "metadata":{"name":"\#(release)","namespace":"default","labels":\#(labels)},
                 "spec":{"selector":\#(labels),"ports":[{"name":"http","port":8000,"targetPort":8000}]}}
                """#
            let api = try await contexts.context(nil)
            let _: JSONValue = try await api.create(
                "/apis/apps/v1/namespaces/default/deployments",
                json: Array(deployment.utf8)
            )
            let _: JSONValue = try await api.create("/api/v1/namespaces/default/services", json: Array(service.utf8))
        }
    }

    @Test func capacityBeforeAndAfterATwoGPUDeployment() async throws {
        let cluster = try await Cluster.start()
        let before = try await cluster.inspector.gpuCapacity(kubeContext: nil)
        #expect(
            before.nodes == [
                NodeGPUs(node: "gpu-node-1", allocatable: 4, requested: 0),
                NodeGPUs(node: "gpu-node-2", allocatable: 4, requested: 0),
            ]
        )
        #expect(before.requestedByRelease.isEmpty)

        try await cluster.deploy("llama-staging", gpus: 2)
        var after = before
        try await waitUntil("the 2-GPU pod to be bound") {
            after = try await cluster.inspector.gpuCapacity(kubeContext: "emulator")
            return after.requested == 2
        }
        #expect(after.allocatable == 8)
        #expect(after.free == 6)
        #expect(after.nodes.map(\.requested).sorted() == [0, 2])
        #expect(after.requestedByRelease == ["llama-staging": 2])
        await cluster.stop()
    }

    @Test func oversizedDeploymentStaysPendingWithTheSchedulerMessage() async throws {
        let cluster = try await Cluster.start()
        try await cluster.deploy("huge-prod", gpus: 6)
        let target = ReleaseTarget(release: "huge-prod", namespace: "default")
        var snapshot = WorkloadSnapshot(desiredReplicas: 0, pods: [])
        try await waitUntil("the pod to be reported unschedulable") {
            snapshot = try await cluster.inspector.workload(target)
            return snapshot.pods.first?.reason?.contains("Insufficient nvidia.com/gpu") == true
        }
        #expect(snapshot.desiredReplicas == 1)
        #expect(snapshot.readyReplicas == 0)
        let pod = try #require(snapshot.pods.first)
        #expect(pod.phase == "Pending")
        #expect(!pod.ready)
        #expect(pod.node == nil)
        #expect(pod.reason?.hasPrefix("0/3 nodes are available:") == true, "\(pod.reason ?? "nil")")

        // Pending pods count for their release but on no node.
        let capacity = try await cluster.inspector.gpuCapacity(kubeContext: nil)
        #expect(capacity.requested == 0)
        #expect(capacity.requestedByRelease == ["huge-prod": 6])

        let events = try await cluster.inspector.events(forPod: pod.name, namespace: "default", kubeContext: nil)
        #expect(events.contains { $0.reason == "FailedScheduling" && $0.type == "Warning" })
        await cluster.stop()
    }

    @Test func engineHealthAndModelsThroughTheServiceProxy() async throws {
        let cluster = try await Cluster.start()
        try await cluster.deploy("m-dev", gpus: 1)
        let target = ReleaseTarget(release: "m-dev", namespace: "default", kubeContext: "emulator")
        let engines = KubernetesEngineClient(contexts: cluster.contexts)
        let endpoint = EngineEndpoint(target: target, service: "m-dev", port: 8000)

        try await waitUntil("the engine to become ready") {
            try await cluster.inspector.workload(target).readyReplicas == 1
        }
        var health = EngineResponse(status: 0, body: Data())
        try await waitUntil("the service proxy to reach the engine") {
            do {
                health = try await engines.get(endpoint, path: "/health", timeout: .seconds(5))
                return health.status == 200
            } catch is EngineUnreachable {
                return false  // endpoints not updated yet
            }
        }
        #expect(health.status == 200)

        let models = try await engines.get(endpoint, path: "/v1/models", timeout: .seconds(5))
        #expect(models.status == 200)
        let list = try JSONDecoder().decode(JSONValue.self, from: models.body)
        guard case .array(let data)? = list["data"] else {
            Issue.record("no data in \(String(decoding: models.body, as: UTF8.self))")
            return
        }
        #expect(data.first?["id"]?.stringValue == "m")

        let completion = try await engines.post(
            endpoint,
            path: "/v1/chat/completions",
            json: Data(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#.utf8),
            timeout: .seconds(5)
        )
        #expect(completion.status == 200)
        #expect(
            try JSONDecoder().decode(JSONValue.self, from: completion.body)["object"]?.stringValue == "chat.completion"
        )

        let wrongModel = try await engines.post(
            endpoint,
            path: "/v1/completions",
            json: Data(#"{"model":"other","prompt":"x"}"#.utf8),
            timeout: .seconds(5)
        )
        #expect(wrongModel.status == 404)  // the engine's answer, passed through

        let missing = EngineEndpoint(target: target, service: "no-such-service", port: 8000)
        await #expect(throws: EngineUnreachable.self) {
            try await engines.get(missing, path: "/health", timeout: .seconds(5))
        }
        await cluster.stop()
    }

    @Test func directAccessReachesTheEngineByTemplate() async throws {
        let cluster = try await Cluster.start()
        try await cluster.deploy("direct-dev", gpus: 1)
        let target = ReleaseTarget(release: "direct-dev", namespace: "default")
        try await waitUntil("the engine to become ready") {
            try await cluster.inspector.workload(target).readyReplicas == 1
        }
        // The emulator runs each fake engine at its pod's own loopback address, as a pod network would.
        let engines = try await cluster.http.send(HTTPRequest(url: "\(cluster.emulator.server)/_emu/engines"))
        let list = try JSONDecoder().decode(JSONValue.self, from: engines.bodyData)
        guard case .array(let all)? = list["engines"], let port = all.first?["port"]?.intValue,
            let host = all.first?["podIP"]?.stringValue
        else {
            Issue.record("no engine in \(engines.text)")
            return
        }
        let client = KubernetesEngineClient(
            contexts: cluster.contexts,
            access: .direct(urlTemplate: "http://\(host):{port}")
        )
        let endpoint = EngineEndpoint(target: target, service: "direct-dev", port: port)
        #expect(try await client.get(endpoint, path: "/health", timeout: .seconds(5)).status == 200)

        cluster.emulator.stop()
        await #expect(throws: EngineUnreachable.self) {
            try await client.get(endpoint, path: "/health", timeout: .seconds(2))
        }
        await cluster.http.shutdown()
    }

    @Test func unreachableAPIServerIsAUserFacingError() async throws {
        let cluster = try await Cluster.start()
        let contexts = cluster.contexts
        await cluster.http.shutdown()
        cluster.emulator.stop()
        let http = try CurlHTTPClient()
        let stale = KubeContexts(source: contexts.source, http: http)
        let error = await #expect(throws: KubeAPIError.self) {
            try await KubernetesClusterInspector(contexts: stale).gpuCapacity(kubeContext: nil)
        }
        #expect(error?.message.contains("unreachable") == true)
        #expect(error?.hint != nil)
        await http.shutdown()
    }
}

@Suite("KubeRuntime")
struct KubeRuntimeTests {
    @Test func buildsTheAdaptersFromAKubeconfigPath() async throws {
        let emulator = try await KubeEmulator.start()
        defer { emulator.stop() }
        let runtime = try KubeRuntime(kubeconfig: emulator.kubeconfig)
        let capacity = try await runtime.clusterInspector().gpuCapacity(kubeContext: "emulator")
        #expect(capacity.allocatable == 8)
        // Environments choose per namespace; other namespaces use the service proxy.
        let engines = runtime.engineClient(access: ["lab": .direct(urlTemplate: "http://127.0.0.1:9")])
        let lab = EngineEndpoint(target: ReleaseTarget(release: "m-lab", namespace: "lab"), service: "m-lab")
        let other = EngineEndpoint(target: ReleaseTarget(release: "m-dev", namespace: "default"), service: "m-dev")
        let labError = await #expect(throws: EngineUnreachable.self) {
            try await engines.get(lab, path: "/health", timeout: .seconds(2))
        }
        #expect(labError?.detail.contains("http://127.0.0.1:9/health") == true)
        let proxyError = await #expect(throws: EngineUnreachable.self) {
            try await engines.get(other, path: "/health", timeout: .seconds(2))
        }
        #expect(proxyError?.detail.contains("through the API server") == true)
        await runtime.shutdown()
    }

    /// Read on first use: building the runtime works without a kubeconfig, and each call that needs
    /// the cluster fails with the same clear message until the file exists.
    @Test func missingKubeconfigFailsTheFirstCallThatNeedsIt() async throws {
        let runtime = try KubeRuntime(kubeconfig: "/nonexistent/kubeconfig", reading: .onFirstUse)
        for _ in 0..<2 {
            let error = await #expect(throws: KubeconfigError.self) {
                try await runtime.clusterInspector().gpuCapacity(kubeContext: "emulator")
            }
            #expect(error?.message == "Cannot read /nonexistent/kubeconfig.")
        }
        await runtime.shutdown()
    }

    @Test func missingKubeconfigStopsStartUpWithAClearMessage() {
        let error = #expect(throws: KubeconfigError.self) { try KubeRuntime(kubeconfig: "/nonexistent/kubeconfig") }
        #expect(error?.message == "Cannot read /nonexistent/kubeconfig.")
        #expect(error?.hint != nil)
    }
}
