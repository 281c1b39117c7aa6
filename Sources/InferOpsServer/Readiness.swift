/// A readiness check: answers whether one dependency of the daemon works now (`true`) or not.
///
/// Checks must return promptly and honour task cancellation: a check that outlives
/// ``Readiness/timeout`` is reported as timed out and cancelled, and `/readyz` answers only once
/// every cancelled check has returned.
public typealias ReadinessCheck = @Sendable () async -> Bool

/// The named checks behind `/readyz`, supplied by the daemon (for example `storage`, `router`, `chat`).
///
/// Readiness is separate from liveness on purpose: a daemon whose router is down is alive (do not
/// restart it) but not ready (do not send it traffic), and Kubernetes acts on the two differently.
public struct Readiness: Sendable {
    public var checks: [String: ReadinessCheck]
    /// How long one check may take before it counts as failed; a probe that hangs must not hang `/readyz`.
    public var timeout: Duration

    public init(checks: [String: ReadinessCheck] = [:], timeout: Duration = .seconds(2)) {
        self.checks = checks
        self.timeout = timeout
    }

    /// Runs every check concurrently, each under ``timeout``.
    public func evaluate() async -> ReadinessReport {
        let timeout = self.timeout
        let results = await withTaskGroup(of: ReadinessReport.Check.self) { group in
            for (name, check) in checks {
                group.addTask {
                    let status = await Self.run(check, timeout: timeout)
                    return ReadinessReport.Check(name: name, status: status)
                }
            }
            var results: [ReadinessReport.Check] = []
            for await result in group {
                results.append(result)
            }
            return results
        }
        return ReadinessReport(checks: results.sorted { $0.name < $1.name })
    }

    private static func run(_ check: @escaping ReadinessCheck, timeout: Duration) async -> ReadinessReport.Status {
        await withTaskGroup(of: ReadinessReport.Status?.self) { group in
            group.addTask { await check() ? .ok : .failing }
            group.addTask {
                // A cancelled timer means the check answered first; it then reports nothing.
                do {
                    try await Task.sleep(for: timeout)
                    return .timedOut
                } catch {
                    return nil
                }
            }
            var status = ReadinessReport.Status.timedOut
            for await result in group {
                if let result {
                    status = result
                    break
                }
            }
            group.cancelAll()
            return status
        }
    }
}

/// The outcome of the readiness checks; `/readyz` serves it as JSON.
public struct ReadinessReport: Sendable, Hashable, Encodable {
    public enum Status: String, Sendable, Hashable, Encodable {
        case ok
        case failing
        case timedOut = "timed_out"
    }

    public struct Check: Sendable, Hashable, Encodable {
        public var name: String
        public var status: Status

        public init(name: String, status: Status) {
            self.name = name
            self.status = status
        }
    }

    /// The checks, sorted by name so that the JSON reads the same on every call.
    public var checks: [Check]

    public init(checks: [Check]) {
        self.checks = checks
    }

    /// Ready when every check passed; with no checks at all, ready.
    public var isReady: Bool { checks.allSatisfy { $0.status == .ok } }

    /// The names of the checks that did not pass, for logs and the response body.
    public var failing: [String] { checks.filter { $0.status != .ok }.map(\.name) }

    private enum CodingKeys: String, CodingKey {
        case status, checks, failing
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(isReady ? "ready" : "unavailable", forKey: .status)
        try container.encode(checks, forKey: .checks)
        try container.encode(failing, forKey: .failing)
    }
}
