import ArgumentParser
import Foundation
import InferOpsApp
import InferOpsCore

/// `inferops`: the daemon and its tools. Each subcommand is thin; the work is in InferOpsApp.
@main
struct InferOps: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inferops",
        abstract: "Chat-ops for LLM inference on your own GPU Kubernetes clusters.",
        subcommands: [Serve.self, Exec.self, Check.self, Audit.self]
    )
}

struct ConfigOption: ParsableArguments {
    /// The file the README names, relative to the current folder (the repository's root).
    static let defaultPath = "config/inferops.yaml"

    @Option(name: .long, help: "The configuration file (default: config/inferops.yaml; see config/inferops.example.yaml).")
    var config: String?

    /// `--config`, or config/inferops.yaml when it exists. Without either, says where it looked and
    /// which files it saw instead, so a newcomer is not left with "cannot read the file".
    func path() throws -> String {
        if let config { return config }
        if FileManager.default.fileExists(atPath: Self.defaultPath) { return Self.defaultPath }
        let folder = FileManager.default.currentDirectoryPath
        printError("inferops: no configuration: `--config` was not given and \(folder)/\(Self.defaultPath) does not exist.")
        let nearby = ["config/sandbox.yaml", "config/inferops.example.yaml"].filter { FileManager.default.fileExists(atPath: $0) }
        if !nearby.isEmpty { printError("Found here: \(nearby.joined(separator: ", ")).") }
        printError("Point at a file with `--config FILE` (the sandbox's is config/sandbox.yaml), "
                   + "or copy config/inferops.example.yaml to \(Self.defaultPath) and edit it.")
        throw ExitCode(66)
    }

    /// Loads and validates; prints every problem; stops on critical ones.
    func load() throws -> ConfigurationLoader.Loaded {
        let config = try path()
        let loaded = ConfigurationLoader(path: config).load()
        for problem in loaded.problems { printError(problem.description) }
        if !loaded.critical.isEmpty {
            printError("inferops: \(loaded.critical.count) problem(s) in the configuration; run `inferops check --config \(config)`.")
            throw ExitCode(78)
        }
        return loaded
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

let standardOutput: @Sendable (String) -> Void = { line in
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon with the configured chat (the console reads commands from standard input).",
        discussion: """
            With piped input, the console ends by naming the commands that did not succeed, and exits \
            0 when all were done, 1 when any failed, 2 when some were refused and none failed.
            """
    )
    @OptionGroup var options: ConfigOption
    @Flag(help: "Print each command before its replies (on by default when input is not a terminal).")
    var echo = false

    func run() async throws {
        let loaded = try options.load()
        let runtime = try await start(loaded)
        let session = ConsoleSession(dispatcher: runtime.dispatcher, output: standardOutput)
        let echoing = echo || isatty(STDIN_FILENO) == 0
        // The listener and the router reconciliation run beside the console until its input ends.
        let (listening, listeningContinuation) = AsyncStream.makeStream(of: Int.self)
        let stopper = BackgroundStopper()
        let background = Task {
            defer { listeningContinuation.finish() }
            try await runtime.runBackground(stopper: stopper) { port in listeningContinuation.yield(port) }
        }
        var port: Int?
        for await bound in listening {
            port = bound
            break
        }
        guard port != nil else {
            if case .failure(let error) = await background.result {
                printError("inferops: the HTTP listener did not start: \(error)")
            }
            await runtime.shutdown()
            throw ExitCode(69)
        }
        printError("inferops: listening on http://\(loaded.configuration.server.host):\(port!) (/healthz, /readyz, /metrics, deny backend)")
        // Input ends at end of file, or when SIGTERM/SIGINT stopped the background parts.
        let (lines, linesContinuation) = AsyncStream.makeStream(of: String.self)
        Thread {
            while let line = readLine(strippingNewline: true) { linesContinuation.yield(line) }
            linesContinuation.finish()
        }.start()
        Task {
            _ = await background.result
            linesContinuation.finish()
        }
        let summary = await session.run(
            lines: lines, startingAs: loaded.configuration.chat.consoleUser, echo: echoing)
        await stopper.stop()
        var daemonFailed = false
        if case .failure(let error) = await background.result, !(error is CancellationError) {
            printError("inferops: \(error)")
            daemonFailed = true
        }
        await runtime.shutdown()
        // Piped input is a script: it ends with which lines did not succeed and an exit status to match
        // (0 all done, 1 some failed, 2 some refused and none failed). A person at a terminal saw each
        // answer, and the session ends with 0 as it always has.
        guard isatty(STDIN_FILENO) == 0 else { return }
        standardOutput("\n" + summary.description)
        if daemonFailed { throw ExitCode(1) }
        if summary.exitStatus != 0 { throw ExitCode(summary.exitStatus) }
    }
}

struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one command as a user and exit: 0 done, 1 failed, 2 refused.",
        discussion: "Example: inferops exec --config config/sandbox.yaml --as alice \"/infer deploy llama-3-8b to staging\""
    )
    @OptionGroup var options: ConfigOption
    @Option(name: .customLong("as"), help: "The user id the command runs as.")
    var user: String
    @Argument(help: "The command, e.g. \"/infer status\".")
    var command: String

    func run() async throws {
        let loaded = try options.load()
        let runtime = try await start(loaded)
        let outcome = await cancellingOnSignals {
            await runtime.dispatcher.handle(
                IncomingCommand(user: UserID(user), text: command, channel: "exec", osUser: OperatingSystemUser.current))
        }
        await runtime.shutdown()
        switch outcome {
        case .completed: return
        case .failed: throw ExitCode(1)
        case .refused: throw ExitCode(2)
        }
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration, the model catalog and the command declarations."
    )
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let loaded = ConfigurationLoader(path: try options.path()).load()
        for problem in loaded.problems { print(problem.description) }
        let configuration = loaded.configuration
        print("\(loaded.critical.isEmpty ? "ok" : "not ok"): \(configuration.environments.count) environment(s), "
              + "\(configuration.models.count) model(s), \(loaded.catalog.specs.count) command(s), "
              + "\(configuration.policy.roles.count) role(s); \(loaded.critical.count) error(s), "
              + "\(loaded.problems.count - loaded.critical.count) warning(s).")
        if !loaded.critical.isEmpty { throw ExitCode(1) }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the audit log as JSON lines, oldest first, or check its hash chain.",
        discussion: "Opens the database read-only. `--verify` exits 1 at the first altered, deleted or inserted row."
    )
    @OptionGroup var options: ConfigOption
    @Flag(help: "Check the hash chain instead of printing the log; print the head hash to keep elsewhere.")
    var verify = false

    func run() async throws {
        let loaded = try options.load()
        let path = loaded.configuration.storage.path
        do {
            if verify {
                let verdict = try await AuditLog.verify(storagePath: path)
                print(verdict.summary)
                if !verdict.intact { throw ExitCode(1) }
            } else {
                for line in try await AuditLog.lines(storagePath: path) { print(line) }
            }
        } catch let refusal as Refusal {
            printError("inferops: \(refusal.message)" + (refusal.hint.map { " \($0)" } ?? ""))
            throw ExitCode(66)
        }
    }
}

func start(_ loaded: ConfigurationLoader.Loaded) async throws -> Runtime {
    do {
        return try await Runtime.start(loaded, output: standardOutput)
    } catch let refusal as Refusal {
        printError("inferops: \(refusal.message)" + (refusal.hint.map { " \($0)" } ?? ""))
        throw ExitCode(69)
    }
}

/// Runs `body` with SIGINT and SIGTERM turned into its cancellation instead of the end of the process:
/// a stopped `exec` then stops helm with SIGTERM (helm runs in its own process group, so a Ctrl-C
/// never reaches it) and the caller still shuts the runtime down and removes its work folder.
func cancellingOnSignals<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
    let task = Task { await body() }
    let sources = [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)  // delivered to the dispatch source instead
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        return source
    }
    let result = await task.value
    for source in sources { source.cancel() }
    return result
}
