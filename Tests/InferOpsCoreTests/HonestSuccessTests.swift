import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// A deploy of a routed model succeeds only when the router routes exactly its new replicas, each
/// checked: a fault at any step gives a failure that names it, never a success.
@Suite(.timeLimit(.minutes(1))) struct HonestSuccessTests {
    static let model = "llama-3-8b"
    static let old = RouterWorker(url: "http://10.0.0.1:8000", model: model)
    static let new = RouterWorker(url: "http://10.0.0.2:8000", model: model)

    /// Routed at the old replica (10.0.0.1); the deploy's new replica is at 10.0.0.2.
    static func harness() async throws -> Harness {
        let h = Harness(routers: false)
        h.serve(model, in: "staging", at: "10.0.0.1")
        try await h.register(model, in: "staging", .enabled, at: "10.0.0.1")
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [
            PodSnapshot(name: "llama-3-8b-staging-new", phase: "Running", ready: true, node: "gpu-a", address: "10.0.0.2"),
        ]), for: "llama-3-8b-staging")
        return h
    }

    @Test func withoutAFaultTheDeployEndsRoutedToExactlyTheNewReplica() async throws {
        let h = try await Self.harness()
        let outcome = await h.run("/infer deploy llama-3-8b to staging")
        #expect(outcome.succeeded, "\(outcome)")
        #expect(h.router.workers(of: Self.model) == [Self.new])
        // Where the time went, in the last reply and in the operation's record.
        let reply = try #require(h.chat.posts.last).reply
        let time = try #require(reply.fields.first { $0.label == "time" }?.value.plainText)
        #expect(time.contains("checks") && time.contains("loading until ready") && time.contains("verification")
                && time.contains("routing"), "\(time)")
        let record = try #require(await h.store.allOperations().first)
        #expect(await h.store.journal(of: record.id).contains { $0.message == "Time: " + time })
    }

    @Test func aNewReplicaThatDoesNotAnswerItsCheckFailsTheDeployAndKeepsTheRouterServing() async throws {
        let h = try await Self.harness()
        h.engines.script("llama-3-8b-staging-new", EngineScript(servedModels: [Self.model], completions: [.status(500)]))

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(!outcome.succeeded, "\(outcome)")
        #expect(outcome.message?.contains("No replica of llama-3-8b in staging serves and answered a test completion") == true,
                "\(outcome)")
        // Not routed to nothing: the old worker stays until a replica that answers replaces it.
        #expect(h.router.workers(of: Self.model) == [Self.old])
        #expect(!h.chat.transcript.contains("✓"), "\(h.chat.transcript)")
    }

    @Test func aRouterDownWhenTheDeployRoutesFailsIt() async throws {
        let h = try await Self.harness()
        h.router.goDown(RouterUnavailable("connection refused"))

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(!outcome.succeeded, "\(outcome)")
        #expect(outcome.message?.contains("The router is unreachable") == true, "\(outcome)")
    }

    /// The router answers the removal but keeps the old worker (it does not leave): the deploy
    /// does not call that success.
    @Test func anOldWorkerThatStaysInTheRouterFailsTheDeploy() async throws {
        let h = try await Self.harness()
        h.router.keep(Self.old.url)

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(!outcome.succeeded, "\(outcome)")
        #expect(outcome.message == "The router does not route the new replicas: the router routes "
                + "http://10.0.0.1:8000, http://10.0.0.2:8000, not the new replicas http://10.0.0.2:8000.", "\(outcome)")
    }

    /// An old-revision replica still serving when Helm reports the deploy done (its ReplicaSet not
    /// yet scaled down) is not a new replica: routing it is not the plan.
    @Test func anOldRevisionStillRoutedFailsTheDeploy() async throws {
        let h = try await Self.harness()
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [
            PodSnapshot(name: "llama-3-8b-staging-old", phase: "Running", ready: true, node: "gpu-a", address: "10.0.0.1",
                        current: false),
            PodSnapshot(name: "llama-3-8b-staging-new", phase: "Running", ready: true, node: "gpu-a", address: "10.0.0.2"),
        ]), for: "llama-3-8b-staging")

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(!outcome.succeeded, "\(outcome)")
        #expect(outcome.message?.contains("not the new replicas http://10.0.0.2:8000") == true, "\(outcome)")
    }
}
