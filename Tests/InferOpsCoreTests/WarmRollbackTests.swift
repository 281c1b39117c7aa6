import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `keepPrevious`: a deploy keeps the revision it replaced running, unrouted; a rollback to it
/// within that time routes those replicas instead of waiting for new ones; the pool is released
/// once the release's own replicas are back, or when its time is up.
@Suite(.timeLimit(.minutes(1))) struct WarmRollbackTests {
    static let model = "llama-3-8b"
    static let release = "llama-3-8b-staging"
    static let keep = Duration.seconds(1800)

    static func pod(_ name: String, _ index: Int, ready: Bool = true, current: Bool = true) -> PodSnapshot {
        PodSnapshot(name: "\(release)-\(name)", phase: ready ? "Running" : "Pending", ready: ready, node: "gpu-a",
                    address: ready ? "10.0.0.\(index)" : nil, current: current)
    }

    static func url(_ index: Int) -> String { "http://10.0.0.\(index):8000" }

    static func harness(keep: Duration? = WarmRollbackTests.keep) -> Harness {
        Harness(fakes: FakeServices()) { configuration in
            for name in configuration.environmentNames {
                configuration.environments[name]!.router = RouterSettings(
                    url: "http://router.\(name)", autoRegister: false, denyBackendURL: Harness.denyBackend)
            }
            configuration.environments["staging"]!.keepPrevious = keep
        }
    }

    static let running = WarmTemplate(template: .object(["metadata": .object([:])]), replicas: 1, gpusPerReplica: 1)

    /// Revision 1 deployed and routed at 10.0.0.1; a deploy's new replica comes up at 10.0.0.2.
    static func deployedOnce() async throws -> Harness {
        let h = harness()
        h.serve(model, in: "staging", at: "10.0.0.1")
        try await h.register(model, in: "staging", .enabled, at: "10.0.0.1")
        h.fakes.warmPools.setRunning(running, for: release)
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [pod("new", 2)]), for: release)
        return h
    }

    // MARK: keeping

    @Test func aDeployKeepsTheRevisionItReplacedWarmAndSaysUntilWhen() async throws {
        let h = try await Self.deployedOnce()

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(outcome.succeeded, "\(outcome)")
        let kept = h.fakes.warmPools.state.kept
        #expect(kept.map(\.revision) == [1] && kept.map(\.release) == [Self.release] && kept.map(\.replicas) == [1], "\(kept)")
        #expect(kept.first?.until == h.time.now().addingTimeInterval(Self.keep.seconds))
        #expect(h.chat.transcript.contains("Keeping revision 1 warm until"), "\(h.chat.transcript)")
        // Unrouted: the router has the new replica only.
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(2)])
    }

    @Test func withoutTheGPUsForItNothingIsKeptAndTheThreadSaysWhy() async throws {
        let h = try await Self.deployedOnce()
        // Enough for the deploy; none left once it has run.
        h.cluster.setCapacities([FakeCluster.nodes(("gpu-a", 8, 0)), FakeCluster.nodes(("gpu-a", 8, 8))])

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(outcome.succeeded, "\(outcome)")
        #expect(h.fakes.warmPools.state.kept.isEmpty)
        #expect(h.chat.transcript.contains("Not keeping revision 1 warm: its 1 replica needs 1 GPU and 0 are free"),
                "\(h.chat.transcript)")
    }

    @Test func anEnvironmentWithoutKeepPreviousKeepsNothing() async throws {
        let h = Self.harness(keep: nil)
        h.serve(Self.model, in: "staging", at: "10.0.0.1")
        h.fakes.warmPools.setRunning(Self.running, for: Self.release)

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(outcome.succeeded, "\(outcome)")
        #expect(h.fakes.warmPools.state.kept.isEmpty)
    }

    // MARK: rolling back warm

    /// Revision 2 deployed and routed at 10.0.0.2; revision 1 kept warm at 10.0.0.3. The cluster
    /// reads as it does once Helm has rolled the release back: revision 2's replica old, the new
    /// one of revision 1 not ready yet.
    static func keptWarm(poolReady: Bool = true) async throws -> Harness {
        let h = harness()
        h.releases.seed(h.target(model, in: "staging"), [.superseded, .deployed])
        try await h.register(model, in: "staging", .enabled, at: "10.0.0.2")
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [
            pod("rev2", 2, current: false), pod("rev1-new", 4, ready: false),
        ]), for: release)
        h.fakes.warmPools.setPool(WarmPool(
            revision: 1, desiredReplicas: 1, gpusPerReplica: 1, until: h.time.now().addingTimeInterval(600), serving: false,
            pods: [pod("warm", 3, ready: poolReady)]), for: release)
        return h
    }

    @Test func aRollbackWithinKeepPreviousRoutesTheWarmReplicasWithoutWaitingForNewOnes() async throws {
        let h = try await Self.keptWarm()

        let outcome = await h.run("/infer rollback llama-3-8b in staging")

        #expect(outcome.succeeded, "\(outcome)")
        #expect(h.releases.state.unwaitedRollbacks == 1)
        #expect(h.releases.rollbacks == [1])
        #expect(h.fakes.warmPools.state.served == [Self.release])
        // The warm replica only: revision 2's is out, revision 1's own is not ready yet.
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(3)])
        #expect(await h.registration(Self.model, in: "staging")?.endpoints == [Self.url(3)])
        let last = try #require(h.chat.posts.last).reply.title.plainText
        #expect(last.contains("by routing its 1 warm replica"), "\(last)")
        // Verified on the warm replica straight, recorded for the revision Helm made.
        let verification = try #require(await h.store.lastVerification(model: Self.model, environment: "staging"))
        #expect(verification.revision == 3)
    }

    @Test func aWarmReplicaThatFailsItsCheckMakesTheRollbackColdAndSaysSo() async throws {
        let h = try await Self.keptWarm()
        h.engines.script("\(Self.release)-warm", EngineScript(servedModels: [Self.model], completions: Array(repeating: .status(500), count: 8)))

        _ = await h.run("/infer rollback llama-3-8b in staging")

        #expect(h.releases.state.unwaitedRollbacks == 0)
        #expect(h.releases.rollbacks == [1])
        #expect(h.fakes.warmPools.state.served.isEmpty)
        #expect(h.chat.transcript.contains("rolling back cold"), "\(h.chat.transcript)")
    }

    @Test func aPoolNotReadyYetMakesTheRollbackCold() async throws {
        let h = try await Self.keptWarm(poolReady: false)

        _ = await h.run("/infer rollback llama-3-8b in staging")

        #expect(h.releases.state.unwaitedRollbacks == 0)
        #expect(h.chat.transcript.contains("none of its 1 replicas serves"), "\(h.chat.transcript)")
        // The release runs revision 1 again: its pool holds GPUs for nothing and goes.
        #expect(h.fakes.warmPools.state.released == [Self.release])
    }

    @Test func aPoolWhoseReleaseIsGoneIsReleased() async throws {
        let h = try await Self.keptWarm()
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 0, pods: []), for: Self.release)

        _ = await reconciliation.reconcileOnce()

        #expect(h.fakes.warmPools.state.released == [Self.release])
    }

    // MARK: releasing

    @Test func aServingPoolIsReleasedOnceTheReleasesOwnReplicasServeAndAreRouted() async throws {
        let h = try await Self.keptWarm()
        #expect(await h.run("/infer rollback llama-3-8b in staging").succeeded)
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        // Revision 1's own replica is not ready: the pool stays and serves.
        _ = await reconciliation.reconcileOnce()
        #expect(h.fakes.warmPools.state.released.isEmpty)
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(3)])

        // Ready: routed beside the warm one first; the pool goes only once it is routed.
        var started = Self.pod("rev1-new", 4)
        started.timeline = PodTimeline(created: h.time.now())
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [started]), for: Self.release)
        _ = await reconciliation.reconcileOnce()
        #expect(h.fakes.warmPools.state.released.isEmpty)
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(3), Self.url(4)])
        _ = await reconciliation.reconcileOnce()
        #expect(h.fakes.warmPools.state.released == [Self.release])
        #expect(h.router.workers(of: Self.model).map(\.url) == [Self.url(4)])
    }

    /// Between the pool starting to serve and Helm applying the rollback, the release's current
    /// replicas are still those of the revision being left: serving and routed, but not a reason to
    /// release the pool (a pass in that window once took the warm replicas away).
    @Test func theReplicasOfTheRevisionBeingLeftDoNotReleaseAServingPool() async throws {
        let h = try await Self.keptWarm()
        var leaving = Self.pod("rev2", 2)
        leaving.timeline = PodTimeline(created: h.time.now().addingTimeInterval(-120))
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [leaving]), for: Self.release)
        try await h.fakes.warmPools.serve(h.target(Self.model, in: "staging"), since: h.time.now())
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        _ = await reconciliation.reconcileOnce()
        _ = await reconciliation.reconcileOnce()

        #expect(h.fakes.warmPools.state.released.isEmpty)
    }

    @Test func anUnroutedPoolIsReleasedWhenItsTimeIsUpAndNotBefore() async throws {
        let h = try await Self.keptWarm()
        h.engines.script("\(Self.release)-warm", .healthy(serving: Self.model))
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        _ = await reconciliation.reconcileOnce()
        #expect(h.fakes.warmPools.state.released.isEmpty)
        // Checked ahead of a rollback, never routed.
        #expect(h.engines.requests(to: "/v1/completions", service: "\(Self.release)-warm") > 0)
        #expect(!h.router.workers(of: Self.model).map(\.url).contains(Self.url(3)))

        h.time.advance(by: .seconds(601))
        _ = await reconciliation.reconcileOnce()
        #expect(h.fakes.warmPools.state.released == [Self.release])
    }

    @Test func statusShowsTheGPUsThePoolHoldsAndWhenTheyAreReleased() async throws {
        let h = try await Self.keptWarm()

        _ = await h.run("/infer status llama-3-8b in staging")

        #expect(h.chat.transcript.contains("Warm: revision 1 kept unrouted (1 of 1 ready), holding 1 GPU until"),
                "\(h.chat.transcript)")
        #expect(h.chat.transcript.contains("(in 10 min)"), "\(h.chat.transcript)")
    }
}
