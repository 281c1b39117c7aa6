import InferOpsCore
import Prometheus

/// What the daemon counts and times, as typed calls over a Prometheus registry that `/metrics` exposes.
///
/// The facade exists so that metric names, label names and label values are written in one place:
/// callers pass enums, never strings, which keeps every label's set of values small and known
/// (Prometheus keeps one time series per label combination, so a free-form label is a memory leak).
/// It uses swift-prometheus's registry directly rather than bootstrapping the global swift-metrics
/// `MetricsSystem`, so each server, and each test, owns an isolated registry.
///
/// All methods are thread-safe; `DaemonMetrics` is a cheap value to copy and share.
public struct DaemonMetrics: Sendable {
    /// The registry every metric lives in; `/metrics` renders it.
    public let registry: PrometheusCollectorRegistry
    private let stepBuckets: [Duration]

    /// The step-duration buckets: steps range from milliseconds (prechecks) to the ten-minute default
    /// readiness budget (DESIGN F1) and beyond, so the buckets span 50 ms to 30 min.
    public static let defaultStepBuckets: [Duration] = [
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
        .seconds(300), .seconds(600), .seconds(1200), .seconds(1800),
    ]

    /// - Parameters:
    ///   - registry: Where the metrics live; a fresh one by default, so tests never share counters.
    ///   - stepBuckets: Upper bounds of the step-duration histogram's buckets.
    public init(
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        stepBuckets: [Duration] = DaemonMetrics.defaultStepBuckets
    ) {
        self.registry = registry
        self.stepBuckets = stepBuckets
        // Series that exist from the start read as 0 rather than as missing, so `rate()` and alerts
        // work before the first event. Only the small, closed label sets are created up front.
        for result in RouterReconciliationResult.allCases {
            _ = counter(Self.reconciliations, [("result", result.rawValue)])
        }
        for action in RouterRepairAction.allCases {
            _ = counter(Self.repairs, [("action", action.rawValue)])
        }
        for kind in OperationKind.allCases {
            for outcome in OperationState.allCases where outcome.isFinished {
                _ = counter(Self.operations, [("kind", kind.rawValue), ("outcome", outcome.rawValue)])
            }
        }
    }

    // MARK: Recording

    /// Counts an operation that reached `outcome` (`inferops_operations_total{kind,outcome}`).
    ///
    /// - Parameter outcome: The state the operation ended in (`succeeded`, `failed`, `rolled_back`,
    ///   `cancelled`); an unfinished state is recorded as given, so a caller's mistake shows up in
    ///   the metrics instead of crashing the daemon.
    public func recordOperation(kind: OperationKind, outcome: OperationState) {
        counter(Self.operations, [("kind", kind.rawValue), ("outcome", outcome.rawValue)]).increment()
    }

    /// Times one step of an operation (`inferops_step_duration_seconds{kind,step}`); the step is the
    /// state the operation was in while the step ran (`prechecking`, `applying`, `waiting_ready`, …).
    public func recordStep(kind: OperationKind, step: OperationState, duration: Duration) {
        registry.makeDurationHistogram(
            descriptor: Self.stepDuration,
            labels: [("kind", kind.rawValue), ("step", step.rawValue)],
            buckets: stepBuckets
        )
        .record(duration)
    }

    /// Counts one pass that compared the router's workers with the desired registrations
    /// (`inferops_router_reconciliations_total{result}`).
    public func recordReconciliation(_ result: RouterReconciliationResult) {
        counter(Self.reconciliations, [("result", result.rawValue)]).increment()
    }

    /// Counts router workers added or removed to repair the router's registry
    /// (`inferops_router_repairs_total{action}`).
    ///
    /// - Parameter count: How many workers this repair added or removed; zero or less records nothing.
    public func recordRepair(_ action: RouterRepairAction, count: Int = 1) {
        guard count > 0 else { return }
        counter(Self.repairs, [("action", action.rawValue)]).increment(by: Int64(count))
    }

    /// Counts one answer of the deny backend (`inferops_denied_requests_total{environment,state}`).
    ///
    /// - Parameter environment: A configured environment name, or `unknown`. The deny backend never
    ///   passes a name taken from a request that is not configured, which keeps this label bounded.
    public func recordDeniedRequest(environment: String, state: DeniedRequestState) {
        counter(Self.deniedRequests, [("environment", environment), ("state", state.rawValue)]).increment()
    }

    // MARK: Exposition

    /// The metrics in the Prometheus text exposition format (version 0.0.4), as `/metrics` serves them.
    public func exposition() -> String {
        registry.emitToString()
    }

    /// The content type of ``exposition()``.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    // MARK: Names

    // The registry makes a metric once per name and label set and hands back the same one after
    // that, so looking it up per event is correct; the cost is one lock and a dictionary lookup.
    private func counter(_ descriptor: MetricNameDescriptor, _ labels: [(String, String)]) -> Counter {
        registry.makeCounter(descriptor: descriptor, labels: labels)
    }

    // Computed, because swift-prometheus's `MetricNameDescriptor` is not `Sendable` and so cannot be a
    // static constant.
    static var operations: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "inferops",
            metricName: "operations",
            unitName: "total",
            helpText: "Operations that finished, by kind and final state."
        )
    }
    static var stepDuration: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "inferops",
            metricName: "step_duration",
            unitName: "seconds",
            helpText: "How long each step of an operation took, by operation kind and step."
        )
    }
    static var reconciliations: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "inferops",
            subsystem: "router",
            metricName: "reconciliations",
            unitName: "total",
            helpText: "Comparisons of the router's workers with the desired registrations, by result."
        )
    }
    static var repairs: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "inferops",
            subsystem: "router",
            metricName: "repairs",
            unitName: "total",
            helpText: "Router workers added or removed to make the router match the desired registrations."
        )
    }
    static var deniedRequests: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "inferops",
            metricName: "denied_requests",
            unitName: "total",
            helpText: "Answers of the deny backend to requests the router forwarded, by environment and model state."
        )
    }
}

/// How one reconciliation of the router's registry ended.
public enum RouterReconciliationResult: String, Sendable, CaseIterable {
    /// The router already matched the desired registrations.
    case inSync = "in_sync"
    /// Workers were added or removed and the router now matches.
    case repaired
    /// The router could not be read or changed.
    case failed
}

/// What a repair did to one router worker.
public enum RouterRepairAction: String, Sendable, CaseIterable {
    case add
    case remove
}

/// Why the deny backend answered as it did; the `state` label of `inferops_denied_requests_total`.
public enum DeniedRequestState: String, Sendable, CaseIterable {
    /// The model is disabled in the environment (403).
    case disabled
    /// The model was deregistered (404).
    case removed
    /// No registration names the model (404).
    case unknown
    /// The registration says enabled, yet the router sent the request here: its registry is stale (503).
    case enabled
    /// The registrations could not be read (503).
    case lookupFailed = "lookup_failed"
    /// The body was not JSON, or named no model (400).
    case badRequest = "bad_request"
    /// The body was larger than the limit (413).
    case tooLarge = "too_large"
}
