import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsRouter
import InferOpsTestSupport
import Testing

/// `VLLMRouter` against the real vllm-router 0.1.17 (`--enable-igw --policy round_robin`) and
/// stdlib fake workers. Each test has its own router on free ports.
@Suite struct VLLMRouterTests {
    @Test func registeredWorkersAreRoutedByModelName() async throws {
        try await RouterLab.run { lab in
            let llama = try await lab.worker("A", model: "llama-3-8b", strict: true)
            let mistral = try await lab.worker("B", model: "mistral-7b", strict: true)
            try await lab.router.add(RouterWorker(url: llama.url, model: "llama-3-8b"))
            try await lab.router.add(RouterWorker(url: mistral.url, model: "mistral-7b"))

            let listed = try await lab.router.workers()
            #expect(
                Set(listed) == [
                    RouterWorker(url: llama.url, model: "llama-3-8b"),
                    RouterWorker(url: mistral.url, model: "mistral-7b"),
                ]
            )
            #expect(try await lab.answeredBy("llama-3-8b", times: 3) == ["A", "A", "A"])
            #expect(try await lab.answeredBy("mistral-7b", times: 3) == ["B", "B", "B"])
            let (status, answer) = try await lab.complete("llama-3-8b")
            #expect(status == 200)
            #expect(answer == WorkerAnswer(worker: "A", path: "/v1/completions", requestedModel: "llama-3-8b"))
        }
    }

    @Test func twoReplicasOfOneModelBothGetTraffic() async throws {
        try await RouterLab.run { lab in
            let first = try await lab.worker("A1", model: "llama-3-8b", strict: true)
            let second = try await lab.worker("A2", model: "llama-3-8b", strict: true)
            try await lab.router.add(RouterWorker(url: first.url, model: "llama-3-8b"))
            try await lab.router.add(RouterWorker(url: second.url, model: "llama-3-8b"))

            let answered = try await lab.answeredBy("llama-3-8b", times: 6)
            #expect(answered.filter { $0 == "A1" }.count == 3, "round robin: \(answered)")
            #expect(answered.filter { $0 == "A2" }.count == 3, "round robin: \(answered)")
            #expect(try await lab.router.workers().count == 2)
        }
    }

    @Test func aRemovedWorkerGetsNoMoreRequestsForItsModel() async throws {
        try await RouterLab.run { lab in
            let llama = try await lab.worker("A", model: "llama-3-8b", strict: true)
            let other = try await lab.worker("B", model: "mistral-7b", strict: true)
            try await lab.router.add(RouterWorker(url: llama.url, model: "llama-3-8b"))
            try await lab.router.add(RouterWorker(url: other.url, model: "mistral-7b"))
            #expect(try await lab.answeredBy("llama-3-8b") == ["A"])

            try await lab.router.remove(url: llama.url)
            #expect(try await lab.router.workers() == [RouterWorker(url: other.url, model: "mistral-7b")])
            // The model has no worker now, so the router hands its requests to any other worker;
            // a real engine (and the strict fake) rejects the foreign model with 404.
            for _ in 0..<3 {
                let (status, answer) = try await lab.complete("llama-3-8b")
                #expect(status == 404)
                #expect(answer?.worker == "B")
            }
            #expect(try await llama.completionPaths(http: lab.http).count == 1, "nothing after the removal")
        }
    }

    @Test func reRegisteringAURLUnderAnotherModelLeavesNoGhostRoute() async throws {
        try await RouterLab.run { lab in
            let reused = try await lab.worker("W", model: "any")
            let bystander = try await lab.worker("Z", model: "z-model")
            try await lab.router.add(RouterWorker(url: reused.url, model: "llama-3-8b"))
            try await lab.router.add(RouterWorker(url: reused.url, model: "llama-3-8b-v2"))
            #expect(try await lab.router.workers() == [RouterWorker(url: reused.url, model: "llama-3-8b-v2")])
            #expect(try await lab.raw(.get, "/v1/models").text == #"{"models":["llama-3-8b-v2"]}"#)

            try await lab.router.add(RouterWorker(url: bystander.url, model: "z-model"))
            try await lab.router.remove(url: reused.url)
            // With a ghost, "llama-3-8b" would still reach W. Without one it has no worker and
            // falls through to the only registered worker, Z.
            #expect(try await lab.answeredBy("llama-3-8b", times: 2) == ["Z", "Z"])
            #expect(try await reused.completionPaths(http: lab.http).isEmpty)
        }
    }

    /// Why `add` deletes first: the router's own upsert keeps the old model's route alive.
    @Test func theRoutersOwnUpsertLeavesAGhostRoute() async throws {
        try await RouterLab.run { lab in
            let reused = try await lab.worker("W", model: "any")
            let bystander = try await lab.worker("Z", model: "z-model")
            let url = reused.url
            #expect(try await lab.raw(.post, "/workers", json: #"{"url":"\#(url)","model_id":"m1"}"#).status == 200)
            #expect(try await lab.raw(.post, "/workers", json: #"{"url":"\#(url)","model_id":"m2"}"#).status == 200)
            try await lab.router.add(RouterWorker(url: bystander.url, model: "z-model"))
            try await lab.router.remove(url: url)
            #expect(try await lab.router.workers() == [RouterWorker(url: bystander.url, model: "z-model")])
            // The deleted URL still serves "m1".
            #expect(try await lab.answeredBy("m1", times: 2) == ["W", "W"])
        }
    }

    @Test func aRestartEmptiesTheRegistryAndAddRestoresIt() async throws {
        try await RouterLab.run { lab in
            let llama = try await lab.worker("A", model: "llama-3-8b", strict: true)
            let worker = RouterWorker(url: llama.url, model: "llama-3-8b")
            try await lab.router.add(worker)
            #expect(try await lab.answeredBy("llama-3-8b") == ["A"])

            try await lab.process.restart()
            #expect(try await lab.router.workers().isEmpty)
            let (status, answer) = try await lab.complete("llama-3-8b")
            #expect(status == 503)
            #expect(answer == nil)

            try await lab.router.add(worker)
            #expect(try await lab.router.workers() == [worker])
            #expect(try await lab.answeredBy("llama-3-8b") == ["A"])
        }
    }

    @Test func addWhileTheRouterIsDownRetriesThenThrowsWithinTheBudget() async throws {
        let policy = VLLMRouter.RetryPolicy(
            attempts: 4,
            initialBackoff: .milliseconds(50),
            maxBackoff: .milliseconds(400)
        )
        try await RouterLab.run(retry: policy) { lab in
            lab.process.kill()
            let started = ContinuousClock.now
            let error = await #expect(throws: RouterUnavailable.self) {
                try await lab.router.add(RouterWorker(url: "http://127.0.0.1:9/", model: "llama-3-8b"))
            }
            let elapsed = ContinuousClock.now - started
            #expect(lab.counting.requests == Array(repeating: "GET /workers", count: 4))
            #expect(
                error?.detail.hasSuffix("failed after 4 attempts: connection refused") == true,
                "\(String(describing: error))"
            )
            #expect(policy.totalBackoff == .milliseconds(350))
            #expect(elapsed >= .milliseconds(350))
            #expect(elapsed < .milliseconds(350) + .seconds(3), "took \(elapsed)")
        }
    }

    @Test func addSucceedsWhenTheRouterComesBackDuringItsRetries() async throws {
        let policy = VLLMRouter.RetryPolicy(
            attempts: 200,
            initialBackoff: .milliseconds(50),
            maxBackoff: .milliseconds(200)
        )
        try await RouterLab.run(retry: policy) { lab in
            let llama = try await lab.worker("A", model: "llama-3-8b", strict: true)
            let worker = RouterWorker(url: llama.url, model: "llama-3-8b")
            lab.process.kill()
            let router = lab.router
            let adding = Task { try await router.add(worker) }
            try await waitUntil("two refused attempts", timeout: .seconds(10)) {
                lab.counting.count("GET /workers") >= 2
            }
            try await lab.process.restart()
            try await adding.value
            #expect(try await lab.router.workers() == [worker])
            #expect(try await lab.answeredBy("llama-3-8b") == ["A"])
        }
    }

    @Test func removingAnUnknownWorkerSucceeds() async throws {
        try await RouterLab.run { lab in
            try await lab.router.remove(url: "http://127.0.0.1:1")
            let worker = try await lab.worker("A", model: "llama-3-8b")
            try await lab.router.add(RouterWorker(url: worker.url, model: "llama-3-8b"))
            try await lab.router.remove(url: worker.url)
            try await lab.router.remove(url: worker.url)
            #expect(try await lab.router.workers().isEmpty)
            #expect(lab.counting.count("DELETE") == 3, "one attempt each: \(lab.counting.requests)")
        }
    }

    @Test func workersWithAPathOrAQueryCanBeRemoved() async throws {
        try await RouterLab.run { lab in
            let worker = try await lab.worker("D", model: "deny")
            let urls = ["\(worker.url)/deny/staging/llama-3-8b", "\(worker.url)/?m=llama%203"]
            for url in urls { try await lab.router.add(RouterWorker(url: url, model: "llama-3-8b")) }
            #expect(Set(try await lab.router.workers().map(\.url)) == Set(urls))
            for url in urls { try await lab.router.remove(url: url) }
            #expect(try await lab.router.workers().isEmpty)
        }
    }

    @Test func isReachableFollowsTheRouter() async throws {
        try await RouterLab.run { lab in
            #expect(await lab.router.isReachable())
            lab.process.kill()
            #expect(await lab.router.isReachable() == false)
            try await lab.process.restart()
            #expect(await lab.router.isReachable())
        }
    }
}

/// The router in front of the Kubernetes emulator's engines, reached at `http://<podIP>:8000` as in a cluster.
@Suite struct RouterWithEmulatorTests {
    @Test func theRouterReachesEveryReplicaAtItsPodIP() async throws {
        try await RouterLab.run { lab in
            let emulator = try await KubeEmulator.start(readyAfter: 0.2)
            defer { emulator.stop() }
            try await emulator.deploy("llama-3-8b-staging", servedName: "llama-3-8b", replicas: 2, http: lab.http)
            try await waitUntil("two ready engines", timeout: .seconds(10)) {
                try await emulator.engines(http: lab.http).filter(\.podReady).count == 2
            }
            let ips = try await emulator.podIPs(app: "llama-3-8b-staging", http: lab.http)
            #expect(ips.count == 2)
            #expect(Set(ips).count == 2, "distinct pod IPs: \(ips)")
            for ip in ips { try await lab.router.add(RouterWorker(url: "http://\(ip):8000", model: "llama-3-8b")) }

            for _ in 0..<4 {
                let response = try await lab.router.complete(
                    model: "llama-3-8b",
                    prompt: "hi",
                    maxTokens: 4,
                    timeout: .seconds(15)
                )
                #expect(response.status == 200)
            }
            let engines = try await emulator.engines(http: lab.http)
            #expect(Set(engines.map(\.url)) == Set(ips.map { "http://\($0):8000" }))
            #expect(engines.map { $0.requests["completions"] ?? 0 } == [2, 2], "round robin over both pods")
        }
    }
}
