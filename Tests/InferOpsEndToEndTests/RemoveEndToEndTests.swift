import Foundation
import Testing

/// `/infer remove` with the real helm against the emulator: the GPUs a model held are free again.
@Suite("Remove end to end", .serialized)
struct RemoveEndToEndTests {
    @Test("Removing a model uninstalls its release and frees its GPUs", arguments: HelmBinary.allCases)
    func removeFreesGPUs(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        let deploy = try sandbox.exec("/infer deploy llama-3-70b to staging --set replicaCount=2")
        #expect(deploy.status == 0, "\(deploy.output)")

        // Every GPU is taken: the next deploy is refused and told how to free some.
        let refused = try sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("/infer remove <model> from staging"), "\(refused.output)")

        let remove = try sandbox.exec(#"/infer remove llama-3-70b from staging --reason "make room""#)
        #expect(remove.status == 0, "\(remove.output)")
        #expect(remove.output.contains("helm uninstall --wait"), "\(remove.output)")
        #expect(
            remove.output.contains("Removed llama-3-70b from staging: 8 GPUs freed; 8 of 8 GPUs are free now."),
            "\(remove.output)")
        let status = try sandbox.helmRun(["status", "llama-3-70b-staging", "--namespace", "inference-staging"])
        #expect(status.status != 0)
        #expect(status.output.contains("not found"), "\(status.output)")

        let again = try sandbox.exec("/infer remove llama-3-70b from staging")
        #expect(again.output.contains("llama-3-70b is not deployed in staging, so there is nothing to remove."))

        let audit = try sandbox.auditLines().filter { $0["action"] as? String == "remove" }
        #expect(audit.compactMap { $0["outcome"] as? String } == ["accepted", "succeeded", "accepted", "failed"])
    }
}
