import Synchronization

/// How many inbound events the intake is acknowledging right now, so that the work they start can
/// give way: in a burst of commands every one is acknowledged first, and the operations start
/// after, instead of the last command of the burst waiting behind the first steps of all the
/// operations before it. Work gives way for a bounded time only (`OperationRunner.Settings`), so a
/// steady stream of events never holds an operation back for longer than that.
public final class Acknowledging: Sendable {
    struct State: WaitedOn {
        var count = 0
        var waiters = Waiters()
    }

    let state = Mutex(State())

    public init() {}

    /// Events being acknowledged now.
    public var count: Int { state.withLock { $0.count } }

    /// Callers of `quiet(within:)` waiting now.
    public var waiters: Int { state.withLock { $0.waiters.count } }

    /// An event arrived; `end()` follows once it is acknowledged.
    public func begin() {
        state.withLock { $0.count += 1 }
    }

    /// An event is acknowledged; the last one lets whatever waits go on.
    public func end() {
        let released = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count -= 1
            return state.count == 0 ? state.waiters.takeAll() : []
        }
        for waiter in released { waiter.resume() }
    }

    /// One event's acknowledgement: begun when made, ended by the first `end()` (or when the event
    /// has been handled, whatever came first).
    public final class Event: Sendable {
        let acknowledging: Acknowledging
        let ended = Mutex(false)

        init(_ acknowledging: Acknowledging) {
            self.acknowledging = acknowledging
            acknowledging.begin()
        }

        public func end() {
            let first = ended.withLock { ended -> Bool in
                defer { ended = true }
                return !ended
            }
            if first { acknowledging.end() }
        }
    }

    /// Handles one event: `body` gets its acknowledgement to end as soon as the event is
    /// acknowledged; it ends anyway when the body returns.
    public func handling<Result>(_ body: (Event) async throws -> Result) async rethrows -> Result {
        let event = Event(self)
        defer { event.end() }
        return try await body(event)
    }

    /// Returns when no event is being acknowledged, or after `bound`, whichever comes first.
    public func quiet(within bound: Duration) async {
        guard count > 0 else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.state.wait { $0.count == 0 } }
            group.addTask { try? await Task.sleep(for: bound) }
            await group.next()
            group.cancelAll()
        }
    }
}
