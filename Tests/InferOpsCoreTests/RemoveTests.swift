import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `remove`: out of the router first, then `helm uninstall --wait`, then the GPUs checked free.
@Suite(.timeLimit(.minutes(1))) struct RemoveTests {
    static let release = "llama-3-8b-staging"

    /// While Helm uninstalls, the router already denies the model (recorded as removed by the
    /// requester, with the reason) and the pods have not been looked at; after it, they are.
    @Test func removeTakesTheModelOutOfTheRouterThenUninstallsThenChecksTheGPUs() async throws {
        let h = Harness(routers: false)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        try await h.register("llama-3-8b", in: "staging", .enabled, at: "10.0.0.1")
        h.cluster.setCapacities([
            FakeCluster.nodes(("gpu-a", 8, 1), ("gpu-b", 8, 0), requestedByRelease: [Self.release: 1]),
            FakeCluster.nodes(("gpu-a", 8, 0), ("gpu-b", 8, 0)),
        ])
        let gate = Gate()
        h.releases.script(.uninstall, .hold(gate))

        let running = h.start("remove llama-3-8b from staging --reason \"make room for qwen\"")
        try await gate.waitUntilReached()

        #expect(h.router.denies("llama-3-8b"))
        #expect(h.router.workers(of: "llama-3-8b").allSatisfy { $0.url.contains("/deny/") })
        let removed = try #require(await h.registration("llama-3-8b", in: "staging"))
        #expect(removed.state == .removed)
        #expect(removed.changedBy == Fixtures.admin)
        #expect(removed.reason == "make room for qwen")
        #expect(h.cluster.workloadCalls == 0)

        // Helm's --wait returns once the pods are gone.
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 0, pods: []), for: Self.release)
        gate.open()
        let outcome = await running.value

        let id = try #require(outcome.operation)
        #expect(outcome == .completed(id))
        #expect(h.cluster.workloadCalls == 1)
        #expect(try await h.releases.status(h.target("llama-3-8b", in: "staging")) == nil)
        #expect(
            await h.store.stateHistory(of: id)
                == [.planned, .queued, .prechecking, .registering, .verifying, .applying, .verifying, .succeeded])
        #expect(illegalMoves(await h.store.stateHistory(of: id)).isEmpty)
        #expect(
            h.chat.posts(for: id).last?.title
                == "Removed llama-3-8b from staging: 1 GPU freed; 16 of 16 GPUs are free now.")
        let audit = await h.store.auditLog()
        #expect(audit.map(\.action) == ["remove", "remove"])
        #expect(audit.map(\.outcome) == ["accepted", "succeeded"])
        #expect(audit.allSatisfy { $0.subject == "llama-3-8b" && $0.environment == "staging" && $0.operation == id })
    }

    /// Without a registration (or a router) the router is left alone; pods that outlive Helm mean
    /// the GPUs are not free, and the remove says so instead of succeeding.
    @Test func removeFailsWhenThePodsOutliveTheUninstall() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])

        let outcome = await h.run("remove llama-3-8b from staging")

        let id = try #require(outcome.operation)
        #expect(
            outcome.message
                == "Helm uninstalled llama-3-8b-staging, but 1 of its pods is still there after 30.0 s, so their GPUs are not free yet.")
        #expect(h.releases.calls(.uninstall).count == 1)
        #expect(await h.record(id)?.state == .failed)
        #expect(await h.store.auditLog().map(\.outcome) == ["accepted", "failed"])
    }

    @Test func removeOfAModelThatIsNotDeployedIsRefused() async throws {
        let h = Harness()

        let outcome = await h.run("remove llama-3-8b from staging")

        #expect(outcome.message == "llama-3-8b is not deployed in staging, so there is nothing to remove.")
        #expect(h.chat.transcript.contains("`/infer status in staging` shows what runs there."))
        #expect(h.releases.changingCalls.isEmpty)
    }

    /// The staging deployer may remove in staging, not in production; the denial is audited and nothing runs.
    @Test func removeTakesTheRemovePermission() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "production"), [.deployed])

        let outcome = await h.run("remove llama-3-8b from production", as: Fixtures.deployer)

        guard case .refused = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(h.releases.changingCalls.isEmpty)
        let audit = await h.store.auditLog()
        #expect(audit.map(\.action) == ["remove"])
        #expect(audit.map(\.outcome) == ["denied"])
        #expect(Fixtures.policy.allows(Fixtures.deployer, "remove", in: "staging"))
        #expect(!Fixtures.policy.allows(Fixtures.releaser, "remove", in: "dev"))
    }

    @Test func removeRespectsAnotherUsersLock() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        #expect(await h.run("lock staging --reason \"load test\"", as: Fixtures.deployer).message == nil)

        let outcome = await h.run("remove llama-3-8b from staging")

        #expect(outcome.message == "`staging` is locked by @U0DEPLOYER: load test.")
        #expect(h.releases.changingCalls.isEmpty)
        #expect(await h.store.auditLog().last?.outcome == "refused")
    }
}
