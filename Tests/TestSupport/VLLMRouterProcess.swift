import Foundation
import Synchronization

/// The real vllm-router 0.1.17 (`.tools/router`, from `scripts/install-tools`) in multi-model mode:
/// `--enable-igw --policy round_robin` on free loopback ports. Ready when `GET /liveness` answers 200.
///
/// Every router gets its own metrics port (`--prometheus-port`): the default 29000 would collide and
/// the second router would panic. A router that exits before `/liveness` answers because it lost a
/// port race is started again on new ports.
public final class VLLMRouterProcess: Sendable {
    public let port: Int
    private let extraArguments: [String]
    private let state: Mutex<(process: ChildProcess?, metricsPort: Int)>

    public var baseURL: String { "http://127.0.0.1:\(port)" }
    public var metricsPort: Int { state.withLock { $0.metricsPort } }
    /// What the running router has printed, for failure messages.
    public var output: String { state.withLock { $0.process?.output ?? "" } }

    public static var venv: URL { repositoryRoot.appendingPathComponent(".tools/router") }
    public static var executable: URL { venv.appendingPathComponent("bin/vllm-router") }

    /// Starts a router and waits until it is live, blocking the calling thread; async tests use `start`.
    /// - Parameter extraArguments: more `vllm-router` flags, e.g. a faster health checker.
    /// - Throws: `TestFailure` when `.tools/router` is missing or the router does not come up.
    public init(extraArguments: [String] = []) throws {
        try Self.requireInstalled()
        self.extraArguments = extraArguments
        var lastFailure: PortLost?
        for _ in 0..<4 {
            let port = try freePort()
            let metricsPort = try freePort()
            do {
                let process = try Self.launch(port: port, metricsPort: metricsPort, extraArguments: extraArguments)
                self.port = port
                state = Mutex((process, metricsPort))
                return
            } catch let failure as PortLost {
                lastFailure = failure
            }
        }
        throw TestFailure("vllm-router did not start after 4 tries: \(lastFailure.map { "\($0)" } ?? "")")
    }

    /// `init` on a thread of its own, for async tests.
    public static func start(extraArguments: [String] = []) async throws -> VLLMRouterProcess {
        try await offThePool { try VLLMRouterProcess(extraArguments: extraArguments) }
    }

    public static func requireInstalled() throws {
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

    /// Kills the router now (SIGKILL); `restart` brings it back on the same port.
    public func kill() {
        let process = state.withLock { state in
            defer { state.process = nil }
            return state.process
        }
        process?.stop()
    }

    /// Kills the router and starts a new one on the same port, with an empty registry, blocking the
    /// calling thread until it is live.
    public func restart() throws {
        kill()
        for attempt in 0..<4 {
            // Only the metrics port can be lost here; the main port is ours to take again.
            let metricsPort = try attempt == 0 ? self.metricsPort : freePort()
            do {
                let process = try Self.launch(port: port, metricsPort: metricsPort, extraArguments: extraArguments)
                state.withLock { $0 = (process, metricsPort) }
                return
            } catch let failure as PortLost {
                if attempt == 3 { throw TestFailure("\(failure)") }
            }
        }
    }

    /// `restart` on a thread of its own, for async tests.
    public func restart() async throws {
        try await offThePool { [self] in try restart() }
    }

    public func stop() { kill() }

    deinit { stop() }

    private struct PortLost: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `.tools/router/bin/vllm-router` with the venv's Python through the lifeline wrapper, and
    /// waits until `/liveness` answers 200 from it (not from another program that took the port).
    private static func launch(port: Int, metricsPort: Int, extraArguments: [String]) throws -> ChildProcess {
        let arguments =
            [
                "--enable-igw", "--policy", "round_robin", "--host", "127.0.0.1", "--port", String(port),
                "--prometheus-port", String(metricsPort),
            ] + extraArguments
        let process = try ChildProcess(
            "vllm-router",
            executable: venv.appendingPathComponent("bin/python").path,
            arguments: ["-c", PythonServer.wrapper, "path", executable.path] + arguments
        )
        do {
            try pollUntil("vllm-router to answer /liveness", timeout: .seconds(60), every: .milliseconds(50)) {
                if let exit = process.exit {
                    let output = tail(of: process.output)
                    if output.contains("Address already in use") || output.contains("address in use") {
                        throw PortLost(description: "a port was taken: \(output)")
                    }
                    throw TestFailure("vllm-router exited with \(exit) before /liveness: \(output)")
                }
                return request("GET", "http://127.0.0.1:\(port)/liveness", timeout: 2).status == 200
                    && process.isRunning
            }
        } catch let failure as PortLost {
            process.stop()
            throw failure
        } catch {
            process.stop()
            throw TestFailure("\(error): \(tail(of: process.output))")
        }
        return process
    }
}
