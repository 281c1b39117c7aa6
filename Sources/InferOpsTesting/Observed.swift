import Synchronization

/// State behind a lock that tasks can wait on. Every change re-checks the waiting conditions and
/// resumes those that now hold, so tests await events instead of sleeping for them.
final class Observed<State: Sendable>: Sendable {
    private struct Waiter {
        var condition: @Sendable (State) -> Bool
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct Storage {
        var state: State
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let storage: Mutex<Storage>

    init(_ state: State) {
        storage = Mutex(Storage(state: state))
    }

    var value: State { storage.withLock { $0.state } }

    /// Changes the state, then resumes every waiter whose condition holds afterwards.
    @discardableResult
    func update<Result: Sendable>(_ body: (inout State) -> Result) -> Result {
        let (result, ready) = storage.withLock { storage -> (Result, [CheckedContinuation<Void, any Error>]) in
            let result = body(&storage.state)
            var ready: [CheckedContinuation<Void, any Error>] = []
            for (id, waiter) in storage.waiters where waiter.condition(storage.state) {
                ready.append(waiter.continuation)
                storage.waiters[id] = nil
            }
            return (result, ready)
        }
        for continuation in ready { continuation.resume() }
        return result
    }

    /// Returns once `condition` holds; checks it now and after every change.
    /// - Throws: `CancellationError` when the waiting task is cancelled (e.g. by a test time limit).
    func wait(until condition: @escaping @Sendable (State) -> Bool) async throws {
        let id = storage.withLock { storage in
            storage.nextWaiter += 1
            return storage.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let immediate: Bool? = storage.withLock { storage in
                    if Task.isCancelled { return false }
                    if condition(storage.state) { return true }
                    storage.waiters[id] = Waiter(condition: condition, continuation: continuation)
                    return nil
                }
                switch immediate {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let waiter = storage.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }
}

/// A barrier a fake stops at until the test opens it, so a test can hold a call "in flight",
/// look at everything else meanwhile, and then let it go on.
public final class Gate: Sendable {
    struct State: Sendable {
        var arrivals = 0
        var isOpen = false
    }

    private let observed = Observed(State())

    public init() {}

    /// How many calls have reached the gate.
    public var arrivals: Int { observed.value.arrivals }
    public var isOpen: Bool { observed.value.isOpen }

    /// Returns once `count` calls have reached the gate.
    public func waitUntilReached(count: Int = 1) async throws {
        try await observed.wait { $0.arrivals >= count }
    }

    /// Lets every held call, and every later one, through.
    public func open() {
        observed.update { $0.isOpen = true }
    }

    /// Called by a fake: counts the arrival and waits until the gate is open.
    /// - Throws: `CancellationError` when the calling task is cancelled while it waits.
    public func pass() async throws {
        observed.update { $0.arrivals += 1 }
        try await observed.wait { $0.isOpen }
    }
}
