import Foundation
import InferOpsTestSupport
import Testing

/// The order of events with the real helm, the emulator's rolling updates and the real vllm-router,
/// for a change InferOps did not make: a plain `helm rollback` while the daemon runs.
@Suite("Replica following end to end", .serialized)
struct ReplicaFollowingEndToEndTests {
    /// What the router and the pods said at one moment.
    struct Sample {
        var at: Double
        var workers: [String]
        /// podIP → (ready, being deleted since)
        var pods: [String: (ready: Bool, deleting: Double?)]
        var completion: Int
    }

    @Test("A plain helm rollback: never zero workers, a stopping replica unrouted within 2 s, the new ones routed once ready")
    func plainHelmRollbackKeepsTheOrderOfEvents() throws {
        let routed = try RoutedSandbox(reconcileInterval: "500ms")
        let sandbox = routed.sandbox
        let first = try sandbox.exec("/infer deploy llama-3-8b to staging --register --set replicaCount=2")
        #expect(first.status == 0, "\(first.output)")
        let second = try sandbox.exec(
            #"/infer deploy llama-3-8b to staging --set replicaCount=2 --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=2"#)
        #expect(second.status == 0, "\(second.output)")

        let started = Date()
        let sampling = Sampling()
        let routerURL = routed.routerURL
        let emulatorURL = sandbox.emulatorURL
        let sampler = Thread {
            while !sampling.stopped {
                let workers = Self.workers(routerURL) ?? ["(unreadable)"]
                let pods = Self.pods(emulatorURL)
                let completion = request(
                    "POST", "\(routerURL)/v1/completions", json: #"{"model":"llama-3-8b","prompt":"hello","max_tokens":4}"#,
                    timeout: 5).status
                sampling.add(Sample(at: Date().timeIntervalSince(started), workers: workers, pods: pods, completion: completion))
                Thread.sleep(forTimeInterval: 0.05)
            }
            sampling.finish()
        }
        sampler.start()
        let rollback = try sandbox.helmRun(["rollback", "llama-3-8b-staging", "1", "--namespace", "inference-staging", "--wait"])
        #expect(rollback.status == 0, "\(rollback.output)")
        // Settled: the router routes exactly the ready pods that are not being deleted, and the old
        // ones are gone.
        try eventually("the router to route exactly the rolled-back replicas", timeout: .seconds(30)) {
            let pods = Self.pods(routed.sandbox.emulatorURL)
            let serving = pods.filter { $0.value.ready && $0.value.deleting == nil }.keys
            let workers = try routed.routerWorkers("llama-3-8b")
            return pods.count == 2 && serving.count == 2 && Set(workers.map(Self.address)) == Set(serving)
        }
        sampling.stop()
        let samples = sampling.wait()

        #expect(samples.count > 20, "\(samples.count) samples")
        // Never zero workers, and every request through the router answered.
        #expect(samples.allSatisfy { !$0.workers.isEmpty }, "\(samples.filter { $0.workers.isEmpty }.map(\.at))")
        #expect(samples.allSatisfy { $0.completion == 200 }, "\(samples.filter { $0.completion != 200 }.map { ($0.at, $0.completion) })")
        // Unroute, then stop: a replica being deleted leaves the router within 2 s (its preStop is 4 s).
        var deletedAt: [String: Double] = [:]
        var lastRouted: [String: Double] = [:]
        for sample in samples {
            for (ip, pod) in sample.pods where pod.deleting != nil && deletedAt[ip] == nil { deletedAt[ip] = sample.at }
            for worker in sample.workers { lastRouted[Self.address(worker)] = sample.at }
        }
        #expect(deletedAt.count >= 2, "\(deletedAt)")
        for (ip, at) in deletedAt {
            let routedUntil = lastRouted[ip] ?? 0
            #expect(routedUntil - at < 2.0, "\(ip): deleted at \(at) s, still routed at \(routedUntil) s")
        }
        // Verify, then route: a worker is never a pod that is not ready.
        for sample in samples {
            for worker in sample.workers {
                let pod = sample.pods[Self.address(worker)]
                #expect(pod == nil || pod?.ready == true || pod?.deleting != nil,
                        "at \(sample.at) s \(worker) was routed while its pod was not ready")
            }
        }
    }

    /// The router's worker URLs for llama-3-8b, or `nil` when it does not answer.
    static func workers(_ routerURL: String) -> [String]? {
        let body = request("GET", "\(routerURL)/workers", timeout: 2).body
        guard let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return (json["workers"] as? [[String: Any]] ?? []).filter { $0["model_id"] as? String == "llama-3-8b" }
            .compactMap { $0["url"] as? String }
    }

    static func address(_ worker: String) -> String {
        URLComponents(string: worker)?.host ?? worker
    }

    static func pods(_ emulator: String) -> [String: (ready: Bool, deleting: Double?)] {
        let body = request("GET", "\(emulator)/_emu/pods", timeout: 2).body
        guard let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [:] }
        var pods: [String: (ready: Bool, deleting: Double?)] = [:]
        for pod in json["pods"] as? [[String: Any]] ?? [] where pod["namespace"] as? String == "inference-staging" {
            guard let ip = pod["podIP"] as? String, !ip.isEmpty else { continue }
            let deleting = pod["deletionTimestamp"].flatMap { $0 is NSNull ? nil : $0 }.map { _ in 0.0 }
            pods[ip] = (ready: pod["ready"] as? Bool ?? false, deleting: deleting)
        }
        return pods
    }

    /// The samples, written by the sampler thread and read once it has stopped.
    final class Sampling: @unchecked Sendable {
        private let lock = NSCondition()
        private var samples: [Sample] = []
        private var stopping = false
        private var done = false

        var stopped: Bool { lock.withLock { stopping } }
        func add(_ sample: Sample) { lock.withLock { samples.append(sample) } }
        func stop() { lock.withLock { stopping = true } }
        func finish() {
            lock.withLock {
                done = true
                lock.broadcast()
            }
        }
        func wait() -> [Sample] {
            lock.withLock {
                while !done { lock.wait() }
                return samples
            }
        }
    }
}
