import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsRouter
import InferOpsTestSupport
import Testing

/// What vllm-router 0.1.17 in IGW mode does with unusual worker URLs and unknown models: the facts
/// the deny backend's design rests on (see Tests/RouterHarness/ROUTER-NOTES.md). An upgrade that
/// changes one fails here.
@Suite struct RouterBehaviourTests {
    @Test func aPathInTheWorkerURLIsKeptInFrontOfTheRequestPath() async throws {
        try await RouterLab.run { lab in
            let deny = try await lab.worker("D", model: "llama-3-8b")
            try await lab.router.add(RouterWorker(url: "\(deny.url)/deny/staging/llama-3-8b", model: "llama-3-8b"))
            let (status, answer) = try await lab.complete("llama-3-8b")
            #expect(status == 200)
            #expect(answer?.path == "/deny/staging/llama-3-8b/v1/completions")
            #expect(answer?.requestedModel == "llama-3-8b")
            let chat = try await lab.raw(
                .post,
                "/v1/chat/completions",
                json: #"{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}]}"#
            )
            #expect(try WorkerAnswer(chat.bodyData).path == "/deny/staging/llama-3-8b/v1/chat/completions")
        }
    }

    @Test func aTrailingSlashIsKeptToo() async throws {
        try await RouterLab.run { lab in
            let deny = try await lab.worker("D", model: "llama-3-8b")
            try await lab.router.add(RouterWorker(url: "\(deny.url)/deny/staging/llama-3-8b/", model: "llama-3-8b"))
            #expect(try await lab.complete("llama-3-8b").answer?.path == "/deny/staging/llama-3-8b//v1/completions")
        }
    }

    /// The route is appended to the URL as a string, so it lands inside the query.
    @Test func aQueryInTheWorkerURLSwallowsTheRequestPath() async throws {
        try await RouterLab.run { lab in
            let deny = try await lab.worker("D", model: "llama-3-8b")
            try await lab.router.add(RouterWorker(url: "\(deny.url)/?m=x", model: "llama-3-8b"))
            #expect(try await lab.complete("llama-3-8b").answer?.path == "/?m=x/v1/completions")
        }
    }

    /// The health checker appends `/health` to the worker URL the same way: a deny backend behind a
    /// path must answer `<path>/health` with 200, or the router marks it unhealthy.
    @Test func healthChecksUseThePathPrefix() async throws {
        try await RouterLab.run(routerArguments: ["--health-check-interval-secs", "1"]) { lab in
            let deny = try await lab.worker("D", model: "llama-3-8b")
            try await lab.router.add(RouterWorker(url: "\(deny.url)/deny/staging/llama-3-8b", model: "llama-3-8b"))
            try await waitUntil("a health check on the prefixed path", timeout: .seconds(10)) {
                try await deny.received(http: lab.http).contains {
                    $0.method == "GET" && $0.path == "/deny/staging/llama-3-8b/health"
                }
            }
            #expect(
                try await deny.received(http: lab.http).allSatisfy { $0.path.hasPrefix("/deny/staging/llama-3-8b/") }
            )
        }
    }

    @Test func anUnknownModelGoesToSomeRegisteredWorker() async throws {
        try await RouterLab.run { lab in
            let llama = try await lab.worker("A", model: "llama-3-8b")
            try await lab.router.add(RouterWorker(url: llama.url, model: "llama-3-8b"))
            #expect(try await lab.answeredBy("model-b", times: 3) == ["A", "A", "A"])
            let (_, answer) = try await lab.complete("model-b")
            #expect(answer?.requestedModel == "model-b", "the model name is passed on unchanged")

            let other = try await lab.worker("C", model: "mistral-7b")
            try await lab.router.add(RouterWorker(url: other.url, model: "mistral-7b"))
            let spread = try await lab.answeredBy("model-b", times: 4)
            #expect(Set(spread) == ["A", "C"], "round robin over every worker: \(spread)")
        }
    }

    @Test func withNoWorkerAtAllTheRouterAnswers503Itself() async throws {
        try await RouterLab.run { lab in
            let response = try await lab.router.complete(
                model: "llama-3-8b",
                prompt: "hi",
                maxTokens: 4,
                timeout: .seconds(15)
            )
            #expect(response.status == 503)
            #expect(String(decoding: response.body, as: UTF8.self).contains("No available workers"))
        }
    }
}
