import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Locks, denials, the read-only answers, hostile input and error handling, through the intake.
@Suite(.timeLimit(.minutes(1))) struct CommandsTests {
    // MARK: locks

    @Test func lockedEnvironmentRefusesOthersButNotTheHolder() async throws {
        let h = Harness()

        #expect(await h.run("lock staging --reason \u{201C}incident 4711\u{201D}") == .completed(nil))
        #expect(
            h.chat.posts.last?.title
                == "🔒 `staging` is locked by @U0ADMIN: incident 4711. Until it is unlocked, changes there by anyone else "
                + "are refused; you or anyone with `unlock` there (roles `admin`, `staging-deployer`) can unlock it.")

        let refused = await h.run("deploy llama-3-8b to staging", as: Fixtures.deployer)
        #expect(refused == .refused("`staging` is locked by @U0ADMIN: incident 4711."))
        #expect(h.chat.posts.last?.reply.hint == "Ask them to `/infer unlock staging` when they are done.")
        #expect(
            await h.run("rollback llama-3-8b in staging", as: Fixtures.deployer)
                == .refused("`staging` is locked by @U0ADMIN: incident 4711."))
        #expect(
            await h.run("lock staging", as: Fixtures.deployer)
                == .refused("`staging` is already locked by @U0ADMIN: incident 4711."))
        #expect(h.releases.calls.isEmpty)
        #expect(await h.store.allOperations().isEmpty)
        // Looking is still allowed, and so is a dry run.
        #expect(await h.run("deploy llama-3-8b to staging --dry-run", as: Fixtures.deployer) == .completed(nil))

        #expect(await h.run("deploy llama-3-8b to staging").succeeded)

        #expect(await h.run("unlock staging --reason done") == .completed(nil))
        #expect(h.chat.posts.last?.title == "🔓 `staging` is unlocked.")
        #expect(await h.run("deploy llama-3-8b to staging", as: Fixtures.deployer).succeeded)
        #expect(await h.run("unlock staging") == .refused("`staging` is not locked."))

        let audit = await h.store.auditLog().map { "\($0.actor) \($0.action) \($0.outcome)" }
        #expect(
            audit == [
                "U0ADMIN lock succeeded", "U0DEPLOYER deploy refused", "U0DEPLOYER rollback refused",
                "U0DEPLOYER lock refused",
                "U0DEPLOYER deploy dry-run", "U0ADMIN deploy accepted", "U0ADMIN deploy succeeded",
                "U0ADMIN unlock succeeded",
                "U0DEPLOYER deploy accepted", "U0DEPLOYER deploy succeeded",
            ]
        )
    }

    @Test func unlockingSomeoneElsesLockSaysWhoseItWas() async throws {
        let h = Harness()
        #expect(await h.run("lock staging", as: Fixtures.deployer) == .completed(nil))
        #expect(await h.run("unlock staging --reason \"they are on holiday\"") == .completed(nil))
        #expect(h.chat.posts.last?.title == "🔓 `staging` is unlocked (it was held by @U0DEPLOYER).")
        #expect(await h.store.auditLog().last?.detail == "held by U0DEPLOYER: they are on holiday")
        #expect(await h.store.locks().isEmpty)
    }

    @Test func aLockOnlyCoversItsEnvironment() async throws {
        let h = Harness()
        #expect(await h.run("lock production") == .completed(nil))
        #expect(await h.run("deploy llama-3-8b to staging", as: Fixtures.deployer).succeeded)
    }

    // MARK: authorization

    @Test func deniedUserTouchesNoPort() async throws {
        let h = Harness()

        let outcome = await h.run("deploy llama-3-8b to staging", as: Fixtures.viewer)

        let message = "@U0VIEWER may not `deploy` in `staging`: the permission `deploy` on `staging` is missing."
        #expect(outcome == .refused(message))
        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.tone == .failure)
        #expect(reply.title.plainText == message)
        #expect(reply.title.segments.first == .mention(Fixtures.viewer))
        #expect(reply.hint == "It comes with the roles `admin`, `staging-deployer`; ask an administrator to add you.")
        #expect(
            await h.store.auditLog() == [
                AuditEntry(
                    at: h.time.now(), actor: Fixtures.viewer, action: "deploy", environment: "staging",
                    subject: "llama-3-8b",
                    outcome: "denied", operation: nil, detail: message, channel: "C0OPS"
                )
            ]
        )
        #expect(h.releases.calls.isEmpty)
        #expect(h.cluster.capacityCalls == 0 && h.cluster.workloadCalls == 0)
        #expect(h.engines.totalRequests == 0)
        #expect(await h.store.allOperations().isEmpty)
    }

    @Test func stagingDeployerIsDeniedInProduction() async throws {
        let h = Harness()
        let outcome = await h.run("rollback llama-3-8b in production", as: Fixtures.deployer)
        #expect(
            outcome
                == .refused(
                    "@U0DEPLOYER may not `rollback` in `production`: the permission `rollback` on `production` is missing."
                ))
        #expect(h.chat.posts.last?.reply.hint == "It comes with the role `admin`; ask an administrator to add you.")
        #expect(h.releases.calls.isEmpty)
    }

    @Test func statusWithoutAnyViewableEnvironmentIsDenied() async throws {
        let h = Harness { $0.policy = Policy(roles: [Fixtures.policy.roles[0]]) }
        let outcome = await h.run("status", as: Fixtures.viewer)
        #expect(outcome.message?.hasPrefix("@U0VIEWER may not `status` in `dev`") == true)
        #expect(h.releases.calls.isEmpty)
        // Help needs no permission at all.
        #expect(await h.run("help", as: Fixtures.viewer) == .completed(nil))
    }

    // MARK: hostile input

    static let injections: [(String, String)] = [
        ("deploy llama; rm -rf / to staging", "Unexpected `rm`."),
        (
            "deploy $(id) to staging",
            "`$(id)` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        (
            "deploy `id` to staging",
            "`'id'` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
        (
            "deploy llama-3-8b to staging --set replicaCount=$(id)",
            "The value of `replicaCount` contains characters that are not allowed (`, $ or control characters)."
        ),
        (
            "deploy llama-3-8b to staging --set 'engine.maxModelLen=`reboot`'",
            "The value of `engine.maxModelLen` contains characters that are not allowed (`, $ or control characters)."
        ),
        ("deploy llama-3-8b to staging --chart-version '$(id)'", "`$(id)` is not a chart version (like `0.1.0`)."),
        (
            "deploy llama-3-8b to staging --chart-version \"1.0 && reboot\"",
            "`1.0 && reboot` is not a chart version (like `0.1.0`)."
        ),
        (
            "rollback llama-3-8b in staging --to '3; reboot'",
            "`--to` needs a revision number (1, 2, …), not `3; reboot`."
        ),
        (
            "deploy llama-3-8b to staging\u{202E}",
            "The command contains an invisible formatting character (U+202E); commands are one line of visible text."
        ),
        (
            "deploy ../../etc/passwd to staging",
            "`../../etc/passwd` is not a valid model name: names use lower-case letters, digits, `.`, `_` and `-`."
        ),
    ]

    @Test(arguments: injections)
    func injectionIsRefusedBeforeAnyPort(input: String, message: String) async throws {
        let h = Harness()
        let outcome = await h.run(input)
        #expect(outcome == .refused(message))
        #expect(h.chat.posts.last?.title == message)
        #expect(h.releases.calls.isEmpty)
        #expect(h.cluster.capacityCalls == 0)
        #expect(h.engines.totalRequests == 0)
        #expect(await h.store.allOperations().isEmpty)
    }

    /// Where each is stopped: names by the parser, values by the planner (after validation, before any port).
    @Test func injectionStages() throws {
        for input in ["deploy llama; rm -rf / to staging", "deploy $(id) to staging", "deploy `id` to staging"] {
            #expect(throws: CommandError.self) { try Fixtures.parser.parse(input) }
        }
        let parsed = try Fixtures.parser.parse("deploy llama-3-8b to staging --set replicaCount=$(id)")
        let validated = try Fixtures.validator.validate(parsed)
        guard case .deploy(let model, let environment, let chartVersion, let overrides, _, _, _) = validated else {
            Issue.record("validated: \(validated)")
            return
        }
        #expect(overrides == ["replicaCount=$(id)"])
        #expect(throws: Refusal.self) {
            try DeployPlanner.plan(
                model: model, environment: environment, chartVersion: chartVersion, overrides: overrides)
        }
    }

    // MARK: status, history, help

    @Test func statusShowsWhatRunsWhereAndTheLocks() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let deploy = await h.run("deploy llama-3-8b to staging")
        #expect(deploy.succeeded)
        h.time.advance(by: .seconds(300))
        #expect(await h.run("lock production --reason freeze") == .completed(nil))
        h.cluster.setWorkload(
            WorkloadSnapshot(
                desiredReplicas: 2,
                pods: [
                    PodSnapshot(name: "a", phase: "Running", ready: true),
                    PodSnapshot(name: "b", phase: "Pending", ready: false),
                ]),
            for: "llama-3-8b-staging"
        )

        #expect(await h.run("status", as: Fixtures.viewer) == .completed(nil))

        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.title == "Status")
        #expect(reply.lines == ["🔒 production locked by \(mention: Fixtures.admin) 0 s ago: \(user: "freeze")"])
        let table = try #require(reply.table)
        #expect(table.headers == ["model", "env", "helm", "chart / app", "ready", "last verified", "routing", "in flight"])
        #expect(table.rows.count == 1)
        let row = try #require(table.rows.first)
        #expect(
            Array(row.prefix(5)) == ["llama-3-8b", "staging", "deployed rev 2", "vllm-engine-0.1.0 / v0.6.3", "1/2"])
        #expect(row[5].plainText.hasPrefix("5 min ago, ") && row[5].plainText.hasSuffix(" (rev 2)"), "\(row[5])")
        // No router in this environment, and nothing in flight.
        #expect(row[6] == "–")
        #expect(row[7] == "–")
    }

    @Test func statusOfANamedModelSaysWhereItIsNotDeployed() async throws {
        let h = Harness()
        #expect(await h.run("status qwen-2-72b in staging") == .completed(nil))
        #expect(h.chat.posts.last?.reply.table?.rows == [["qwen-2-72b", "staging", "not deployed", "", "", "", "–", ""]])
        #expect(await h.run("status") == .completed(nil))
        #expect(h.chat.posts.last?.title == "Nothing is deployed yet.")
    }

    @Test func historyJoinsRevisionsWithWhoDeployedThem() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let deploy = await h.run("deploy llama-3-8b to staging", as: Fixtures.deployer)
        let id = try #require(deploy.operation)

        #expect(await h.run("history llama-3-8b in staging", as: Fixtures.viewer) == .completed(nil))

        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.title == "History of llama-3-8b-staging")
        let formatter = ISO8601DateFormatter()
        let when = formatter.string(from: ManualTime.start)
        #expect(reply.table?.headers == ["rev", "status", "updated", "by", "operation", "chart / app", "description"])
        #expect(
            reply.table?.rows == [
                [
                    "2", "deployed", "\(when)", "\(mention: Fixtures.deployer)", "deploy \(id)", "vllm-engine-0.1.0 / v0.6.3",
                    .user("Upgrade complete"),
                ],
                [
                    "1", "superseded", "\(when)", "(outside InferOps)", "", "vllm-engine-0.1.0 / v0.6.3",
                    .user("Install complete"),
                ],
            ]
        )
        #expect(reply.hint == "`/infer rollback llama-3-8b in staging --to N` returns to revision N.")

        #expect(await h.run("history qwen-2-72b in staging") == .completed(nil))
        #expect(h.chat.posts.last?.title == "qwen-2-72b-staging has no revisions: it was never deployed.")
    }

    @Test func helpListsEveryVerb() async throws {
        let h = Harness()
        #expect(await h.run("help", as: Fixtures.viewer) == .completed(nil))
        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.title == "InferOps commands")
        #expect(reply.hint == "`/infer help <command>` explains one.")
        let lines = reply.lines.map(\.plainText)
        for spec in Fixtures.catalog.specs {
            let index = try #require(lines.firstIndex { $0.hasPrefix("\(spec.name) — ") }, "\(spec.name)")
            let usage = lines[(index + 1)...].prefix { $0.hasPrefix("    ") && !$0.contains(" — ") }
                .map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "`")) }
            #expect(usage.joined(separator: " ") == "/infer " + spec.usage, "\(spec.name)")
        }
        #expect(h.releases.calls.isEmpty)
    }

    @Test func helpForOneVerbShowsUsageAndExamples() async throws {
        let h = Harness()
        #expect(await h.run("help DEPLOY") == .completed(nil))
        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.title == "deploy: Deploy a model engine to an environment and verify it with a test completion.")
        #expect(
            reply.lines == [
                "Usage:",
                "    `/infer deploy <model> to <environment> [--chart-version \"…\"] [--set key=value …]`",
                "        `[--dry-run] [--register] [--wait-for-gpus \"…\"] [--min-replicas \"…\"]`",
                "  <model>: The model's name in the catalog (config/models).",
                "  <environment>: The environment to deploy to.",
                "  --chart-version: Deploy this version of the engine chart instead of the environment's default.",
                "  --set (repeatable): Override a chart value; only the keys the environment allows.",
                "  --dry-run: Show the plan and the rendered change without applying anything.",
                "  --register: Once verified, route the model by name through the environment's router.",
                "  --wait-for-gpus: Wait up to this long (10m, 2h) for free GPUs instead of being refused.",
                "  --min-replicas: If the GPUs are short, deploy fewer replicas, down to this many.",
                "Needs the permission `deploy`.",
                "Models: llama-3-8b (1 GPU each), qwen-2-72b (4 GPUs each).",
                "You may deploy to: dev, production, staging.",
                "`--set` keys each environment allows:",
                "  dev: `replicaCount`, `engine.maxModelLen`, `engine.gpuMemoryUtilization`",
                "  production: `replicaCount`",
                "  staging: `replicaCount`, `engine.maxModelLen`, `engine.gpuMemoryUtilization`",
                "Examples:",
                "  /infer deploy llama-3-8b to staging",
                "  /infer deploy llama-3-8b to staging --set replicaCount=2",
                "  /infer deploy llama-3-8b to staging --dry-run",
                "  /infer deploy llama-3-8b to staging --register",
                "  /infer deploy llama-3-8b to staging --wait-for-gpus 15m",
                "  /infer deploy llama-3-8b to staging --set replicaCount=4 --min-replicas 2",
            ]
        )
        #expect(await h.run("help deplyo") == .refused("There is no command `deplyo`. Did you mean `deploy`?"))
    }

    @Test(arguments: Fixtures.catalog.names)
    func helpForEachVerbShowsItsExamples(verb: String) async throws {
        let h = Harness()
        #expect(await h.run("help \(verb)") == .completed(nil))
        let lines = try #require(h.chat.posts.last?.reply.lines)
        let spec = Fixtures.catalog.spec(named: verb)!
        // On one line where it fits; else under "Usage:", a code span per line.
        let usage = lines.prefix { !$0.plainText.hasPrefix("  ") || $0.plainText.hasPrefix("    ") }.map(\.plainText)
        let words = usage.joined(separator: " ").split(separator: " ").joined(separator: " ")
        #expect(words.replacingOccurrences(of: "` `", with: " ") == "Usage: `/infer \(spec.usage)`")
        #expect(lines.suffix(spec.examples.count) == spec.examples.map { "  \($0)" }[...])
    }

    // MARK: errors

    /// An error that is not user-facing, with text that must never reach chat.
    struct LeakyError: Error, CustomStringConvertible {
        var description: String {
            "GET https://10.0.0.7:6443/api/v1/nodes: Authorization: Bearer s3cr3t-t0ken rejected"
        }
    }

    static func reference(in text: String) -> String? {
        guard let range = text.range(of: #"err-[0-9a-f]{8}"#, options: .regularExpression) else { return nil }
        return String(text[range])
    }

    @Test func internalErrorInAnOperationShowsOnlyAReference() async throws {
        let h = Harness()
        h.cluster.failCapacity(with: LeakyError())

        let outcome = await h.run("deploy llama-3-8b to staging")

        guard case .failed(let id?, let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        let last = try #require(h.chat.posts(for: id).last)
        let reference = try #require(Self.reference(in: last.title))
        #expect(last.title == "The operation stopped on an internal error (reference \(reference)).")
        #expect(last.reply.hint == "The daemon's log has the details under that reference.")
        #expect(message == "internal error \(reference)")
        #expect(!h.chat.transcript.contains("s3cr3t"))
        #expect(!h.chat.transcript.contains("10.0.0.7"))
        #expect(await h.record(id)?.state == .failed)
        #expect(await h.store.auditLog().last?.outcome == "failed")
        #expect(h.releases.upgrades.isEmpty)
    }

    @Test func internalErrorInAnAnswerShowsOnlyAReference() async throws {
        let h = Harness()
        h.releases.script(.history, .throwError(LeakyError()))

        let outcome = await h.run("history llama-3-8b in staging")

        let title = try #require(h.chat.posts.last?.title)
        let reference = try #require(Self.reference(in: title))
        #expect(title == "Something went wrong inside InferOps (reference \(reference)).")
        #expect(outcome == .failed(nil, "internal error \(reference)"))
        #expect(!h.chat.transcript.contains("s3cr3t"))
    }

    /// A `ReleaseFailure` is user-facing: its message and hint are written to be posted.
    @Test func userFacingPortErrorOutsideAWorkflowIsShown() async throws {
        let h = Harness()
        let failure = ReleaseFailure.clusterUnreachable(detail: "dial tcp 10.96.0.1:443: connect: connection refused")
        h.releases.script(.history, .fail(failure))

        _ = await h.run("history llama-3-8b in staging")

        let title = try #require(h.chat.posts.last?.title)
        #expect(title == failure.message)
    }

    @Test func userFacingPortErrorInsideAWorkflowIsShown() async throws {
        let h = Harness()
        let failure = ReleaseFailure.clusterUnreachable(detail: "dial tcp 10.96.0.1:443: connect: connection refused")
        h.releases.script(.status, .fail(failure))

        let outcome = await h.run("deploy llama-3-8b to staging")

        let id = try #require(outcome.operation)
        let title = try #require(h.chat.posts(for: id).last?.title)
        #expect(title == failure.message)
        #expect(await h.record(id)?.state == .failed)
    }

    // MARK: time

    /// The readiness budget is waiting, which `TimeSource` exists to control: on a test clock that
    /// moves on with every poll, a 600 s budget is spent after 2,400 polls of 250 ms.
    @Test func readinessBudgetIsMeasuredOnTheTimeSource() async throws {
        let time = ManualTime(advancesOnSleep: true)
        let engines = FakeEngineClient(time: time)
        engines.script("svc", EngineScript(healthStatuses: [503], servedModels: ["llama-3-8b"]))
        let verifier = EngineVerifier(engines: engines, time: time, settings: Fixtures.verification)
        let endpoint = EngineEndpoint(target: Fixtures.target("llama-3-8b", in: "staging"), service: "svc")
        let waiting = Task { try await verifier.waitReady(endpoint, servedName: "llama-3-8b", budget: .seconds(600)) }

        // Whichever comes first: waitReady gives up, or it has polled 3,000 times (750 s on the test clock).
        let gaveUpInBudget = await withTaskGroup(of: Bool?.self) { group in
            group.addTask {
                if case .failure(let error) = await waiting.result, error is VerificationFailure { return true }
                return false
            }
            group.addTask {
                try? await engines.waitFor { ($0.counts["svc"]?["/health"] ?? 0) >= 3_000 }
                return nil
            }
            let first = await group.next() ?? nil
            waiting.cancel()
            group.cancelAll()
            return first == true
        }
        // Budgets are measured on the TimeSource, so the test clock spends them.
        #expect(gaveUpInBudget)
        // 600 s of 250 ms polls: 2,400 polls, with a sleep between each.
        #expect(time.sleepCount == 2_399)
    }
}
