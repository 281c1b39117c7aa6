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
    /// At a terminal: line editing, history and a prompt; `nil` for piped input.
    let editor: LineEditor?
    let typing: TypingUser?
    let startingAs: String
    let echo: Bool
    let waiting: Bool
    let output: @Sendable (String) -> Void
    let summary = Mutex(ConsoleSession.Summary())
    let runner: OperationRunner

    /// - Parameters:
    ///   - waiting: whether each line waits for its operation (piped input does).
    ///   - editor: the line editor when standard input is a terminal; its prompt shows who types.
    public init(intake: Intake, startingAs: String, echo: Bool, waiting: Bool, editor: LineEditor? = nil,
                typing: TypingUser? = nil, output: @escaping @Sendable (String) -> Void) {
        self.session = ConsoleSession(intake: intake, output: output)
        self.runner = intake.runner
        self.input = StandardInputLines()
        self.editor = editor
        self.typing = typing
        self.startingAs = startingAs
        self.echo = echo
        self.waiting = waiting
        self.output = output
    }

    /// What became of the commands read so far.
    public var result: ConsoleSession.Summary { summary.withLock { $0 } }

    /// The prompt: who is typing, and where (`alice@console> `).
    public static func prompt(user: UserID, channel: String = "console") -> String {
        "\(ConsoleRenderer.literal(user.rawValue))@\(channel)> "
    }

    static let stopping = "• Stopping InferOps: running steps finish or pause where it is safe, and resume at the next start."

    public func run() async throws {
        let lines = editor.map(editedLines) ?? input.lines()
        let typing = self.typing
        let result = await withGracefulShutdownHandler {
            await session.run(lines: lines, startingAs: startingAs, echo: echo, waiting: waiting,
                              userChanged: { user in typing?.set(user) },
                              channelChanged: { channel in typing?.set(channel: channel) })
        } onGracefulShutdown: { [input, output, runner, editor] in
            output(Self.stopping)
            input.stop()
            editor?.stop()
            // The runner stops next in the group's order; asked now, a line waiting for its
            // operation (piped input) is answered as soon as the operation pauses.
            runner.stop()
        }
        input.stop()
        editor?.stop()
        summary.withLock { $0 = result }
    }

    /// The editor's lines; Ctrl-C ends them with a word on screen (and the group then stops).
    func editedLines(_ editor: LineEditor) -> AsyncStream<String> {
        let events = EventCursor(editor.lines().makeAsyncIterator())
        let output = self.output
        return AsyncStream(unfolding: {
            while let event = await events.next() {
                switch event {
                case .line(let line):
                    return line
                case .interrupt:
                    output(Self.stopping)
                    return nil
                case .end:
                    return nil
                }
            }
            return nil
        })
    }
}

/// The editor's events, read by one consumer at a time (`AsyncStream(unfolding:)` never asks for
/// the next element before the last one was returned), hence `@unchecked Sendable`.
final class EventCursor: @unchecked Sendable {
    var iterator: AsyncStream<LineEditor.Event>.Iterator
    init(_ iterator: AsyncStream<LineEditor.Event>.Iterator) { self.iterator = iterator }
    func next() async -> LineEditor.Event? { await iterator.next() }
}

/// Standard input as lines, read when the descriptor is readable (a dispatch read source, no
/// thread of its own), ending at end of input or on `stop()`.
///
/// `@unchecked Sendable`: every stored property is guarded by `lock` (a dispatch source is not
/// `Sendable`, so a `Mutex` cannot hold it).
final class StandardInputLines: @unchecked Sendable {
    let lock = NSLock()
    var source: (any DispatchSourceRead)?
    var continuation: AsyncStream<String>.Continuation?
    var pending = Data()
    let descriptor: Int32

    init(descriptor: Int32 = STDIN_FILENO) {
        self.descriptor = descriptor
    }

    func lines() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        // Reads never block the dispatch queue: the handler reads until there is nothing more.
        // Only piped input comes here (a terminal goes to the line editor).
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        let source = DispatchSource.makeReadSource(
            fileDescriptor: descriptor, queue: DispatchQueue(label: "inferops.console.input"))
        source.setEventHandler { [weak self] in self?.readAvailable() }
        lock.withLock {
            self.source = source
            self.continuation = continuation
        }
        source.resume()
        return stream
    }

    /// Reads until the descriptor has nothing more now (or is at its end): a readiness event may
    /// cover both the last bytes and the end of input, and no second event follows.
    func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 && errno == EAGAIN { return }
            guard count > 0 else {
                let (rest, continuation) = lock.withLock { () -> (Data, AsyncStream<String>.Continuation?) in
                    defer { pending = Data() }
                    return (pending, self.continuation)
                }
                if !rest.isEmpty { continuation?.yield(String(decoding: rest, as: UTF8.self)) }
                stop()
                return
            }
            let (lines, continuation) = lock.withLock { () -> ([String], AsyncStream<String>.Continuation?) in
                pending.append(contentsOf: buffer[0..<count])
                var lines: [String] = []
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    var line = pending[pending.startIndex..<newline]
                    if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                    lines.append(String(decoding: line, as: UTF8.self))
                    pending = Data(pending[pending.index(after: newline)...])
                }
                return (lines, self.continuation)
            }
            for line in lines { continuation?.yield(line) }
        }
    }

    /// Stops reading; the lines already read are still delivered, then the stream ends.
    func stop() {
        let (source, continuation) = lock.withLock { () -> ((any DispatchSourceRead)?, AsyncStream<String>.Continuation?) in
            defer {
                self.source = nil
                self.continuation = nil
            }
            return (self.source, self.continuation)
        }
        source?.cancel()
        continuation?.finish()
    }
}

/// Who is typing at the console now, and in which channel, for the prompt: `/as` and `/in` change them.
public final class TypingUser: Sendable {
    let user: Mutex<UserID>
    let channel = Mutex(ConsoleSession.defaultChannel)
    public init(_ user: UserID) { self.user = Mutex(user) }
    public var current: UserID { user.withLock { $0 } }
    public var currentChannel: String { channel.withLock { $0 } }
    func set(_ next: UserID) { user.withLock { $0 = next } }
    func set(channel next: String) { channel.withLock { $0 = next } }
}
