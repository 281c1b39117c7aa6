import Foundation
import InferOpsHTTP
import InferOpsKube

/// The project's Kubernetes API emulator (`Tests/KubeEmulator`), run as a subprocess on a free port.
///
/// Found from this file's path, so the tests use the emulator of the checkout they belong to.
/// Missing python3 or a missing emulator fails the test with a message saying so.
final class KubeEmulatorProcess {
    let port: Int
    let kubeconfigPath: String
    private let process: Process
    private let directory: String
    private let lifeline = Pipe()

    var server: String { "http://127.0.0.1:\(port)" }

    static var emulatorDirectory: URL {
        URL(fileURLWithPath: #filePath)  // Tests/InferOpsKubeTests/Support/KubeEmulatorProcess.swift
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("KubeEmulator")
    }

    init(gpuNodes: Int = 2, gpusPerNode: Int = 4, readyAfter: Double = 1) async throws {
        let python = try requireExecutable("python3")
        let emulator = Self.emulatorDirectory
        guard FileManager.default.fileExists(atPath: emulator.appendingPathComponent("kubeemu/__main__.py").path) else {
            throw TestFailure(
                "the Kubernetes API emulator is missing: expected \(emulator.path)/kubeemu (python3 -m kubeemu)"
            )
        }
        directory = try temporaryDirectory()
        let portFile = "\(directory)/port"
        kubeconfigPath = "\(directory)/kubeconfig"
        let arguments = [
            "--port", "0", "--port-file", portFile, "--kubeconfig-out", kubeconfigPath,
            "--gpu-nodes", String(gpuNodes), "--gpus-per-node", String(gpusPerNode), "--ready-after",
            String(readyAfter),
        ]
        // The wrapper unblocks the signals the test runner's threads block, and exits when our end of
        // stdin closes, so a crashed test run leaves no emulator behind.
        let wrapper = """
            import os, runpy, signal, sys, threading
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
            sys.argv = ["kubeemu"] + sys.argv[1:]
            runpy.run_module("kubeemu", run_name="__main__", alter_sys=True)
            """
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", wrapper] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = emulator.path + (environment["PYTHONPATH"].map { ":" + $0 } ?? "")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        process.environment = environment
        process.standardInput = lifeline
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: "\(directory)/stderr", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: "\(directory)/stderr") ?? FileHandle.nullDevice
        try process.run()

        do {
            port = try await waitForPortFile(
                portFile,
                of: process,
                name: "the Kubernetes API emulator",
                timeout: .seconds(30)
            )
        } catch {
            stopProcess(process)
            let stderr = (try? String(contentsOfFile: "\(directory)/stderr", encoding: .utf8)) ?? ""
            throw TestFailure("\(error) \(stderr.suffix(2000))")
        }
    }

    func stop() {
        stopProcess(process)
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }

    /// The emulator's kubeconfig, as the daemon would load it.
    func contexts(http: any HTTPClient) throws -> KubeContexts {
        KubeContexts(source: .kubeconfig(try Kubeconfig.load(path: kubeconfigPath)), http: http)
    }
}
