import Foundation
import InferOpsCore

/// Helm in memory: releases with their revision history, and a script per method that says whether
/// the next call succeeds, fails, or waits at a `Gate` until the test lets it go on.
///
/// It follows Helm's bookkeeping: a successful upgrade adds revision N+1 as `deployed` and marks the
/// previous one `superseded`; a failed one adds a `failed` revision and leaves the deployed one alone;
/// a rollback adds a new revision described as "Rollback to N". A call cancelled while it waits ends
/// the way Helm ends on SIGTERM: the revision is marked failed and `ReleaseFailure.cancelled` is thrown.
public final class FakeReleaseEngine: ReleaseEngine, Sendable {
    public enum Method: String, Sendable, Hashable, CaseIterable {
        case upgrade, render, rollback, status, history, uninstall
    }

    /// What the next call of a method does.
    public indirect enum Behaviour: Sendable {
        case succeed
        /// Throws the failure. For failures Helm reports after it created the revision (readiness
        /// timeout, failed rollout, cancellation, unclassified) an upgrade or rollback also records a
        /// `failed` revision.
        case fail(ReleaseFailure)
        /// Throws an error that is not user-facing, like a bug or a broken pipe in an adapter.
        case throwError(any Error)
        /// Waits at the gate, then behaves as `then`.
        case hold(Gate, then: Behaviour = .succeed)
    }

    public enum Call: Sendable, Hashable, CustomStringConvertible {
        case upgrade(ReleaseUpgrade)
        case render(ReleaseUpgrade)
        case rollback(ReleaseTarget, revision: Int?, timeout: Duration)
        case status(ReleaseTarget)
        case history(ReleaseTarget)
        case uninstall(ReleaseTarget)

        public var method: Method {
            switch self {
            case .upgrade: .upgrade
            case .render: .render
            case .rollback: .rollback
            case .status: .status
            case .history: .history
            case .uninstall: .uninstall
            }
        }

        public var target: ReleaseTarget {
            switch self {
            case .upgrade(let request), .render(let request): request.target
            case .rollback(let target, _, _), .status(let target), .history(let target), .uninstall(let target): target
            }
        }

        /// Whether the call changes the cluster (upgrade, rollback, uninstall).
        public var changes: Bool { [.upgrade, .rollback, .uninstall].contains(method) }

        public var description: String { "\(method.rawValue) \(target.release)" }
    }

    /// The start and the end of every call, in the order they happened, so tests can check that
    /// calls on one release never overlap.
    public enum Event: Sendable, Hashable, CustomStringConvertible {
        case began(Call)
        case ended(Call, failed: Bool)

        public var description: String {
            switch self {
            case .began(let call): "began \(call)"
            case .ended(let call, let failed): "ended \(call)\(failed ? " (failed)" : "")"
            }
        }
    }

    public struct State: Sendable {
        /// Revisions per `namespace/release`, oldest first.
        public var releases: [String: [ReleaseRevision]] = [:]
        public var calls: [Call] = []
        public var events: [Event] = []
        /// Calls that have begun and not ended.
        public var inFlight: [Call] = []
        /// Rollbacks asked not to wait for readiness (warm rollbacks).
        public var unwaitedRollbacks = 0
        var scripts: [Method: [Behaviour]] = [:]
    }

    private let observed = Observed(State())
    private let time: any TimeSource

    /// - Parameter time: Dates the revisions it writes.
    public init(time: any TimeSource = ManualTime()) {
        self.time = time
    }

    // MARK: scripting and seeding

    /// Queues behaviours for the next calls of `method`; once they are used up, calls succeed.
    public func script(_ method: Method, _ behaviours: Behaviour...) {
        observed.update { $0.scripts[method, default: []].append(contentsOf: behaviours) }
    }

    /// Gives a release revisions 1…n in the given states (e.g. `[.superseded, .deployed]`).
    public func seed(
        _ target: ReleaseTarget, _ states: [ReleaseState], chart: String = "vllm-engine-0.1.0",
        appVersion: String = "v0.6.3"
    ) {
        let now = time.now()
        let revisions = states.enumerated().map { index, state in
            ReleaseRevision(
                revision: index + 1, state: state, chart: chart, appVersion: appVersion,
                description: index == 0 ? "Install complete" : "Upgrade complete", updated: now
            )
        }
        observed.update { $0.releases[Self.key(target)] = revisions }
    }

    // MARK: what happened

    public var state: State { observed.value }
    public var calls: [Call] { observed.value.calls }
    public var events: [Event] { observed.value.events }

    public func calls(_ method: Method) -> [Call] { calls.filter { $0.method == method } }

    /// Calls that would have changed the cluster.
    public var changingCalls: [Call] { calls.filter(\.changes) }

    public var upgrades: [ReleaseUpgrade] {
        calls.compactMap { if case .upgrade(let request) = $0 { request } else { nil } }
    }

    /// The revisions asked for by each rollback, `nil` for "the previous one".
    public var rollbacks: [Int?] {
        calls.compactMap { if case .rollback(_, let revision, _) = $0 { revision } else { nil } }
    }

    public func revisions(of target: ReleaseTarget) -> [ReleaseRevision] {
        observed.value.releases[Self.key(target)] ?? []
    }

    /// Returns once `condition` holds for the engine's state.
    public func waitFor(_ condition: @escaping @Sendable (State) -> Bool) async throws {
        try await observed.wait(until: condition)
    }

    // MARK: ReleaseEngine

    public func upgrade(_ request: ReleaseUpgrade) async throws -> ReleaseStatus {
        let key = Self.key(request.target)
        let now = time.now()
        let chart = Self.chartName(request)
        let appVersion = request.values["image"]?["tag"]?.stringValue ?? ""
        return try await perform(
            .upgrade(request),
            success: { state in
                var revisions = state.releases[key] ?? []
                if let last = revisions.last, last.state.isPending { return .failure(.operationInProgress) }
                for index in revisions.indices where revisions[index].state == .deployed {
                    revisions[index].state = .superseded
                }
                let revision = ReleaseRevision(
                    revision: (revisions.last?.revision ?? 0) + 1, state: .deployed, chart: chart,
                    appVersion: appVersion, description: revisions.isEmpty ? "Install complete" : "Upgrade complete",
                    updated: now
                )
                revisions.append(revision)
                state.releases[key] = revisions
                return .success(Self.status(request.target, revision))
            },
            failure: { state, failure in
                guard Self.leavesFailedRevision(failure) else { return }
                var revisions = state.releases[key] ?? []
                revisions.append(
                    ReleaseRevision(
                        revision: (revisions.last?.revision ?? 0) + 1, state: .failed, chart: chart,
                        appVersion: appVersion,
                        description: "Upgrade \"\(request.target.release)\" failed: \(failure.message)",
                        updated: now
                    )
                )
                state.releases[key] = revisions
            }
        )
    }

    public func render(_ request: ReleaseUpgrade) async throws -> String {
        try await perform(.render(request)) { _ in .success(Self.manifest(request)) }
    }

    public func rollback(_ target: ReleaseTarget, to revision: Int?, timeout: Duration, wait: Bool) async throws -> ReleaseStatus {
        let key = Self.key(target)
        let now = time.now()
        if !wait { observed.update { $0.unwaitedRollbacks += 1 } }
        return try await perform(
            .rollback(target, revision: revision, timeout: timeout),
            success: { state in
                guard var revisions = state.releases[key], let current = revisions.last else {
                    return .failure(.releaseNotFound)
                }
                let wanted: ReleaseRevision
                if let revision {
                    guard let found = revisions.first(where: { $0.revision == revision }) else {
                        return .failure(.missingRevision(revision))
                    }
                    wanted = found
                } else {
                    guard let previous = revisions.last(where: { $0.revision < current.revision }) else {
                        return .failure(.missingRevision(nil))
                    }
                    wanted = previous
                }
                for index in revisions.indices
                where revisions[index].state == .deployed || revisions[index].state.isPending {
                    revisions[index].state = .superseded
                }
                let restored = ReleaseRevision(
                    revision: current.revision + 1, state: .deployed, chart: wanted.chart,
                    appVersion: wanted.appVersion,
                    description: "Rollback to \(wanted.revision)", updated: now
                )
                revisions.append(restored)
                state.releases[key] = revisions
                return .success(Self.status(target, restored))
            },
            failure: { state, failure in
                guard Self.leavesFailedRevision(failure), var revisions = state.releases[key],
                    let current = revisions.last
                else {
                    return
                }
                revisions.append(
                    ReleaseRevision(
                        revision: current.revision + 1, state: .failed, chart: current.chart,
                        appVersion: current.appVersion,
                        description: "Rollback \"\(target.release)\" failed: \(failure.message)", updated: now
                    )
                )
                state.releases[key] = revisions
            }
        )
    }

    public func status(_ target: ReleaseTarget) async throws -> ReleaseStatus? {
        let key = Self.key(target)
        return try await perform(.status(target)) { state in
            .success(state.releases[key]?.last.map { Self.status(target, $0) })
        }
    }

    public func history(_ target: ReleaseTarget) async throws -> [ReleaseRevision] {
        let key = Self.key(target)
        return try await perform(.history(target)) { state in .success(state.releases[key] ?? []) }
    }

    public func uninstall(_ target: ReleaseTarget, timeout: Duration) async throws {
        let key = Self.key(target)
        try await perform(.uninstall(target)) { state -> Result<Void, ReleaseFailure> in
            guard state.releases.removeValue(forKey: key) != nil else { return .failure(.releaseNotFound) }
            return .success(())
        }
    }

    // MARK: the machinery

    /// Records the call, follows the script, and applies `success` or `failure` to the releases.
    private func perform<T: Sendable>(
        _ call: Call,
        success: @escaping @Sendable (inout State) -> Result<T, ReleaseFailure>,
        failure: @escaping @Sendable (inout State, ReleaseFailure) -> Void = { _, _ in }
    ) async throws -> T {
        var behaviour = observed.update { state -> Behaviour in
            state.calls.append(call)
            state.events.append(.began(call))
            state.inFlight.append(call)
            if var queue = state.scripts[call.method], !queue.isEmpty {
                let next = queue.removeFirst()
                state.scripts[call.method] = queue
                return next
            }
            return .succeed
        }
        while case .hold(let gate, let then) = behaviour {
            do {
                try await gate.pass()
            } catch {
                // Helm got SIGTERM: it marks the revision failed and stops.
                endFailed(call) { failure(&$0, .cancelled) }
                throw ReleaseFailure.cancelled
            }
            behaviour = then
        }
        switch behaviour {
        case .succeed:
            let result = end(call) { success(&$0) }
            return try result.get()
        case .fail(let releaseFailure):
            endFailed(call) { failure(&$0, releaseFailure) }
            throw releaseFailure
        case .throwError(let error):
            endFailed(call) { _ in }
            throw error
        case .hold:
            preconditionFailure("holds are resolved above")
        }
    }

    @discardableResult
    private func end<T: Sendable>(
        _ call: Call, _ body: (inout State) -> Result<T, ReleaseFailure>
    ) -> Result<T, ReleaseFailure> {
        observed.update { state in
            let result = body(&state)
            let failed = if case .failure = result { true } else { false }
            state.events.append(.ended(call, failed: failed))
            if let index = state.inFlight.firstIndex(of: call) { state.inFlight.remove(at: index) }
            return result
        }
    }

    private func endFailed(_ call: Call, _ body: (inout State) -> Void) {
        observed.update { state in
            body(&state)
            state.events.append(.ended(call, failed: true))
            if let index = state.inFlight.firstIndex(of: call) { state.inFlight.remove(at: index) }
        }
    }

    static func key(_ target: ReleaseTarget) -> String { "\(target.namespace)/\(target.release)" }

    static func leavesFailedRevision(_ failure: ReleaseFailure) -> Bool {
        switch failure {
        case .readinessTimeout, .rolloutFailed, .cancelled, .unclassified: true
        default: false
        }
    }

    static func chartName(_ request: ReleaseUpgrade) -> String {
        let base = request.chart.split(separator: "/").last.map(String.init) ?? request.chart
        return "\(base)-\(request.chartVersion ?? "0.1.0")"
    }

    static func status(_ target: ReleaseTarget, _ revision: ReleaseRevision) -> ReleaseStatus {
        ReleaseStatus(
            name: target.release, namespace: target.namespace, revision: revision.revision, state: revision.state,
            description: revision.description, chart: revision.chart, appVersion: revision.appVersion,
            lastDeployed: revision.updated
        )
    }

    /// A small Deployment and Service, enough for a dry run to show.
    static func manifest(_ request: ReleaseUpgrade) -> String {
        let replicas = request.values["replicaCount"]?.intValue ?? 1
        let gpus = request.values["resources"]?["gpus"]?.intValue ?? 0
        return """
            ---
            # Source: \(chartName(request))/templates/deployment.yaml
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: \(request.target.release)
              namespace: \(request.target.namespace)
            spec:
              replicas: \(replicas)
              template:
                spec:
                  containers:
                    - name: engine
                      resources:
                        limits:
                          nvidia.com/gpu: \(gpus)
            ---
            # Source: \(chartName(request))/templates/service.yaml
            apiVersion: v1
            kind: Service
            metadata:
              name: \(request.target.release)
            """
    }
}
