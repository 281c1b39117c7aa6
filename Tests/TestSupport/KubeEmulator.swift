import Foundation

/// The project's Kubernetes API emulator (`Tests/KubeEmulator`) with a simulated GPU node pool, on a
/// free loopback port. Pods get loopback IPs of their own with a fake vLLM engine on port 8000, so a
/// router reaches replicas as in a cluster. It writes a kubeconfig with the context `emulator`.
public final class KubeEmulator: Sendable {
    private let program: PythonServer

    public var port: Int { program.port }
    /// The API server's URL, `http://127.0.0.1:<port>`.
    public var server: String { program.url }
    /// Its folder: the port file, the kubeconfig, and whatever a test puts beside them.
    public var folder: String { program.folder.path }
    /// The kubeconfig the emulator wrote (cluster, context and user `emulator`).
    public var kubeconfig: String { program.folder.appendingPathComponent("kubeconfig").path }
    public var process: ChildProcess { program.process }

    public static var directory: URL { repositoryRoot.appendingPathComponent("Tests/KubeEmulator") }

    /// Starts the emulator and waits until it listens (it writes the kubeconfig first, then the port
    /// file), blocking the calling thread; async tests use `start`.
    /// - Parameters:
    ///   - readyAfter: seconds from scheduling until a pod is Ready, unless its template says otherwise.
    ///   - folder: where the port file and the kubeconfig go; a fresh temporary folder, removed on
    ///     stop, when nil.
    ///   - extraArguments: more `kubeemu` flags (`--engine-latency`, `--log`, `--cpu-nodes`).
    /// - Throws: `TestFailure` when python3 or the emulator is missing, or it does not start.
    public init(
        gpuNodes: Int = 2,
        gpusPerNode: Int = 4,
        readyAfter: Double = 1,
        folder: URL? = nil,
        extraArguments: [String] = []
    ) throws {
        let emulator = Self.directory
        guard FileManager.default.fileExists(atPath: emulator.appendingPathComponent("kubeemu/__main__.py").path) else {
            throw TestFailure("the Kubernetes API emulator is missing: expected \(emulator.path)/kubeemu")
        }
        program = try PythonServer(
            "the Kubernetes API emulator",
            program: .module("kubeemu", path: emulator),
            folder: folder
        ) { portFile in
            [
                "--port", "0", "--port-file", portFile,
                "--kubeconfig-out", URL(fileURLWithPath: portFile).deletingLastPathComponent()
                    .appendingPathComponent("kubeconfig").path,
                "--gpu-nodes", String(gpuNodes), "--gpus-per-node", String(gpusPerNode),
                "--ready-after", String(readyAfter),
            ] + extraArguments
        }
    }

    /// `init` on a thread of its own, for async tests.
    public static func start(
        gpuNodes: Int = 2,
        gpusPerNode: Int = 4,
        readyAfter: Double = 1,
        folder: URL? = nil,
        extraArguments: [String] = []
    ) async throws -> KubeEmulator {
        try await offThePool {
            try KubeEmulator(
                gpuNodes: gpuNodes,
                gpusPerNode: gpusPerNode,
                readyAfter: readyAfter,
                folder: folder,
                extraArguments: extraArguments
            )
        }
    }

    /// Kills the emulator (SIGKILL) and removes its folder when it made it.
    public func stop() {
        program.stop()
    }
}
