import Foundation
import InferOpsTestSupport
import Testing

/// Operations outlive their daemon: stopped gracefully mid-deploy, the next start resumes them from
/// where they paused and tells their thread; with the real helm against the Kubernetes emulator.
@Suite("Restarts", .serialized)
struct RestartEndToEndTests {
    @Test("A deploy stopped by SIGTERM while helm waits pauses at the next safe point and finishes after the restart")
    func deployResumesAfterSigterm() async throws {
        let sandbox = try Sandbox(helm: .helm4)
        sandbox.extraTopLevel = "server:\n  host: 127.0.0.1\n  port: 0\n  shutdownGrace: 60s"
        try sandbox.writeConfiguration()
        let first = try InferOpsDaemon.serve(config: sandbox.config)
        defer { first.stop() }
        try first.send(#"/infer deploy llama-3-8b to staging --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=15"# + "\n")
        let card = try await first.waitForLine(within: .seconds(60)) { $0.contains("] … Deploy llama-3-8b to staging") }
        let id = try #require(card.firstMatch(of: /\[(op-[0-9a-f]{8})\]/)?.1).description
        try await first.waitForLine(within: .seconds(60)) { $0.contains("Running helm upgrade --install") }

        first.signal(SIGTERM)
        try await first.waitForLine(within: .seconds(10)) { $0.contains("Stopping InferOps") }
        try await first.waitForLine(within: .seconds(90)) {
            $0.contains("[\(id)]") && $0.contains("InferOps is stopping: this operation pauses while")
        }
        let stopped = try await first.waitForExit(within: .seconds(90))
        #expect(!stopped.wasSignalled, "\(first.output)")
        #expect(!first.output.contains("Deployed llama-3-8b to staging"), "\(first.output)")
        // Helm finished its wait before the safe point: the release is deployed, the operation is not over.
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed")

        let second = try InferOpsDaemon.serve(config: sandbox.config)
        defer { second.stop() }
        try await second.waitForLine(within: .seconds(60)) {
            $0.contains("[\(id)]") && $0.contains("Resuming after InferOps restarted: it was")
        }
        let done = try await second.waitForLine(within: .seconds(90)) {
            $0.contains("[\(id)]") && ($0.contains("✓") || $0.contains("✗"))
        }
        #expect(done.contains("Deployed llama-3-8b to staging: revision 1"), "\(second.output)")
        // What Helm had finished was not applied again.
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.revision == 1)
        second.closeInput()
        _ = try await second.waitForExit(within: .seconds(60))
        let deploys = try sandbox.auditLines().filter { $0["action"] as? String == "deploy" }
        #expect(deploys.compactMap { $0["outcome"] as? String } == ["accepted", "succeeded"])
    }
}
