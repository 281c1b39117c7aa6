import Foundation
import InferOpsCore
import InferOpsHTTP

/// The project's Kubernetes API emulator (`Tests/KubeEmulator`) as a child process: pods get their
/// own loopback IPs with a fake vLLM engine on port 8000, so a router reaches replicas as in a cluster.
final class KubeEmulatorProcess {
    let port: Int
    private let process: Process
    private let directory: URL
    private let lifeline = Pipe()

    var server: String { "http://127.0.0.1:\(port)" }

    init(readyAfter: Double = 0.2) async throws {
        let python = try requireExecutable("python3")
        let emulator = repositoryRoot.appendingPathComponent("Tests/KubeEmulator")
        guard FileManager.default.fileExists(atPath: emulator.appendingPathComponent("kubeemu/__main__.py").path)
        else {
            throw TestFailure("the Kubernetes API emulator is missing: expected \(emulator.path)/kubeemu")
        }
        directory = try temporaryDirectory("kubeemu")
        let portFile = directory.appendingPathComponent("port")
        let log = directory.appendingPathComponent("stderr")
        // Undo the signal mask children of `swift test` inherit; exit when our end of stdin closes.
        let wrapper = """
            import os, runpy, signal, sys, threading
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
            sys.argv = ["kubeemu"] + sys.argv[1:]
            runpy.run_module("kubeemu", run_name="__main__", alter_sys=True)
            """
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            "-c", wrapper, "--port", "0", "--port-file", portFile.path, "--ready-after", String(readyAfter),
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = emulator.path
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        process.environment = environment
        process.standardInput = lifeline
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()

        port = try await waitForPortFile(
            portFile, of: process, log: log, within: .seconds(30), what: "the Kubernetes API emulator")
    }

    func stop() {
        stopProcess(process)
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }

    /// Creates a vLLM-like Deployment in `default`, serving `servedName`.
    func deploy(_ name: String, servedName: String, replicas: Int, http: any HTTPClient) async throws {
        let manifest = #"""
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "\#(name)"},
             "spec": {"replicas": \#(replicas), "selector": {"matchLabels": {"app": "\#(name)"}},
                      "template": {"metadata": {"labels": {"app": "\#(name)"}},
                                   "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.6.3",
                                            "args": ["--model", "org/\#(name)", "--served-model-name", "\#(servedName)",
                                                     "--port", "8000"],
                                            "ports": [{"name": "http", "containerPort": 8000}]}]}}}}
            """#
        var request = HTTPRequest(
            method: .post,
            url: server + "/apis/apps/v1/namespaces/default/deployments",
            body: Array(manifest.utf8),
            timeout: .seconds(10)
        )
        request.headers.add("Content-Type", "application/json")
        let response = try await http.send(request)
        guard response.isSuccess else { throw TestFailure("creating \(name): \(response.status) \(response.text)") }
    }

    /// One fake engine as `/_emu/engines` reports it.
    struct Engine: Decodable {
        var pod: String
        var podIP: String
        var url: String
        var podReady: Bool
        var requests: [String: Int]
    }

    func engines(http: any HTTPClient) async throws -> [Engine] {
        struct List: Decodable { var engines: [Engine] }
        let response = try await http.send(HTTPRequest(url: server + "/_emu/engines", timeout: .seconds(10)))
        return try JSONDecoder().decode(List.self, from: response.bodyData).engines
    }

    /// The pods' IPs from the Kubernetes API, as the daemon reads them.
    func podIPs(app: String, http: any HTTPClient) async throws -> [String] {
        let response = try await http.send(
            HTTPRequest(
                url: server + "/api/v1/namespaces/default/pods?labelSelector=app%3D\(app)",
                timeout: .seconds(10)
            )
        )
        let list = try JSONDecoder().decode(JSONValue.self, from: response.bodyData)
        guard case .array(let items)? = list["items"] else { return [] }
        return items.compactMap { $0["status"]?["podIP"]?.stringValue }
    }
}
