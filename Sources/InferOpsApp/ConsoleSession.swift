import Foundation
import InferOpsConsole
import InferOpsCore

/// The console chat's input side: one command per line, each run to its end before the next is read,
/// so piped input reads like a conversation. `/as <user>` switches who is typing.
public struct ConsoleSession: Sendable {
    let dispatcher: Dispatcher
    let output: @Sendable (String) -> Void
    let channel = "console"
    /// Who runs the console, recorded beside the chat user that `/as` claims.
    let osUser = OperatingSystemUser.current

    public init(dispatcher: Dispatcher, output: @escaping @Sendable (String) -> Void) {
        self.dispatcher = dispatcher
        self.output = output
    }

    /// Reads until end of input. Returns what became of each command, so piped input can end with
    /// an exit status and a list of the lines that did not succeed.
    public func run(lines: AsyncStream<String>, startingAs user: String, echo: Bool) async -> Summary {
        var current = UserID(user)
        var summary = Summary()
        var lineNumber = 0
        output("InferOps console. You are \(current). `/as <user>` switches user, `/infer help` lists the commands.")
        for await raw in lines {
            lineNumber += 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if echo { output("\n\(current)> \(line)") }
            if line == "/quit" || line == "/exit" { break }
            summary.commands += 1
            if line.lowercased().hasPrefix("/as") {
                let name = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
                guard CommandParser.isName(name.lowercased()) || name.hasPrefix("U") && CommandParser.isName(name.lowercased()) else {
                    output("✗ `/as` needs a user id, e.g. `/as bob`.")
                    summary.unsuccessful.append(.init(line: lineNumber, command: line, failed: false))
                    continue
                }
                current = UserID(name)
                output("• You are now \(current).")
                continue
            }
            let outcome = await dispatcher.handle(
                IncomingCommand(user: current, text: line, channel: channel, osUser: osUser))
            switch outcome {
            case .completed: break
            case .refused: summary.unsuccessful.append(.init(line: lineNumber, command: line, failed: false))
            case .failed: summary.unsuccessful.append(.init(line: lineNumber, command: line, failed: true))
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
