import Foundation
import InferOpsCore
import InferOpsTestSupport
import Testing

@testable import InferOpsApp

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The daemon's work folder (values files, helm's caches): its own, private, and gone when the
/// daemon stops, however it stops.
@Suite("The work folder", .serialized)
struct WorkFolderEndToEndTests {
    static func contents(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    static func isLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & mode_t(S_IFMT) == mode_t(S_IFLNK)
    }

    @Test("A folder or a symbolic link planted at $TMPDIR/inferops-<pid> is neither used, followed nor removed")
    func plantedAtTheOldPath() async throws {
        let sandbox = try Sandbox(helm: .helm4)
        // The path the daemon used to take, for this (the daemon's) process.
        let old = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-\(getpid())").path
        let attacker = sandbox.folder.appendingPathComponent("attacker").path
        try FileManager.default.createDirectory(atPath: attacker, withIntermediateDirectories: false)
        try "planted".write(toFile: attacker + "/sentinel", atomically: false, encoding: .utf8)
        defer { unlink(old) }

        for plant in ["a symbolic link", "a folder"] {
            if plant == "a symbolic link" {
                try FileManager.default.createSymbolicLink(atPath: old, withDestinationPath: attacker)
            } else {
                unlink(old)
                try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: false)
                chmod(old, 0o777)
                try "planted".write(toFile: old + "/sentinel", atomically: false, encoding: .utf8)
            }
            let planted = plant == "a folder" ? old : attacker
            let runtime = try await Runtime.start(ConfigurationLoader(path: sandbox.config).load()) { _ in }
            let folder = runtime.workFolder.path
            #expect(folder != old, "with \(plant) planted")
            var info = stat()
            #expect(lstat(folder, &info) == 0)
            #expect(info.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR))
            #expect(info.st_mode & 0o7777 == 0o700)
            #expect(info.st_uid == geteuid())

            // A dry run writes a values file and runs helm with its folders in the work folder.
            let outcome = await runtime.intake.handle(
                IncomingCommand(
                    user: UserID("alice"), text: "/infer deploy llama-3-8b to staging --dry-run", channel: "exec")
            )
            #expect(outcome.succeeded, "\(outcome)")
            #expect(Self.contents(planted) == ["sentinel"], "with \(plant) planted")

            await runtime.shutdown()
            #expect(!FileManager.default.fileExists(atPath: folder))
            #expect(Self.contents(planted) == ["sentinel"], "with \(plant) planted")
            if plant == "a symbolic link" { #expect(Self.isLink(old)) }
            try? FileManager.default.removeItem(atPath: old)
        }
    }

    /// `inferops` with its own temporary folder, so what it leaves there can be seen.
    func startInferops(_ sandbox: Sandbox, _ arguments: [String], temporary: String) throws -> ChildProcess {
        try InferOpsDaemon.launch(arguments, environment: ["TMPDIR": temporary], input: false)
    }

    func privateTemporaryFolder(_ sandbox: Sandbox) throws -> String {
        let temporary = sandbox.folder.appendingPathComponent("tmp").path
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        chmod(temporary, 0o700)
        return temporary
    }

    @Test("exec stopped by SIGTERM while helm waits stops helm (the revision is failed) and removes its folder")
    func execStoppedBySignal() throws {
        let sandbox = try Sandbox(helm: .helm4)
        let temporary = try privateTemporaryFolder(sandbox)
        let neverReady = #"--set podAnnotations.inferops\.dev/simulate-ready-after-seconds=never"#
        let process = try startInferops(
            sandbox,
            ["exec", "--config", sandbox.config, "--as", "alice", "/infer deploy llama-3-8b to staging \(neverReady)"],
            temporary: temporary
        )
        defer { process.stop() }
        try eventually("helm is waiting on the release", timeout: .seconds(60)) {
            try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "pending-install"
        }
        #expect(Self.contents(temporary).count == 1)
        process.signal(SIGTERM)
        try eventually("exec has exited", timeout: .seconds(30)) { !process.isRunning }
        let output = process.finished().output
        #expect(!process.isRunning)
        #expect(process.exit?.wasSignalled == false, "\(output)")
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "failed")
        #expect(Self.contents(temporary).isEmpty, "\(output)")
    }

    @Test("a start that fails after the folder was made (helm unusable) leaves no folder behind")
    func failedStart() throws {
        let sandbox = try Sandbox(helm: .helm4)
        let temporary = try privateTemporaryFolder(sandbox)
        let configuration = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            .replacingOccurrences(of: "binary: \(sandbox.helm.path)", with: "binary: /bin/false")
        try configuration.write(toFile: sandbox.config, atomically: true, encoding: .utf8)
        let process = try startInferops(
            sandbox,
            ["exec", "--config", sandbox.config, "--as", "alice", "/infer status"],
            temporary: temporary
        )
        let finished = process.finished()
        let output = finished.output
        #expect(finished.status == 69, "\(output)")
        #expect(output.contains("/bin/false cannot be used"), "\(output)")
        #expect(Self.contents(temporary).isEmpty, "\(output)")
    }

    @Test("serve whose listener cannot start exits without leaving its folder behind")
    func serveListenerFails() throws {
        let sandbox = try Sandbox(helm: .helm4)
        let temporary = try privateTemporaryFolder(sandbox)
        // A port someone else already listens on.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(holder, generic, length) == 0 && listen(holder, 1) == 0
                    && getsockname(holder, generic, &length) == 0
            }
        }
        try #require(bound)
        sandbox.extraTopLevel = "server:\n  host: 127.0.0.1\n  port: \(UInt16(bigEndian: address.sin_port))"
        try sandbox.writeConfiguration()

        let process = try startInferops(sandbox, ["serve", "--config", sandbox.config], temporary: temporary)
        defer { process.stop() }
        let finished = process.finished()
        let output = finished.output
        #expect(finished.status == 69, "\(output)")
        #expect(output.contains("the HTTP listener did not start"), "\(output)")
        #expect(Self.contents(temporary).isEmpty, "\(output)")
    }
}
