import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsRouter
import InferOpsTestSupport
import Testing

/// One real router, its fake workers and a `VLLMRouter` on a counting libcurl client, for one test.
final class RouterLab {
    let http: CurlHTTPClient
    let counting: CountingHTTPClient
    let process: VLLMRouterProcess
    let router: VLLMRouter
    private var workers: [FakeWorker] = []

    private init(http: CurlHTTPClient, process: VLLMRouterProcess, retry: VLLMRouter.RetryPolicy) {
        self.http = http
        self.counting = CountingHTTPClient(http)
        self.process = process
        self.router = VLLMRouter(baseURL: process.baseURL, http: counting, retry: retry, requestTimeout: .seconds(5))
    }

    /// Runs `body` with a fresh router, then stops everything, whether `body` threw or not.
    static func run(
        retry: VLLMRouter.RetryPolicy = VLLMRouter.RetryPolicy(),
        routerArguments: [String] = [],
        _ body: (RouterLab) async throws -> Void
    ) async throws {
        let http = try CurlHTTPClient()
        let lab: RouterLab
        do {
            lab = RouterLab(
                http: http,
                process: try await VLLMRouterProcess.start(extraArguments: routerArguments),
                retry: retry
            )
        } catch {
            await http.shutdown()
            throw error
        }
        do {
            try await body(lab)
        } catch {
            await lab.stop()
            throw error
        }
        await lab.stop()
    }

    private func stop() async {
        for worker in workers { worker.stop() }
        process.stop()
        await http.shutdown()
    }

    /// Starts a fake worker that this lab stops at the end.
    func worker(_ name: String, model: String, strict: Bool = false) async throws -> FakeWorker {
        let worker = try await FakeWorker(name: name, model: model, strict: strict)
        workers.append(worker)
        return worker
    }

    /// A completion through the router, and which worker answered it on which path (nil when the
    /// router answered itself).
    func complete(_ model: String) async throws -> (status: Int, answer: WorkerAnswer?) {
        let response = try await router.complete(model: model, prompt: "hi", maxTokens: 4, timeout: .seconds(15))
        return (response.status, try? WorkerAnswer(response.body))
    }

    /// Which workers answered `count` completions for `model`, in order.
    func answeredBy(_ model: String, times count: Int = 1) async throws -> [String] {
        var names: [String] = []
        for _ in 0..<count {
            let (status, answer) = try await complete(model)
            guard let answer else {
                throw TestFailure("the router answered \(model) itself with \(status), not a worker")
            }
            names.append(answer.worker)
        }
        return names
    }

    /// A raw admin request, for what the adapter deliberately does not do.
    func raw(_ method: HTTPMethod, _ path: String, json: String? = nil) async throws -> HTTPResponse {
        var request = HTTPRequest(method: method, url: process.baseURL + path, timeout: .seconds(5))
        if let json {
            request.body = Array(json.utf8)
            request.headers.add("Content-Type", "application/json")
        }
        return try await http.send(request)
    }
}
