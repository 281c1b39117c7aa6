import Foundation

/// Finds what a promotion carries forward: the newest deploy (or promotion) of the model in the
/// source environment that succeeded and whose own test completion was recorded within the
/// evidence window. A verification made by a rollback, or one of a deploy that later failed, is
/// not evidence.
struct PromotionEvidence {
    let store: any OperationStore

    /// - Throws: `Refusal` saying what is missing and how to get it.
    func newest(model: String, in source: EnvironmentSettings, window: Duration, now: Date)
        async throws -> (OperationRecord, Verification)
    {
        let since = now.addingTimeInterval(-window.seconds)
        var seen: Set<OperationID> = []
        for verification in try await store.verifications(model: model, environment: source.name, since: since)
        where seen.insert(verification.operation).inserted {
            if let record = try await store.operation(verification.operation), Self.isEvidence(record, verification) {
                return (record, verification)
            }
        }
        throw try await missing(model: model, in: source, window: window, now: now)
    }

    /// The source a stored promotion names, with its verification, when it is still evidence: a
    /// recorded operation's state never leaves `succeeded`, so this fails only for a record that
    /// is gone or was edited, and the promotion then stops instead of guessing.
    func pinned(_ id: OperationID) async throws -> (OperationRecord, Verification)? {
        guard let record = try await store.operation(id) else { return nil }
        let verifications = try await store.verifications(model: record.model, environment: record.environment,
                                                          since: record.createdAt)
        guard let verification = verifications.first(where: { $0.operation == id && Self.isEvidence(record, $0) })
        else { return nil }
        return (record, verification)
    }

    static func isEvidence(_ record: OperationRecord, _ verification: Verification) -> Bool {
        record.kind.deploysPlan && record.state == .succeeded && record.plan != nil
            && (verification.revision == nil || record.revision == nil || verification.revision == record.revision)
    }

    /// Why there is no evidence, from the newest deploy there: never deployed, not successful, or too old.
    func missing(model: String, in source: EnvironmentSettings, window: Duration, now: Date) async throws -> Refusal {
        let hint = "Deploy it there and let it verify: `/infer deploy \(model) to \(source.name)`; then promote again."
        let deploys = try await store.recentOperations(model: model, environment: source.name, limit: 50)
            .filter { $0.kind.deploysPlan }
        let windowText = window.spoken
        guard let newest = deploys.first else {
            return Refusal("\(model) has never been deployed to `\(source.name)`, so there is nothing verified to promote.",
                           hint: hint)
        }
        if let good = deploys.first(where: { $0.state == .succeeded }) {
            let age = Duration.seconds(now.timeIntervalSince(good.updatedAt).rounded())
            let newer = good.id == newest.id ? "" : " (the newest, \(newest.id), is \(newest.state.rawValue.replacingOccurrences(of: "_", with: " ")))"
            return Refusal(
                "No verified deploy of \(model) in `\(source.name)` within the last \(windowText): the last good one, "
                    + "\(good.id), was verified \(age.spoken) ago\(newer).", hint: hint)
        }
        return Refusal(
            "No deploy of \(model) in `\(source.name)` has succeeded: the newest, \(newest.id), is "
                + "\(newest.state.rawValue.replacingOccurrences(of: "_", with: " ")).", hint: hint)
    }
}
