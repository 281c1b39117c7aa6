import Foundation
import InferOpsCore
import Testing

@Suite struct RouterReconcilerTests {
    let settings = RouterSettings(url: "http://router:30000", denyBackendURL: "http://inferops:8470")

    func registration(_ model: String, _ state: RegistrationState, _ endpoints: [String] = []) -> Registration {
        Registration(
            model: model, environment: "staging", state: state, endpoints: endpoints, changedBy: UserID("U1"),
            changedAt: Date(timeIntervalSince1970: 0))
    }

    @Test func anEmptyRouterGetsEveryWorker() {
        let actions = RouterReconciler.plan(
            desired: [registration("llama", .enabled, ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]), registration("mistral", .disabled)],
            actual: [], settings: settings)
        #expect(actions == [
            .add(RouterWorker(url: "http://10.0.0.1:8000", model: "llama")),
            .add(RouterWorker(url: "http://10.0.0.2:8000", model: "llama")),
            .add(RouterWorker(url: "http://inferops:8470/deny/staging/mistral", model: "mistral")),
        ])
    }

    @Test func aMatchingRouterNeedsNothing() {
        let desired = [registration("llama", .enabled, ["http://10.0.0.1:8000"]), registration("mistral", .removed)]
        let actual = desired.flatMap { RouterReconciler.desiredWorkers($0, settings: settings) }
        #expect(RouterReconciler.plan(desired: desired, actual: actual, settings: settings).isEmpty)
    }

    @Test func disablingSwapsEnginesForTheDenyBackendRemovalsFirst() {
        let actions = RouterReconciler.plan(
            desired: [registration("llama", .disabled)],
            actual: [RouterWorker(url: "http://10.0.0.1:8000", model: "llama")], settings: settings)
        #expect(actions == [
            .remove(RouterWorker(url: "http://10.0.0.1:8000", model: "llama")),
            .add(RouterWorker(url: "http://inferops:8470/deny/staging/llama", model: "llama")),
        ])
    }

    @Test func workersOfModelsNobodyRegisteredHereAreLeftAlone() {
        let foreign = RouterWorker(url: "http://10.9.9.9:8000", model: "someone-elses")
        let actions = RouterReconciler.plan(
            desired: [registration("llama", .enabled, ["http://10.0.0.1:8000"])],
            actual: [foreign, RouterWorker(url: "http://10.0.0.1:8000", model: "llama")], settings: settings)
        #expect(actions.isEmpty)
    }

    @Test func aURLServingAnotherModelIsMovedNotDuplicated() {
        // A pod address reused by another model after a rollout: the stale route must go first.
        let actions = RouterReconciler.plan(
            desired: [registration("llama", .enabled, ["http://10.0.0.1:8000"])],
            actual: [RouterWorker(url: "http://10.0.0.1:8000", model: "old-model")], settings: settings)
        #expect(actions == [
            .remove(RouterWorker(url: "http://10.0.0.1:8000", model: "old-model")),
            .add(RouterWorker(url: "http://10.0.0.1:8000", model: "llama")),
        ])
    }

    @Test func workerURLsComeFromTheTemplate() {
        let custom = RouterSettings(
            url: "http://router", workerURLTemplate: "http://{podIP}:{port}/", enginePort: 9000, denyBackendURL: "http://d/")
        #expect(custom.workerURL(podIP: "10.1.2.3") == "http://10.1.2.3:9000/")
        #expect(custom.denyWorkerURL(environment: "prod", model: "llama") == "http://d/deny/prod/llama")
    }
}
