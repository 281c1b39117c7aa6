import ArgumentParser
import Foundation
import InferOpsApp
import InferOpsConsole
import InferOpsCore
import InferOpsSlack
import Logging
import ServiceLifecycle
import Synchronization

/// `inferops`: the daemon and its tools. Each subcommand is thin; the work is in InferOpsApp.
@main
struct InferOps: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inferops",
        abstract: "Chat-ops for LLM inference on your own GPU Kubernetes clusters.",
        subcommands: [Serve.self, Exec.self, Check.self, Audit.self, SLO.self, Manifest.self]
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
        if loaded.configuration.chat.transport == "slack" { return try await serveSlack(loaded) }
        let interactive = isatty(STDIN_FILENO) != 0
        // At a terminal: a prompt with who is typing, line editing and a history kept between runs.
        let typing = TypingUser(UserID(loaded.configuration.chat.consoleUser))
        var editor: LineEditor?
        if interactive {
            let history = ProcessInfo.processInfo.environment["HOME"].map { $0 + "/.inferops_history" }
            editor = try? LineEditor(historyFile: history) {
                ConsoleService.prompt(user: typing.current, channel: typing.currentChannel)
            }
        }
        var output = standardOutput
        if let editor {
            // Replies are printed above the line being typed, which is then drawn again.
            output = { line in editor.print(line) }
        }
        let runtime = try await start(loaded, output: output)
        let console = ConsoleService(
            intake: runtime.intake, startingAs: loaded.configuration.chat.consoleUser,
            echo: echo || !interactive, waiting: !interactive, editor: editor, typing: typing, output: output)
        let host = loaded.configuration.server.host
        let listening = Mutex(false)
        let group: ServiceGroup
        do {
            group = try runtime.serviceGroup(chat: console) { port in
                listening.withLock { $0 = true }
                printError("inferops: listening on http://\(host):\(port) (/healthz, /readyz, /metrics, deny backend)")
            }
        } catch {
            printError("inferops: the HTTP listener did not start: \(error)")
            await runtime.shutdown()
            throw ExitCode(69)
        }
        var daemonFailed = false
        do {
            try await group.run()
        } catch {
            if !listening.withLock({ $0 }) {
                printError("inferops: the HTTP listener did not start: \(error)")
                await runtime.shutdown()
                throw ExitCode(69)
            }
            printError("inferops: \(error)")
            daemonFailed = true
        }
        await runtime.shutdown()
        let summary = console.result
        // Piped input is a script: it ends with which lines did not succeed and an exit status to match
        // (0 all done, 1 some failed, 2 some refused and none failed). A person at a terminal saw each
        // answer, and the session ends with 0 as it always has.
        if daemonFailed && summary.commands == 0 { throw ExitCode(69) }
        guard !interactive else { return }
        standardOutput("\n" + summary.description)
        if daemonFailed { throw ExitCode(1) }
        if summary.exitStatus != 0 { throw ExitCode(summary.exitStatus) }
    }
}

extension Serve {
    /// The daemon with Slack as its chat: it runs until SIGTERM or SIGINT (a graceful stop), or until
    /// Slack ends the app's connection for good (`link_disabled`, a refused token: exit 1, saying why).
    func serveSlack(_ loaded: ConfigurationLoader.Loaded) async throws {
        var logger = Logger(label: "inferops.slack")
        logger.logLevel = ProcessInfo.processInfo.environment["INFEROPS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        let port: SlackPort
        do {
            port = try await SlackPort.connect(loaded.configuration.chat.slack, logger: logger)
        } catch let refusal as Refusal {
            printError("inferops: \(refusal.message)" + (refusal.hint.map { " \($0)" } ?? ""))
            throw ExitCode(78)
        }
        printError("inferops: Slack: signed in as \(port.identity); connecting over Socket Mode")
        let runtime: Runtime
        do {
            runtime = try await start(loaded, chat: port.chat, secrets: port.secrets)
        } catch {
            await port.shutdown()
            throw error
        }
        let host = loaded.configuration.server.host
        var failure: (any Error)?
        do {
            let group = try runtime.serviceGroup(chat: port.service(intake: runtime.intake)) { listening in
                printError("inferops: listening on http://\(host):\(listening) (/healthz, /readyz, /metrics, deny backend)")
            }
            try await group.run()
        } catch {
            failure = error
        }
        await runtime.shutdown()
        await port.shutdown()
        let counts = port.counts
        printError("inferops: stopped; Slack: \(counts.connections) connection(s), \(counts.envelopes) envelope(s)")
        if let failure {
            printError("inferops: \(failure)")
            throw ExitCode(1)
        }
    }
}

struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one command as a user and exit: 0 done, 1 failed, 2 refused, 3 waiting for approval.",
        discussion: "Example: inferops exec --config config/sandbox.yaml --as alice \"/infer deploy llama-3-8b to staging\""
    )
    @OptionGroup var options: ConfigOption
    @Option(name: .customLong("as"), help: "The user id the command runs as.")
    var user: String
    @Option(name: .customLong("in"),
            help: "The channel the command is typed in; environments with `channels` take changes only from those.")
    var channel: String = "exec"
    @Argument(help: "The command, e.g. \"/infer status\".")
    var command: String

    func run() async throws {
        let loaded = try options.load()
        // A stopped `exec` stops helm at once (SIGTERM to its process group); the operation stays
        // recorded where it stopped, and the next `serve` puts the release in order and resumes it.
        let runtime = try await start(loaded, runnerSettings: OperationRunner.Settings(shutdownBound: .zero))
        let runner = runtime.runner
        let intake = runtime.intake
        let command = IncomingCommand(user: UserID(user), text: command, channel: channel, osUser: OperatingSystemUser.current)
        let outcome = await withSignalsStopping(runner) {
            await withTaskGroup(of: CommandOutcome?.self) { group in
                group.addTask {
                    await runner.run()
                    return nil
                }
                group.addTask {
                    let outcome = await intake.handle(command)
                    runner.stop()
                    return outcome
                }
                var outcome = CommandOutcome.failed(nil, "stopped")
                for await result in group { if let result { outcome = result } }
                return outcome
            }
        }
        await runtime.shutdown()
        switch outcome {
        case .completed: return
        case .failed: throw ExitCode(1)
        case .refused: throw ExitCode(2)
        case .awaitingApproval: throw ExitCode(3)
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

struct Manifest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the Slack app manifest derived from commands/ (JSON).",
        discussion: "Paste it at api.slack.com/apps → Create New App → From a manifest. "
            + "deploy/slack-manifest.json is this output for the repository's commands."
    )
    @Option(help: "The folder of command declarations.")
    var commands = "commands"
    @Option(help: "The app's name in Slack.")
    var name = "InferOps"

    func run() async throws {
        let (catalog, problems) = ConfigurationLoader.loadCommands(in: commands)
        for problem in problems { printError(problem.description) }
        guard problems.isEmpty, !catalog.specs.isEmpty else {
            printError("inferops: no usable command declarations in \(commands).")
            throw ExitCode(66)
        }
        print(try prettyJSON(SlackManifest.make(catalog: catalog, appName: name)))
    }
}

/// Sorted keys and indentation, as people read and diff it.
func prettyJSON(_ value: JSONValue) throws -> String {
    let object = try JSONSerialization.jsonObject(with: Data(value.canonical.utf8))
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
}

struct SLO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slo",
        abstract: "Print the service levels met over the last days, as /infer slo does, or as JSON for dashboards.",
        discussion: "Opens the database read-only. Exits 0 when every objective meets its target, 1 when one misses."
    )
    @OptionGroup var options: ConfigOption
    @Option(name: .customLong("env"), help: "Only this environment (all when omitted).")
    var environment: String?
    @Option(help: "The window in days, from 1 to 365.")
    var days: Int = 30
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() async throws {
        let loaded = try options.load()
        let configuration = loaded.configuration
        guard (1...365).contains(days) else {
            printError("inferops: --days must be from 1 to 365.")
            throw ExitCode(64)
        }
        if let environment, configuration.environments[environment] == nil {
            printError("inferops: there is no environment `\(environment)`. Environments: "
                       + configuration.environmentNames.joined(separator: ", ") + ".")
            throw ExitCode(64)
        }
        let report: ServiceLevelReport
        do {
            report = try await AuditLog.serviceLevels(
                storagePath: configuration.storage.path,
                environments: environment.map { [$0] } ?? configuration.environmentNames, days: days, now: Date())
        } catch let refusal as Refusal {
            printError("inferops: \(refusal.message)" + (refusal.hint.map { " \($0)" } ?? ""))
            throw ExitCode(66)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(ConsoleRenderer.render(ServiceLevels.reply(report), operation: nil, threaded: false))
        }
        if report.objectives.contains(where: { !$0.meetsTarget }) { throw ExitCode(1) }
    }
}

func start(
    _ loaded: ConfigurationLoader.Loaded, output: @escaping @Sendable (String) -> Void = standardOutput,
    runnerSettings: OperationRunner.Settings = OperationRunner.Settings(), chat: (any ChatTransport)? = nil,
    secrets: [String] = []
) async throws -> Runtime {
    do {
        return try await Runtime.start(loaded, output: output, runnerSettings: runnerSettings, chat: chat, secrets: secrets)
    } catch let refusal as Refusal {
        printError("inferops: \(refusal.message)" + (refusal.hint.map { " \($0)" } ?? ""))
        throw ExitCode(69)
    }
}

/// Runs `body` with SIGINT and SIGTERM stopping `runner` (gracefully, within its bound) instead of
/// ending the process, so helm is stopped with SIGTERM (it runs in its own process group, so a
/// Ctrl-C never reaches it) and the caller still shuts the runtime down and removes its work folder.
func withSignalsStopping<T: Sendable>(_ runner: OperationRunner, _ body: @Sendable () async -> T) async -> T {
    let sources = [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)  // delivered to the dispatch source instead
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { runner.stop() }
        source.resume()
        return source
    }
    let result = await body()
    for source in sources { source.cancel() }
    return result
}
