import Foundation

/// The `inferops` binary this checkout built (`.build/debug/inferops`): `serve` as a daemon the test
/// talks to through its stdin and output, and one-shot commands (`exec`, `check`, `audit`) run to
/// their end.
public enum InferOpsDaemon {
    public static var executable: String { repositoryRoot.appendingPathComponent(".build/debug/inferops").path }

    /// Starts `inferops serve --config <config>` with a writable stdin: what is sent is read by its
    /// console as piped lines, and closing it ends the daemon once its lines are done. Send SIGTERM
    /// for a graceful stop, SIGKILL for a crash; letting go of it kills it.
    /// - Parameter errors: `.separate` keeps its log (stderr) apart from the console (stdout).
    public static func serve(
        config: String,
        environment: [String: String] = [:],
        errors: ChildProcess.Errors = .merged
    ) throws -> ChildProcess {
        try launch(["serve", "--config", config], environment: environment, errors: errors)
    }

    /// Starts `inferops` with `arguments` without waiting for it; stdin is `/dev/null` unless `input`.
    public static func launch(
        _ arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        input: Bool = true,
        errors: ChildProcess.Errors = .merged
    ) throws -> ChildProcess {
        try ChildProcess(
            "inferops \(arguments.first ?? "")",
            executable: executable,
            arguments: arguments,
            environment: environment,
            workingDirectory: workingDirectory,
            input: input,
            errors: errors
        )
    }
}

/// The result of running a program to its end.
public struct Finished: Sendable {
    /// The exit code, or the signal number when it was killed.
    public var status: Int32
    /// Its stdout and stderr together, in the order it wrote them.
    public var output: String

    public init(status: Int32, output: String) {
        self.status = status
        self.output = output
    }
}

extension ChildProcess {
    /// Runs a program with an argv (no shell) to its end, blocking the calling thread, and collects
    /// its combined output.
    /// - Parameter input: written to its stdin, which is then closed; `/dev/null` when nil.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        input: String? = nil
    ) throws -> Finished {
        let process = try ChildProcess(
            URL(fileURLWithPath: executable).lastPathComponent,
            executable: executable,
            arguments: arguments,
            environment: environment,
            workingDirectory: workingDirectory,
            input: input != nil
        )
        if let input {
            try process.send(input)
            process.closeInput()
        }
        return process.finished()
    }

    /// Waits for the exit and for the end of the output (blocking), and returns both.
    public func finished() -> Finished {
        let exit = waitForExit()
        waitForEndOfOutput()
        return Finished(status: exit.status, output: output)
    }

    /// The port of the daemon's HTTP listener, from its log line `listening on http://127.0.0.1:<port>`.
    /// - Throws: `TestFailure` when the daemon ends its output or the deadline passes first.
    public func listenerPort(in stream: Stream = .standardError, within timeout: Duration) async throws -> Int {
        let line = try await waitForLine(in: stream, within: timeout) {
            $0.contains(/listening on http:\/\/127\.0\.0\.1:\d+/)
        }
        return Int(line.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/)!.output.1)!
    }
}
