import Synchronization

/// Whose turn it is to write: one write transaction at a time, in arrival order, except that an
/// urgent one (the intake accepting a chat event, which a person or a chat platform waits on) goes
/// before every ordinary one still waiting. Without it, an event accepted while many operations
/// run waits behind all of their step records.
final class WriteTurns: Sendable {
    struct State {
        var writing = false
        var urgent: [CheckedContinuation<Void, Never>] = []
        var ordinary: [CheckedContinuation<Void, Never>] = []
    }

    let state = Mutex(State())

    /// Returns when it is the caller's turn; the caller must `give()` it back.
    func take(urgent: Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if !state.writing {
                    state.writing = true
                    return true
                }
                if urgent { state.urgent.append(continuation) } else { state.ordinary.append(continuation) }
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Hands the turn to the next urgent writer, else the next ordinary one, else frees it.
    func give() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if !state.urgent.isEmpty { return state.urgent.removeFirst() }
            if !state.ordinary.isEmpty { return state.ordinary.removeFirst() }
            state.writing = false
            return nil
        }
        next?.resume()
    }
}
