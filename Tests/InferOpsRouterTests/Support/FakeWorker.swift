import Foundation
import InferOpsHTTP
import InferOpsTestSupport

/// `Tests/RouterHarness/fake_worker.py`: a stdlib fake vLLM worker that answers every path and
/// reports which worker answered, on which path, for which model.
final class FakeWorker {
    let name: String
    let model: String
    private let program: PythonServer

    var port: Int { program.port }
    var url: String { program.url }

    /// - Parameter strict: answer a `model` other than `model` with vLLM's 404, as a real engine does.
    init(name: String, model: String, strict: Bool = false) async throws {
        self.name = name
        self.model = model
        let script = repositoryRoot.appendingPathComponent("Tests/RouterHarness/fake_worker.py")
        program = try await offThePool {
            try PythonServer("fake worker \(name)", program: .script(script), timeout: .seconds(20)) { portFile in
                ["--name", name, "--model", model, "--port-file", portFile] + (strict ? ["--strict"] : [])
            }
        }
    }

    /// One request the worker received.
    struct Received: Decodable, Equatable {
        var method: String
        var path: String
        var model: String?
    }

    /// Every request so far (health checks included).
    func received(http: any HTTPClient) async throws -> [Received] {
        struct Log: Decodable { var requests: [Received] }
        let response = try await http.send(HTTPRequest(url: url + "/_fake/requests", timeout: .seconds(5)))
        return try JSONDecoder().decode(Log.self, from: response.bodyData).requests
    }

    /// The completions received, as their paths.
    func completionPaths(http: any HTTPClient) async throws -> [String] {
        try await received(http: http).filter { $0.method == "POST" }.map(\.path)
    }

    func stop() {
        program.stop()
    }
}

/// What the fake worker answers a completion with: who answered, on which path, for which model.
struct WorkerAnswer: Decodable, Equatable {
    var worker: String
    var path: String
    var requestedModel: String?

    enum CodingKeys: String, CodingKey {
        case worker, path
        case requestedModel = "requested_model"
    }

    init(worker: String, path: String, requestedModel: String?) {
        self.worker = worker
        self.path = path
        self.requestedModel = requestedModel
    }

    init(_ body: Data) throws {
        self = try JSONDecoder().decode(WorkerAnswer.self, from: body)
    }
}
