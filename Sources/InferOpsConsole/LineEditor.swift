import CEditLine
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The interactive console's input: libedit's line editing (emacs keys, arrows, Ctrl-A/E, Ctrl-R
/// search), a prompt asked for at every redraw, and a history kept across sessions in a file.
///
/// Lines arrive as events on an `AsyncStream` while the daemon keeps printing: ``print(_:)`` lifts
/// the line being typed, prints, and draws it again, so replies never cut through what someone
/// types. ``stop()`` ends the reading at once, even in the middle of a line, and restores the
/// terminal.
///
/// **Why a thread.** `el_wgets` blocks until a whole line is typed, and libedit is not thread-safe,
/// so the editor owns one thread that does every libedit call: it opens the editor, reads lines,
/// draws what ``print(_:)`` hands it, and closes the editor. It never outlives the editor's
/// ``stop()``, which joins it. The thread waits for a key with `poll()` on the terminal and on a wake
/// pipe (libedit's `EL_GETCFN` hook), so a print or a stop reaches it while no key is pressed.
///
/// **Ctrl-C.** While a line is edited, the terminal does not turn Ctrl-C into SIGINT (`setty -d
/// -isig`): libedit sees it as a key and the editor reports ``Event/interrupt``, so the console can
/// say it is stopping and shut the daemon down gracefully. Ctrl-\ and Ctrl-Z are keys too, bound to
/// nothing: a stray key never kills or suspends a daemon that has operations running. In the instant
/// between two lines, when libedit hands the terminal back to its normal mode, Ctrl-C is a SIGINT,
/// which the daemon's service group also takes as a graceful shutdown. Ctrl-D on an empty line
/// reports ``Event/end``. Both end the stream and give the terminal back.
///
/// Input that is not a terminal is read line by line without editing (libedit's own fallback).
///
/// **One at a time.** libedit and the terminal library keep the terminal they write to in globals, so
/// a process reads with one editor at a time (stop one before starting the next).
public final class LineEditor: Sendable {
    public enum Event: Sendable, Equatable {
        /// A line as typed, without its line break. Blank lines are reported too.
        case line(String)
        /// Ctrl-C. The editor has printed `^C` and a line break, and stopped reading.
        case interrupt
        /// Ctrl-D on an empty line, or the terminal closed. The editor has stopped reading.
        case end
    }

    let settings: Settings
    let shared: EditorShared
    let events: AsyncStream<Event>
    let continuation: AsyncStream<Event>.Continuation
    /// The reading thread, from ``lines()`` until ``stop()`` joins it. A lock of its own, held while
    /// joining, so that every caller of `stop()` returns only once the thread has ended.
    let thread = Mutex<ReaderThread>(.notStarted)

    enum ReaderThread {
        case notStarted
        case running(pthread_t)
        case joined
    }

    struct Settings: Sendable {
        var input: Int32
        var output: Int32
        var historyFile: String?
        var historyLimit: Int
        var terminalType: String?
        var readsEditrc: Bool
        var prompt: @Sendable () -> String
    }

    /// - Parameters:
    ///   - input: the terminal to read keys from; standard input by default. Not closed.
    ///   - output: the terminal to draw on; standard output by default. Not closed.
    ///   - historyFile: where the history is loaded from and saved to after every line (e.g.
    ///     `~/.inferops_history`, expanded by the caller), created readable by its owner only since
    ///     commands carry reasons; `nil` keeps the history in memory only.
    ///   - historyLimit: how many lines the history keeps, the oldest dropped first.
    ///   - terminalType: the terminal's type for libedit; `$TERM` when `nil`.
    ///   - readsEditrc: whether `~/.editrc` (or `$EDITRC`) may change key bindings, as in every libedit
    ///     program. Ctrl-C stays the interrupt whatever it says.
    ///   - prompt: the prompt, asked for whenever the line is drawn (on the editing thread), so a
    ///     change of user shows at the next redraw, for instance after the next ``print(_:)``.
    /// - Throws: `LineEditorError` when the wake pipe cannot be created.
    public init(
        input: Int32 = STDIN_FILENO,
        output: Int32 = STDOUT_FILENO,
        historyFile: String? = nil,
        historyLimit: Int = 500,
        terminalType: String? = nil,
        readsEditrc: Bool = true,
        prompt: @escaping @Sendable () -> String
    ) throws {
        settings = Settings(
            input: input, output: output, historyFile: historyFile, historyLimit: max(1, historyLimit),
            terminalType: terminalType, readsEditrc: readsEditrc, prompt: prompt)
        shared = try EditorShared(output: output)
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }

    deinit {
        stop()
    }

    /// Starts reading and returns the events: lines, then at most one ``Event/interrupt`` or
    /// ``Event/end``, after which the stream finishes. ``stop()`` finishes it too. Call it once.
    public func lines() -> AsyncStream<Event> {
        thread.withLock { thread in
            guard case .notStarted = thread else {
                preconditionFailure("LineEditor.lines() is called once")
            }
            let shared = shared
            continuation.onTermination = { _ in shared.requestStop() }
            let session = EditingSession(settings: settings, shared: shared, continuation: continuation)
            shared.startReading()
            if let handle = startThread(running: session) {
                thread = .running(handle)
            } else {
                shared.finishReading()
                continuation.yield(.end)
                continuation.finish()
                thread = .joined
            }
        }
        return events
    }

    /// Prints `text` (a line break is added when it has none) above the line being typed: the line is
    /// lifted, the text printed, then the prompt and the typed text are drawn again, cursor in place.
    /// While the editor is not reading, the text is written straight to the output. Texts are printed
    /// in the order given, and all of them before ``stop()`` returns.
    public func print(_ text: String) {
        shared.print(text.hasSuffix("\n") ? text : text + "\n")
    }

    /// Stops reading at once, even in the middle of a line, and returns when the editing thread has
    /// ended: the typed text is dropped, the prompt erased, the terminal back in the mode it was in,
    /// the history saved and the stream finished. Does nothing more when called again.
    public func stop() {
        shared.requestStop()
        thread.withLock { thread in
            if case .running(let handle) = thread {
                pthread_join(handle, nil)
            }
            thread = .joined
        }
        continuation.finish()
    }
}

public struct LineEditorError: Error, CustomStringConvertible {
    public let description: String
}

/// Starts the editing thread, handing it `session` (which it owns from then on).
private func startThread(running session: EditingSession) -> pthread_t? {
    let context = Unmanaged.passRetained(session).toOpaque()
    #if canImport(Darwin)
    var handle: pthread_t?
    guard pthread_create(&handle, nil, { runEditingSession($0) }, context) == 0, let handle else {
        Unmanaged<EditingSession>.fromOpaque(context).release()
        return nil
    }
    return handle
    #else
    var handle = pthread_t()
    guard pthread_create(&handle, nil, { runEditingSession($0) }, context) == 0 else {
        Unmanaged<EditingSession>.fromOpaque(context).release()
        return nil
    }
    return handle
    #endif
}

private func runEditingSession(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let context else { return nil }
    Unmanaged<EditingSession>.fromOpaque(context).takeRetainedValue().run()
    return nil
}

/// What the caller's threads and the editing thread share: texts waiting to be printed, whether to
/// stop, and the pipe that wakes the editing thread when either changes.
final class EditorShared: Sendable {
    struct State {
        var pending: [String] = []
        var stopRequested = false
        /// Whether the editing thread is there to print; if not, prints are written directly.
        var reading = false
    }

    let state = Mutex(State())
    let output: Int32
    let wakeReader: Int32
    let wakeWriter: Int32

    init(output: Int32) throws {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            let reason = String(cString: strerror(errno))
            throw LineEditorError(description: "cannot create the console's wake pipe: \(reason)")
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        self.output = output
        wakeReader = ends[0]
        wakeWriter = ends[1]
    }

    deinit {
        close(wakeReader)
        close(wakeWriter)
    }

    func startReading() {
        state.withLock { $0.reading = true }
    }

    /// Writes what is still pending and marks the editing thread gone, so later prints go straight out.
    func finishReading() {
        state.withLock { state in
            for text in state.pending { writeAll(output, text) }
            state.pending = []
            state.reading = false
        }
    }

    func print(_ text: String) {
        let queued = state.withLock { state in
            guard state.reading else {
                writeAll(output, text)
                return false
            }
            state.pending.append(text)
            return true
        }
        if queued { wake() }
    }

    func requestStop() {
        state.withLock { $0.stopRequested = true }
        wake()
    }

    var stopRequested: Bool { state.withLock { $0.stopRequested } }

    /// Takes the texts to print and whether to stop, and empties the wake pipe.
    func takeWork() -> (texts: [String], stop: Bool) {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(wakeReader, &bytes, bytes.count) > 0 {}
        return state.withLock { state in
            defer { state.pending = [] }
            return (state.pending, state.stopRequested)
        }
    }

    /// A full pipe already holds a wake-up, so a write that would block is not needed.
    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWriter, &byte, 1)
    }
}

/// Writes all of `text`, retrying after interruptions and short writes. A terminal that has gone away
/// loses the text; there is no one left to tell.
func writeAll(_ descriptor: Int32, _ text: String) {
    writeAll(descriptor, Array(text.utf8))
}

func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
    var bytes = bytes
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { buffer in
            write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
        }
        if written > 0 {
            offset += written
        } else if written < 0 && errno == EINTR {
            continue
        } else if written < 0 && errno == EAGAIN {
            var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, 1000)
        } else {
            return
        }
    }
    bytes.removeAll()
}

/// One run of the editing thread: everything libedit touches lives here and only on that thread.
final class EditingSession {
    enum Ending {
        case interrupt
        case stop
    }

    let settings: LineEditor.Settings
    let shared: EditorShared
    let continuation: AsyncStream<LineEditor.Event>.Continuation
    var editLine: OpaquePointer?
    var history: OpaquePointer?
    var inputFile: UnsafeMutablePointer<FILE>?
    /// libedit's output, gathered in memory (`open_memstream`) and written to the terminal in one
    /// piece when the editor is about to wait for a key or to write something itself: libedit
    /// flushes after every key, which made a pasted or typed-ahead line one write per character.
    var outputFile: UnsafeMutablePointer<FILE>?
    let gathered = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 1)
    let gatheredSize = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    /// The terminal's descriptor as libedit asks it about its size and modes.
    var outputDescriptor: Int32 = -1
    /// The history has lines the file does not have yet; it is saved at most once a second.
    var historyUnsaved = false
    var historySaved: ContinuousClock.Instant?
    /// Why the current `el_wgets` returns nothing, when the editor decided it (not the terminal).
    var ending: Ending?
    /// Ctrl-C was pressed: the next key read ends the line (see `interrupt()`).
    var interruptPending = false
    var decoder = UTF8Assembler()
    /// Bytes read from the terminal and not yet given to libedit: a pasted or typed-ahead text is
    /// read in one call, not one call per byte.
    var typedAhead: [UInt8] = []
    var typedAheadIndex = 0
    /// The prompt libedit draws now; freed when the next one replaces it.
    var promptText: UnsafeMutablePointer<wchar_t>?
    var promptColumns = 0
    var windowSize: (rows: UInt16, columns: UInt16) = (0, 0)
    var historyWarningShown = false

    init(
        settings: LineEditor.Settings, shared: EditorShared,
        continuation: AsyncStream<LineEditor.Event>.Continuation
    ) {
        self.settings = settings
        self.shared = shared
        self.continuation = continuation
    }

    deinit {
        promptText?.deallocate()
        gathered.deallocate()
        gatheredSize.deallocate()
    }

    func run() {
        let locale = cedit_use_utf8_on_this_thread()
        defer { cedit_end_utf8_on_this_thread(locale) }
        let last = openEditor() ? readLines() : .end
        closeEditor()
        // The terminal is back in its own mode; anything printed meanwhile goes out now, then the news.
        shared.finishReading()
        if let last { continuation.yield(last) }
        continuation.finish()
    }

    /// Reads until Ctrl-C, Ctrl-D, the end of input or a stop. Returns the last event to report.
    private func readLines() -> LineEditor.Event? {
        let isTerminal = isatty(settings.input) == 1
        while !shared.stopRequested {
            ending = nil
            // Editing mode before the prompt is drawn, so keys typed once it shows are never echoed
            // or taken as signals by the terminal.
            if isTerminal { _ = cedit_prepare_terminal(editLine, 1) }
            if takeTypedAheadLines() { continue }
            var count: Int32 = 0
            guard let characters = el_wgets(editLine, &count), count > 0 else { break }
            var line = String(String.UnicodeScalarView((0..<Int(count)).compactMap { index in
                Unicode.Scalar(UInt32(bitPattern: Int32(characters[index])))
            }))
            while line.hasSuffix("\n") || line.hasSuffix("\r") { line.removeLast() }
            remember(line)
            continuation.yield(.line(line))
        }
        saveHistoryIfUnsaved()
        switch ending {
        case .interrupt?:
            writeToTerminal("^C\n")
            return .interrupt
        case .stop?:
            return nil
        case nil:
            if shared.stopRequested { return nil }
            // Ctrl-D has drawn `^D` (or the input ended): end the line it is on.
            writeToTerminal("\n")
            return .end
        }
    }

    /// Lines pasted or typed ahead whole, made of printable characters only, need no editing: they
    /// are taken as they are, echoed after the prompt as libedit would draw them, and reported,
    /// instead of handing libedit one key at a time (which redraws the line for each). A line that
    /// holds anything else (an arrow, a tab, a Ctrl key), or is not yet whole, goes to libedit.
    /// Returns whether it took any.
    private func takeTypedAheadLines() -> Bool {
        var echo = ""
        while !shared.stopRequested, let line = nextTypedAheadLine() {
            echo += settings.prompt() + line + "\n"
            remember(line)
            continuation.yield(.line(line))
        }
        guard !echo.isEmpty else { return false }
        writeToTerminal(echo)
        return true
    }

    /// The next whole line of what was read and not yet given to libedit, when it has only printable
    /// characters; `nil` (and nothing taken) otherwise.
    func nextTypedAheadLine() -> String? {
        guard decoder.isEmpty else { return nil }
        var end = typedAheadIndex
        while end < typedAhead.count, typedAhead[end] != 0x0D, typedAhead[end] != 0x0A {
            end += 1
        }
        guard end < typedAhead.count,
              let line = String(validating: typedAhead[typedAheadIndex..<end], as: UTF8.self),
              line.unicodeScalars.allSatisfy({ $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) })
        else { return nil }
        typedAheadIndex = end + 1
        return line
    }

    // MARK: Opening and closing libedit

    private func openEditor() -> Bool {
        let input = dup(settings.input)
        outputDescriptor = dup(settings.output)
        let output = outputDescriptor
        inputFile = input >= 0 ? fdopen(input, "r") : nil
        gathered.pointee = nil
        gatheredSize.pointee = 0
        outputFile = open_memstream(gathered, gatheredSize)
        guard let inputFile, let outputFile, output >= 0 else {
            if inputFile == nil, input >= 0 { close(input) }
            return false
        }
        guard let editLine = el_init_fd("inferops", inputFile, outputFile, outputFile, input, output, output)
        else { return false }
        self.editLine = editLine
        if let type = settings.terminalType { _ = cedit_set_terminal(editLine, type) }
        _ = cedit_set_editor(editLine, "emacs")
        _ = cedit_set_client_data(editLine, Unmanaged.passUnretained(self).toOpaque())
        _ = cedit_set_read_char(editLine, readCharacterCallback)
        _ = cedit_set_prompt(editLine, promptCallback)
        _ = cedit_keys_not_signals(editLine)
        if let history = history_init() {
            self.history = history
            _ = cedit_history_set_size(history, Int32(settings.historyLimit))
            _ = cedit_history_set_unique(history, 1)
            if let path = settings.historyFile { _ = cedit_history_load(history, path) }
            _ = cedit_set_history(editLine, history)
        }
        if settings.readsEditrc { _ = el_source(editLine, nil) }
        _ = cedit_add_command(editLine, "inferops-interrupt", "Stop InferOps", interruptCallback)
        _ = cedit_bind(editLine, "^C", "inferops-interrupt")
        _ = cedit_bind(editLine, "^R", "em-inc-search-prev")
        _ = cedit_bind(editLine, "\\e[1;5D", "ed-prev-word")
        _ = cedit_bind(editLine, "\\e[1;5C", "em-next-word")
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        if cedit_window_size(settings.input, &rows, &columns) == 0 { windowSize = (rows, columns) }
        return true
    }

    /// Ends libedit, which puts the terminal back in the mode it found it in.
    private func closeEditor() {
        if let editLine { el_end(editLine) }
        writeGathered()
        if let history { history_end(history) }
        if let inputFile { fclose(inputFile) }
        if let outputFile { fclose(outputFile) }
        free(gathered.pointee)
        gathered.pointee = nil
        if outputDescriptor >= 0 { close(outputDescriptor) }
        outputDescriptor = -1
        editLine = nil
        history = nil
        inputFile = nil
        outputFile = nil
    }

    /// Writes what libedit has drawn so far to the terminal, and starts gathering afresh.
    func writeGathered() {
        guard let outputFile else { return }
        fflush(outputFile)
        let size = gatheredSize.pointee
        if size > 0, let bytes = gathered.pointee {
            writeAll(settings.output, Array(UnsafeRawBufferPointer(start: bytes, count: size)))
        }
        fseeko(outputFile, 0, SEEK_SET)
    }

    /// Writes `text` after what libedit has drawn, so the terminal shows both in their order.
    func writeToTerminal(_ text: String) {
        writeGathered()
        writeAll(settings.output, text)
    }

    // MARK: History

    /// Adds a line to the history, unless it is blank or repeats the previous one, and saves the file
    /// unless it was saved less than a second ago (then it is saved when the editor next waits for
    /// a key a second after the last save, or when it ends): lines typed ahead or pasted in a
    /// burst do not rewrite the file each.
    private func remember(_ line: String) {
        guard let history, !line.allSatisfy(\.isWhitespace) else { return }
        guard cedit_history_enter(history, line) >= 0 else { return }
        historyUnsaved = true
        if historySaveDelay() == 0 { saveHistoryIfUnsaved() }
    }

    /// Milliseconds until the unsaved history is due to be saved; `nil` when there is nothing to save.
    func historySaveDelay() -> Int32? {
        guard historyUnsaved, settings.historyFile != nil else { return nil }
        guard let historySaved else { return 0 }
        let due = historySaved.advanced(by: .seconds(1))
        let now = ContinuousClock.now
        if now >= due { return 0 }
        let (seconds, attoseconds) = (due - now).components
        return Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000) + 1
    }

    func saveHistoryIfUnsaved() {
        guard historyUnsaved, let history, let path = settings.historyFile else { return }
        historyUnsaved = false
        historySaved = .now
        if let error = save(history, to: path), !historyWarningShown {
            historyWarningShown = true
            printAbove("! The console history cannot be saved to \(path): \(String(cString: strerror(error))).\n")
        }
    }

    /// Writes the history to a file beside `path` and renames it over `path`, so a crash in the
    /// middle leaves the old history, never half of it. Readable and writable by its owner only.
    /// Returns the error number when it fails.
    private func save(_ history: OpaquePointer, to path: String) -> Int32? {
        let temporary = "\(path).\(getpid()).tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return errno }
        guard fchmod(descriptor, 0o600) == 0, let file = fdopen(descriptor, "w") else {
            let error = errno
            close(descriptor)
            unlink(temporary)
            return error
        }
        let written = cedit_history_save(history, file) >= 0
        var error = errno
        let closed = fclose(file) == 0
        if written && !closed { error = errno }
        guard written, closed, rename(temporary, path) == 0 else {
            if written && closed { error = errno }
            unlink(temporary)
            return error
        }
        return nil
    }

    // MARK: Called by libedit, on this thread

    /// Waits for a key or for work from other threads. Prints are drawn above the line; a stop ends
    /// the line at once (returning "end of input" makes `el_wgets` return).
    func readCharacter(into character: UnsafeMutablePointer<wchar_t>) -> Int32 {
        character.pointee = 0
        if interruptPending {
            interruptPending = false
            ending = .interrupt
            return 0
        }
        while true {
            if let scalar = nextTypedAhead() {
                character.pointee = wchar_t(bitPattern: scalar.value)
                return 1
            }
            // Nothing typed is waiting: what libedit drew goes out before the editor waits.
            writeGathered()
            var entries = [
                pollfd(fd: settings.input, events: Int16(POLLIN), revents: 0),
                pollfd(fd: shared.wakeReader, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&entries, 2, historySaveDelay() ?? -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return -1
            }
            if ready == 0 {
                saveHistoryIfUnsaved()
                continue
            }
            if entries[1].revents != 0 {
                let work = shared.takeWork()
                if work.stop {
                    eraseInput()
                    writeGathered()
                    for text in work.texts { writeToTerminal(text) }
                    ending = .stop
                    return 0
                }
                if !work.texts.isEmpty {
                    printAbove(work.texts.joined())
                }
            }
            guard entries[0].revents != 0 else { continue }
            var bytes = [UInt8](repeating: 0, count: 4096)
            let count = read(settings.input, &bytes, bytes.count)
            if count == 0 { return 0 }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return -1
            }
            followWindowSize()
            typedAhead = Array(bytes[..<count])
            typedAheadIndex = 0
        }
    }

    /// The next whole character of what was read from the terminal and not yet given to libedit.
    func nextTypedAhead() -> Unicode.Scalar? {
        while typedAheadIndex < typedAhead.count {
            let byte = typedAhead[typedAheadIndex]
            typedAheadIndex += 1
            if let scalar = decoder.add(byte) { return scalar }
        }
        return nil
    }

    /// The prompt for libedit, kept alive until the next one.
    func promptCharacters() -> UnsafeMutablePointer<wchar_t> {
        let scalars = Array(settings.prompt().unicodeScalars)
        let text = UnsafeMutablePointer<wchar_t>.allocate(capacity: scalars.count + 1)
        for (index, scalar) in scalars.enumerated() { text[index] = wchar_t(bitPattern: scalar.value) }
        text[scalars.count] = 0
        promptText?.deallocate()
        promptText = text
        promptColumns = scalars.reduce(0) { $0 + columns(of: wchar_t(bitPattern: $1.value)) }
        return text
    }

    /// Ctrl-C: moves the cursor to the end of the input, so `^C` and the line break land after it,
    /// and ends the line on the next key read, without waiting for a key.
    func interrupt() -> UInt8 {
        interruptPending = true
        if let info = el_wline(editLine) {
            _ = el_cursor(editLine, Int32(info.pointee.lastchar - info.pointee.cursor))
        }
        return UInt8(CC_CURSOR)
    }

    // MARK: Drawing

    /// Lifts the line being typed, prints `text`, and lets libedit draw the prompt and the line again
    /// below it, as it does itself after a suspended program resumes.
    private func printAbove(_ text: String) {
        eraseInput()
        gather(text)
        _ = cedit_refresh(editLine)
        // The erasing, the text and the line drawn again go out in one write.
        writeGathered()
    }

    /// Adds `text` to what libedit has drawn and is not yet written, in its place after it.
    private func gather(_ text: String) {
        guard let outputFile else {
            writeAll(settings.output, text)
            return
        }
        var bytes = Array(text.utf8)
        _ = fwrite(&bytes, 1, bytes.count, outputFile)
    }

    /// Moves to the first row of the prompt and erases to the end of the screen, so a line long enough
    /// to wrap is erased whole.
    private func eraseInput() {
        var erase = "\r"
        if let editLine, let info = el_wline(editLine) {
            let width = max(1, Int(cedit_columns(editLine)))
            var before = promptColumns
            var position = info.pointee.buffer!
            while position < info.pointee.cursor {
                before += columns(of: position.pointee)
                position += 1
            }
            let row = before / width
            if row > 0 { erase += "\u{1B}[\(row)A" }
        }
        gather(erase + "\u{1B}[J")
    }

    /// Without libedit's signal handlers there is no SIGWINCH; a changed size is noticed at the next
    /// key, before libedit draws it.
    private func followWindowSize() {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        guard cedit_window_size(settings.input, &rows, &columns) == 0, (rows, columns) != windowSize else { return }
        windowSize = (rows, columns)
        el_resize(editLine)
    }

    /// Columns a character takes as libedit shows it: control characters as `^X`.
    private func columns(of character: wchar_t) -> Int {
        let width = Int(cedit_character_columns(character))
        return width >= 0 ? width : 2
    }

    static func of(_ editLine: OpaquePointer?) -> EditingSession? {
        guard let editLine, let context = cedit_client_data(editLine) else { return nil }
        return Unmanaged<EditingSession>.fromOpaque(context).takeUnretainedValue()
    }
}

private let readCharacterCallback: el_rfunc_t = { editLine, character in
    guard let session = EditingSession.of(editLine), let character else { return -1 }
    return session.readCharacter(into: character)
}

private let promptCallback: cedit_prompt = { editLine in
    guard let session = EditingSession.of(editLine) else { return nil }
    return session.promptCharacters()
}

private let interruptCallback: cedit_command = { editLine, _ in
    guard let session = EditingSession.of(editLine) else { return UInt8(CC_EOF) }
    return session.interrupt()
}

/// Turns the terminal's bytes into characters. libedit is handed whole characters, so it does not
/// depend on the process locale; bytes that are not UTF-8 are dropped.
struct UTF8Assembler {
    private var bytes: [UInt8] = []
    private var expected = 0

    /// No character is half assembled.
    var isEmpty: Bool { bytes.isEmpty }

    mutating func add(_ byte: UInt8) -> Unicode.Scalar? {
        if bytes.isEmpty {
            switch byte {
            case 0..<0x80: return Unicode.Scalar(byte)
            case 0xC2...0xDF: expected = 2
            case 0xE0...0xEF: expected = 3
            case 0xF0...0xF4: expected = 4
            default: return nil
            }
            bytes = [byte]
            return nil
        }
        guard byte & 0xC0 == 0x80 else {
            bytes = []
            return add(byte)
        }
        bytes.append(byte)
        guard bytes.count == expected else { return nil }
        defer { bytes = [] }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        if case .scalarValue(let scalar) = decoder.decode(&iterator) { return scalar }
        return nil
    }
}
