import Foundation
import InferOpsTestSupport
import Testing

/// `/infer status <model> in <env>` pinpoints each replica against the Kubernetes emulator: the
/// states are made the way an operator might, with the real helm changing the release behind
/// InferOps' back, and the report read through `inferops exec`.
@Suite("End to end", .serialized)
struct ReplicaStatusEndToEndTests {
    @Test("Status names each replica's state and the next step: image pull, OOMKilled crash loop, unschedulable, a hung engine")
    func replicaStates() throws {
        let sandbox = try Sandbox(helm: .helm4)
        let deployed = try sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(deployed.status == 0, "\(deployed.output)")
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        func upgrade(_ sets: [String]) throws {
            let result = try sandbox.helmRun(
                ["upgrade", "llama-3-8b-staging", chart, "--namespace", "inference-staging", "--reuse-values"]
                    + sets.flatMap { ["--set", $0] })
            #expect(result.status == 0, "\(result.output)")
        }
        func status() throws -> String {
            try sandbox.exec("/infer status llama-3-8b in staging", as: "carol").output
        }
        func eventuallyStatus(_ what: String, timeout: Duration = .seconds(60), _ matches: (String) -> Bool) throws -> String {
            var last = ""
            do {
                try eventually(what, timeout: timeout) {
                    last = try status()
                    return matches(last)
                }
            } catch {
                Issue.record("the last report: \(last)")
                throw error
            }
            return last
        }

        var report = try eventuallyStatus("one replica serving") { $0.contains("(1 of 1 serving)") && $0.contains(": serving") }

        // A new revision whose image cannot be pulled: it waits in ImagePullBackOff beside the old replica.
        try upgrade([#"podAnnotations.inferops\.dev/simulate-image-pull-error=true"#])
        report = try eventuallyStatus("the image pull failing") { $0.contains(": image pull failing (ImagePullBackOff") }
        #expect(report.contains("imagePullSecrets"), "\(report)")
        #expect(report.contains(": serving"), "the old replica still serves: \(report)")

        // One that runs out of memory: a crash loop with its last exit.
        try upgrade([#"podAnnotations.inferops\.dev/simulate-image-pull-error=false"#, #"podAnnotations.inferops\.dev/simulate-failure=oom"#])
        report = try eventuallyStatus("the OOMKilled crash loop") { $0.contains(": crashing (CrashLoopBackOff: OOMKilled") }
        #expect(report.contains("raise `resources.memory`") || report.contains("raise resources.memory"), "\(report)")

        // More replicas than GPUs: the scheduler's own message.
        try upgrade([#"podAnnotations.inferops\.dev/simulate-failure=false"#, "replicaCount=12"])
        report = try eventuallyStatus("an unschedulable replica") { $0.contains(": unschedulable (0/") && $0.contains("nodes are available") }
        #expect(report.contains("Insufficient nvidia.com/gpu"), "\(report)")
        #expect(report.contains("once GPUs free up"), "\(report)")

        // A replica ready by its probe whose engine never answers a completion.
        try upgrade(["replicaCount=1", #"podAnnotations.inferops\.dev/simulate-hang=true"#])
        report = try eventuallyStatus("the hung engine", timeout: .seconds(90)) { $0.contains(": not answering (") }
        #expect(report.contains("kubectl delete pod"), "\(report)")
    }
}
