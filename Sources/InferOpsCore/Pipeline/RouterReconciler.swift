/// Compares what the router has with what operators asked for, and says what to change.
/// Pure: the reconciliation service and the registration workflow both apply its plan.
public enum RouterReconciler {
    public enum Action: Hashable, Sendable, CustomStringConvertible {
        case add(RouterWorker)
        case remove(RouterWorker)

        public var description: String {
            switch self {
            case .add(let worker): "add \(worker)"
            case .remove(let worker): "remove \(worker)"
            }
        }
    }

    /// The workers the router should have for one registration.
    public static func desiredWorkers(_ registration: Registration, settings: RouterSettings) -> [RouterWorker] {
        switch registration.state {
        case .enabled:
            registration.endpoints.map { RouterWorker(url: $0, model: registration.model) }
        case .disabled, .removed:
            [RouterWorker(url: settings.denyWorkerURL(environment: registration.environment, model: registration.model),
                          model: registration.model)]
        }
    }

    /// Removals first (a URL must leave before it is added under another model), then additions.
    /// Only workers of models this environment has registrations for are touched, so a router shared
    /// with other tools keeps their workers.
    public static func plan(desired registrations: [Registration], actual: [RouterWorker], settings: RouterSettings) -> [Action] {
        let managed = Set(registrations.map(\.model))
        let desired = Set(registrations.flatMap { desiredWorkers($0, settings: settings) })
        let desiredURLs = Set(desired.map(\.url))
        let current = Set(actual)
        let removals = current.filter { worker in
            !desired.contains(worker) && (managed.contains(worker.model) || desiredURLs.contains(worker.url))
        }
        let additions = desired.subtracting(current)
        return removals.sorted { $0.url < $1.url }.map(Action.remove) + additions.sorted { $0.url < $1.url }.map(Action.add)
    }
}
