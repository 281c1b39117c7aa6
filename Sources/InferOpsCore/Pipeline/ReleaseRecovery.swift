/// Puts a release that a stopped daemon left half-changed back in order, by Helm's documented steps:
/// a helm process still running is stopped; `pending-upgrade` and `pending-rollback` are rolled back
/// to the last good revision; a `pending-install` (a first install that never finished) is uninstalled.
struct ReleaseRecovery: Sendable {
    let services: Services
    let reporter: OperationReporter
    let target: ReleaseTarget
    let budget: Duration

    /// - Parameter lastGood: the revision to go back to, when the operation recorded one; else the
    ///   newest revision that was deployed before.
    /// - Returns: a sentence for the operation's last reply; empty when nothing needed doing.
    func putInOrder(lastGood: Int?) async throws -> String {
        try await stopAbandonedHelm()
        return try await recoverPending(lastGood: lastGood)
    }

    /// Stops a helm that the daemon which stopped left running on the release, and says so in the
    /// thread: the first thing a resumed operation does before reading the release.
    func stopAbandonedHelm() async throws {
        let stopped = await services.releases.stopAbandonedProcesses(for: target)
        if stopped > 0 {
            try await reporter.report(Reply(
                .progress, "Stopped \(stopped) helm process\(stopped == 1 ? "" : "es") left running on \(target.release) by the daemon that stopped."))
        }
    }

    /// Recovers a release left `pending-*` (no helm runs on it any more: see `stopAbandonedHelm`).
    /// - Returns: a sentence for the operation's last reply; empty when it was not pending.
    func recoverPending(lastGood: Int?) async throws -> String {
        guard let status = try await services.releases.status(target), status.state.isPending else { return "" }
        if status.state == .pendingInstall {
            try await reporter.report(Reply(
                .progress, "\(target.release) is stuck in pending-install (revision \(status.revision)); removing it with helm uninstall."))
            try await services.releases.uninstall(target, timeout: budget)
            try await reporter.recordFailedRevision(status.revision)
            return "The unfinished first install of \(target.release) was removed."
        }
        let history = try await services.releases.history(target)
        let good = lastGood ?? history.last {
            $0.revision < status.revision && ($0.state == .deployed || $0.state == .superseded)
        }?.revision
        guard let good else {
            throw Refusal("\(target.release) is stuck in \(status.state) and has no earlier good revision to roll back to.",
                          hint: "Remove it (`helm uninstall`) and deploy again.")
        }
        try await reporter.report(Reply(
            .progress, "\(target.release) is stuck in \(status.state) (revision \(status.revision)); rolling back to revision \(good)."))
        try await reporter.recordFailedRevision(status.revision)
        let restored = try await services.releases.rollback(target, to: good, timeout: budget)
        try await reporter.recordFailedRevision(restored.revision)
        return "\(target.release) was recovered from \(status.state): revision \(good) restored as revision \(restored.revision)."
    }
}
