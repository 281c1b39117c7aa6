import Foundation
import InferOpsHTTP

/// The real vllm-router 0.1.17 (`.tools/router`, from `scripts/install-tools`) as a child process,
/// in multi-model mode: `--enable-igw --policy round_robin` on free loopback ports.
///
/// Every router gets its own metrics port (`--prometheus-port`): the default 29000 would collide and
/// the second router would panic. A router that exits before `/liveness` answers (it lost a port
/// race) is started again on new ports.
final class RouterProcess {
    let port: Int
    private(set) var metricsPort: Int
    private var process: Process?
    private let directory: URL
    /// Our ends of the routers' stdin, held open while they run.
    private var lifelines: [Pipe] = []
    private let extraArguments: [String]

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var logFile: URL { directory.appendingPathComponent("router.log") }

    static var venv: URL { repositoryRoot.appendingPathComponent(".tools/router") }
    static var executable: URL { venv.appendingPathComponent("bin/vllm-router") }

    /// Starts a router and waits until `GET /liveness` answers 200.
    /// - Parameter extraArguments: more `vllm-router` flags, e.g. a faster health checker.
    /// - Throws: `TestFailure` when `.tools/router` is missing or the router does not come up.
    static func start(http: any HTTPClient, extraArguments: [String] = []) async throws -> RouterProcess {
        try requireInstalled()
        var lastError: (any Error)?
        for _ in 0..<4 {
            let router = try RouterProcess(
                port: try freePort(),
                directory: try temporaryDirectory("vllm-router"),
                extraArguments: extraArguments
            )
            do {
                try await router.launch(http: http)
                return router
            } catch let failure as PortLost {
                lastError = failure
                router.stop()
            }
        }
        throw TestFailure("vllm-router did not start after 4 tries: \(lastError.map { "\($0)" } ?? "")")
    }

    private init(port: Int, directory: URL, extraArguments: [String]) throws {
        self.port = port
        self.extraArguments = extraArguments
        self.metricsPort = try freePort()
        self.directory = directory
    }

    static func requireInstalled() throws {
        let python = venv.appendingPathComponent("bin/python").path
        guard FileManager.default.isExecutableFile(atPath: executable.path),
            FileManager.default.isExecutableFile(atPath: python)
        else {
            throw TestFailure(
                "vllm-router is not installed at \(executable.path): run scripts/install-tools "
                    + "(it installs vllm-router 0.1.17 into .tools/router)"
            )
        }
    }

    /// Kills the router (SIGKILL) and starts a new one on the same port, with an empty registry.
    func restart(http: any HTTPClient) async throws {
        kill()
        for attempt in 0..<4 {
            if attempt > 0 { metricsPort = try freePort() }
            do {
                try await launch(http: http)
                return
            } catch let failure as PortLost {
                // Only the metrics port can be lost here; the main port is ours to take again.
                if attempt == 3 { throw TestFailure("\(failure)") }
            }
        }
    }

    /// Kills the router now (SIGKILL); `restart` brings it back on the same port.
    func kill() {
        if let process { stopProcess(process) }
        process = nil
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }

    private struct PortLost: Error, CustomStringConvertible {
        let description: String
    }

    private func launch(http: any HTTPClient) async throws {
        let arguments =
            [
                "--enable-igw", "--policy", "round_robin", "--host", "127.0.0.1", "--port", String(port),
                "--prometheus-port", String(metricsPort),
            ] + extraArguments
        // Runs .tools/router/bin/vllm-router itself with the venv's Python, after undoing the signal mask
        // that children of `swift test` inherit, and exits when our end of stdin closes, so a crashed
        // test run leaves no router behind.
        let wrapper = """
            import os, runpy, signal, sys, threading
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
            sys.argv = [sys.argv[1]] + sys.argv[2:]
            runpy.run_path(sys.argv[0], run_name="__main__")
            """
        let lifeline = Pipe()
        lifelines.append(lifeline)
        let process = Process()
        process.executableURL = Self.venv.appendingPathComponent("bin/python")
        process.arguments = ["-c", wrapper, Self.executable.path] + arguments
        process.standardInput = lifeline
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        try log.seekToEnd()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process

        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if !process.isRunning {
                let output = tail(of: logFile)
                if output.contains("Address already in use") || output.contains("address in use") {
                    throw PortLost(description: "a port was taken: \(output)")
                }
                throw TestFailure("vllm-router exited with \(process.terminationStatus) before /liveness: \(output)")
            }
            let request = HTTPRequest(url: baseURL + "/liveness", timeout: .seconds(2))
            if let response = try? await http.send(request), response.status == 200, process.isRunning {
                return
            }
            if ContinuousClock.now > deadline {
                stopProcess(process)
                throw TestFailure("vllm-router did not answer /liveness within 60 s: \(tail(of: logFile))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
