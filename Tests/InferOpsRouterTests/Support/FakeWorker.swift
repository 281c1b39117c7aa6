import Foundation
import InferOpsHTTP

/// `Tests/RouterHarness/fake_worker.py`: a stdlib fake vLLM worker that answers every path and
/// reports which worker answered, on which path, for which model.
final class FakeWorker {
    let name: String
    let model: String
    let port: Int
    private let process: Process
    private let directory: URL
    private let lifeline = Pipe()

    var url: String { "http://127.0.0.1:\(port)" }

    /// - Parameter strict: answer a `model` other than `model` with vLLM's 404, as a real engine does.
    init(name: String, model: String, strict: Bool = false) async throws {
        let python = try requireExecutable("python3")
        let script = repositoryRoot.appendingPathComponent("Tests/RouterHarness/fake_worker.py")
        guard FileManager.default.fileExists(atPath: script.path) else {
            throw TestFailure("the fake worker is missing: expected \(script.path)")
        }
        self.name = name
        self.model = model
        directory = try temporaryDirectory("fake-worker")
        let portFile = directory.appendingPathComponent("port")
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments =
            [script.path, "--name", name, "--model", model, "--port-file", portFile.path] + (strict ? ["--strict"] : [])
        process.standardInput = lifeline
        process.standardOutput = FileHandle.nullDevice
        let log = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()

        port = try await waitForPortFile(portFile, of: process, log: log, within: .seconds(20), what: "fake worker \(name)")
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
        stopProcess(process)
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
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
