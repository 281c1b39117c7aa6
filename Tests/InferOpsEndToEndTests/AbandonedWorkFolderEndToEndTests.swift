import Foundation
import InferOpsCore
import InferOpsTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A daemon killed before it could clean up leaves its work folder (values files, helm's caches)
/// behind; the next start removes it, and only it.
@Suite("Abandoned work folders", .serialized)
struct AbandonedWorkFolderEndToEndTests {
    @Test("a start removes a dead daemon's work folder and keeps a live one's")
    func startRemovesADeadDaemonsFolder() throws {
        let sandbox = try Sandbox(helm: .helm4)
        let temporary = sandbox.folder.appendingPathComponent("tmp").path
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        chmod(temporary, 0o700)

        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        let dead = temporary + "/inferops-\(exited.processIdentifier)-Ab12Cd"
        try FileManager.default.createDirectory(atPath: dead + "/helm", withIntermediateDirectories: true)
        try "token: hf_secret".write(toFile: dead + "/values-1.yaml", atomically: false, encoding: .utf8)
        let live = "inferops-\(getpid())-Ef34Gh"
        try FileManager.default.createDirectory(atPath: temporary + "/" + live, withIntermediateDirectories: false)

        let process = try InferOpsDaemon.launch(
            ["exec", "--config", sandbox.config, "--as", "alice", "/infer help"],
            environment: ["TMPDIR": temporary, "INFEROPS_LOG_LEVEL": "info"], input: false)
        let finished = process.finished()
        let output = finished.output
        #expect(finished.status == 0, "\(output)")
        #expect(output.contains("abandoned work folders removed"), "\(output)")
        #expect(output.contains("count=1"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: dead))
        // The live daemon's folder stays; exec's own folder is gone once it exits.
        #expect(try FileManager.default.contentsOfDirectory(atPath: temporary) == [live])
    }
}
