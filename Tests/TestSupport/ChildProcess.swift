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

/// How a child process ended.
public enum Exit: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    /// The exit code, or the signal number, as Foundation's `terminationStatus` gives it.
    public var status: Int32 {
        switch self {
        case .exited(let code), .signalled(let code): code
        }
    }

    /// Whether a signal ended it (Foundation's `terminationReason == .uncaughtSignal`).
    public var wasSignalled: Bool {
        if case .signalled = self { true } else { false }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit status \(code)"
        case .signalled(let signal): "signal \(signal)"
        }
    }
}

/// A program the tests start and own: its stdin is a pipe the test writes to, its output is kept for
/// waiting on and for failure messages, and it is killed and reaped when the test lets go of it.
///
/// It calls `posix_spawn` itself rather than using Foundation's `Process`, for the child's signal
/// state: the threads of `swift test` block almost every signal, and a child inherits that mask, so a
/// SIGTERM a test sends (or a daemon's graceful shutdown depends on) would never arrive. Here the
/// child starts with an empty mask and default handlers, in a process group of its own, so `stop()`
/// reaches everything it started and a Ctrl-C meant for the test run does not.
///
/// The child's stdin, stdout and stderr are socket pairs, close-on-exec from the moment they exist
/// (no other child that a parallel test spawns inherits them), written with `MSG_NOSIGNAL` (a child
/// that has gone cannot kill the test run with SIGPIPE). Holding stdin open is also a lifeline: a
/// child that reads it to its end (the Python programs here, piped `inferops serve`) exits when the
/// test run dies.
///
/// One thread per output stream reads it, and one more waits for the exit, so neither waiting nor
/// output ever holds a thread of the concurrency pool.
public final class ChildProcess: Sendable {
    /// Whether stderr is kept apart from stdout.
    public enum Errors: Sendable {
        /// Both go to one stream (`.standardOutput`), in the order the child wrote them.
        case merged
        case separate
    }

    public enum Stream: Sendable {
        case standardOutput, standardError
    }

    /// A name for failure messages ("the Kubernetes API emulator").
    public let name: String
    public let pid: pid_t
    private let shared: Shared

    /// Starts `executable` (a path, or a name looked up in `PATH`).
    /// - Parameters:
    ///   - environment: added to this process's environment (a value replaces the inherited one).
    ///   - input: `true` gives the child a stdin pipe to `send` to; `false` gives it `/dev/null`.
    /// - Throws: `TestFailure` when it cannot be started.
    public init(
        _ name: String,
        executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        input: Bool = true,
        errors: Errors = .merged
    ) throws {
        self.name = name
        let spawned = try Spawned.spawn(
            executable: executable,
            arguments: arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            workingDirectory: workingDirectory,
            input: input,
            errors: errors
        )
        pid = spawned.pid
        shared = Shared(pid: spawned.pid, input: spawned.input, output: spawned.output, errors: spawned.errors)
        shared.startThreads()
    }

    deinit { stop() }

    // MARK: Input

    /// Writes `text` to the child's stdin.
    /// - Throws: `TestFailure` when stdin is closed or the child no longer reads it.
    public func send(_ text: String) throws {
        try shared.send(Array(text.utf8), name: name)
    }

    /// Closes the child's stdin: it reads end-of-file (piped `serve` finishes and exits).
    public func closeInput() {
        shared.closeInput()
    }

    // MARK: Output

    /// What the child has written so far: stdout, then stderr when they are kept apart.
    public var output: String {
        shared.withState { state in
            String(decoding: state.streams[0].bytes + state.streams[1].bytes, as: UTF8.self)
        }
    }

    /// What the child has written to one stream so far.
    public func text(of stream: Stream = .standardOutput) -> String {
        shared.withState { String(decoding: $0.streams[stream.index].bytes, as: UTF8.self) }
    }

    /// The complete lines of one stream so far.
    public func lines(of stream: Stream = .standardOutput) -> [String] {
        shared.withState { $0.streams[stream.index].lines }
    }

    /// Every line of one stream, from the first, as it arrives; it ends when the child closes the stream.
    public func lineSequence(of stream: Stream = .standardOutput) -> AsyncStream<String> {
        shared.subscribe(stream.index)
    }

    /// The first line of `stream` that `matches`, waiting for it until `timeout`.
    /// - Throws: `TestFailure` with the output so far when the stream ends or the deadline passes first.
    @discardableResult
    public func waitForLine(
        in stream: Stream = .standardOutput,
        within timeout: Duration,
        where matches: @escaping @Sendable (String) -> Bool
    ) async throws -> String {
        let lines = lineSequence(of: stream)
        let found = try await withDeadline(timeout, "a matching line from \(name)") { () async -> String? in
            for await line in lines where matches(line) { return line }
            return nil
        }
        guard let found else {
            throw TestFailure("\(name) closed its output (\(exit.map { "\($0)" } ?? "still running")) "
                + "without the line waited for: \(tail(of: output))")
        }
        return found
    }

    /// `waitForLine` for synchronous tests: blocks the calling thread until a line of `stream`
    /// `matches`. A synchronous test keeps its thread while it waits, so it reacts to the line at
    /// once, where an async test may wait for a thread of a pool that busy parallel tests hold.
    /// - Throws: `TestFailure` with the output so far when the stream ends or the deadline passes first.
    @discardableResult
    public func waitForLineBlocking(
        in stream: Stream = .standardOutput,
        within timeout: Duration,
        where matches: (String) -> Bool
    ) throws -> String {
        var found: String?
        var seen = 0
        do {
            try pollUntil("a matching line from \(name)", timeout: timeout) {
                let lines = self.lines(of: stream)
                found = lines[seen...].first(where: matches)
                seen = lines.count
                return found != nil || exit != nil
            }
        } catch {
            throw TestFailure("\(error): \(tail(of: output))")
        }
        if found == nil {
            // It exited: what it wrote last may still be on its way.
            waitForEndOfOutput()
            found = lines(of: stream)[seen...].first(where: matches)
        }
        guard let found else {
            throw TestFailure("\(name) closed its output (\(exit.map { "\($0)" } ?? "still running")) "
                + "without the line waited for: \(tail(of: output))")
        }
        return found
    }

    /// Stops reading one stream and closes it, as a reader that goes away would: the child's next
    /// write to it fails.
    public func closeOutput(_ stream: Stream = .standardOutput) {
        shared.closeOutput(stream.index)
    }

    // MARK: Life

    /// How the child ended, or `nil` while it runs.
    public var exit: Exit? { shared.withState { $0.exit } }

    public var isRunning: Bool { exit == nil }

    /// Sends `signal` to the child alone (not to what it started): SIGTERM for a graceful stop,
    /// SIGKILL for a crash. Nothing happens once it has been reaped.
    public func signal(_ signal: Int32) {
        shared.signal(signal, group: false)
    }

    /// Waits for the exit, by the event, up to `timeout`.
    /// - Throws: `TestFailure` when the child still runs at the deadline (it is left running).
    @discardableResult
    public func waitForExit(within timeout: Duration) async throws -> Exit {
        let events = shared.exitEvents()
        let exit = try await withDeadline(timeout, "\(name) to exit") { await events.first { _ in true } }
        guard let exit else { throw CancellationError() }
        return exit
    }

    /// Waits for the exit, blocking the calling thread: for synchronous tests.
    @discardableResult
    public func waitForExit() -> Exit {
        shared.exited.wait()
        return exit!
    }

    /// Waits until the child (and whatever it started that shares its output) has closed its output,
    /// blocking the calling thread: after this, `output` is all it wrote.
    public func waitForEndOfOutput() {
        shared.outputEnded.wait()
    }

    /// Kills the child and its process group (SIGKILL) and reaps it; returns once it is gone.
    public func stop() {
        shared.closeInput()
        shared.signal(SIGKILL, group: true)
        shared.exited.wait()
    }
}

extension ChildProcess.Stream {
    fileprivate var index: Int { self == .standardOutput ? 0 : 1 }
}

/// The state the reading and waiting threads share with the `ChildProcess`. They hold this and not
/// the `ChildProcess`, so letting go of a `ChildProcess` stops the child even while they run.
private final class Shared: Sendable {
    struct Captured {
        var bytes: [UInt8] = []
        var lines: [String] = []
        var partial: [UInt8] = []
        /// Our end, until the reader closes it at end-of-file.
        var descriptor: Int32
        var subscribers: [UUID: AsyncStream<String>.Continuation] = [:]
    }

    struct State {
        var streams: [Captured]
        var input: Int32?
        var exit: Exit?
        /// Set just before the child is reaped: until then its pid, and so its group, cannot be reused.
        var reaped = false
        var exitSubscribers: [UUID: AsyncStream<Exit>.Continuation] = [:]
    }

    let pid: pid_t
    let exited = DispatchGroup()
    /// Left by each reader at its stream's end-of-file.
    let outputEnded = DispatchGroup()
    private let state: Mutex<State>

    init(pid: pid_t, input: Int32?, output: Int32, errors: Int32?) {
        self.pid = pid
        state = Mutex(
            State(streams: [Captured(descriptor: output), Captured(descriptor: errors ?? -1)], input: input)
        )
        exited.enter()
    }

    func withState<T>(_ body: (inout State) -> T) -> T {
        state.withLock { body(&$0) }
    }

    func startThreads() {
        for index in 0..<2 {
            let descriptor = withState { $0.streams[index].descriptor }
            if descriptor >= 0 {
                outputEnded.enter()
                Thread.detachNewThread { [self] in read(index, from: descriptor) }
            }
        }
        Thread.detachNewThread { [self] in waitForExit() }
    }

    // MARK: Input

    func send(_ bytes: [UInt8], name: String) throws {
        // Under the lock, so the descriptor cannot be closed (and reused) in the middle.
        try state.withLock { state in
            guard let input = state.input else { throw TestFailure("the stdin of \(name) is closed") }
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes {
                    Glibc.send(input, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else {
                    throw TestFailure("\(name) does not read its stdin: \(String(cString: strerror(errno)))")
                }
                offset += written
            }
        }
    }

    func closeInput() {
        state.withLock { state in
            if let input = state.input { close(input) }
            state.input = nil
        }
    }

    // MARK: Output

    private func read(_ index: Int, from descriptor: Int32) {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            append(buffer[0..<count], to: index)
        }
        let subscribers = state.withLock { state in
            close(descriptor)
            state.streams[index].descriptor = -1
            if !state.streams[index].partial.isEmpty {
                state.streams[index].lines.append(String(decoding: state.streams[index].partial, as: UTF8.self))
                state.streams[index].partial = []
            }
            defer { state.streams[index].subscribers = [:] }
            return state.streams[index].subscribers.values
        }
        for subscriber in subscribers { subscriber.finish() }
        outputEnded.leave()
    }

    private func append(_ bytes: ArraySlice<UInt8>, to index: Int) {
        state.withLock { state in
            state.streams[index].bytes += bytes
            var newLines: [String] = []
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    newLines.append(String(decoding: state.streams[index].partial, as: UTF8.self))
                    state.streams[index].partial = []
                } else {
                    state.streams[index].partial.append(byte)
                }
            }
            state.streams[index].lines += newLines
            for subscriber in state.streams[index].subscribers.values {
                for line in newLines { subscriber.yield(line) }
            }
        }
    }

    func subscribe(_ index: Int) -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        let id = UUID()
        state.withLock { state in
            for line in state.streams[index].lines { continuation.yield(line) }
            if state.streams[index].descriptor < 0 {
                continuation.finish()
            } else {
                state.streams[index].subscribers[id] = continuation
            }
        }
        continuation.onTermination = { [self] _ in
            _ = state.withLock { $0.streams[index].subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    func closeOutput(_ index: Int) {
        state.withLock { state in
            // The reader sees end-of-file and closes the descriptor; the child's writes fail from now.
            let descriptor = state.streams[index].descriptor
            if descriptor >= 0 { shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    // MARK: Exit

    func signal(_ signal: Int32, group: Bool) {
        state.withLock { state in
            if !state.reaped { _ = kill(group ? -pid : pid, signal) }
        }
    }

    private func waitForExit() {
        // Wait without reaping, so that a signal sent meanwhile cannot reach a process that took the pid.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
        let subscribers = state.withLock { state in
            state.reaped = true
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            let signal = status & 0x7f
            let exit: Exit = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
            state.exit = exit
            defer { state.exitSubscribers = [:] }
            return state.exitSubscribers.values.map { ($0, exit) }
        }
        for (subscriber, exit) in subscribers {
            subscriber.yield(exit)
            subscriber.finish()
        }
        exited.leave()
    }

    func exitEvents() -> AsyncStream<Exit> {
        let (stream, continuation) = AsyncStream.makeStream(of: Exit.self)
        let id = UUID()
        state.withLock { state in
            if let exit = state.exit {
                continuation.yield(exit)
                continuation.finish()
            } else {
                state.exitSubscribers[id] = continuation
            }
        }
        continuation.onTermination = { [self] _ in
            _ = state.withLock { $0.exitSubscribers.removeValue(forKey: id) }
        }
        return stream
    }
}

/// A spawned child and our ends of its stdin, stdout and stderr.
private struct Spawned {
    let pid: pid_t
    let input: Int32?
    let output: Int32
    let errors: Int32?

    static func spawn(
        executable: String,
        arguments: [String],
        environment: [String: String],
        workingDirectory: String?,
        input: Bool,
        errors: ChildProcess.Errors
    ) throws -> Spawned {
        // [ours, the child's] for each stream.
        var opened: [Int32] = []
        func channel() throws -> (ours: Int32, theirs: Int32) {
            var ends: [Int32] = [-1, -1]
            let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            guard socketpair(AF_UNIX, type, 0, &ends) == 0 else {
                throw TestFailure("socketpair failed: \(String(cString: strerror(errno)))")
            }
            opened += ends
            return (ends[0], ends[1])
        }
        var ours: [Int32] = []
        defer {
            // The child's ends are its own now (or the spawn failed: then ours go too).
            for descriptor in opened where !ours.contains(descriptor) { close(descriptor) }
        }
        let stdin = try input ? channel() : nil
        let stdout = try channel()
        let stderr = try errors == .separate ? channel() : nil

        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin.theirs, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, stdout.theirs, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr?.theirs ?? stdout.theirs, 2)

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
        let flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setflags(&attributes, Int16(flags))

        // glibc's posix_spawn_file_actions_addchdir_np is not visible to Swift: a shell changes the
        // folder and execs the program, its argv passed as arguments, never as shell text.
        let (executable, arguments) =
            workingDirectory.map { ("/bin/sh", ["-c", #"cd -- "$0" && exec "$@""#, $0, executable] + arguments) }
            ?? (executable, arguments)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw TestFailure("\(executable) could not be started: \(String(cString: strerror(result)))")
        }
        ours = [stdin?.ours, stdout.ours, stderr?.ours].compactMap { $0 }
        return Spawned(pid: pid, input: stdin?.ours, output: stdout.ours, errors: stderr?.ours)
    }
}
