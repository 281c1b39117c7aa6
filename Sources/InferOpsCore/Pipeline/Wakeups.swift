import Synchronization

/// A place to wait for "look again": `next()` returns at the next `wakeAll()`, or at once when the
/// waiting task is cancelled (a cancel or a stop never hangs on it).
public final class Wakeups: Sendable {
    struct Waiting {
        var nextID = 0
        var continuations: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    let waiting = Mutex(Waiting())

    public init() {}

    public func next() async {
        let id = waiting.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Cancelled before it was stored: the handler below found nothing to resume.
                let resumeNow = waiting.withLock { state -> Bool in
                    if Task.isCancelled { return true }
                    state.continuations[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            waiting.withLock { $0.continuations.removeValue(forKey: id) }?.resume()
        }
    }

    public func wakeAll() {
        let all = waiting.withLock { state in
            defer { state.continuations = [:] }
            return Array(state.continuations.values)
        }
        for continuation in all { continuation.resume() }
    }
}
