import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Two router processes behind one address, each with its own registry: every change reaches both,
/// a restarted (empty) one is refilled by one repair pass, one that is down holds nothing up, and
/// success needs both to route the same.
@Suite(.timeLimit(.minutes(1))) struct ReplicatedRouterTests {
    static let model = "llama-3-8b"
    static let worker = RouterWorker(url: "http://10.0.0.1:8000", model: model)

    struct Directory: RouterDirectory {
        let router: ReplicatedRouter
        func router(for environment: EnvironmentSettings) -> (any ModelRouter)? { router }
    }

    /// The shared address: a completion goes to a replica that answers it, as a Service that only
    /// sends to ready router pods would.
    struct Balancer: ModelRouter {
        let members: [FakeRouter]
        func workers() async throws -> [RouterWorker] { [] }
        func add(_ worker: RouterWorker) async throws {}
        func remove(url: String) async throws {}
        func complete(model: String, prompt: String, maxTokens: Int, timeout: Duration) async throws -> EngineResponse {
            var last = EngineResponse(status: 503, body: Data())
            for member in members {
                guard let answer = try? await member.complete(model: model, prompt: prompt, maxTokens: maxTokens, timeout: timeout)
                else { continue }
                if answer.status == 200 { return answer }
                last = answer
            }
            return last
        }
    }

    /// A harness whose routers are `first` and `second` behind one address.
    static func harness() -> (Harness, FakeRouter, FakeRouter) {
        let first = FakeRouter()
        let second = FakeRouter()
        var fakes = FakeServices()
        fakes.directory = Directory(router: ReplicatedRouter(front: Balancer(members: [first, second]), members: [first, second]))
        let h = Harness(fakes: fakes) { configuration in
            for name in configuration.environmentNames {
                configuration.environments[name]!.router = RouterSettings(
                    url: "http://router.\(name)", denyBackendURL: Harness.denyBackend)
                configuration.environments[name]!.router!.replicas = ["http://router-0.\(name)", "http://router-1.\(name)"]
            }
        }
        return (h, first, second)
    }

    /// llama-3-8b deployed at 10.0.0.1 and registered: both replicas route it.
    static func registered() async throws -> (Harness, FakeRouter, FakeRouter) {
        let (h, first, second) = harness()
        h.serve(model, in: "staging", at: "10.0.0.1")
        let outcome = await h.run("/infer register llama-3-8b in staging")
        #expect(outcome.succeeded, "\(outcome)")
        #expect(first.workers(of: model) == [worker] && second.workers(of: model) == [worker])
        return (h, first, second)
    }

    @Test func aRestartedReplicaIsRefilledByOnePassAndTheOtherIsLeftAlone() async throws {
        let (h, first, second) = try await Self.registered()
        second.seed([])
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        let passes = await reconciliation.reconcileOnce()

        #expect(second.workers(of: Self.model) == [Self.worker])
        #expect(first.workers(of: Self.model) == [Self.worker])
        let staging = try #require(passes.first { $0.environment == "staging" })
        #expect(staging.failure == nil && staging.actions == [.add(Self.worker)], "\(staging)")
    }

    @Test func aReplicaThatIsDownHoldsNothingUpAndIsFilledWhenBack() async throws {
        let (h, first, second) = try await Self.registered()
        second.goDown(RouterUnavailable("connection refused"))
        // A new replica comes up and is followed while the second router is down.
        h.engines.script("llama-3-8b-staging-2", .healthy(serving: Self.model))
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [
            PodSnapshot(name: "llama-3-8b-staging-2", phase: "Running", ready: true, node: "gpu-a", address: "10.0.0.2"),
        ]), for: "llama-3-8b-staging")
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        let down = await reconciliation.reconcileOnce()

        let moved = RouterWorker(url: "http://10.0.0.2:8000", model: Self.model)
        #expect(down.first { $0.environment == "staging" }?.failure == nil)
        #expect(first.workers(of: Self.model) == [moved])
        // Back, with an empty registry: the next pass fills it.
        second.goDown(nil)
        second.seed([])
        _ = await reconciliation.reconcileOnce()
        #expect(second.workers(of: Self.model) == [moved])
    }

    @Test func everyReplicaDownIsAFailureOfThePass() async throws {
        let (h, first, second) = try await Self.registered()
        first.goDown(RouterUnavailable("connection refused"))
        second.goDown(RouterUnavailable("connection refused"))
        let reconciliation = RouterReconciliation(configuration: h.configuration, services: h.fakes.services)

        let passes = await reconciliation.reconcileOnce()

        let staging = try #require(passes.first { $0.environment == "staging" })
        #expect(staging.failure?.contains("connection refused") == true, "\(staging)")
    }

    /// One replica keeps an old worker it was told to remove: the deploy is not called a success.
    @Test func aReplicaRoutingDifferentlyFailsTheDeploy() async throws {
        let (h, _, second) = try await Self.registered()
        second.keep(Self.worker.url)
        h.cluster.setWorkload(WorkloadSnapshot(desiredReplicas: 1, pods: [
            PodSnapshot(name: "llama-3-8b-staging-new", phase: "Running", ready: true, node: "gpu-a", address: "10.0.0.3"),
        ]), for: "llama-3-8b-staging")

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        #expect(!outcome.succeeded, "\(outcome)")
        #expect(outcome.message?.contains("The router does not route the new replicas") == true, "\(outcome)")
    }
}
