import Dispatch
import Foundation
import InferOpsConsole
import InferOpsCore
import ServiceLifecycle
import Synchronization

/// The console chat port as a service of the daemon's group: it reads commands until its input
/// ends (which stops the daemon gracefully) or the daemon stops.
public final class ConsoleService: Service, Sendable {
    let session: ConsoleSession
    let input: StandardInputLines
    let startingAs: String
    let echo: Bool
    let waiting: Bool
    let output: @Sendable (String) -> Void
    let summary = Mutex(ConsoleSession.Summary())

    /// - Parameter waiting: whether each line waits for its operation (piped input does).
    public init(intake: Intake, startingAs: String, echo: Bool, waiting: Bool,
                output: @escaping @Sendable (String) -> Void) {
        self.session = ConsoleSession(intake: intake, output: output)
        self.input = StandardInputLines()
        self.startingAs = startingAs
        self.echo = echo
        self.waiting = waiting
        self.output = output
    }

    /// What became of the commands read so far.
    public var result: ConsoleSession.Summary { summary.withLock { $0 } }

    public func run() async throws {
        let lines = input.lines()
        let result = await withGracefulShutdownHandler {
            await session.run(lines: lines, startingAs: startingAs, echo: echo, waiting: waiting)
        } onGracefulShutdown: { [input, output] in
            output("• Stopping InferOps: running steps finish or pause where it is safe, and resume at the next start.")
            input.stop()
        }
        input.stop()
        summary.withLock { $0 = result }
    }
}

/// Standard input as lines, read when the descriptor is readable (a dispatch read source, no
/// thread of its own), ending at end of input or on `stop()`.
final class StandardInputLines: Sendable {
    struct State {
        var source: (any DispatchSourceRead)?
        var continuation: AsyncStream<String>.Continuation?
        var pending = Data()
    }

    let state = Mutex(State())
    let descriptor: Int32

    init(descriptor: Int32 = STDIN_FILENO) {
        self.descriptor = descriptor
    }

    func lines() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        let source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: DispatchQueue(label: "inferops.console.input"))
        source.setEventHandler { [weak self] in self?.readAvailable() }
        state.withLock {
            $0.source = source
            $0.continuation = continuation
        }
        source.resume()
        return stream
    }

    func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = read(descriptor, &buffer, buffer.count)
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard count > 0 else {
            let rest = state.withLock { state -> Data in
                defer { state.pending = Data() }
                return state.pending
            }
            if !rest.isEmpty { state.withLock { $0.continuation }?.yield(String(decoding: rest, as: UTF8.self)) }
            stop()
            return
        }
        let lines = state.withLock { state -> [String] in
            state.pending.append(contentsOf: buffer[0..<count])
            var lines: [String] = []
            while let newline = state.pending.firstIndex(of: UInt8(ascii: "\n")) {
                var line = state.pending[state.pending.startIndex..<newline]
                if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                lines.append(String(decoding: line, as: UTF8.self))
                state.pending = Data(state.pending[state.pending.index(after: newline)...])
            }
            return lines
        }
        let continuation = state.withLock { $0.continuation }
        for line in lines { continuation?.yield(line) }
    }

    /// Stops reading; the lines already read are still delivered, then the stream ends.
    func stop() {
        let (source, continuation) = state.withLock { state in
            defer {
                state.source = nil
                state.continuation = nil
            }
            return (state.source, state.continuation)
        }
        source?.cancel()
        continuation?.finish()
    }
}
