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
    /// What the child printed, or its tail when it printed more than the runner keeps (see
    /// `ProcessRunner.stdoutLimit`).
    var stdout: Data
    var stderr: Data
    /// How many bytes were left out of the front of `stdout` and `stderr`; 0 when they are whole.
    var stdoutDropped = 0
    var stderrDropped = 0

    var succeeded: Bool { !signalled && status == 0 }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// Why a run did not produce a `ProcessOutput` of its own.
enum ProcessRunError: Error, Sendable {
    /// The executable could not be started (missing, not executable).
    case launchFailed(String)
    /// The task was cancelled; the process got SIGTERM and has exited (`output` is what it printed),
    /// or was never started (`nil`).
    case cancelled(ProcessOutput?)
    /// The process outlived its deadline; it got SIGTERM and has exited.
    case deadlineExceeded(ProcessOutput)
}

/// Runs an executable with an argument vector, never through a shell, and collects its output.
///
/// It calls `posix_spawn` itself rather than using Foundation's `Process`, for the child's signal
/// state: a process inherits the blocked-signal mask of the thread that spawns it, and the threads
/// Swift concurrency runs on block almost every signal. A child spawned from one would never see
/// the SIGTERM that cancellation depends on (Go programs unblock the signals they ask for, other
/// programs do not). Here the child always starts with an empty mask and default handlers, in its
/// own process group, so a Ctrl-C meant for the daemon does not kill helm mid-write: the daemon
/// decides, and stops it with SIGTERM.
///
/// One dedicated thread per run drains both pipes with `poll` (helm's `--output=json` release is
/// larger than a pipe buffer; a child blocked on a full stderr while the parent reads stdout would
/// never exit) and then waits for the exit. It is not a thread of the cooperative pool, because a
/// helm `--wait` blocks it for minutes.
///
/// Cancelling the calling task sends SIGTERM, which helm answers by marking the revision `failed`
/// (SIGKILL would leave it `pending-*`), and waits for the exit. Only a child that ignores SIGTERM
/// for `terminationGrace` gets SIGKILL. Signals go to the child's whole process group, so a
/// credential plugin or any other process helm started is stopped with it.
///
/// The end of a run is the child's exit, not the end of its output: a process helm started (a hung
/// kubeconfig `exec` plugin, a grandchild) inherits its stdout and stderr and can hold them open
/// long after helm has gone. Once the child has exited, the runner reads for `outputGrace` more,
/// then stops reading, and SIGKILLs whatever is left of the group before it reaps the child (a
/// reaped leader frees its pid, and with it the group id a later signal would go to). A process
/// that left the group (`setsid`) is not signalled, but it no longer holds up the run either.
///
/// Output is kept up to a limit per stream, so a child that prints without end cannot exhaust the
/// daemon's memory. The runner keeps the **tail** of a stream that exceeds its limit, after a line
/// `… N bytes truncated …`: helm writes its error last, and the classifier reads the last
/// `Error:` line. The buffer holds at most twice the limit at any moment.
struct ProcessRunner: Sendable {
    var terminationGrace: Duration
    /// How long the runner keeps reading after the child has exited, for output still in flight.
    var outputGrace: Duration
    /// The most bytes of stdout kept; beyond it the tail is kept.
    var stdoutLimit: Int
    /// The most bytes of stderr kept; beyond it the tail is kept.
    var stderrLimit: Int

    init(
        terminationGrace: Duration = .seconds(30),
        outputGrace: Duration = .seconds(2),
        stdoutLimit: Int = 1 << 20,
        stderrLimit: Int = 1 << 20
    ) {
        self.terminationGrace = terminationGrace
        self.outputGrace = outputGrace
        self.stdoutLimit = stdoutLimit
        self.stderrLimit = stderrLimit
    }

    /// - Parameters:
    ///   - executable: a path, or a bare name looked up in `PATH`.
    ///   - environment: the child's whole environment.
    ///   - deadline: after this long the child is stopped as if the task had been cancelled, so a
    ///     call against an API server that accepts connections but never answers cannot hang forever.
    /// - Throws: `ProcessRunError`.
    func run(
        executable: String,
        arguments: [String],
        environment: [String: String],
        deadline: Duration? = nil
    ) async throws -> ProcessOutput {
        let child = Child(runner: self)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                child.start(
                    executable: executable,
                    arguments: arguments,
                    environment: environment,
                    deadline: deadline,
                    continuation: continuation
                )
            }
        } onCancel: {
            child.stop(reason: .cancelled)
        }
    }
}

/// One child process, shared by the launching task, its I/O thread, the deadline timer and the
/// cancellation handler; `state` is its only mutable part.
private final class Child: Sendable {
    enum StopReason { case cancelled, deadline }

    struct State {
        var continuation: CheckedContinuation<ProcessOutput, any Error>?
        /// The child's pid, which is also its process group id.
        var pid: pid_t?
        /// Set once the child has exited: from then on its own exit decides the result, and a
        /// cancellation or the deadline no longer changes it.
        var exited = false
        /// Set just before the child is reaped: until then its pid, and so its group id, cannot be
        /// reused, so a signal sent while this is false always reaches this child's group.
        var reaped = false
        var stopReason: StopReason?
    }

    let runner: ProcessRunner
    let state = Mutex(State())

    init(runner: ProcessRunner) {
        self.runner = runner
    }

    func start(
        executable: String,
        arguments: [String],
        environment: [String: String],
        deadline: Duration?,
        continuation: CheckedContinuation<ProcessOutput, any Error>
    ) {
        let alreadyStopped = state.withLock { state -> Bool in
            if state.stopReason != nil { return true }
            state.continuation = continuation
            return false
        }
        if alreadyStopped {
            continuation.resume(throwing: ProcessRunError.cancelled(nil))
            return
        }

        let spawned: Spawned
        do {
            spawned = try Spawned.spawn(executable: executable, arguments: arguments, environment: environment)
        } catch {
            finish(.failure(.launchFailed("\(executable): \(error)")))
            return
        }
        let stopNow = state.withLock { state -> Bool in
            state.pid = spawned.pid
            return state.stopReason != nil
        }
        if stopNow { terminate(spawned.pid) }

        Thread.detachNewThread { [self] in
            let (stdout, stderr) = spawned.drain(
                limits: (runner.stdoutLimit, runner.stderrLimit),
                outputGrace: runner.outputGrace
            ) { self.state.withLock { $0.exited = true } }
            let status = spawned.waitForExit {
                self.state.withLock { state in
                    state.exited = true
                    // Whatever is left of the group (a plugin, a grandchild) does not outlive the run.
                    _ = kill(-spawned.pid, SIGKILL)
                    state.reaped = true
                }
            }
            let output = ProcessOutput(
                status: status.code,
                signalled: status.signalled,
                stdout: stdout.bytes,
                stderr: stderr.bytes,
                stdoutDropped: stdout.dropped,
                stderrDropped: stderr.dropped
            )
            let reason = state.withLock { $0.stopReason }
            switch reason {
            case .cancelled: finish(.failure(.cancelled(output)))
            case .deadline: finish(.failure(.deadlineExceeded(output)))
            case nil: finish(.success(output))
            }
        }
        if let deadline {
            DispatchQueue.global().asyncAfter(deadline: .now() + deadline.timeInterval) { [self] in
                stop(reason: .deadline)
            }
        }
    }

    /// SIGTERM to the child's group now, SIGKILL after the grace period if the child is still running.
    func stop(reason: StopReason) {
        let pid = state.withLock { state -> pid_t? in
            guard state.stopReason == nil, !state.exited else { return nil }
            state.stopReason = reason
            return state.pid
        }
        if let pid { terminate(pid) }
    }

    private func terminate(_ pid: pid_t) {
        signal(pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + runner.terminationGrace.timeInterval) { [self] in
            signal(pid, SIGKILL)
        }
    }

    /// Sends `signal` to the child's process group unless the child has been reaped, under the lock
    /// that `reaped` is set under.
    private func signal(_ pid: pid_t, _ signal: Int32) {
        state.withLock { state in
            if !state.reaped { _ = kill(-pid, signal) }
        }
    }

    private func finish(_ result: Result<ProcessOutput, ProcessRunError>) {
        let continuation = state.withLock { state in
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }
}

/// A spawned child and the parent's ends of its stdout and stderr pipes.
private struct Spawned: Sendable {
    struct SpawnFailure: Error, CustomStringConvertible {
        var errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }

    let pid: pid_t
    let stdout: Int32
    let stderr: Int32

    static func spawn(executable: String, arguments: [String], environment: [String: String]) throws -> Spawned {
        let stdoutPipe = try channel()
        let stderrPipe: [Int32]
        do {
            stderrPipe = try channel()
        } catch {
            close(stdoutPipe[0])
            close(stdoutPipe[1])
            throw error
        }
        defer {
            close(stdoutPipe[1])
            close(stderrPipe[1])
        }

        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t? = nil
        var attributes: posix_spawnattr_t? = nil
        #else
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        #if os(Linux)
        // Nothing else of the daemon's reaches the child. Descriptors opened without close-on-exec
        // (SwiftNIO's sockets are, its listening socket among them) would otherwise be inherited:
        // a helm that outlives a killed daemon would hold its port, and the restarted daemon could
        // not listen again until that helm ended. (Darwin: POSIX_SPAWN_CLOEXEC_DEFAULT below.)
        closeInheritedDescriptors(&actions)
        #endif

        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        sigdelset(&allSignals, SIGKILL)
        sigdelset(&allSignals, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        #if canImport(Darwin)
        flags |= POSIX_SPAWN_CLOEXEC_DEFAULT
        #endif
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        var result = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        // A binary written a moment ago (helm replaced in place, a script a test just wrote) is
        // "busy" while some other process's fork still holds a descriptor open for writing to it;
        // that fork execs or exits within milliseconds, so a few short retries start it.
        var attempt = 1
        while result == ETXTBSY && attempt < 5 {
            usleep(useconds_t(10_000 * attempt))
            attempt += 1
            result = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        }
        guard result == 0 else {
            close(stdoutPipe[0])
            close(stderrPipe[0])
            throw SpawnFailure(errno: result)
        }
        return Spawned(pid: pid, stdout: stdoutPipe[0], stderr: stderrPipe[0])
    }

    #if os(Linux)
    /// Adds actions that close every descriptor above standard error in the child: glibc's
    /// `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; looked up at run time, as Swift's
    /// Glibc module does not declare it), else one close per descriptor open now. glibc ignores a
    /// close of a descriptor that is not open, so one closed meanwhile does not fail the spawn.
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            let closeFrom = unsafeBitCast(symbol, to: CloseFrom.self)
            if closeFrom(&actions, 3) == 0 { return }
        }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in open.compactMap(Int32.init) where descriptor > 2 {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
    }
    #endif

    /// A one-way channel for one of the child's outputs, `[read end, write end]`, both ends
    /// close-on-exec from the moment they exist: no other child spawned meanwhile (by this runner or
    /// anything else in the daemon) can inherit them, and an inherited write end would hold back this
    /// child's end-of-file for as long as that other process lived. On Linux a socket pair is the
    /// way to get that atomically (`pipe2` is not visible to Swift); on Darwin `posix_spawn` closes
    /// everything not passed explicitly (`POSIX_SPAWN_CLOEXEC_DEFAULT`).
    private static func channel() throws -> [Int32] {
        var ends: [Int32] = [-1, -1]
        #if os(Linux)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &ends) == 0 else { throw SpawnFailure(errno: errno) }
        // The child only writes and the parent only reads.
        shutdown(ends[0], Int32(SHUT_WR))
        shutdown(ends[1], Int32(SHUT_RD))
        #else
        guard pipe(&ends) == 0 else { throw SpawnFailure(errno: errno) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        #endif
        return ends
    }

    /// Reads both pipes, whichever fills first, until both are closed, or until `outputGrace` after
    /// the child has exited, whichever comes first; closes them. Calls `exited` once on seeing the
    /// child exit (it is not reaped here).
    func drain(
        limits: (stdout: Int, stderr: Int),
        outputGrace: Duration,
        exited: () -> Void
    ) -> (stdout: TailBuffer, stderr: TailBuffer) {
        var buffers = [TailBuffer(limit: limits.stdout), TailBuffer(limit: limits.stderr)]
        var descriptors = [
            pollfd(fd: stdout, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stderr, events: Int16(POLLIN), revents: 0),
        ]
        var chunk = [UInt8](repeating: 0, count: 65536)
        let clock = ContinuousClock()
        var exitSeen: ContinuousClock.Instant?
        while descriptors.contains(where: { $0.fd >= 0 }) {
            // While the child runs, wake up now and then to see whether it has exited: its output
            // may be held open by a process it started.
            var timeout: Int32 = 100
            if let exitSeen {
                let left = outputGrace - (clock.now - exitSeen)
                if left <= .zero { break }
                timeout = Int32(clamping: max(1, Int64(left.timeInterval * 1000)))
            }
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            for index in descriptors.indices where descriptors[index].fd >= 0 && descriptors[index].revents != 0 {
                let count = chunk.withUnsafeMutableBytes { read(descriptors[index].fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    chunk.withUnsafeBytes { buffers[index].append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                } else if count == 0 || errno != EINTR && errno != EAGAIN {
                    close(descriptors[index].fd)
                    descriptors[index].fd = -1  // poll ignores negative descriptors
                }
            }
            if exitSeen == nil, hasExited() {
                exitSeen = clock.now
                exited()
            }
        }
        for descriptor in descriptors where descriptor.fd >= 0 { close(descriptor.fd) }
        return (buffers[0], buffers[1])
    }

    /// Whether the child has exited, without reaping it.
    private func hasExited() -> Bool {
        var info = siginfo_t()
        // With WNOHANG and no exit yet, waitid returns 0 and leaves `si_signo` 0.
        let result = waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT)
        return result == 0 && info.si_signo != 0 || result < 0 && errno == ECHILD
    }

    /// Blocks until the child exits; calls `exited` while the child is a zombie (its pid still
    /// taken), then reaps it.
    func waitForExit(exited: () -> Void) -> (code: Int32, signalled: Bool) {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
        exited()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? ((status >> 8) & 0xff, false) : (signal, true)
    }
}

/// The last `limit` bytes of a stream and how many came before them.
///
/// Storage grows to at most twice the limit (plus one read) before the front is cut, so appending
/// costs amortized constant time per byte and memory stays bounded however much is written.
struct TailBuffer: Sendable {
    let limit: Int
    private(set) var storage = Data()
    /// Bytes cut from the front of `storage` so far.
    private var cut = 0

    init(limit: Int) {
        self.limit = max(0, limit)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        storage.append(contentsOf: bytes)
        if storage.count > 2 * limit {
            // In place, so the storage is reused rather than a slice keeping the whole buffer alive.
            let excess = storage.count - limit
            storage.removeSubrange(storage.startIndex..<storage.startIndex + excess)
            cut += excess
        }
    }

    /// How many bytes the whole stream had beyond the kept tail.
    var dropped: Int { cut + max(0, storage.count - limit) }

    /// The stream when it fitted; otherwise a `… N bytes truncated …` line and the last `limit` bytes.
    var bytes: Data {
        let dropped = self.dropped
        guard dropped > 0 else { return storage }
        let tail = storage.subdata(in: storage.endIndex - limit..<storage.endIndex)
        return Data("… \(dropped) bytes truncated …\n".utf8) + tail
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
