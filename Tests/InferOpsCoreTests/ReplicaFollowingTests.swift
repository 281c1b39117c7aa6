import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// The order of events around a replica: verify, then route; unroute, then stop; never no worker.
@Suite(.timeLimit(.minutes(1))) struct ReplicaFollowingTests {
    static let model = "llama-3-8b"

    static func pod(_ index: Int, ready: Bool = true, terminating: Bool = false) -> PodSnapshot {
        PodSnapshot(name: "llama-3-8b-staging-\(index)", phase: "Running", ready: ready, node: "gpu-a",
                    address: "10.0.0.\(index)", terminating: terminating)
    }

    static func url(_ index: Int) -> String { "http://10.0.0.\(index):8000" }

    /// Routed at pods 1 and 2, both checked by a first pass.
    static func routedAtTwo() async throws -> (Harness, RouterReconciliation) {
        let h = Harness(routers: false)
        h.serve(model, in: "staging", at: "10.0.0.1")
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 2, pods: [pod(1), pod(2)]), for: "llama-3-8b-staging")
        try await h.register(model, in: "staging", .enabled, at: "10.0.0.1")
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)
        _ = await reconciliation.reconcileOnce()
        #expect(h.router.workers(of: model).map(\.url) == [url(1), url(2)])
        return (h, reconciliation)
    }

    static func staging(_ passes: [RouterReconciliation.Pass]) -> RouterReconciliation.Pass? {
        passes.first { $0.environment == "staging" }
    }

    @Test func aNewReplicaIsRoutedOnlyAfterItAnsweredAWarmUpAndATestCompletion() async throws {
        let (h, reconciliation) = try await Self.routedAtTwo()
        h.engines.script("llama-3-8b-staging-3", .healthy(serving: Self.model))
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 2, pods: [Self.pod(1), Self.pod(2), Self.pod(3)]),
                              for: "llama-3-8b-staging")

        let passes = await reconciliation.reconcileOnce()

        let warmUps = h.configuration.environments["staging"]!.verification.warmupRequests
        #expect(h.engines.requests(to: "/v1/completions", service: "llama-3-8b-staging-3") == warmUps + 1)
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(1), Self.url(2), Self.url(3)])
        #expect(await h.registration(Self.model, in: "staging")?.endpoints == [Self.url(1), Self.url(2), Self.url(3)])
        // Following the replicas is routine, not a repair to announce.
        let pass = try #require(Self.staging(passes))
        #expect(pass.actions.isEmpty && pass.failure == nil, "\(pass)")
        #expect(pass.followed == [.add(RouterWorker(url: Self.url(3), model: Self.model))])

        // Checked once: the next pass asks nothing of it.
        _ = await reconciliation.reconcileOnce()
        #expect(h.engines.requests(to: "/v1/completions", service: "llama-3-8b-staging-3") == warmUps + 1)
    }

    @Test func aReplicaThatFailsItsCheckIsNotRoutedAndIsAskedAgainLater() async throws {
        let (h, reconciliation) = try await Self.routedAtTwo()
        h.engines.script("llama-3-8b-staging-3", EngineScript(
            servedModels: [Self.model], completions: [.status(500), .status(500), .status(500), .status(500), .completion("ok")]))
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 2, pods: [Self.pod(1), Self.pod(2), Self.pod(3)]),
                              for: "llama-3-8b-staging")

        _ = await reconciliation.reconcileOnce()
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(1), Self.url(2)])
        let asked = h.engines.requests(to: "/v1/completions", service: "llama-3-8b-staging-3")
        #expect(asked == 1)

        // Not again at once (a failing engine is not hammered every pass)…
        _ = await reconciliation.reconcileOnce()
        #expect(h.engines.requests(to: "/v1/completions", service: "llama-3-8b-staging-3") == asked)
        // …but after the retry delay, until it answers.
        for _ in 0..<6 {
            h.time.advance(by: .seconds(6))
            _ = await reconciliation.reconcileOnce()
        }
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(1), Self.url(2), Self.url(3)])
    }

    /// A rolling update while the replica being replaced is stopping and the new one's check has
    /// not passed: the stopping replica leaves in the first half of the pass, the other keeps serving.
    @Test func aStoppingReplicaLeavesTheRouterEvenWhileItsReplacementFailsItsCheck() async throws {
        let (h, reconciliation) = try await Self.routedAtTwo()
        h.engines.script("llama-3-8b-staging-3", EngineScript(servedModels: [Self.model], completions: [.unreachable("refused")]))
        h.cluster.setWorkload(WorkloadSnapshot(
            desiredReplicas: 2, pods: [Self.pod(1, terminating: true), Self.pod(2), Self.pod(3)]), for: "llama-3-8b-staging")

        let passes = await reconciliation.reconcileOnce()

        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(2)])
        #expect(Self.staging(passes)?.followed == [.remove(RouterWorker(url: Self.url(1), model: Self.model))])
    }

    /// The only replica is stopping and its replacement has not answered: the stopping one keeps its
    /// traffic (its preStop hook keeps it serving) until the replacement is routed, then leaves.
    @Test func theLastWorkerStaysUntilAReplacementIsRouted() async throws {
        let h = Harness(routers: false)
        h.serve(Self.model, in: "staging", at: "10.0.0.1")
        try await h.register(Self.model, in: "staging", .enabled, at: "10.0.0.1")
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)
        h.cluster.setWorkload(WorkloadSnapshot(
            desiredReplicas: 1, pods: [Self.pod(1, terminating: true), Self.pod(2, ready: false)]), for: "llama-3-8b-staging")

        _ = await reconciliation.reconcileOnce()
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(1)])

        h.cluster.setWorkload(WorkloadSnapshot(
            desiredReplicas: 1, pods: [Self.pod(1, terminating: true), Self.pod(2)]), for: "llama-3-8b-staging")
        let passes = await reconciliation.reconcileOnce()

        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(2)])
        // The new worker went in before the old one came out.
        #expect(Self.staging(passes)?.followed == [
            .add(RouterWorker(url: Self.url(2), model: Self.model)), .remove(RouterWorker(url: Self.url(1), model: Self.model)),
        ])
    }

    /// Replicas come and go during a deploy: the passes follow them while it runs, and leave only a
    /// change of the routing itself (here a `disable` recording its state) to its operation.
    @Test(arguments: [(OperationKind.deploy, OperationState.applying, true), (.rollback, .waitingReady, true),
                      (.promote, .verifying, true), (.deploy, .registering, false), (.disable, .prechecking, false)])
    func followsWhileADeployRunsButNotWhileTheRoutingIsChanged(
        kind: OperationKind, state: OperationState, follows: Bool
    ) async throws {
        let (h, reconciliation) = try await Self.routedAtTwo()
        try await h.store.insert(OperationRecord(
            id: OperationID("op-00000001"), kind: kind, requester: UserID("U0ALICE"), environment: "staging",
            model: Self.model, target: ReleaseTarget(release: "llama-3-8b-staging", namespace: "inference"),
            state: state, command: "\(kind.rawValue) llama-3-8b", createdAt: Date(timeIntervalSince1970: 0)))
        h.cluster.setWorkload(WorkloadSnapshot(
            desiredReplicas: 2, pods: [Self.pod(1, terminating: true), Self.pod(2)]), for: "llama-3-8b-staging")

        _ = await reconciliation.reconcileOnce()

        #expect(h.router.workers(of: Self.model).map(\.url) == (follows ? [Self.url(2)] : [Self.url(1), Self.url(2)]))
    }
}
