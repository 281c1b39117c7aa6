import Foundation
import InferOpsTestSupport
import Testing

/// Operations outlive their daemon: stopped gracefully mid-deploy, the next start resumes them from
/// where they paused and tells their thread; with the real helm against the Kubernetes emulator.
///
/// The test is synchronous on purpose: it keeps its thread while it waits, so it sends the stop as
/// soon as the deploy is inside helm's wait, however busy the tests beside it keep the pool.
@Suite("Restarts", .serialized)
struct RestartEndToEndTests {
    @Test("A deploy stopped by SIGTERM while helm waits pauses at the next safe point and finishes after the restart")
    func deployResumesAfterSigterm() throws {
        let sandbox = try Sandbox(helm: .helm4)
        sandbox.extraTopLevel = "server:\n  host: 127.0.0.1\n  port: 0\n  shutdownGrace: 60s"
        try sandbox.writeConfiguration()
        let first = try InferOpsDaemon.serve(config: sandbox.config)
        defer { first.stop() }
        // The engine becomes ready only when the test says so: the stop surely lands while helm waits.
        try first.send(#"/infer deploy llama-3-8b to staging --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=never"# + "\n")
        let card = try first.waitForLineBlocking(within: .seconds(60)) { $0.contains("] … Deploy llama-3-8b to staging") }
        let id = try #require(card.firstMatch(of: /\[(op-[0-9a-f]{8})\]/)?.1).description
        let progress = try first.waitForLineBlocking(within: .seconds(60)) { $0.contains("Running: not ready yet") }
        let pod = try #require(progress.firstMatch(of: /(llama-3-8b-staging-[a-z0-9]+-[a-z0-9]+) Running/)?.1).description

        first.signal(SIGTERM)
        try first.waitForLineBlocking(within: .seconds(20)) { $0.contains("Stopping InferOps") }
        #expect(!first.output.contains("Helm finished"), "\(first.output)")
        let ready = request("POST", "\(sandbox.emulatorURL)/_emu/pods/inference-staging/\(pod)/ready", json: #"{"ready":true}"#)
        #expect(ready.status == 200, "\(ready.body)")
        try first.waitForLineBlocking(within: .seconds(90)) {
            $0.contains("[\(id)]") && $0.contains("InferOps is stopping: this operation pauses while")
        }
        try pollUntil("the first daemon to exit", timeout: .seconds(90)) { first.exit != nil }
        let stopped = try #require(first.exit)
        #expect(!stopped.wasSignalled, "\(first.output)")
        #expect(!first.output.contains("Deployed llama-3-8b to staging"), "\(first.output)")
        // Helm finished its wait before the safe point: the release is deployed, the operation is not over.
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed")

        let second = try InferOpsDaemon.serve(config: sandbox.config)
        defer { second.stop() }
        try second.waitForLineBlocking(within: .seconds(60)) {
            $0.contains("[\(id)]") && $0.contains("Resuming after InferOps restarted: it was")
        }
        let done = try second.waitForLineBlocking(within: .seconds(90)) {
            $0.contains("[\(id)]") && ($0.contains("✓") || $0.contains("✗"))
        }
        #expect(done.contains("Deployed llama-3-8b to staging: revision 1"), "\(second.output)")
        // What Helm had finished was not applied again.
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.revision == 1)
        second.closeInput()
        try pollUntil("the second daemon to exit", timeout: .seconds(60)) { second.exit != nil }
        let deploys = try sandbox.auditLines().filter { $0["action"] as? String == "deploy" }
        #expect(deploys.compactMap { $0["outcome"] as? String } == ["accepted", "succeeded"])
    }
}
