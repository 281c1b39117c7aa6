import Synchronization

/// Tasks waiting for a condition on state kept in a `Mutex`: each registers under the same lock that
/// the condition is checked under, so no wake-up is lost between checking and waiting, and is
/// resumed by whoever makes the condition true (`resumeAll()`), or when its task is cancelled.
struct Waiters: Sendable {
    private var waiting: [Int: CheckedContinuation<Void, Never>] = [:]
    private var last = 0

    var count: Int { waiting.count }

    mutating func reserve() -> Int {
        last += 1
        return last
    }

    mutating func add(_ continuation: CheckedContinuation<Void, Never>, as key: Int) {
        waiting[key] = continuation
    }

    mutating func remove(_ key: Int) -> CheckedContinuation<Void, Never>? {
        waiting.removeValue(forKey: key)
    }

    /// Takes every waiter, to be resumed once the lock is let go.
    mutating func takeAll() -> [CheckedContinuation<Void, Never>] {
        defer { waiting = [:] }
        return Array(waiting.values)
    }
}

/// State with tasks waiting on it.
protocol WaitedOn: SendableMetatype {
    var waiters: Waiters { get set }
}

extension Mutex where Value: WaitedOn {
    /// Returns once `isDone` holds for the state (at once if it does now; else when a writer that made
    /// it true resumes the waiters), or when the task is cancelled.
    func wait(until isDone: (Value) -> Bool) async {
        let key = withLock { $0.waiters.reserve() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = withLock { state -> Bool in
                    if isDone(state) || Task.isCancelled { return true }
                    state.waiters.add(continuation, as: key)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            withLock { $0.waiters.remove(key) }?.resume()
        }
    }
}
