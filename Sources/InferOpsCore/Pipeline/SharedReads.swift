import Synchronization

/// Identical reads asked for while one is in flight share its answer: many people asking
/// `/infer status` or `/infer history` of one model at once cost one `helm status` and one look at
/// the cluster, not one each. Nothing is kept once the read has answered, so an answer is never
/// older than the request it joined.
public final class SharedReads: Sendable {
    /// For each read in flight, the callers waiting for its answer.
    let waiting = Mutex<[String: [CheckedContinuation<any Sendable, any Error>]]>([:])

    public init() {}

    /// The answer of `fetch`, or of the identical read (same `key`) already in flight. A key names
    /// what is read and from where, and always reads a value of the same type.
    public func read<Value: Sendable>(_ key: String, _ fetch: () async throws -> Value) async throws -> Value {
        do {
            let shared = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<any Sendable, any Error>) in
                let leads = waiting.withLock { waiting -> Bool in
                    if waiting[key] != nil {
                        waiting[key]!.append(continuation)
                        return false
                    }
                    waiting[key] = []
                    return true
                }
                if leads { continuation.resume(throwing: Leads()) }
            }
            guard let value = shared as? Value else { preconditionFailure("reads of \(key) answer different types") }
            return value
        } catch is LeaderCancelled {
            // The caller that made the read was cancelled; this one was not, and reads again.
            return try await read(key, fetch)
        } catch is Leads {
            let result: Result<Value, any Error>
            do {
                result = .success(try await fetch())
            } catch {
                result = .failure(error)
            }
            let followers = waiting.withLock { $0.removeValue(forKey: key) ?? [] }
            // A read that failed because its caller was cancelled (a report that no longer needs
            // it) says nothing about the others: they read again, one of them for all.
            let outcome: Result<any Sendable, any Error> =
                if Task.isCancelled, case .failure = result { .failure(LeaderCancelled()) } else { result.map { $0 } }
            for follower in followers { follower.resume(with: outcome) }
            return try result.get()
        }
    }

    /// How many callers wait for the read of `key` in flight (for tests).
    public func followers(of key: String) -> Int {
        waiting.withLock { $0[key]?.count ?? 0 }
    }

    /// Tells the first caller of a key that it makes the read.
    struct Leads: Error {}
    /// Tells the callers waiting for a read that its maker was cancelled before it answered.
    struct LeaderCancelled: Error {}
}
