import Synchronization

/// The port the listener is bound to, and everyone waiting to learn it.
///
/// With port 0 the kernel picks the port, and the daemon needs it to register its own deny-backend
/// URL with the router; so callers wait here until the server reports it is running. Waiting ends
/// with the port, with the error that stopped the server before it bound, or on cancellation.
final class ListenerPort: Sendable {
    private enum State {
        case starting([Int: CheckedContinuation<Int, any Error>])
        case listening(Int)
        case stopped(any Error)
    }

    private let state = Mutex<(state: State, nextWaiter: Int)>((.starting([:]), 0))

    /// The bound port; waits until the server listens.
    /// - Throws: The error that stopped the server, ``DaemonHTTPServer/Stopped`` when it stopped
    ///   without one, or `CancellationError`.
    func wait() async throws -> Int {
        let id = state.withLock { value in
            value.nextWaiter += 1
            return value.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
                let ready: Result<Int, any Error>? = state.withLock { value in
                    switch value.state {
                    case .listening(let port):
                        return .success(port)
                    case .stopped(let error):
                        return .failure(error)
                    case .starting(var waiters):
                        // Checked under the lock that `onCancel` takes, so a cancellation that came
                        // before this waiter was stored is not missed.
                        if Task.isCancelled { return .failure(CancellationError()) }
                        waiters[id] = continuation
                        value.state = .starting(waiters)
                        return nil
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Int, any Error>? = state.withLock { value in
                guard case .starting(var waiters) = value.state, let waiter = waiters.removeValue(forKey: id) else {
                    return nil
                }
                value.state = .starting(waiters)
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    func listening(on port: Int) {
        resolve(.listening(port), with: .success(port))
    }

    func stopped(_ error: any Error) {
        resolve(.stopped(error), with: .failure(error))
    }

    private func resolve(_ next: State, with result: Result<Int, any Error>) {
        let waiters = state.withLock { value -> [CheckedContinuation<Int, any Error>] in
            let waiters: [CheckedContinuation<Int, any Error>]
            if case .starting(let pending) = value.state {
                waiters = Array(pending.values)
            } else {
                waiters = []
            }
            value.state = next
            return waiters
        }
        for waiter in waiters {
            waiter.resume(with: result)
        }
    }
}
