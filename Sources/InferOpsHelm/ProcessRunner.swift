import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What one finished child process left behind.
struct ProcessOutput: Sendable {
    /// The exit code, or the signal number when `signalled`.
    var status: Int32
    var signalled: Bool
    var stdout: Data
    var stderr: Data

    var succeeded: Bool { !signalled && status == 0 }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// Why a run did not produce a `ProcessOutput` of its own.
enum ProcessRunError: Error, Sendable {
    /// The executable could not be started (missing, not executable).
    case launchFailed(String)
    /// The task was cancelled; the process got SIGTERM and has exited (`output` is what it printed).
    case cancelled(ProcessOutput?)
    /// The process outlived its deadline; it got SIGTERM and has exited.
    case deadlineExceeded(ProcessOutput)
}

/// Runs an executable with an argument vector, never through a shell, and collects its output.
///
/// Both pipes are drained on their own threads while the process runs: helm's `--output=json`
/// release is larger than a pipe buffer, and a child blocked on a full stderr pipe while the parent
/// waits on stdout would never exit. Dedicated threads (not the cooperative pool, not Dispatch's
/// global queues) do the blocking reads, because a helm `--wait` can block them for many minutes.
///
/// Cancelling the calling task sends SIGTERM, the signal helm handles by marking the revision
/// `failed` (SIGKILL would leave it `pending-*`), then waits for the process to exit. Only if it
/// ignores SIGTERM for `terminationGrace` does it get SIGKILL.
struct ProcessRunner: Sendable {
    var terminationGrace: Duration

    init(terminationGrace: Duration = .seconds(30)) {
        self.terminationGrace = terminationGrace
    }

    /// - Parameters:
    ///   - deadline: after this long the process is stopped as if the task had been cancelled, so a
    ///     call against an API server that accepts connections but never answers cannot hang forever.
    /// - Throws: `ProcessRunError`.
    func run(
        executable: String, arguments: [String], environment: [String: String], deadline: Duration? = nil
    ) async throws -> ProcessOutput {
        let execution = Execution(grace: terminationGrace)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                execution.start(
                    executable: executable, arguments: arguments, environment: environment, deadline: deadline,
                    continuation: continuation
                )
            }
        } onCancel: {
            execution.stop(reason: .cancelled)
        }
    }
}

/// One child process, shared between the launching code, the two reader threads, the termination
/// handler and the cancellation handler; `state` is the only mutable part.
private final class Execution: Sendable {
    enum StopReason { case cancelled, deadline }

    struct State {
        var continuation: CheckedContinuation<ProcessOutput, any Error>?
        var pid: pid_t?
        var exited = false
        var stopReason: StopReason?
        var stdout: Data?
        var stderr: Data?
        var exit: (status: Int32, signalled: Bool)?
    }

    let grace: Duration
    let state = Mutex(State())

    init(grace: Duration) {
        self.grace = grace
    }

    func start(
        executable: String, arguments: [String], environment: [String: String], deadline: Duration?,
        continuation: CheckedContinuation<ProcessOutput, any Error>
    ) {
        let stoppedEarly = state.withLock { state -> Bool in
            if state.stopReason != nil { return true }
            state.continuation = continuation
            return false
        }
        if stoppedEarly {
            continuation.resume(throwing: ProcessRunError.cancelled(nil))
            return
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.terminationHandler = { [self] finished in
            let signalled = finished.terminationReason == .uncaughtSignal
            record { $0.exit = (finished.terminationStatus, signalled) }
        }
        do {
            try process.run()
        } catch {
            let pending = state.withLock { state in
                defer { state.continuation = nil }
                return state.continuation
            }
            pending?.resume(throwing: ProcessRunError.launchFailed("\(executable): \(error.localizedDescription)"))
            return
        }
        let pid = process.processIdentifier
        let stopNow = state.withLock { state -> Bool in
            state.pid = pid
            return state.stopReason != nil && !state.exited
        }
        if stopNow { terminate(pid) }

        let stdoutHandle = stdout.fileHandleForReading
        let stderrHandle = stderr.fileHandleForReading
        Thread.detachNewThread { [self] in
            let data = (try? stdoutHandle.readToEnd()) ?? Data()
            record { $0.stdout = data }
        }
        Thread.detachNewThread { [self] in
            let data = (try? stderrHandle.readToEnd()) ?? Data()
            record { $0.stderr = data }
        }
        if let deadline {
            DispatchQueue.global().asyncAfter(deadline: .now() + deadline.timeInterval) { [self] in
                stop(reason: .deadline)
            }
        }
    }

    /// SIGTERM now, SIGKILL after the grace period if it is still running.
    func stop(reason: StopReason) {
        let pid = state.withLock { state -> pid_t? in
            guard state.stopReason == nil, !state.exited else { return nil }
            state.stopReason = reason
            return state.pid
        }
        if let pid { terminate(pid) }
    }

    private func terminate(_ pid: pid_t) {
        kill(pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + grace.timeInterval) { [self] in
            let stillRunning = state.withLock { !$0.exited }
            if stillRunning { kill(pid, SIGKILL) }
        }
    }

    /// Records one of the three events (stdout closed, stderr closed, exited) and resumes the
    /// caller once all three have happened.
    private func record(_ update: (inout State) -> Void) {
        let finished = state.withLock { state -> (CheckedContinuation<ProcessOutput, any Error>, Result<ProcessOutput, ProcessRunError>)? in
            update(&state)
            if state.exit != nil { state.exited = true }
            guard let exit = state.exit, let stdout = state.stdout, let stderr = state.stderr,
                let continuation = state.continuation
            else { return nil }
            state.continuation = nil
            let output = ProcessOutput(status: exit.status, signalled: exit.signalled, stdout: stdout, stderr: stderr)
            switch state.stopReason {
            case .cancelled: return (continuation, .failure(.cancelled(output)))
            case .deadline: return (continuation, .failure(.deadlineExceeded(output)))
            case nil: return (continuation, .success(output))
            }
        }
        if let (continuation, result) = finished { continuation.resume(with: result) }
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
