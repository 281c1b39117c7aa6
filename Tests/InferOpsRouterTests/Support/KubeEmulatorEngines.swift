import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsTestSupport

/// What the router tests ask of the emulator: engines they can see requests on, at their pod IPs.
extension KubeEmulator {
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
