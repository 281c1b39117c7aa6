import Foundation
import InferOpsCore
import Testing

@testable import InferOpsHelm

/// `status -o json` of Helm 3.19.0: no `chart`, `info.deleted` present and empty.
let status3 = #"""
    {"name":"llama-staging","info":{"first_deployed":"2026-11-29T01:07:28.123456789Z","last_deployed":"2026-11-29T01:07:30.25426763Z","deleted":"","description":"Upgrade complete","status":"deployed","notes":"Endpoint: llama-staging.models.svc.cluster.local:8000\n"},"config":{"engine":{"env":[{"name":"HF_TOKEN","value":"hf_dontparseme"}],"replicas":2}},"manifest":"---\n# Source: vllm-engine/templates/service.yaml\napiVersion: v1\nkind: Service\n","version":2,"namespace":"models"}
    """#

/// `status -o json` of Helm 4.1.4: `apply_method`, `info.resources`, no empty `deleted`.
let status4 = #"""
    {"name":"llama-staging","info":{"first_deployed":"2026-11-29T01:07:28.123456789+01:00","last_deployed":"2026-11-29T02:07:30.25426763+01:00","description":"Upgrade \"llama-staging\" failed: resource Deployment/models/llama-staging-engine not ready. status: InProgress, message: Available: 0/1\ncontext deadline exceeded","status":"failed","resources":{"v1/ConfigMap":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"llama-staging-config","namespace":"models"},"data":{"MODEL":"meta-llama/Llama-3.1-8B-Instruct"}}],"v1/Deployment":[{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"llama-staging-engine","namespace":"models","generation":3},"spec":{"replicas":1},"status":{"observedGeneration":3,"replicas":1}}],"v1/Pod(related)":[{"apiVersion":"v1","kind":"PodList","items":[],"metadata":{}}],"v1/Service":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"llama-staging","namespace":"models"},"spec":{"clusterIP":"10.96.0.17"}}]}},"config":{"engine":{"replicas":1}},"manifest":"---\n","version":3,"namespace":"models","apply_method":"ssa"}
    """#

/// `upgrade --install -o json`: the whole release, chart included.
let upgradeOutput = #"""
    {"name":"llama-staging","info":{"first_deployed":"2026-11-29T01:07:28.123456789Z","last_deployed":"2026-11-29T01:07:28.123456789Z","deleted":"","description":"Install complete","status":"deployed","notes":""},"chart":{"metadata":{"name":"vllm-engine","version":"0.1.0","description":"A vLLM engine","apiVersion":"v2","appVersion":"0.6.3","type":"application"},"lock":null,"templates":[{"name":"templates/deployment.yaml","modtime":"2026-11-29T01:00:00Z","data":"YXBpVmVyc2lvbjogYXBwcy92MQo="}],"values":{"replicas":1},"schema":null,"files":[]},"config":{"apiKey":"dontparseme"},"manifest":"---\n","version":1,"namespace":"models","apply_method":"ssa"}
    """#

/// `history -o json`: identical in both versions.
let history = #"""
    [{"revision":1,"updated":"2026-11-29T01:07:28.123456789Z","status":"superseded","chart":"vllm-engine-0.1.0","app_version":"0.6.3","description":"Install complete"},{"revision":2,"updated":"2026-11-29T01:08:01.5Z","status":"failed","chart":"vllm-engine-0.1.0","app_version":"0.6.3","description":"Upgrade \"llama-staging\" failed: context deadline exceeded"},{"revision":3,"updated":"2026-11-29T01:09:12.000000001Z","status":"deployed","chart":"vllm-engine-0.1.0","app_version":"0.6.3","description":"Rollback to 1"},{"revision":4,"updated":"2026-11-29T01:10:00Z","status":"pending-upgrade","chart":"vllm-engine-0.2.0","description":"Preparing upgrade"}]
    """#

@Suite("Reading helm's JSON output")
struct HelmOutputTests {
    func date(_ text: String) -> Date { RFC3339.date(from: text)! }

    @Test("status of Helm 3")
    func statusV3() throws {
        let status = try HelmOutput.release(from: Data(status3.utf8), command: "status")
        #expect(
            status
                == ReleaseStatus(
                    name: "llama-staging",
                    namespace: "models",
                    revision: 2,
                    state: .deployed,
                    description: "Upgrade complete",
                    chart: nil,
                    appVersion: nil,
                    lastDeployed: date("2026-11-29T01:07:30.25426763Z")
                )
        )
    }

    @Test("status of Helm 4, with resources, an offset time and a failed revision")
    func statusV4() throws {
        let status = try HelmOutput.release(from: Data(status4.utf8), command: "status")
        #expect(status.revision == 3)
        #expect(status.state == .failed)
        #expect(status.description.hasPrefix("Upgrade \"llama-staging\" failed: resource Deployment/models/"))
        #expect(status.lastDeployed == date("2026-11-29T01:07:30.25426763Z"))
    }

    @Test("upgrade output names the chart")
    func upgrade() throws {
        let status = try HelmOutput.release(from: Data(upgradeOutput.utf8), command: "upgrade")
        #expect(status.chart == "vllm-engine-0.1.0")
        #expect(status.appVersion == "0.6.3")
        #expect(status.state == .deployed)
        #expect(status.revision == 1)
    }

    @Test(
        "pending states are read from info.status",
        arguments: [
            ("pending-install", ReleaseState.pendingInstall), ("pending-upgrade", .pendingUpgrade),
            ("pending-rollback", .pendingRollback), ("uninstalling", .uninstalling),
            ("something-new", .unknown("something-new")),
        ]
    )
    func states(_ text: String, _ state: ReleaseState) throws {
        let json = status3.replacingOccurrences(of: #""status":"deployed""#, with: #""status":"\#(text)""#)
        #expect(try HelmOutput.release(from: Data(json.utf8), command: "status").state == state)
    }

    @Test("history, oldest first, with nanosecond times and a missing app_version")
    func historyRows() throws {
        let rows = try HelmOutput.history(from: Data(history.utf8))
        #expect(rows.map(\.revision) == [1, 2, 3, 4])
        #expect(rows.map(\.state) == [.superseded, .failed, .deployed, .pendingUpgrade])
        #expect(rows[2].description == "Rollback to 1")
        #expect(rows[3].appVersion == "")
        #expect(rows[3].chart == "vllm-engine-0.2.0")
        #expect(rows[0].updated == date("2026-11-29T01:07:28.123456789Z"))
        let array = try JSONSerialization.jsonObject(with: Data(history.utf8)) as! [Any]
        let reversed = try JSONSerialization.data(withJSONObject: Array(array.reversed()))
        #expect(try HelmOutput.history(from: reversed).map(\.revision) == [1, 2, 3, 4])
        #expect(try HelmOutput.history(from: Data("[]".utf8)).isEmpty)
    }

    @Test("malformed output is an error that does not quote the output")
    func malformed() {
        do {
            _ = try HelmOutput.release(
                from: Data(#"{"name":"x","config":{"token":"hf_leak"}}"#.utf8),
                command: "status"
            )
            Issue.record("expected an error")
        } catch let error as HelmOutput.MalformedOutput {
            #expect(!error.description.contains("hf_leak"))
            #expect(error.description.contains("status"))
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: HelmOutput.MalformedOutput.self) { try HelmOutput.history(from: Data("Error: nope".utf8)) }
    }

    @Test("RFC 3339 with 0 to 9 fractional digits and any offset")
    func rfc3339() {
        let base = Date(timeIntervalSince1970: 1_795_914_450)  // 2026-11-29T01:07:30Z
        #expect(RFC3339.date(from: "2026-11-29T01:07:30Z") == base)
        #expect(RFC3339.date(from: "2026-11-29T02:07:30+01:00") == base)
        #expect(RFC3339.date(from: "2026-11-28T20:37:30-04:30") == base)
        let nanos = RFC3339.date(from: "2026-11-29T01:07:30.25426763Z")!
        #expect(abs(nanos.timeIntervalSince(base) - 0.25426763) < 1e-6)
        #expect(RFC3339.date(from: "2026-11-29 01:07:30.25426763 +0000 UTC") == nil)
        #expect(RFC3339.date(from: "") == nil)
        // Days are counted across leap years and before 1970.
        #expect(RFC3339.date(from: "2024-02-29T00:00:00Z") == Date(timeIntervalSince1970: 1_709_164_800))
        #expect(RFC3339.date(from: "1969-12-31T23:59:59Z") == Date(timeIntervalSince1970: -1))
        #expect(RFC3339.date(from: "2000-03-01t00:00:00z") == Date(timeIntervalSince1970: 951_868_800))
        for malformed in [
            "2026-11-29T01:07:30", "2026-11-29T01:07:30.Z", "2026-13-01T00:00:00Z", "2026-11-29T24:00:00Z",
            "2026-11-29T01:07:30+0100", "2026-11-29T01:07:30Zjunk", "26-11-29T01:07:30Z",
        ] {
            #expect(RFC3339.date(from: malformed) == nil, "\(malformed)")
        }
    }
}
