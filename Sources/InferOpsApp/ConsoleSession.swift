import Foundation
import InferOpsConsole
import InferOpsCore

/// The console chat's input side, a chat port like any other: each line is an event for the intake,
/// answered at once. Piped input is a script, so each line waits until the operation it started
/// has ended before the next is read; at a terminal the next line is read at once, and `/infer
/// status` and `/infer cancel` act on what is running. `/as <user>` switches who is typing, and
/// `/in <channel>` the channel they type in (environments take changes only from their channels).
public struct ConsoleSession: Sendable {
    let intake: Intake
    let output: @Sendable (String) -> Void
    /// The channel the console types in until `/in` switches it.
    static let defaultChannel = "console"
    /// Who runs the console, recorded beside the chat user that `/as` claims.
    let osUser = OperatingSystemUser.current

    public init(intake: Intake, output: @escaping @Sendable (String) -> Void) {
        self.intake = intake
        self.output = output
    }

    /// What one line of input is.
    enum Line: Equatable {
        case blank
        case quit
        case switchUser(String)
        case switchChannel(String)
        case command(String)
        /// Not a command the console accepts; the message says what to type instead.
        case rejected(String)
    }

    static func classify(_ raw: String) -> Line {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if line.isEmpty || line.hasPrefix("#") { return .blank }
        if line == "/quit" || line == "/exit" { return .quit }
        let lowered = line.lowercased()
        if lowered == "/as" || lowered.hasPrefix("/as ") {
            let name = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
            guard CommandParser.isName(name.lowercased()) else {
                return .rejected("`/as` needs a user id, e.g. `/as bob`.")
            }
            return .switchUser(name)
        }
        if lowered == "/in" || lowered.hasPrefix("/in ") {
            let name = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
            let bare = name.hasPrefix("#") ? String(name.dropFirst()) : name
            // Channel names (`prod-deploys`) and ids (Slack's `C0PRODDEPLOY`) as written: ids are upper case.
            let allowed = bare.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)
            }
            guard !bare.isEmpty, bare.count <= 80, allowed else {
                return .rejected("`/in` needs a channel name or id, e.g. `/in prod-deploys`.")
            }
            return .switchChannel(bare)
        }
        if lowered == "/infer" || lowered.hasPrefix("/infer ") || lowered.hasPrefix("@inferops") { return .command(line) }
        let first = line.split(separator: " ").first.map(String.init) ?? line
        if first.hasPrefix("/") {
            return .rejected("`\(ConsoleRenderer.literal(String(first.prefix(40))))` is not a console command: "
                             + "type `/infer …` commands, `/as <user>` to switch user, `/in <channel>` to switch channel, `/quit` to stop.")
        }
        return .rejected("Commands start with `/infer`: did you mean `/infer \(ConsoleRenderer.literal(String(line.prefix(60))))`?")
    }

    /// Reads until end of input. Returns what became of each command, so piped input can end with
    /// an exit status and a list of the lines that did not succeed.
    /// - Parameters:
    ///   - waiting: whether each line waits for the operation it starts (piped input).
    ///   - prompt: told who is typing after each `/as`, for the interactive prompt.
    public func run(
        lines: AsyncStream<String>, startingAs user: String, echo: Bool, waiting: Bool = true,
        userChanged: @Sendable (UserID) -> Void = { _ in }, channelChanged: @Sendable (String) -> Void = { _ in }
    ) async -> Summary {
        // At a terminal every line is handled at once, beside the ones still being answered (a slow
        // `status` never holds the next command); piped lines run one after another.
        await withTaskGroup(of: (Int, String, CommandOutcome).self) { group in
            var summary = await read(lines, startingAs: user, echo: echo, waiting: waiting, userChanged: userChanged,
                                     channelChanged: channelChanged) {
                lineNumber, line, command in
                group.addTask { (lineNumber, line, await intake.handle(command, waiting: false)) }
            }
            for await (lineNumber, line, outcome) in group {
                summary.record(outcome, line: lineNumber, command: line)
            }
            summary.unsuccessful.sort { $0.line < $1.line }
            return summary
        }
    }

    func read(
        _ lines: AsyncStream<String>, startingAs user: String, echo: Bool, waiting: Bool,
        userChanged: @Sendable (UserID) -> Void, channelChanged: @Sendable (String) -> Void = { _ in },
        concurrently: (Int, String, IncomingCommand) -> Void
    ) async -> Summary {
        var current = UserID(user)
        var channel = Self.defaultChannel
        var summary = Summary()
        var lineNumber = 0
        output("InferOps console. You are \(current). `/as <user>` switches user, `/infer help` lists the commands.")
        userChanged(current)
        for await raw in lines {
            lineNumber += 1
            let classified = Self.classify(raw)
            if classified == .blank { continue }
            let line = raw.trimmingCharacters(in: .whitespaces)
            if echo { output("\n\(current)> \(line)") }
            switch classified {
            case .blank:
                continue
            case .quit:
                return summary
            case .rejected(let message):
                summary.commands += 1
                output("✗ " + message)
                summary.unsuccessful.append(.init(line: lineNumber, command: line, failed: false))
            case .switchChannel(let name):
                summary.commands += 1
                channel = name
                channelChanged(name)
                output("• You are now in \(channel).")
            case .switchUser(let name):
                summary.commands += 1
                current = UserID(name)
                userChanged(current)
                output("• You are now \(current).")
            case .command(let text):
                summary.commands += 1
                let command = IncomingCommand(
                    user: current, text: text, channel: channel, osUser: osUser,
                    event: "console:\(ProcessInfo.processInfo.processIdentifier):\(lineNumber)")
                if waiting {
                    summary.record(await intake.handle(command, waiting: true), line: lineNumber, command: line)
                } else {
                    concurrently(lineNumber, line, command)
                }
            }
        }
        return summary
    }

    /// What became of a session's commands: the exit status of piped `inferops serve` and the last
    /// thing it prints, so a script learns which lines to look at without reading the conversation.
    public struct Summary: Sendable, Equatable {
        public struct Unsuccessful: Sendable, Equatable {
            /// The line of input, counting from 1 (blank and `#` lines count, so it matches an editor).
            public var line: Int
            public var command: String
            /// Run and failed, as opposed to refused before it ran.
            public var failed: Bool
        }

        public var commands = 0
        public var unsuccessful: [Unsuccessful] = []

        public init() {}

        mutating func record(_ outcome: CommandOutcome, line: Int, command: String) {
            switch outcome {
            case .completed, .awaitingApproval: break
            case .refused: unsuccessful.append(.init(line: line, command: command, failed: false))
            case .failed: unsuccessful.append(.init(line: line, command: command, failed: true))
            }
        }

        /// 0 when every command was done, 1 when any failed, 2 when some were refused and none failed:
        /// the same statuses `inferops exec` gives one command.
        public var exitStatus: Int32 {
            if unsuccessful.contains(where: \.failed) { return 1 }
            return unsuccessful.isEmpty ? 0 : 2
        }

        /// "2 of 9 commands did not succeed: line 4 `/infer deploy …` refused; line 7 `…` failed."
        public var description: String {
            if unsuccessful.isEmpty {
                if commands == 0 { return "No commands were given." }
                return commands == 1 ? "The command succeeded." : "All \(commands) commands succeeded."
            }
            let lines = unsuccessful.map { entry in
                let shown = entry.command.count > 60 ? entry.command.prefix(59) + "…" : entry.command
                return "line \(entry.line) `\(shown)` \(entry.failed ? "failed" : "refused")"
            }
            let noun = commands == 1 ? "command" : "commands"
            return "\(unsuccessful.count) of \(commands) \(noun) did not succeed: \(lines.joined(separator: "; "))."
        }
    }
}
