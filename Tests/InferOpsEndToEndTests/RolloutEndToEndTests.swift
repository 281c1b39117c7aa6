import Foundation
import InferOpsTestSupport
import Testing

/// Redeploys on a full GPU pool, with the real helm and the emulator's scheduler: a template change
/// under the default rolling update needs a spare GPU and is refused before Helm; with `maxSurge: 0`
/// (set through the chart's `strategy` value) the same change goes through.
@Suite("End to end: rollouts on a full pool", .serialized)
struct RolloutEndToEndTests {
    static let release = "llama-3-70b-staging"
    static let newTemplate = #"--set podAnnotations.inferops\.dev/simulate-ready-after-seconds=0"#

    /// One 4-GPU node holding the one 4-GPU replica of llama-3-70b.
    func fullPool(_ helm: HelmBinary) throws -> Sandbox {
        let sandbox = try Sandbox(helm: helm, gpuNodes: 1, gpusPerNode: 4)
        let first = try sandbox.exec("/infer deploy llama-3-70b to staging")
        #expect(first.status == 0, "\(first.output)")
        return sandbox
    }

    @Test(
        "A template-changing redeploy on a full pool is refused before Helm, with the numbers",
        arguments: HelmBinary.allCases
    )
    func templateChangeRefused(_ helm: HelmBinary) throws {
        let sandbox = try fullPool(helm)
        let redeploy = try sandbox.exec("/infer deploy llama-3-70b to staging \(Self.newTemplate)")
        #expect(redeploy.status == 2, "\(redeploy.output)")
        #expect(redeploy.output.contains("Not enough free GPUs for llama-3-70b-staging"), "\(redeploy.output)")
        #expect(
            redeploy.output.contains(
                "needs 1 × 4 = 4 nvidia.com/gpu; free 0 of 4 allocatable (+4 held by this release) (gpu-node-1 0/4 free)"
            ),
            "\(redeploy.output)"
        )
        #expect(
            redeploy.output.contains(
                "rolling update with maxSurge 25% (1 pod) and maxUnavailable 25% (0 pods) of 1 starts a new pod before "
                    + "any old pod stops: it needs 4 free GPUs on one node"
            ),
            "\(redeploy.output)"
        )
        #expect(redeploy.output.contains("maxSurge: 0, maxUnavailable: 1"), "\(redeploy.output)")
        #expect(!redeploy.output.contains("Running helm upgrade"))
        #expect(try sandbox.releaseState(Self.release, namespace: "inference-staging")?.revision == 1)

        // A redeploy that keeps the pod template needs no GPU beyond what the release holds.
        let same = try sandbox.exec("/infer deploy llama-3-70b to staging")
        #expect(same.status == 0, "\(same.output)")
        #expect(same.output.contains("the pod template is unchanged"), "\(same.output)")
    }

    @Test("With maxSurge 0 the same template change goes through on the full pool", arguments: HelmBinary.allCases)
    func maxSurgeZeroGoesThrough(_ helm: HelmBinary) throws {
        let sandbox = try fullPool(helm)
        let redeploy = try sandbox.exec(
            "/infer deploy llama-3-70b to staging \(Self.newTemplate) --set strategy.rollingUpdate.maxSurge=0 "
                + "--set strategy.rollingUpdate.maxUnavailable=1"
        )
        #expect(redeploy.status == 0, "\(redeploy.output)")
        #expect(redeploy.output.contains("GPU capacity is enough"), "\(redeploy.output)")
        #expect(redeploy.output.contains("stops 1 old pod before new ones need their GPUs"), "\(redeploy.output)")
        #expect(
            redeploy.output.contains("Deployed llama-3-70b to staging: revision 2, verified in"),
            "\(redeploy.output)"
        )
        #expect(try sandbox.releaseState(Self.release, namespace: "inference-staging")?.status == "deployed")
    }

    @Test(
        "A rollout the scheduler cannot place fails as a scheduling failure, with its message",
        arguments: HelmBinary.allCases
    )
    func schedulingFailureNamed(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm, gpuNodes: 1, gpusPerNode: 4)
        let first = try sandbox.exec("/infer deploy llama-3-70b to quick")
        #expect(first.status == 0, "\(first.output)")
        // 4 free GPUs on a node the chart's nodeSelector does not match: the capacity check counts
        // them, the scheduler cannot use them, and Helm times out waiting.
        let added = request(
            "POST",
            "\(sandbox.emulatorURL)/_emu/nodes",
            json: #"{"add":{"name":"gpu-unlabelled","gpus":4,"labels":{"nvidia.com/gpu.present":"false"}}}"#
        )
        #expect(added.status == 200, "\(added.body)")
        let redeploy = try sandbox.exec("/infer deploy llama-3-70b to quick \(Self.newTemplate)")
        #expect(redeploy.status == 1, "\(redeploy.output)")
        #expect(
            redeploy.output.contains("The new pods could not be scheduled: llama-3-70b-quick-"),
            "\(redeploy.output)"
        )
        #expect(
            redeploy.output.contains(
                "stayed Pending: 0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's "
                    + "node affinity/selector."
            ),
            "\(redeploy.output)"
        )
        #expect(!redeploy.output.contains("did not become ready within the readiness budget"), "\(redeploy.output)")
    }

    @Test("Progress during a rollout counts the new pods and shows the old one apart", arguments: HelmBinary.allCases)
    func progressCountsTheNewRevision(_ helm: HelmBinary) throws {
        let sandbox = try Sandbox(helm: helm)
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging").status == 0)
        let redeploy = try sandbox.exec(
            #"/infer deploy llama-3-8b to staging --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=4"#
        )
        #expect(redeploy.status == 0, "\(redeploy.output)")
        #expect(redeploy.output.contains("0 of 1 new replicas ready; 1 old still serving"), "\(redeploy.output)")
        // The old pod, ready all along, never counts as the new revision's progress: "1 of 1" only
        // once no pod is left waiting.
        let lines = redeploy.output.split(separator: "\n")
        #expect(
            !lines.contains { $0.contains("1 of 1 replicas ready") && $0.contains("not ready yet") },
            "\(redeploy.output)"
        )
    }
}
