import Foundation
import InferOpsTestSupport
import Testing

/// The whole production flow as one piped console session, against the Kubernetes emulator, the
/// real helm and a real vllm-router per environment: promotion refused without evidence, deploy
/// to staging, promotion refused from the wrong channel, asked from production's, refused to its
/// own requester, approved by another, deployed to production with staging's chart and values.
@Suite("End to end", .serialized)
struct PromotionEndToEndTests {
    @Test("A promotion carries staging's verified chart and values to production once someone else approves it")
    func promotedAndApproved() throws {
        let sandbox = try Sandbox(helm: .helm4)
        let stagingRouter = try VLLMRouterProcess()
        let productionRouter = try VLLMRouterProcess()
        defer {
            stagingRouter.stop()
            productionRouter.stop()
        }
        let root = repositoryRoot.path
        sandbox.extraTopLevel = """
            server:
              host: 127.0.0.1
              port: \(try freePort())
              reconcileInterval: 1s
            """
        sandbox.extraEnvironment = """
            router:
                  url: \(stagingRouter.baseURL)
                  autoRegister: true
            """
        sandbox.extraEnvironments = """
              production:
                kubeContext: emulator
                namespace: inference-production
                chart: \(root)/deploy/charts/vllm-engine
                valuesFiles: [\(root)/deploy/values/sandbox.yaml]
                replicas: 2
                readinessBudget: 40s
                channels: [prod-deploys]
                verification:
                  warmupRequests: 1
                  requestTimeout: 5s
                  latencyTarget: 2s
                router:
                  url: \(productionRouter.baseURL)
                  autoRegister: true

            """
        try sandbox.writeConfiguration()

        let session = try run(sandbox.inferops, ["serve", "--config", sandbox.config], input: """
            /in prod-deploys
            /infer promote llama-3-8b to production
            /in console
            /infer lock staging --reason "load test"
            /as bob
            /infer deploy llama-3-8b to staging
            /as alice
            /infer unlock staging
            /infer deploy llama-3-8b to staging --set podAnnotations.inferops\\.dev/simulate-ready-after-seconds=2
            /infer promote llama-3-8b to production
            /in prod-deploys
            /infer promote llama-3-8b to production
            /infer approve llama-3-8b in production
            /as carol
            /infer approve llama-3-8b in production --reason "staging verified it"
            /infer status llama-3-8b in production

            """)
        let output = session.output
        // Refused: no evidence (line 2), the lock (6), the wrong channel (10), the requester's own approval (13).
        #expect(session.status == 2, "\(output)")
        #expect(output.contains("lines 2 `/infer promote llama-3-8b to production` refused")
                    || output.contains("line 2 `/infer promote llama-3-8b to production` refused"), "\(output)")
        #expect(output.contains("llama-3-8b has never been deployed to `staging`, so there is nothing verified to promote."))
        #expect(output.contains("`staging` is locked by @alice: load test."), "\(output)")
        #expect(output.contains("Changes to `production` are taken only in `prod-deploys`, not in `console`."))
        #expect(output.contains("Approval needed: promote in production"), "\(output)")
        #expect(output.contains("promoted from: op-"), "\(output)")
        #expect(output.contains("(same as the source)"))
        #expect(output.contains("success criteria: 2 warm-up requests, test completion within 2.0 s"), "\(output)")
        #expect(output.contains("@alice asked for op-"), "\(output)")
        #expect(output.contains("Approved by @carol: staging verified it (1 of 1). It runs now."), "\(output)")
        #expect(output.contains("Deployed llama-3-8b to production: revision 1"), "\(output)")
        #expect(output.contains("line 13 `/infer approve llama-3-8b in production` refused"), "\(output)")

        // Helm's own records: the same chart version and the same model values, production's replicas.
        func chart(_ release: String, _ namespace: String) throws -> String? {
            let listed = try sandbox.helmRun(["list", "--namespace", namespace, "-o", "json"])
            let releases = try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]]
            return releases?.first { $0["name"] as? String == release }?["chart"] as? String
        }
        func values(_ release: String, _ namespace: String) throws -> [String: Any] {
            let got = try sandbox.helmRun(["get", "values", release, "--namespace", namespace, "-o", "json"])
            var values = try JSONSerialization.jsonObject(with: Data(got.output.utf8)) as? [String: Any] ?? [:]
            values["replicaCount"] = nil
            values["readiness"] = nil
            var labels = values["labels"] as? [String: Any] ?? [:]
            labels["environment"] = nil
            values["labels"] = labels
            return values
        }
        let stagingChart = try #require(try chart("llama-3-8b-staging", "inference-staging"))
        #expect(try chart("llama-3-8b-production", "inference-production") == stagingChart)
        let staging = try values("llama-3-8b-staging", "inference-staging")
        let production = try values("llama-3-8b-production", "inference-production")
        #expect(NSDictionary(dictionary: staging).isEqual(to: production), "\(staging) vs \(production)")
        // A value set in staging with `--set` is part of what was verified, so production gets it too.
        #expect((production["podAnnotations"] as? [String: Any])?["inferops.dev/simulate-ready-after-seconds"] as? Int == 2,
                "\(production)")
        let replicas = try sandbox.helmRun(["get", "values", "llama-3-8b-production", "--namespace", "inference-production",
                                            "-o", "json"])
        #expect(replicas.output.contains("\"replicaCount\":2"), "\(replicas.output)")

        // Routed by production's own router, never by staging's.
        let workers = request("GET", "\(productionRouter.baseURL)/workers").body
        #expect(workers.contains("llama-3-8b"), "\(workers)")
        let stagingWorkers = request("GET", "\(stagingRouter.baseURL)/workers").body
        #expect(!stagingWorkers.contains("inference-production"))

        // The service levels of the session, for dashboards.
        let slo = try run(sandbox.inferops, ["slo", "--config", sandbox.config, "--json", "--env", "production"])
        #expect(slo.status == 0, "\(slo.output)")
        // The configuration's warnings (staging, canary and quick share a router here) come first.
        let json = try #require(slo.output.firstIndex(of: "{").map { slo.output[$0...] }, "\(slo.output)")
        let report = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let objectives = report?["objectives"] as? [[String: Any]] ?? []
        let ready = try #require(objectives.first { $0["key"] as? String == "deploy_ready" })
        #expect(ready["count"] as? Int == 1 && ready["met"] as? Int == 1 && ready["meetsTarget"] as? Bool == true, "\(ready)")

        let audit = try sandbox.auditLines().map { "\($0["actor"] as? String ?? "") \($0["action"] as? String ?? "") \($0["outcome"] as? String ?? "")" }
        #expect(audit.contains("alice promote refused"))
        #expect(audit.contains("alice promote approval-requested"))
        #expect(audit.contains("carol approve counted"))
        #expect(audit.contains("alice promote succeeded"), "\(audit)")
    }
}
