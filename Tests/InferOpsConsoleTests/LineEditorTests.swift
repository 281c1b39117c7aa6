import Foundation
import InferOpsConsole
import InferOpsTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The console's line editor on a real pseudo-terminal: keys are typed as a terminal sends them,
/// events are awaited, and what the editor draws is read back. One editor at a time: libedit and the
/// terminal library keep the terminal they write to in globals, so a process has one console.
@Suite(.serialized) struct LineEditorTests {
    static let prompt = "alice@console> "

    /// An editor reading a pseudo-terminal, and its events.
    final class Session {
        let terminal: PseudoTerminal
        let editor: LineEditor
        var events: AsyncStream<LineEditor.Event>.Iterator
        let watchdog: Task<Void, Never>

        init(historyFile: String? = nil, historyLimit: Int = 500) throws {
            terminal = try PseudoTerminal()
            editor = try LineEditor(
                input: terminal.terminal, output: terminal.terminal, historyFile: historyFile,
                historyLimit: historyLimit, terminalType: "xterm", readsEditrc: false,
                prompt: { LineEditorTests.prompt })
            events = editor.lines().makeAsyncIterator()
            // An editor that never reports would hang the test; stopping it ends the stream instead,
            // and the test fails on the missing event.
            let editor = editor
            watchdog = Task {
                try? await Task.sleep(for: .seconds(30))
                if !Task.isCancelled { editor.stop() }
            }
        }

        func next() async -> LineEditor.Event? {
            await events.next()
        }

        /// Waits for the prompt (the `count`th one drawn), then types `keys`.
        func type(_ keys: String, atPrompt count: Int = 1) throws {
            try terminal.waitForPrompt(LineEditorTests.prompt, count: count)
            terminal.type(keys)
        }

        func end() {
            watchdog.cancel()
            editor.stop()
        }
    }

    @Test func aTypedLineArrivesWithoutItsLineBreak() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer status\r")
        #expect(await session.next() == .line("/infer status"))
    }

    @Test func textThatIsNotASCIIArrivesWhole() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer deploy llama-3-8b → staging “déjà vu” ✓\r")
        #expect(await session.next() == .line("/infer deploy llama-3-8b → staging “déjà vu” ✓"))
    }

    @Test func arrowUpBringsBackThePreviousLine() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer status\r")
        #expect(await session.next() == .line("/infer status"))
        try session.type("\u{1B}[A\r", atPrompt: 2)
        #expect(await session.next() == .line("/infer status"))
    }

    /// Lines pasted at once arrive in order, each shown after its own prompt and kept in the history,
    /// as if typed one after another.
    @Test func pastedLinesArriveInOrderEachAfterItsPrompt() async throws {
        let session = try Session()
        defer { session.end() }
        let lines = ["/infer help", "/infer status", "", "/infer history llama-3-8b in staging", "/infer help deploy"]
        try session.type(lines.map { $0 + "\r" }.joined())
        for line in lines { #expect(await session.next() == .line(line)) }
        let screen = try session.terminal.waitForScreen("every pasted line after a prompt") { screen in
            lines.allSatisfy { screen.contains(Self.prompt + $0 + "\r\n") }
        }
        var rest = screen[...]
        for line in lines {
            guard let shown = rest.range(of: Self.prompt + line + "\r\n") else {
                Issue.record("`\(line)` is not shown after the lines before it: \(screen.debugDescription)")
                return
            }
            rest = rest[shown.upperBound...]
        }
        // The newest line comes back first.
        try session.type("\u{1B}[A\r", atPrompt: lines.count + 1)
        #expect(await session.next() == .line("/infer help deploy"))
    }

    /// A pasted line with an editing key in it is edited as if typed: here Ctrl-A goes to the start.
    @Test func aPastedLineWithAnEditingKeyIsEdited() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer help\r/infer status\u{01}# \r/infer help status\r")
        #expect(await session.next() == .line("/infer help"))
        #expect(await session.next() == .line("# /infer status"))
        #expect(await session.next() == .line("/infer help status"))
    }

    @Test func controlAAndControlEMoveToTheStartAndTheEnd() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("status\u{01}/infer \u{05} --all\r")
        #expect(await session.next() == .line("/infer status --all"))
    }

    /// Ctrl-C reaches the editor as a key (the terminal does not turn it into a signal while a line is
    /// edited; if it did, the key would never arrive here) and is reported, and the editor lets go of
    /// the terminal.
    @Test func controlCIsReportedAsAnInterrupt() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer dep\u{03}")
        #expect(await session.next() == .interrupt)
        #expect(await session.next() == nil)
        try session.terminal.waitForScreen("^C after the typed text") { $0.contains("/infer dep^C") }
        #expect(session.terminal.modes.c_lflag == session.terminal.initialModes.c_lflag)
        #expect(session.terminal.modes.c_lflag & tcflag_t(ISIG) != 0)
    }

    @Test func controlDEndsInputOnlyOnAnEmptyLine() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("abc\u{04}\r")
        #expect(await session.next() == .line("abc"))
        try session.type("\u{04}", atPrompt: 2)
        #expect(await session.next() == .end)
        #expect(await session.next() == nil)
        #expect(session.terminal.modes.c_lflag == session.terminal.initialModes.c_lflag)
    }

    /// The daemon stops while someone is typing: `stop()` returns at once, with the editing thread
    /// gone (the terminal is already restored when it returns), the prompt erased and the stream ended.
    @Test func stopEndsReadingAtOnceAndRestoresTheTerminal() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer depl")
        try session.terminal.waitForScreen("the typed text") { $0.contains("/infer depl") }
        let took = ContinuousClock().measure { session.editor.stop() }
        #expect(took < .seconds(1), "stop() took \(took)")
        let modes = session.terminal.modes
        #expect(modes.c_lflag == session.terminal.initialModes.c_lflag)
        #expect(modes.c_iflag == session.terminal.initialModes.c_iflag)
        #expect(await session.next() == nil)
        try session.terminal.waitForScreen("the prompt erased") { $0.hasSuffix("\r\u{1B}[J") }
    }

    /// A reply printed while someone types goes above the line, and the line is drawn again below it,
    /// with what was typed still there to finish.
    @Test func printKeepsThePartlyTypedLine() async throws {
        let session = try Session()
        defer { session.end() }
        try session.type("/infer sta")
        try session.terminal.waitForScreen("the typed text") { $0.contains("/infer sta") }
        session.editor.print("✓ llama-3-8b is ready on staging")
        let screen = try session.terminal.waitForScreen("the line drawn again below the printed text") { screen in
            guard let printed = screen.range(of: "✓ llama-3-8b is ready on staging\r\n") else { return false }
            return screen[printed.upperBound...].contains(Self.prompt + "/infer sta")
        }
        // The typed line was erased before the text was printed, so the text starts a clean row.
        #expect(screen.contains("\r\u{1B}[J✓ llama-3-8b"))
        session.terminal.type("tus\r")
        #expect(await session.next() == .line("/infer status"))
    }

    @Test func printBeforeReadingGoesStraightOut() throws {
        let terminal = try PseudoTerminal()
        let editor = try LineEditor(
            input: terminal.terminal, output: terminal.terminal, terminalType: "xterm", readsEditrc: false,
            prompt: { Self.prompt })
        editor.print("InferOps console. You are alice.")
        try terminal.waitForScreen("the text") { $0 == "InferOps console. You are alice.\r\n" }
    }

    @Test func historyIsSavedForItsOwnerAndLoadedByTheNextEditor() async throws {
        let folder = try TemporaryFolder()
        let path = folder.path + "/history"
        do {
            let session = try Session(historyFile: path)
            defer { session.end() }
            for (index, line) in ["/infer status", "/infer status", "   ", "/infer help"].enumerated() {
                try session.type(line + "\r", atPrompt: index + 1)
                #expect(await session.next() == .line(line))
            }
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // A blank line and a repeat of the previous line are not kept.
        #expect(try Self.entries(in: path) == ["/infer\\040status", "/infer\\040help"])

        let next = try Session(historyFile: path)
        defer { next.end() }
        try next.type("\u{1B}[A\u{1B}[A\r")
        #expect(await next.next() == .line("/infer status"))
    }

    @Test func historyKeepsTheNewestLinesUpToItsLimit() async throws {
        let folder = try TemporaryFolder()
        let path = folder.path + "/history"
        let session = try Session(historyFile: path, historyLimit: 2)
        for (index, line) in ["one", "two", "three"].enumerated() {
            try session.type(line + "\r", atPrompt: index + 1)
            #expect(await session.next() == .line(line))
        }
        session.end()
        #expect(try Self.entries(in: path) == ["two", "three"])
    }

    /// Lines typed in a burst are saved together, at most a second after the last save, while the
    /// editor waits for the next key: not when it ends only.
    @Test func historyIsSavedWhileTheEditorWaits() async throws {
        let folder = try TemporaryFolder()
        let path = folder.path + "/history"
        let session = try Session(historyFile: path)
        defer { session.end() }
        for (index, line) in ["/infer help", "/infer status", "/infer history"].enumerated() {
            try session.type(line + "\r", atPrompt: index + 1)
            #expect(await session.next() == .line(line))
        }
        try await waitUntil("the three lines in the history file", timeout: .seconds(10)) {
            (try? Self.entries(in: path)) == ["/infer\\040help", "/infer\\040status", "/infer\\040history"]
        }
    }

    /// The lines of libedit's history file after its header, oldest first (spaces written `\040`).
    static func entries(in path: String) throws -> [String] {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.first == "_HiStOrY_V2_")
        return Array(lines.dropFirst())
    }
}

/// A folder removed when the value goes away.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
