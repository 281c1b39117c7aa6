import Foundation
import InferOpsApp
import InferOpsCore
import InferOpsTestSupport
import InferOpsTesting
import Testing

/// The sandbox plus the real vllm-router and a running `inferops serve` daemon (its HTTP listener is
/// the deny backend, and it reconciles the router every second).
final class RoutedSandbox {
    let sandbox: Sandbox
    let router: VLLMRouterProcess
    let serverPort: Int
    let daemon: ChildProcess
    var routerPort: Int { router.port }
    var routerURL: String { router.baseURL }

    /// - Parameter reconcileInterval: How often the daemon repairs the router; a test that runs its
    ///   own reconciler passes makes it long, so the daemon's passes do not interfere.
    /// - Parameter keepPrevious: the environments' `keepPrevious`, when set.
    init(autoRegister: Bool = false, reconcileInterval: String = "1s", keepPrevious: String? = nil) throws {
        sandbox = try Sandbox(helm: .helm4)
        router = try VLLMRouterProcess()
        serverPort = try freePort()
        sandbox.extraTopLevel = """
            server:
              host: 127.0.0.1
              port: \(serverPort)
              reconcileInterval: \(reconcileInterval)
            """
        sandbox.extraEnvironment = """
            router:
                  url: http://127.0.0.1:\(router.port)
                  autoRegister: \(autoRegister)
                \(keepPrevious.map { "keepPrevious: \($0)" } ?? "")
            """
        try sandbox.writeConfiguration()
        daemon = try InferOpsDaemon.serve(config: sandbox.config)
        try eventually("the daemon's listener") {
            if let exit = daemon.exit {
                Issue.record("the daemon exited with \(exit): \(daemon.output)")
                throw CancellationError()
            }
            return request("GET", "http://127.0.0.1:\(serverPort)/healthz", timeout: 1).status == 200
        }
    }

    deinit {
        // Piped `serve` finishes its lines and exits at the end of its input.
        daemon.closeInput()
        daemon.waitForExit()
        router.stop()
    }

    /// Kills the router (SIGKILL); `startRouter` brings it back on the same ports, with an empty registry.
    func stopRouter() {
        router.kill()
    }

    func startRouter() throws {
        try router.restart()
    }

    func complete(_ model: String) -> (status: Int, body: String) {
        request("POST", "\(routerURL)/v1/completions", json: #"{"model":"\#(model)","prompt":"hello","max_tokens":4}"#)
    }

    /// Completion requests each engine of `model` has served, by pod.
    func engineCompletions(_ model: String) throws -> [String: Int] {
        let answer = request("GET", "\(sandbox.emulatorURL)/_emu/engines")
        let json = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
        var counts: [String: Int] = [:]
        for engine in json?["engines"] as? [[String: Any]] ?? [] where engine["servedName"] as? String == model {
            let requests = engine["requests"] as? [String: Any] ?? [:]
            counts[engine["pod"] as? String ?? "?"] = requests.filter { $0.key.contains("completions") }
                .reduce(0) { $0 + (($1.value as? Int) ?? 0) }
        }
        return counts
    }

    /// The worker URLs the router has for `model` (`GET /workers`).
    func routerWorkers(_ model: String) throws -> [String] {
        let body = request("GET", "\(routerURL)/workers").body
        let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (json?["workers"] as? [[String: Any]] ?? []).filter { $0["model_id"] as? String == model }
            .compactMap { $0["url"] as? String }
    }

    var daemonOutput: String { daemon.output }
}

/// The router side against the real vllm-router, with Helm 4 and the emulator.
@Suite("Routing end to end", .serialized)
struct RoutingEndToEndTests {
    @Test("Register, route, disable (200 of 200 denied), enable, deregister")
    func routingLifecycle() throws {
        let routed = try RoutedSandbox()
        let sandbox = routed.sandbox
        let deploy = try sandbox.exec("/infer deploy llama-3-8b to staging --register")
        #expect(deploy.status == 0, "\(deploy.output)")
        #expect(deploy.output.contains("Completion through the router answered in"), "\(deploy.output)")
        #expect(deploy.output.contains("llama-3-8b is routable in staging through the router, verified in"))
        #expect(routed.complete("llama-3-8b").status == 200)

        let disable = try sandbox.exec(#"/infer disable llama-3-8b in staging --reason "wrong answers""#, as: "alice")
        #expect(disable.status == 0, "\(disable.output)")
        let served = try routed.engineCompletions("llama-3-8b").values.reduce(0, +)
        var denied = 0
        for _ in 0..<200 {
            let answer = routed.complete("llama-3-8b")
            if answer.status == 403, answer.body.contains("`llama-3-8b` is disabled in `staging` by alice"),
                answer.body.contains("wrong answers")
            {
                denied += 1
            }
        }
        #expect(denied == 200)
        #expect(try routed.engineCompletions("llama-3-8b").values.reduce(0, +) == served, "a request reached the engine")
        let status = try sandbox.exec("/infer status llama-3-8b in staging")
        #expect(status.output.contains("disabled by @alice: wrong answers"), "\(status.output)")

        let enable = try sandbox.exec("/infer enable llama-3-8b in staging")
        #expect(enable.status == 0, "\(enable.output)")
        #expect(routed.complete("llama-3-8b").status == 200)

        let deregister = try sandbox.exec(#"/infer deregister llama-3-8b in staging --reason "replaced""#)
        #expect(deregister.status == 0, "\(deregister.output)")
        let gone = routed.complete("llama-3-8b")
        #expect(gone.status == 404 && gone.body.contains("removed from `staging`"), "\(gone)")
    }

    @Test("A removed model is denied through the router with who, when and why, and its release is gone")
    func removeDeniesThroughTheRouter() throws {
        let routed = try RoutedSandbox()
        let deploy = try routed.sandbox.exec("/infer deploy mistral-7b to staging --register")
        #expect(deploy.status == 0, "\(deploy.output)")
        #expect(routed.complete("mistral-7b").status == 200)
        let remove = try routed.sandbox.exec(#"/infer remove mistral-7b from staging --reason "make room""#)
        #expect(remove.status == 0, "\(remove.output)")
        let gone = routed.complete("mistral-7b")
        #expect(gone.status == 404, "\(gone)")
        #expect(gone.body.contains("removed from `staging` by alice at "), "\(gone)")
        #expect(gone.body.contains(": make room."), "\(gone)")
        #expect(try routed.sandbox.releaseState("mistral-7b-staging", namespace: "inference-staging") == nil)
    }

    @Test("Two replicas of one model are both routed to")
    func twoReplicas() throws {
        let routed = try RoutedSandbox()
        let deploy = try routed.sandbox.exec("/infer deploy mistral-7b to staging --set replicaCount=2 --register")
        #expect(deploy.status == 0, "\(deploy.output)")
        #expect(deploy.output.contains("Routing mistral-7b to 2 engine replicas"), "\(deploy.output)")
        for _ in 0..<20 { #expect(routed.complete("mistral-7b").status == 200) }
        let counts = try routed.engineCompletions("mistral-7b")
        #expect(counts.count == 2 && counts.values.allSatisfy { $0 > 0 }, "\(counts)")
    }

    @Test("After the router restarts, every enabled model is routable again and the repair is reported")
    func routerRestart() throws {
        let routed = try RoutedSandbox()
        #expect(try routed.sandbox.exec("/infer deploy llama-3-8b to staging --register").status == 0)
        routed.stopRouter()
        try routed.startRouter()
        let restarted = ContinuousClock.now
        try eventually("llama-3-8b to be routable again", timeout: .seconds(10)) { routed.complete("llama-3-8b").status == 200 }
        let repairedIn = ContinuousClock.now - restarted
        #expect(repairedIn < .seconds(10))
        try eventually("the repair to be reported", timeout: .seconds(5)) {
            routed.daemonOutput.contains("Router in staging repaired: add llama-3-8b")
        }
    }

    @Test("Router down during register: retried, reported, nothing half-done")
    func routerDownDuringRegister() throws {
        let routed = try RoutedSandbox()
        let sandbox = routed.sandbox
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging").status == 0)
        routed.stopRouter()
        let register = try sandbox.exec("/infer register llama-3-8b in staging")
        #expect(register.status != 0, "\(register.output)")
        #expect(register.output.contains("The router is unreachable"), "\(register.output)")
        #expect(register.output.contains("Nothing was changed"), "\(register.output)")
        #expect(register.output.contains("attempts"), "the retries are reported: \(register.output)")
        let status = try sandbox.exec("/infer status llama-3-8b in staging")
        #expect(status.output.contains("not registered"), "\(status.output)")
        try routed.startRouter()
        // The reconciler has nothing to restore: no registration was recorded.
        #expect(try routed.routerWorkers("llama-3-8b").isEmpty)
        let again = try sandbox.exec("/infer register llama-3-8b in staging")
        #expect(again.status == 0, "\(again.output)")
        #expect(routed.complete("llama-3-8b").status == 200)
    }

    @Test("Registering a model that is not deployed or not ready is refused with the reason")
    func misconfiguredRegistrations() throws {
        let routed = try RoutedSandbox()
        let sandbox = routed.sandbox
        let notDeployed = try sandbox.exec("/infer register mistral-7b in staging")
        #expect(notDeployed.status == 2, "\(notDeployed.output)")
        #expect(notDeployed.output.contains("mistral-7b is not deployed in staging"), "\(notDeployed.output)")

        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging").status == 0)
        let pods = request("GET", "\(sandbox.emulatorURL)/api/v1/namespaces/inference-staging/pods").body
        let podName = try #require(
            (try JSONSerialization.jsonObject(with: Data(pods.utf8)) as? [String: Any]).flatMap {
                (($0["items"] as? [[String: Any]])?.first?["metadata"] as? [String: Any])?["name"] as? String
            })
        #expect(request("POST", "\(sandbox.emulatorURL)/_emu/pods/inference-staging/\(podName)/ready", json: #"{"ready":false}"#).status == 200)
        let notReady = try sandbox.exec("/infer register llama-3-8b in staging")
        #expect(notReady.status == 2, "\(notReady.output)")
        #expect(notReady.output.contains("is not ready: 0 of 1 replicas ready"), "\(notReady.output)")
        #expect(try routed.routerWorkers("llama-3-8b").isEmpty)

        // Ready again, but its Service is gone: the engine cannot be reached, so it is not registered.
        #expect(request("POST", "\(sandbox.emulatorURL)/_emu/pods/inference-staging/\(podName)/ready", json: #"{"ready":true}"#).status == 200)
        #expect(request("DELETE", "\(sandbox.emulatorURL)/api/v1/namespaces/inference-staging/services/llama-3-8b-staging").status == 200)
        let unreachable = try sandbox.exec("/infer register llama-3-8b in staging")
        #expect(unreachable.status == 2, "\(unreachable.output)")
        #expect(unreachable.output.contains("llama-3-8b's engine in staging does not answer"), "\(unreachable.output)")
        #expect(try routed.routerWorkers("llama-3-8b").isEmpty)
    }

    @Test("A disabled model stays disabled through register, deploy --register and autoRegister")
    func disabledStaysDisabled() throws {
        let routed = try RoutedSandbox(autoRegister: true)
        let sandbox = routed.sandbox
        // bob may deploy in staging but not register: the deploy succeeds, the router is left alone.
        let byBob = try sandbox.exec("/infer deploy llama-3-8b to staging", as: "bob")
        #expect(byBob.status == 0, "\(byBob.output)")
        #expect(byBob.output.contains("Not registering llama-3-8b in staging automatically"), "\(byBob.output)")
        #expect(byBob.output.contains("the permission `register` on `staging` is missing"), "\(byBob.output)")
        #expect(try routed.routerWorkers("llama-3-8b").isEmpty)

        #expect(try sandbox.exec("/infer register llama-3-8b in staging").status == 0)
        #expect(routed.complete("llama-3-8b").status == 200)
        #expect(try sandbox.exec(#"/infer disable llama-3-8b in staging --reason "wrong answers""#).status == 0)

        let register = try sandbox.exec("/infer register llama-3-8b in staging")
        #expect(register.status == 2, "\(register.output)")
        #expect(register.output.contains("llama-3-8b is disabled in staging by"), "\(register.output)")
        #expect(register.output.contains("wrong answers"), "\(register.output)")
        #expect(register.output.contains("`/infer enable llama-3-8b in staging` routes it again"), "\(register.output)")

        let redeploy = try sandbox.exec("/infer deploy llama-3-8b to staging --register")
        #expect(redeploy.status == 0, "\(redeploy.output)")
        #expect(redeploy.output.contains("Not registering llama-3-8b: it is disabled in staging"), "\(redeploy.output)")
        var denied = 0
        for _ in 0..<50 where routed.complete("llama-3-8b").status == 403 { denied += 1 }
        #expect(denied == 50)
        #expect(try sandbox.exec("/infer status llama-3-8b in staging").output.contains("disabled by"))
    }

    @Test("An environment that registers automatically routes every verified deploy")
    func autoRegister() throws {
        let routed = try RoutedSandbox(autoRegister: true)
        let deploy = try routed.sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(deploy.status == 0, "\(deploy.output)")
        #expect(deploy.output.contains("llama-3-8b is routable in staging through the router"), "\(deploy.output)")
        #expect(routed.complete("llama-3-8b").status == 200)
    }
}

@Suite("Routing end to end: the daemon", .serialized)
struct RoutingDaemonTests {
    @Test("Redeploy and rollback keep the registration on the replicas that serve now")
    func redeployAndRollbackFollowTheReplicas() throws {
        let routed = try RoutedSandbox()
        let sandbox = routed.sandbox
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging --register").status == 0)
        let two = try sandbox.exec("/infer deploy llama-3-8b to staging --set replicaCount=2")
        #expect(two.status == 0, "\(two.output)")
        // The deploy moves the routing itself, unless the daemon's reconciler saw the new replicas
        // first; either way the router must end up with both.
        try eventually("the router to route to both replicas", timeout: .seconds(10)) {
            try routed.routerWorkers("llama-3-8b").count == 2
        }
        for _ in 0..<10 { #expect(routed.complete("llama-3-8b").status == 200) }
        #expect(try routed.engineCompletions("llama-3-8b").values.filter { $0 > 0 }.count == 2)
        #expect(try sandbox.exec("/infer status llama-3-8b in staging").output.contains("enabled (2 replicas)"))

        let rollback = try sandbox.exec("/infer rollback llama-3-8b in staging --to 1")
        #expect(rollback.status == 0, "\(rollback.output)")
        try eventually("the router to route to the one replica left", timeout: .seconds(10)) {
            try routed.routerWorkers("llama-3-8b").count == 1
        }
        #expect(routed.complete("llama-3-8b").status == 200)
        #expect(try sandbox.exec("/infer status llama-3-8b in staging").output.contains("enabled (1 replica)"))
    }

    /// A reconciler pass (in this process, on the same database and router) is held while it asks
    /// Kubernetes where the replicas are; `disable` runs meanwhile in another process. The pass used
    /// to write the whole registration back and route the model to its engines again.
    @Test("A disable made while the reconciler waits on Kubernetes stays disabled in the store and the real router")
    func disableDuringAReconcilerPass() async throws {
        let routed = try RoutedSandbox(reconcileInterval: "1h")
        let sandbox = routed.sandbox
        #expect(try sandbox.exec("/infer deploy llama-3-8b to staging --register").status == 0)
        // bob may deploy but not register: the second replica is left for the reconciler to route.
        let scaled = try sandbox.exec("/infer deploy llama-3-8b to staging --set replicaCount=2", as: "bob")
        #expect(scaled.status == 0, "\(scaled.output)")
        #expect(try routed.routerWorkers("llama-3-8b").count == 1)

        let loaded = ConfigurationLoader(path: sandbox.config).load()
        let runtime = try await Runtime.start(loaded, output: { _ in })
        let gate = Gate()
        var services = runtime.services
        services.cluster = GatedCluster(cluster: runtime.services.cluster, gate: gate)
        let reconciliation = RouterReconciliation(configuration: runtime.configuration, services: services)
        let pass = Task { await reconciliation.reconcileOnce() }
        try await gate.waitUntilReached()

        let disable = try sandbox.exec(#"/infer disable llama-3-8b in staging --reason "wrong answers""#)
        #expect(disable.status == 0, "\(disable.output)")
        gate.open()
        let passes = await pass.value
        let registration = try await runtime.store.registration(model: "llama-3-8b", environment: "staging")
        await runtime.shutdown()

        #expect(passes.allSatisfy { $0.failure == nil }, "\(passes)")
        #expect(registration?.state == .disabled)
        #expect(registration?.reason == "wrong answers")
        var denied = 0
        for _ in 0..<50 where routed.complete("llama-3-8b").status == 403 { denied += 1 }
        #expect(denied == 50)
        #expect(try routed.routerWorkers("llama-3-8b").allSatisfy { $0.contains("/deny/") })
    }

    @Test("/healthz, /readyz and /metrics of the daemon")
    func listener() throws {
        let routed = try RoutedSandbox()
        let base = "http://127.0.0.1:\(routed.serverPort)"
        // A command typed into the daemon's console runs in the daemon, so its metrics count it.
        try routed.daemon.send("/infer deploy llama-3-8b to staging --register\n")
        try eventually("the deploy in the daemon to finish") {
            routed.daemonOutput.contains("llama-3-8b is routable in staging through the router")
        }
        #expect(request("GET", "\(base)/healthz").status == 200)
        let ready = request("GET", "\(base)/readyz")
        #expect(ready.status == 200, "\(ready.body)")
        let metrics = request("GET", "\(base)/metrics").body
        #expect(metrics.contains(#"inferops_operations_total{kind="deploy",outcome="succeeded"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"inferops_step_duration_seconds_count{kind="deploy",step="applying"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"inferops_router_reconciliations_total{result="in_sync"}"#))

        routed.stopRouter()
        try eventually("/readyz to report the router") {
            let answer = request("GET", "\(base)/readyz")
            return answer.status == 503 && answer.body.contains("router")
        }
    }
}

