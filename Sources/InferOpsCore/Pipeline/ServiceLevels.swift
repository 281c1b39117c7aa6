import Foundation

/// The product's success criteria, computed from the records over a window: how many deploys were
/// ready within 10 minutes, verifications answered within 3 s, registration changes effective
/// within 2 minutes, disabled-model requests served (the deny checks of disables and deregisters
/// that an engine answered), rollbacks done within 5 minutes.
public struct ServiceLevelReport: Hashable, Sendable, Codable {
    public struct Objective: Hashable, Sendable, Codable {
        /// A stable key for dashboards (`deploy_ready`, `verification_latency`, …).
        public var key: String
        public var summary: String
        /// The time each event must take at most; `nil` for a count objective.
        public var limitSeconds: Double?
        /// The share of events that must meet the limit (0.95), or, for a count objective, the
        /// largest count allowed (0).
        public var target: Double
        public var count: Int
        /// Events that met the limit (for a count objective: the events counted against it).
        public var met: Int
        /// 95th percentile of the measured times, in seconds, when any were measured.
        public var p95Seconds: Double?
        public var meetsTarget: Bool

        /// `met / count`, or `nil` when nothing happened in the window.
        public var share: Double? { count == 0 || limitSeconds == nil ? nil : Double(met) / Double(count) }
    }

    /// The environments covered.
    public var environments: [String]
    public var days: Int
    public var from: Date
    public var to: Date
    public var objectives: [Objective]
}

/// Computes the report from what the store holds. Pure: the caller reads the records.
public enum ServiceLevels {
    public static let deployReady: Duration = .seconds(600)
    public static let verificationLatency: Duration = .seconds(3)
    public static let registrationEffective: Duration = .seconds(120)
    public static let rollbackDone: Duration = .seconds(300)
    public static let targetShare = 0.95

    /// One finished operation with its journal.
    public struct Finished: Sendable {
        public var record: OperationRecord
        public var journal: [JournalEntry]
        public init(record: OperationRecord, journal: [JournalEntry]) {
            self.record = record
            self.journal = journal
        }

        /// When it began to act: its first check of the cluster (after any wait for approval, a
        /// lock or the release), or its creation when it never got there.
        var started: Date { journal.first { $0.state == .prechecking }?.at ?? record.createdAt }

        /// When its engines were ready: the first warm-up or verification step after applying.
        var ready: Date? {
            guard let applying = journal.firstIndex(where: { $0.state == .applying }) else { return nil }
            return journal[applying...].first { $0.state == .warming || $0.state == .verifying }?.at
        }

        var acted: Bool { journal.contains { $0.state == .prechecking } }
    }

    public static func report(
        operations: [Finished], verifications: [Verification], environments: [String], days: Int, now: Date
    ) -> ServiceLevelReport {
        let ended = operations.filter { $0.record.state.isFinished && $0.acted }
        func ofKind(_ kinds: Set<OperationKind>) -> [Finished] { ended.filter { kinds.contains($0.record.kind) } }

        let deploys = ofKind([.deploy, .promote]).filter { [.succeeded, .failed, .rolledBack].contains($0.record.state) }
        let readyTimes = deploys.map { deploy in deploy.ready.map { $0.timeIntervalSince(deploy.started) } }
        let registrations = ofKind([.register, .deregister, .enable, .disable])
            .filter { [.succeeded, .failed].contains($0.record.state) }
        let rollbacks = ofKind([.rollback]).filter { [.succeeded, .failed].contains($0.record.state) }
        // A disable or deregister checks, through the router, that a request gets the deny backend's
        // answer; one that got anything else (an engine's completion) is a request served for a model
        // that was meant to be denied.
        let denyChecks = ofKind([.disable, .deregister]).filter { [.succeeded, .failed].contains($0.record.state) }
        let served = denyChecks.filter {
            $0.record.state == .failed && ($0.record.outcome ?? "").contains(Registrar.servedInsteadOfDenied)
        }.count

        return ServiceLevelReport(
            environments: environments, days: days, from: now.addingTimeInterval(-Double(days) * 86400), to: now,
            objectives: [
                share("deploy_ready", "deploys ready", limit: deployReady, times: readyTimes),
                share("verification_latency", "test completions answered", limit: verificationLatency,
                      times: verifications.map { Optional($0.latency.seconds) }),
                share("registration_effective", "registration changes effective", limit: registrationEffective,
                      times: registrations.map { $0.record.state == .succeeded ? $0.record.updatedAt.timeIntervalSince($0.started) : nil }),
                ServiceLevelReport.Objective(
                    key: "disabled_served", summary: "disabled-model requests served (deny checks through the router)",
                    limitSeconds: nil, target: 0, count: denyChecks.count, met: served,
                    p95Seconds: nil, meetsTarget: served == 0),
                share("rollback_done", "rollbacks done", limit: rollbackDone,
                      times: rollbacks.map { $0.record.state == .succeeded ? $0.record.updatedAt.timeIntervalSince($0.started) : nil }),
            ])
    }

    /// A share objective: each event's time, `nil` for one that never got there (a miss).
    static func share(_ key: String, _ summary: String, limit: Duration, times: [Double?]) -> ServiceLevelReport.Objective {
        let met = times.filter { $0.map { $0 <= limit.seconds } ?? false }.count
        let measured = times.compactMap { $0 }.sorted()
        return ServiceLevelReport.Objective(
            key: key, summary: "\(summary) within \(limit.spoken)", limitSeconds: limit.seconds, target: targetShare,
            count: times.count, met: met, p95Seconds: percentile(95, of: measured),
            meetsTarget: times.isEmpty || Double(met) / Double(times.count) >= targetShare)
    }

    /// The nearest-rank percentile of sorted values.
    static func percentile(_ p: Int, of sorted: [Double]) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((Double(p) / 100 * Double(sorted.count)).rounded(.up))
        return sorted[max(0, min(sorted.count - 1, rank - 1))]
    }

    /// The report as a reply: one row per objective.
    public static func reply(_ report: ServiceLevelReport) -> Reply {
        let rows: [[any RichTextConvertible]] = report.objectives.map { objective in
            let target = objective.limitSeconds == nil ? "0" : "\(Int(objective.target * 100))%"
            let met = objective.limitSeconds == nil
                ? "\(objective.met)"
                : objective.share.map { String(format: "%.1f%%", $0 * 100) } ?? "—"
            let p95 = objective.p95Seconds.map { Duration.milliseconds(Int(($0 * 1000).rounded())).spoken } ?? "—"
            let verdict = objective.count == 0 ? "no events" : (objective.meetsTarget ? "✓ meets" : "✗ misses")
            return [objective.summary, target, met, p95, "\(objective.count)", verdict]
        }
        let missed = report.objectives.filter { !$0.meetsTarget }
        return Reply(
            missed.isEmpty ? .success : .warning,
            "Service levels over \(report.days) day\(report.days == 1 ? "" : "s") in "
                + report.environments.map { "`\($0)`" }.joined(separator: ", "),
            table: Reply.Table(headers: ["objective", "target", "met", "p95", "count", ""], rows: rows),
            hint: "From the records from \(Reports.timestamp(report.from)) to \(Reports.timestamp(report.to)). "
                + "`inferops slo --json` prints the same for dashboards.")
    }
}

extension ServiceLevels {
    /// Reads the window's operations, their journals and verifications, and computes the report.
    public static func read(
        from store: any OperationStore, environments: [String], days: Int, now: Date
    ) async throws -> ServiceLevelReport {
        let since = now.addingTimeInterval(-Double(days) * 86400)
        var finished: [Finished] = []
        var verifications: [Verification] = []
        for environment in environments {
            for record in try await store.recentOperations(model: nil, environment: environment, limit: 100_000)
            where record.createdAt >= since && record.state.isFinished && record.kind != .lock && record.kind != .unlock {
                finished.append(Finished(record: record, journal: try await store.journal(of: record.id)))
            }
            verifications += try await store.verifications(model: nil, environment: environment, since: since)
        }
        return report(operations: finished, verifications: verifications, environments: environments, days: days, now: now)
    }
}
