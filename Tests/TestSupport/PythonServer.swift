import Foundation

/// A Python program that listens on a port of its own choosing and writes it to a port file: the
/// Kubernetes API emulator, the fake router worker, a throwaway HTTP server. Ready when the port
/// file is there; stopped (SIGKILL) and its folder removed when the test lets go of it.
public final class PythonServer: Sendable {
    /// What to run.
    public enum Program: Sendable {
        /// `python3 -m name`, with `path` on `PYTHONPATH`.
        case module(String, path: URL)
        /// A script file.
        case script(URL)
        /// Source text, written to a file in the server's folder.
        case source(String)
    }

    public let port: Int
    /// Where the port file is, and whatever else the program writes (a kubeconfig).
    public let folder: URL
    public let process: ChildProcess
    private let ownsFolder: Bool

    /// Runs the wrapper, which exits the program when its stdin (our lifeline) closes, then
    /// `program` with `sys.argv` as if it had been run directly.
    static let wrapper = """
        import os, runpy, sys, threading
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
        kind, target = sys.argv[1], sys.argv[2]
        sys.argv = [target] + sys.argv[3:]
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
        """

    /// Starts `program` and waits until it has written its port file, blocking the calling thread.
    /// - Parameters:
    ///   - python: the interpreter; `python3` from `PATH` when nil.
    ///   - folder: where the port file goes; a fresh temporary folder (removed on stop) when nil.
    ///   - arguments: the program's arguments, given the port file's path.
    /// - Throws: `TestFailure` with the program's output when it exits or `timeout` passes first.
    public init(
        _ name: String,
        program: Program,
        python: String? = nil,
        folder: URL? = nil,
        environment: [String: String] = [:],
        timeout: Duration = .seconds(30),
        arguments: (_ portFile: String) -> [String]
    ) throws {
        let python = try python ?? requireExecutable("python3")
        self.folder = try folder ?? temporaryFolder("inferops-python")
        ownsFolder = folder == nil
        let portFile = self.folder.appendingPathComponent("port").path
        var environment = environment
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        let target: [String]
        switch program {
        case .module(let module, let path):
            let inherited = ProcessInfo.processInfo.environment["PYTHONPATH"].map { ":" + $0 } ?? ""
            environment["PYTHONPATH"] = path.path + inherited
            target = ["module", module]
        case .script(let script):
            guard FileManager.default.fileExists(atPath: script.path) else {
                throw TestFailure("\(name) is missing: expected \(script.path)")
            }
            target = ["path", script.path]
        case .source(let source):
            let script = self.folder.appendingPathComponent("program.py")
            try source.write(to: script, atomically: true, encoding: .utf8)
            target = ["path", script.path]
        }
        process = try ChildProcess(
            name,
            executable: python,
            arguments: ["-c", Self.wrapper] + target + arguments(portFile),
            environment: environment
        )
        do {
            port = try waitForPortFile(portFile, of: process, timeout: timeout)
        } catch {
            process.stop()
            if ownsFolder { try? FileManager.default.removeItem(at: self.folder) }
            throw error
        }
    }

    public var url: String { "http://127.0.0.1:\(port)" }

    public func stop() {
        process.stop()
        if ownsFolder { try? FileManager.default.removeItem(at: folder) }
    }

    deinit { stop() }
}

/// Waits for `process` to write the port it listens on (its start-up event), polling with a deadline.
/// - Throws: `TestFailure` with the process's output when it exits or the deadline passes first.
public func waitForPortFile(_ path: String, of process: ChildProcess, timeout: Duration) throws -> Int {
    var port: Int?
    do {
        try pollUntil("\(process.name) to write its port file", timeout: timeout) {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                port = value
                return true
            }
            if let exit = process.exit { throw TestFailure("\(process.name) exited with \(exit) before listening") }
            return false
        }
    } catch {
        throw TestFailure("\(process.name) did not start: \(error) \(tail(of: process.output))")
    }
    return port!
}
