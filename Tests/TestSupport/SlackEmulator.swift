import Foundation

/// The project's Slack emulator (`Tests/SlackEmulator`): the Web API under `/api/`, Socket Mode, and
/// the control API under `/_emu/` on a free loopback port. Its bot token is `xoxb-1-emu-bot`, its
/// app token `xapp-1-A0EMU0001-1-emu`.
public final class SlackEmulator: Sendable {
    private let program: PythonServer

    public static let botToken = "xoxb-1-emu-bot"
    public static let appToken = "xapp-1-A0EMU0001-1-emu"

    public var port: Int { program.port }
    /// `http://127.0.0.1:<port>`: `/api/` is the Web API, `/_emu/` the control API.
    public var url: String { program.url }
    public var process: ChildProcess { program.process }

    public static var directory: URL { repositoryRoot.appendingPathComponent("Tests/SlackEmulator") }

    /// Starts the emulator and waits until it listens, blocking the calling thread.
    /// - Parameter extraArguments: more `slackemu` flags (`--ack-timeout`, `--ping-interval`).
    /// - Throws: `TestFailure` when python3 or the emulator is missing, or it does not start.
    public init(extraArguments: [String] = []) throws {
        let emulator = Self.directory
        guard FileManager.default.fileExists(atPath: emulator.appendingPathComponent("slackemu/__main__.py").path) else {
            throw TestFailure("the Slack emulator is missing: expected \(emulator.path)/slackemu")
        }
        program = try PythonServer("the Slack emulator", program: .module("slackemu", path: emulator)) { portFile in
            ["--port", "0", "--port-file", portFile] + extraArguments
        }
    }

    /// A control-API call (`/_emu/<path>`), its status and body.
    @discardableResult
    public func control(_ method: String, _ path: String, json: String? = nil) -> (status: Int, body: String) {
        request(method, "\(url)/_emu/\(path)", json: json)
    }

    /// The Web API calls the emulator received, as JSON objects in order.
    public func calls(_ method: String? = nil) throws -> [[String: Any]] {
        let answer = control("GET", "calls" + (method.map { "?method=\($0)" } ?? ""))
        let json = try JSONSerialization.jsonObject(with: Data(answer.body.utf8))
        if let list = json as? [[String: Any]] { return list }
        return (json as? [String: Any])?["calls"] as? [[String: Any]] ?? []
    }

    public func stop() { program.stop() }
}
