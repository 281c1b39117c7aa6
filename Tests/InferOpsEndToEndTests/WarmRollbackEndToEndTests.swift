import Foundation
import InferOpsTestSupport
import Testing

/// `keepPrevious` with the real helm, the emulator's Deployments and the real vllm-router: a deploy
/// keeps the revision it replaced running and unrouted; a rollback to it routes those replicas
/// without waiting for the release's new ones, every request through the router is answered, and
/// the pool goes once the release's own replicas are routed.
@Suite("Warm rollback end to end", .serialized)
struct WarmRollbackEndToEndTests {
    static let pool = "llama-3-8b-staging-warm"

    @Test("A rollback within keepPrevious routes the kept replicas; clients see no error; the pool is released after")
    func warmRollback() throws {
        let routed = try RoutedSandbox(reconcileInterval: "500ms", keepPrevious: "10m")
        let sandbox = routed.sandbox
        let first = try sandbox.exec("/infer deploy llama-3-8b to staging --register --set replicaCount=2")
        #expect(first.status == 0, "\(first.output)")
        // Revision 2's replicas take 6 s to load: a cold rollback to revision 1 would wait as long.
        let second = try sandbox.exec(
            #"/infer deploy llama-3-8b to staging --set replicaCount=2 --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=6"#)
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("Keeping revision 1 warm until"), "\(second.output)")

        try eventually("the kept revision's 2 replicas to be ready", timeout: .seconds(30)) {
            Self.poolPods(sandbox.emulatorURL).filter { $0.ready && !$0.deleting }.count == 2
        }
        // Unrouted while kept, and status says what it holds.
        let workersBefore = try routed.routerWorkers("llama-3-8b").map(ReplicaFollowingEndToEndTests.address)
        let poolAddresses = Set(Self.poolPods(sandbox.emulatorURL).map(\.ip))
        #expect(Set(workersBefore).isDisjoint(with: poolAddresses), "\(workersBefore) \(poolAddresses)")
        let status = try sandbox.exec("/infer status llama-3-8b in staging")
        #expect(status.output.contains("Warm: revision 1 kept unrouted (2 of 2 ready), holding 2 GPUs until"), "\(status.output)")

        let started = Date()
        let sampling = ReplicaFollowingEndToEndTests.Sampling()
        let routerURL = routed.routerURL
        let emulatorURL = sandbox.emulatorURL
        let sampler = Thread {
            while !sampling.stopped {
                let workers = ReplicaFollowingEndToEndTests.workers(routerURL) ?? ["(unreadable)"]
                let completion = request(
                    "POST", "\(routerURL)/v1/completions", json: #"{"model":"llama-3-8b","prompt":"hello","max_tokens":4}"#,
                    timeout: 5).status
                sampling.add(.init(at: Date().timeIntervalSince(started), workers: workers,
                                   pods: ReplicaFollowingEndToEndTests.pods(emulatorURL), completion: completion))
                Thread.sleep(forTimeInterval: 0.05)
            }
            sampling.finish()
        }
        sampler.start()
        let rollback = try sandbox.exec("/infer rollback llama-3-8b in staging")
        #expect(rollback.status == 0, "\(rollback.output)")
        #expect(rollback.output.contains("by routing its 2 warm replicas"), "\(rollback.output)")
        // Right after it: the router routes the kept replicas, and the release's own are still loading.
        let workersAfter = Set(try routed.routerWorkers("llama-3-8b").map(ReplicaFollowingEndToEndTests.address))
        #expect(workersAfter == poolAddresses, "\(workersAfter) \(poolAddresses)")

        // Then the release's own replicas take over and the pool goes.
        try eventually("the pool to be released and the router to route the release's own replicas", timeout: .seconds(60)) {
            let releasePods = ReplicaFollowingEndToEndTests.pods(emulatorURL)
                .filter { $0.value.ready && $0.value.deleting == nil }.keys
            let kept = Self.poolPods(emulatorURL)
            let workers = try routed.routerWorkers("llama-3-8b").map(ReplicaFollowingEndToEndTests.address)
            return kept.isEmpty && releasePods.count == 2 && Set(workers) == Set(releasePods)
        }
        sampling.stop()
        let samples = sampling.wait()
        #expect(samples.count > 20, "\(samples.count) samples")
        #expect(samples.allSatisfy { !$0.workers.isEmpty }, "\(samples.filter { $0.workers.isEmpty }.map(\.at))")
        #expect(samples.allSatisfy { $0.completion == 200 }, "\(samples.filter { $0.completion != 200 }.map { ($0.at, $0.completion) })")
    }

    /// The pool's pods (its Deployment's), with their address, readiness and deletion.
    static func poolPods(_ emulator: String) -> [(ip: String, ready: Bool, deleting: Bool)] {
        let body = request("GET", "\(emulator)/_emu/pods", timeout: 2).body
        guard let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [] }
        return (json["pods"] as? [[String: Any]] ?? []).compactMap { pod in
            guard pod["namespace"] as? String == "inference-staging", (pod["name"] as? String)?.hasPrefix(pool + "-") == true
            else { return nil }
            let deleting = pod["deletionTimestamp"].map { !($0 is NSNull) } ?? false
            return (ip: pod["podIP"] as? String ?? "", ready: pod["ready"] as? Bool ?? false, deleting: deleting)
        }
    }
}
