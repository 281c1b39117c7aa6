import Synchronization

/// The order of write transactions: one at a time, in arrival order, except that an urgent one (the
/// intake accepting a chat event, which a person or a chat platform waits on) goes before every
/// ordinary one still waiting. Without it, an event accepted while many operations run waits
/// behind all of their step records.
///
/// The next write is started by the one that ends, from the writer's own queue: waiting for the
/// writing task to be scheduled again first would leave the database idle while the few threads of
/// the concurrency pool are busy.
final class WriteTurns: Sendable {
    typealias Start = @Sendable () -> Void

    struct State {
        var writing = false
        var urgent: [Start] = []
        var ordinary: [Start] = []
    }

    let state = Mutex(State())

    /// Runs `start` now if no write is in progress, else when its turn comes. `start` begins the
    /// write and must call `finished()` when it has ended.
    func enqueue(urgent: Bool, _ start: @escaping Start) {
        let now = state.withLock { state -> Bool in
            if !state.writing {
                state.writing = true
                return true
            }
            if urgent { state.urgent.append(start) } else { state.ordinary.append(start) }
            return false
        }
        if now { start() }
    }

    /// Starts the next urgent write, else the next ordinary one, else frees the turn.
    func finished() {
        let next = state.withLock { state -> Start? in
            if !state.urgent.isEmpty { return state.urgent.removeFirst() }
            if !state.ordinary.isEmpty { return state.ordinary.removeFirst() }
            state.writing = false
            return nil
        }
        next?()
    }
}
