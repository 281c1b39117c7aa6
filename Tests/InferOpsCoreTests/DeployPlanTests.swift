import InferOpsCore
import InferOpsTesting
import Testing

@Suite struct DeployPlanTests {
    static let staging = Fixtures.settings("staging")

    func plan(
        model: ModelSpec = Fixtures.llama, environment: EnvironmentSettings = DeployPlanTests.staging,
        chartVersion: String? = nil, overrides: [String] = []
    ) throws -> DeployPlan {
        try DeployPlanner.plan(model: model, environment: environment, chartVersion: chartVersion, overrides: overrides)
    }

    @Test func digestIsStable() throws {
        let first = try plan(overrides: ["replicaCount=2"])
        let second = try plan(overrides: ["replicaCount=2"])
        #expect(first.digest == second.digest)
        #expect(first.digest.hasPrefix("sha256:"))
        #expect(first.digest.count == 7 + 64)
        #expect(first.digest.dropFirst(7).allSatisfy { $0.isHexDigit && !$0.isUppercase })
        #expect(first.shortDigest == String(first.digest.dropFirst(7).prefix(12)))
    }

    @Test func keyOrderDoesNotMatter() throws {
        var forwards = Fixtures.llama
        var backwards = Fixtures.llama
        let pairs: [(String, JSONValue)] = [("a", .number(1)), ("b", .string("two")), ("c", .bool(true))]
        forwards.values = .object(Dictionary(uniqueKeysWithValues: pairs))
        backwards.values = .object(Dictionary(uniqueKeysWithValues: pairs.reversed()))
        #expect(try plan(model: forwards).digest == plan(model: backwards).digest)
        // Different keys set in either order give the same plan; the same key twice, the last wins.
        #expect(
            try plan(overrides: ["replicaCount=2", "engine.maxModelLen=4096"]).digest
                == plan(overrides: ["engine.maxModelLen=4096", "replicaCount=2"]).digest
        )
        #expect(
            try plan(overrides: ["replicaCount=2", "replicaCount=3"]).digest
                == plan(overrides: ["replicaCount=3"]).digest)
    }

    @Test func canonicalJSONSortsKeysAndDropsWhitespace() {
        let value: JSONValue = .object([
            "zeta": .array([.number(1), .number(2.5), .null]),
            "alpha": .object(["b": .bool(false), "a": .string("x\"y\n")]),
        ])
        #expect(value.canonical == #"{"alpha":{"a":"x\"y\n","b":false},"zeta":[1,2.5,null]}"#)
    }

    /// Each change to what a deploy does gives another digest.
    @Test(arguments: [
        "model name", "model id", "model revision", "GPUs per replica", "image", "engine arguments", "model values",
        "environment name", "namespace", "kube context", "chart", "environment chart version", "chart version option",
        "values files", "replicas", "readiness budget", "override value", "override key",
    ])
    func digestChangesWithEveryValue(_ change: String) throws {
        var model = Fixtures.llama
        var environment = Self.staging
        var chartVersion: String? = nil
        var overrides = ["replicaCount=2"]
        switch change {
        case "model name": model.name = "llama-3-8b-instruct"
        case "model id": model.modelID = "meta-llama/Meta-Llama-3.1-8B-Instruct"
        case "model revision": model.revision = "5f0b02c"
        case "GPUs per replica": model.gpusPerReplica = 2
        case "image": model.image = "vllm/vllm-openai:v0.6.4"
        case "engine arguments": model.engineArguments = ["--max-model-len", "4096"]
        case "model values": model.values = .object(["podAnnotations": .object(["team": .string("ml")])])
        case "environment name": environment.name = "staging2"
        case "namespace": environment.namespace = "inferops-staging-2"
        case "kube context": environment.kubeContext = "gke-prod"
        case "chart": environment.chart = "oci://registry/charts/vllm-engine"
        case "environment chart version": environment.chartVersion = "0.2.0"
        case "chart version option": chartVersion = "0.3.0"
        case "values files": environment.valuesFiles = ["values/staging.yaml", "values/extra.yaml"]
        case "replicas":
            environment.replicas = 3
            overrides = []
        case "readiness budget": environment.readinessBudget = .seconds(900)
        case "override value": overrides = ["replicaCount=3"]
        case "override key": overrides = ["replicaCount=2", "engine.maxModelLen=4096"]
        default: Issue.record("unknown change \(change)")
        }
        let base = try plan(overrides: ["replicaCount=2"])
        let changed = try plan(model: model, environment: environment, chartVersion: chartVersion, overrides: overrides)
        #expect(changed.digest != base.digest)
    }

    @Test func setOutsideTheWhitelistIsRefusedWithTheList() {
        #expect {
            try plan(overrides: ["replica=2"])
        } throws: { error in
            guard let refusal = error as? Refusal else { return false }
            #expect(refusal.message == "`--set replica` is not allowed in `staging`. Did you mean `replicaCount`?")
            #expect(
                refusal.hint
                    == "Keys this environment allows: `replicaCount`, `engine.maxModelLen`, `engine.gpuMemoryUtilization`."
            )
            return true
        }
        #expect {
            try plan(overrides: ["image.tag=latest"])
        } throws: { error in
            (error as? Refusal)?.message == "`--set image.tag` is not allowed in `staging`."
        }
        var locked = Self.staging
        locked.allowedSetKeys = []
        #expect {
            try plan(environment: locked, overrides: ["replicaCount=2"])
        } throws: { error in
            (error as? Refusal)?.hint == "Keys this environment allows: none."
        }
    }

    @Test(arguments: ["replicaCount=$(id)", "replicaCount=`id`", "engine.maxModelLen=${HOME}", "replicaCount=2$"])
    func shellCharactersInValuesAreRefused(_ override: String) {
        let key = String(override.prefix { $0 != "=" })
        #expect {
            try plan(overrides: [override])
        } throws: { error in
            (error as? Refusal)?.message
                == "The value of `\(key)` contains characters that are not allowed (`, $ or control characters)."
        }
    }

    @Test func overlongValuesAreRefused() throws {
        #expect(throws: Refusal.self) {
            try plan(overrides: ["engine.maxModelLen=" + String(repeating: "9", count: 257)])
        }
        #expect(throws: Never.self) {
            try plan(overrides: ["engine.maxModelLen=" + String(repeating: "9", count: 256)])
        }
    }

    @Test func replicaCountChangesTheGPUsNeeded() throws {
        #expect(try plan(model: Fixtures.qwen).gpusNeeded == 4)
        let three = try plan(model: Fixtures.qwen, overrides: ["replicaCount=3"])
        #expect(three.replicas == 3)
        #expect(three.gpusNeeded == 12)
        #expect(three.values["replicaCount"] == .number(3))
        #expect(try plan(model: Fixtures.qwen, overrides: ["replicaCount=0"]).gpusNeeded == 0)
        #expect {
            try plan(overrides: ["replicaCount=-1"])
        } throws: { error in
            (error as? Refusal)?.message == "`replicaCount` must be a whole number from 0 to 64, not `-1`."
        }
    }

    /// `replicaCount` must be a whole number: the capacity check counts GPUs from it.
    @Test(arguments: ["replicaCount=abc", "replicaCount= 3", "replicaCount=2.5"])
    func replicaCountThatIsNotANumberIsRefused(_ override: String) throws {
        #expect(throws: Refusal.self) { try plan(model: Fixtures.qwen, overrides: [override]) }
    }

    /// Runs in a child process, because it brings the process down.
    @Test func hugeReplicaCountIsRefused() async {
        // A Double near Int.max rounds up to 2^63; converting it must not trap.
        await #expect(processExitsWith: .success) {
            _ = try? DeployPlanner.plan(
                model: Fixtures.llama, environment: Fixtures.settings("staging"), chartVersion: nil,
                overrides: ["replicaCount=9223372036854775807"]
            )
        }
        #expect(throws: Refusal.self) { try plan(overrides: ["replicaCount=9223372036854775807"]) }
    }

    @Test func replicaCountHasAnUpperBound() throws {
        #expect(try plan(overrides: ["replicaCount=64"]).replicas == 64)
        #expect(throws: Refusal.self) { try plan(overrides: ["replicaCount=65"]) }
        #expect(throws: Refusal.self) { try plan(overrides: ["replicaCount=100000"]) }
    }

    @Test func overridesAreTypedAndNested() throws {
        let plan = try plan(overrides: ["engine.maxModelLen=4096", "engine.gpuMemoryUtilization=fp8"])
        #expect(plan.values["engine"]?["maxModelLen"] == .number(4096))
        #expect(plan.values["engine"]?["gpuMemoryUtilization"] == .string("fp8"))
        // Setting a nested key keeps its siblings.
        #expect(plan.values["engine"]?["extraArgs"] == .array([.string("--max-model-len"), .string("8192")]))
    }

    @Test func planCarriesTheModelAndEnvironment() throws {
        let plan = try plan()
        #expect(
            plan.target
                == ReleaseTarget(
                    release: "llama-3-8b-staging", namespace: "inferops-staging", kubeContext: "kind-inferops"))
        #expect(plan.endpoint.description == "llama-3-8b-staging.inferops-staging.svc.cluster.local:8000")
        #expect(plan.values["image"] == .object(["repository": .string("vllm/vllm-openai"), "tag": .string("v0.6.3")]))
        #expect(plan.values["model"]?["id"] == .string("meta-llama/Meta-Llama-3-8B-Instruct"))
        #expect(plan.values["resources"]?["gpus"] == .number(1))
        #expect(plan.upgrade.timeout == .seconds(600))
        #expect(plan.upgrade.valuesFiles == ["values/staging.yaml"])
        #expect(plan.canonical["readinessBudgetSeconds"] == .number(600))
    }
}

@Suite struct CapacityCheckTests {
    func plan(_ model: ModelSpec, replicas: Int = 1) throws -> DeployPlan {
        try DeployPlanner.plan(
            model: model, environment: Fixtures.settings("staging"), chartVersion: nil,
            overrides: ["replicaCount=\(replicas)"]
        )
    }

    func capacity(_ nodes: (String, Int, Int)..., held: [String: Int] = [:]) -> GPUCapacity {
        GPUCapacity(
            nodes: nodes.map { NodeGPUs(node: $0.0, allocatable: $0.1, requested: $0.2) }, requestedByRelease: held)
    }

    @Test func fitsOnFreeGPUs() throws {
        let verdict = CapacityCheck.evaluate(try plan(Fixtures.llama), capacity: capacity(("gpu-a", 8, 0)))
        #expect(verdict.fits)
        #expect(verdict.summary == "needs 1 × 1 = 1 nvidia.com/gpu; free 8 of 8 allocatable (gpu-a 8/8 free)")
    }

    @Test func replicasMustFitOnOneNodeEach() throws {
        // 6 GPUs are free in total, but no node has the 4 one replica needs.
        let verdict = CapacityCheck.evaluate(
            try plan(Fixtures.qwen), capacity: capacity(("gpu-a", 8, 5), ("gpu-b", 8, 5)))
        #expect(!verdict.fits)
        #expect(
            verdict.summary
                == "needs 1 × 4 = 4 nvidia.com/gpu; free 6 of 16 allocatable (gpu-a 3/8 free, gpu-b 3/8 free); "
                + "no node has 4 free; largest free block is 3 on gpu-a "
                + "(the 6 free GPUs are split over nodes; a replica's GPUs must be on one node)")
    }

    @Test func severalReplicasShareANode() throws {
        #expect(CapacityCheck.evaluate(try plan(Fixtures.qwen, replicas: 2), capacity: capacity(("gpu-a", 8, 0))).fits)
        #expect(!CapacityCheck.evaluate(try plan(Fixtures.qwen, replicas: 3), capacity: capacity(("gpu-a", 8, 0))).fits)
        #expect(
            CapacityCheck.evaluate(
                try plan(Fixtures.qwen, replicas: 3), capacity: capacity(("gpu-a", 8, 0), ("gpu-b", 4, 0))
            ).fits
        )
    }

    @Test func gpusHeldByTheSameReleaseCount() throws {
        let plan = try plan(Fixtures.qwen)
        let verdict = CapacityCheck.evaluate(
            plan, capacity: capacity(("gpu-a", 8, 5), ("gpu-b", 8, 8), held: ["qwen-2-72b-staging": 4]))
        #expect(verdict.fits)
        #expect(
            verdict.summary
                == "needs 1 × 4 = 4 nvidia.com/gpu; free 3 of 16 allocatable (+4 held by this release) (gpu-a 3/8 free, gpu-b 0/8 free)"
        )
        // Another release's GPUs are not ours to take.
        let other = CapacityCheck.evaluate(
            plan, capacity: capacity(("gpu-a", 8, 5), ("gpu-b", 8, 8), held: ["qwen-2-72b-dev": 4]))
        #expect(!other.fits)
        #expect(!other.summary.contains("held by this release"))
    }

    @Test func overcommittedNodesHaveNothingFree() throws {
        let verdict = CapacityCheck.evaluate(try plan(Fixtures.llama), capacity: capacity(("gpu-a", 4, 6)))
        #expect(!verdict.fits)
        #expect(
            verdict.summary
                == "needs 1 × 1 = 1 nvidia.com/gpu; free 0 of 4 allocatable (gpu-a 0/4 free); no GPU is free on any node")
    }

    @Test func noGPUNodes() throws {
        let verdict = CapacityCheck.evaluate(try plan(Fixtures.llama), capacity: capacity())
        #expect(!verdict.fits)
        #expect(
            verdict.summary
                == "needs 1 × 1 = 1 nvidia.com/gpu; free 0 of 0 allocatable; no GPU nodes; no GPU is free on any node")
    }

    @Test func zeroReplicasAlwaysFit() throws {
        #expect(CapacityCheck.evaluate(try plan(Fixtures.qwen, replicas: 0), capacity: capacity()).fits)
    }
}

@Suite struct OperationStateTests {
    /// Every allowed move, written out; every other pair is forbidden.
    static let allowed: [OperationState: Set<OperationState>] = [
        .requested: [.planned, .failed, .cancelled, .interrupted],
        .planned: [.queued, .succeeded, .awaitingApproval, .failed, .cancelled, .interrupted],
        .awaitingApproval: [.approved, .denied, .expired, .failed, .cancelled, .interrupted],
        .approved: [.queued, .awaitingApproval, .failed, .cancelled, .interrupted],
        .queued: [.prechecking, .failed, .cancelled, .interrupted],
        // A resumed operation checks reality in `prechecking`, then goes on to the step still to do.
        .prechecking: [.applying, .registering, .waitingReady, .verifying, .failed, .cancelled, .interrupted],
        // `remove`: applying (helm uninstall) after the router step, then verifying that the GPUs are free.
        .applying: [.waitingReady, .rollingBack, .succeeded, .verifying, .prechecking, .failed, .cancelled, .interrupted],
        .waitingReady: [.warming, .verifying, .rollingBack, .prechecking, .failed, .cancelled, .interrupted],
        .warming: [.verifying, .rollingBack, .prechecking, .failed, .cancelled, .interrupted],
        .verifying: [.succeeded, .registering, .rollingBack, .applying, .prechecking, .failed, .cancelled, .interrupted],
        .registering: [.succeeded, .verifying, .prechecking, .failed, .cancelled, .interrupted],
        .rollingBack: [.rolledBack, .failed, .cancelled, .interrupted],
        .succeeded: [], .failed: [], .rolledBack: [], .cancelled: [], .denied: [], .expired: [], .interrupted: [],
    ]

    @Test(arguments: OperationState.allCases)
    func movesFrom(_ state: OperationState) {
        for next in OperationState.allCases {
            let expected = Self.allowed[state]!.contains(next)
            #expect(state.canMove(to: next) == expected, "\(state.rawValue) → \(next.rawValue)")
        }
    }

    @Test func finishedStatesAreTheEnds() {
        let finished = OperationState.allCases.filter(\.isFinished)
        #expect(Set(finished) == [.succeeded, .failed, .rolledBack, .cancelled, .denied, .expired, .interrupted])
        for state in finished { #expect(state.successors.isEmpty) }
        // A cancel during an automatic rollback is recorded as such (Helm marks the revision failed).
        #expect(OperationState.rollingBack.canMove(to: .cancelled))
    }

    @Test func statesHoldingTheReleaseAreTheActiveOnes() {
        #expect(
            OperationState.holdingRelease == [
                .prechecking, .applying, .waitingReady, .warming, .verifying, .registering, .rollingBack,
            ]
        )
        #expect(OperationState.waitingReady.rawValue == "waiting_ready")
        #expect(OperationState.rollingBack.rawValue == "rolling_back")
        #expect(OperationState.rolledBack.rawValue == "rolled_back")
    }

    @Test func reporterRefusesAForbiddenMove() async throws {
        let fakes = FakeServices()
        let record = OperationRecord(
            id: OperationID("op-0000000a"), kind: .deploy, requester: Fixtures.admin, environment: "staging",
            command: "deploy llama-3-8b to staging", createdAt: fakes.time.now()
        )
        try await fakes.store.insert(record)
        let reporter = OperationReporter(operation: record, services: fakes.services, channel: "C0OPS")
        try await reporter.ensureCard()
        await #expect {
            try await reporter.move(to: .applying, "skipping ahead")
        } throws: { error in
            (error as? OperationStateError)?.description == "operation cannot move from requested to applying"
        }
        try await reporter.move(to: .planned, "Plan ready.")
        try await reporter.move(to: .planned, "Plan ready again.")
        #expect(await fakes.store.stateHistory(of: record.id) == [.requested, .planned])
    }

    @Test func aCardEditHeldBackByTheOnceASecondLimitIsMadeWhenTheSecondIsUp() async throws {
        let fakes = FakeServices()
        let record = OperationRecord(
            id: OperationID("op-0000000b"), kind: .deploy, requester: Fixtures.admin, environment: "staging",
            command: "deploy llama-3-8b to staging", createdAt: fakes.time.now()
        )
        try await fakes.store.insert(record)
        let reporter = OperationReporter(operation: record, services: fakes.services, channel: "C0OPS")
        // What the runner runs beside an operation's steps.
        async let _ = reporter.keepCardCurrent()
        try await reporter.ensureCard()
        try await reporter.move(to: .planned, "Plan ready.")
        try await reporter.move(to: .queued, "Queued.")
        try await reporter.move(to: .prechecking, "Checking capacity.")
        // The first edit went out at once; the two after it within the second are held, and only
        // the latest is made, when the second is up.
        let chat = fakes.chat
        try await chat.waitFor { events in events.filter { $0.kind == .update }.count == 2 }
        #expect(chat.updates.last?.text.contains("Checking capacity.") == true, "\(chat.updates.map(\.text))")
        #expect(chat.updates.first?.text.contains("Plan ready.") == true)
    }
}
