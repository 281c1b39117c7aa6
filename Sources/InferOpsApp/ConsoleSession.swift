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

    /// Reads until end of input. Returns how many commands failed (refusals are not failures here).
    public func run(lines: AsyncStream<String>, startingAs user: String, echo: Bool) async -> Int {
        var current = UserID(user)
        var failures = 0
        output("InferOps console. You are \(current). `/as <user>` switches user, `/infer help` lists the commands.")
        for await raw in lines {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if echo { output("\n\(current)> \(line)") }
            if line.lowercased().hasPrefix("/as") {
                let name = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
                guard CommandParser.isName(name.lowercased()) || name.hasPrefix("U") && CommandParser.isName(name.lowercased()) else {
                    output("✗ `/as` needs a user id, e.g. `/as bob`.")
                    continue
                }
                current = UserID(name)
                output("• You are now \(current).")
                continue
            }
            if line == "/quit" || line == "/exit" { break }
            let outcome = await dispatcher.handle(
                IncomingCommand(user: current, text: line, channel: channel, osUser: osUser))
            if case .failed = outcome { failures += 1 }
        }
        return failures
    }
}
