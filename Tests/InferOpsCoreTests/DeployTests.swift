import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `deploy` through the whole pipeline, on fakes.
@Suite(.timeLimit(.minutes(1))) struct DeployTests {
    static let llamaStaging = "llama-3-8b-staging"

    @Test func deploySucceedsAndReportsEveryStep() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.superseded, .deployed])
        h.engines.script(
            Self.llamaStaging, EngineScript(healthStatuses: [503, 503, 200], servedModels: ["llama-3-8b"]))

        let outcome = await h.run("/infer deploy llama-3-8b to staging")

        guard case .completed(let id?) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        // The record went through every state, in order, and ended with the new revision and the plan.
        #expect(
            await h.store.stateHistory(of: id)
                == [
                    .planned, .queued, .prechecking, .applying, .waitingReady, .warming, .verifying,
                    .succeeded,
                ]
        )
        let record = try #require(await h.record(id))
        #expect(record.kind == .deploy)
        #expect(record.requester == Fixtures.admin)
        #expect(record.revision == 3)
        #expect(record.command == "deploy llama-3-8b to staging")
        #expect(record.target == target)
        #expect(record.planDigest?.hasPrefix("sha256:") == true)
        #expect(record.plan?["modelId"] == .string("meta-llama/Meta-Llama-3-8B-Instruct"))
        #expect(record.outcome?.hasPrefix("Deployed llama-3-8b to staging: revision 3, verified in ") == true)

        // The journal tells the story step by step, each entry written in the state it describes.
        let journal = await h.store.journal(of: id)
        #expect(
            containsInOrder(
                journal.map(\.message),
                prefixes: [
                    "deploy requested by U0ADMIN: deploy llama-3-8b to staging",
                    "Plan ready: 1 × meta-llama/Meta-Llama-3-8B-Instruct@main, 1 GPU each.",
                    "Queued.",
                    "Checking the release and GPU capacity.",
                    "GPU capacity is enough: needs 1 × 1 = 1 nvidia.com/gpu; free 16 of 16 allocatable",
                    "Running helm upgrade --install (waits up to 10 min for readiness).",
                    "Helm finished: revision 3 deployed, after ",
                    "Waiting for llama-3-8b-staging.inferops-staging.svc.cluster.local:8000 to answer /health and list llama-3-8b.",
                    "Engine ready. Sending 2 warm-up requests.",
                    "Sending a test completion.",
                    "Test completion answered in ",
                    "Deployed llama-3-8b to staging: revision 3, verified in ",
                ]
            ),
            "journal: \(journal.map(\.message))"
        )
        let order = OperationState.allCases
        let positions = journal.map { order.firstIndex(of: $0.state)! }
        #expect(positions == positions.sorted(), "journal states: \(journal.map(\.state.rawValue))")

        // Audit: accepted, then how it ended, bound to the plan's digest.
        let audit = await h.store.auditLog()
        #expect(audit.map(\.outcome) == ["accepted", "succeeded"])
        #expect(audit.allSatisfy { $0.actor == Fixtures.admin && $0.action == "deploy" && $0.environment == "staging" })
        #expect(audit.allSatisfy { $0.subject == "llama-3-8b" && $0.operation == id })
        #expect(audit.last?.detail == record.planDigest)

        // The verification is recorded for `status`.
        let verification = try #require(await h.store.lastVerification(model: "llama-3-8b", environment: "staging"))
        #expect(verification.operation == id)
        #expect(verification.revision == 3)

        // Chat: a status card, then every step in its thread, and the card edited to the outcome.
        let posts = h.chat.posts
        #expect(posts.allSatisfy { $0.operation == id })
        let card = try #require(posts.first)
        #expect(card.conversation == Conversation(channel: "C0OPS"))
        #expect(card.title == "Deploy llama-3-8b to staging, requested by @U0ADMIN")
        #expect(card.reply.fields.contains(Reply.Field("operation", id.rawValue)))
        #expect(card.reply.fields.contains(Reply.Field("state", "planned")))
        #expect(
            posts.dropFirst().allSatisfy { $0.conversation == Conversation(channel: "C0OPS", thread: card.message.id) })
        let last = try #require(posts.last)
        #expect(last.reply.tone == .success)
        #expect(last.title.hasPrefix("Deployed llama-3-8b to staging: revision 3, verified in "))
        #expect(last.title.hasSuffix(" ms.") || last.title.hasSuffix(" s."))
        // The card is edited in place: the same message, its title kept, its state and latest step current.
        #expect(!h.chat.updates.isEmpty)
        #expect(h.chat.updates.allSatisfy { $0.message == card.message && $0.title == card.title })
        let final = try #require(h.chat.updates.last)
        #expect(final.reply.fields.contains(Reply.Field("state", "succeeded")))
        #expect(final.reply.fields.contains(Reply.Field("now", last.reply.title)))
        #expect(final.reply.tone == .success)

        // Ports: Helm once (after a dry-run render for the capacity check), the engine probed until
        // healthy, warmed up twice, then tested.
        #expect(h.releases.calls.map(\.method) == [.status, .history, .render, .upgrade])
        let upgrade = try #require(h.releases.upgrades.first)
        #expect(upgrade.values["replicaCount"] == .number(1))
        #expect(upgrade.values["model"]?["servedName"] == .string("llama-3-8b"))
        #expect(upgrade.chart == "charts/vllm-engine")
        #expect(upgrade.valuesFiles == ["values/staging.yaml"])
        #expect(h.engines.requests(to: "/health", service: Self.llamaStaging) == 3)
        #expect(h.engines.requests(to: "/v1/models", service: Self.llamaStaging) == 1)
        #expect(h.engines.requests(to: "/v1/completions", service: Self.llamaStaging) == 3)
        let test = try #require(h.engines.state.completionRequests.last?.body)
        #expect(String(decoding: test, as: UTF8.self).contains(#""prompt":"Say hello in five words.""#))
        #expect(h.time.sleepCount >= 2)
        #expect(h.releases.revisions(of: target).map(\.state) == [.superseded, .superseded, .deployed])
    }

    @Test func firstInstallAndOverrides() async throws {
        let h = Harness()
        let outcome = await h.run("deploy qwen-2-72b to staging --set replicaCount=2 --set engine.maxModelLen=4096")
        #expect(outcome.operation != nil && outcome.succeeded)
        let upgrade = try #require(h.releases.upgrades.first)
        #expect(upgrade.values["replicaCount"] == .number(2))
        #expect(upgrade.values["engine"]?["maxModelLen"] == .number(4096))
        #expect(upgrade.values["resources"]?["gpus"] == .number(4))
        #expect(
            h.releases.revisions(of: h.target("qwen-2-72b", in: "staging")).map(\.description) == ["Install complete"])
        let journal = await h.store.journal(of: outcome.operation!).map(\.message)
        #expect(journal.contains("Plan ready: 2 × Qwen/Qwen2-72B-Instruct@main, 4 GPUs each."))
        #expect(journal.contains { $0.hasPrefix("GPU capacity is enough: needs 2 × 4 = 8 nvidia.com/gpu") })
    }

    @Test func dryRunAppliesNothing() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.deployed])

        let outcome = await h.run("deploy llama-3-8b to staging --set replicaCount=2 --dry-run")

        #expect(outcome == .completed(nil))
        #expect(h.releases.changingCalls.isEmpty)
        #expect(h.releases.calls.map(\.method) == [.render, .status])
        #expect(h.engines.totalRequests == 0)
        #expect(await h.store.allOperations().isEmpty)
        let reply = try #require(h.chat.posts.last).reply
        #expect(reply.title == "Dry run: deploy llama-3-8b to staging (nothing applied)")
        let fields = Dictionary(uniqueKeysWithValues: reply.fields.map { ($0.label, $0.value.plainText) })
        #expect(fields["current revision"] == "1 (deployed)")
        #expect(fields["GPUs"]?.hasPrefix("fits: needs 2 × 1 = 2 nvidia.com/gpu; free 16 of 16 allocatable") == true)
        #expect(fields["release"] == "llama-3-8b-staging")
        let digest = try #require(fields["digest"])
        #expect(reply.lines.contains("  replicas: 2"))
        #expect(reply.lines.first?.plainText.hasPrefix("Values set by the plan: {") == true)
        let audit = await h.store.auditLog()
        #expect(audit.map(\.outcome) == ["dry-run"])
        #expect(audit.first?.detail == digest)
        #expect(h.releases.revisions(of: target).count == 1)
    }

    @Test func dryRunSaysWhenItWouldBeRefused() async throws {
        let h = Harness()
        h.cluster.setCapacity(FakeCluster.nodes(("gpu-a", 8, 5), ("gpu-b", 8, 5)))
        #expect(await h.run("deploy qwen-2-72b to staging --dry-run") == .completed(nil))
        let fields = try #require(h.chat.posts.last).reply.fields
        #expect(fields.contains(Reply.Field("current revision", "none: this would install it")))
        #expect(
            fields.contains(
                Reply.Field(
                    "GPUs",
                    "would be refused: needs 1 × 4 = 4 nvidia.com/gpu; free 6 of 16 allocatable (gpu-a 3/8 free, gpu-b 3/8 free); "
                        + "no node has 4 free; largest free block is 3 on gpu-a (the 6 free GPUs are split over "
                        + "nodes; a replica's GPUs must be on one node)"
                )
            )
        )
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func refusedForGPUsBeforeHelmRuns() async throws {
        let h = Harness()
        h.cluster.setCapacity(FakeCluster.nodes(("gpu-a", 8, 5), ("gpu-b", 8, 5)))

        let outcome = await h.run("deploy qwen-2-72b to staging")

        guard case .refused(let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        let id = try #require(await h.store.allOperations().first?.id)
        #expect(
            message
                == "Not enough free GPUs for qwen-2-72b-staging: needs 1 × 4 = 4 nvidia.com/gpu; free 6 of 16 allocatable "
                + "(gpu-a 3/8 free, gpu-b 3/8 free); no node has 4 free; largest free block is 3 on gpu-a "
                + "(the 6 free GPUs are split over nodes; a replica's GPUs must be on one node)."
        )
        #expect(h.releases.upgrades.isEmpty)
        #expect(h.releases.changingCalls.isEmpty)
        #expect(h.engines.totalRequests == 0)
        #expect(await h.store.stateHistory(of: id) == [.planned, .queued, .prechecking, .failed])
        let last = try #require(h.chat.posts.last)
        #expect(last.reply.tone == .failure)
        #expect(last.title == message)
        #expect(
            last.reply.hint?.plainText
                == "Free 1 more GPU on gpu-a (roll back or remove a model there) or ask for the deploy to wait."
                + " `/infer remove <model> from staging` uninstalls a model and frees its GPUs."
        )
        #expect(await h.store.auditLog().map(\.outcome) == ["accepted", "failed"])
    }

    @Test func redeployCountsTheGPUsItsOwnPodsGiveBack() async throws {
        let h = Harness()
        h.cluster.setCapacity(
            FakeCluster.nodes(("gpu-a", 8, 8), ("gpu-b", 8, 5), requestedByRelease: ["qwen-2-72b-staging": 4])
        )
        let outcome = await h.run("deploy qwen-2-72b to staging")
        #expect(outcome.succeeded)
        let journal = await h.store.journal(of: outcome.operation!).map(\.message)
        #expect(journal.contains { $0.contains("(+4 held by this release)") })
    }

    @Test func waitsForGPUsWhenTheEnvironmentAllows() async throws {
        let h = Harness { $0.environments["staging"]!.capacity = .wait(.seconds(600)) }
        let tight = FakeCluster.nodes(("gpu-a", 8, 5), ("gpu-b", 8, 5))
        let tighter = FakeCluster.nodes(("gpu-a", 8, 6), ("gpu-b", 8, 5))
        h.cluster.setCapacities([tight, tight, tighter, FakeCluster.nodes(("gpu-a", 8, 0), ("gpu-b", 8, 5))])

        let outcome = await h.run("deploy qwen-2-72b to staging")

        #expect(outcome.succeeded)
        let journal = await h.store.journal(of: outcome.operation!).map(\.message)
        #expect(
            containsInOrder(
                journal,
                prefixes: [
                    "Waiting up to 10 min for GPUs: needs 1 × 4 = 4 nvidia.com/gpu; free 6 of 16",
                    // Said again only when the numbers change.
                    "Still waiting for GPUs: needs 1 × 4 = 4 nvidia.com/gpu; free 5 of 16",
                    "GPUs are free now: needs 1 × 4 = 4 nvidia.com/gpu; free 11 of 16",
                    "Running helm upgrade --install",
                ]
            )
        )
        #expect(h.cluster.capacityCalls == 4)
        #expect(journal.filter { $0.hasPrefix("Still waiting for GPUs") }.count == 1)
        #expect(h.releases.upgrades.count == 1)
    }

    /// Where the environment refuses a deploy that does not fit, the requester may ask it to wait.
    @Test func waitsForGPUsWhenAsked() async throws {
        let h = Harness()
        let tight = FakeCluster.nodes(("gpu-a", 8, 5), ("gpu-b", 8, 5))
        h.cluster.setCapacities([tight, tight, FakeCluster.nodes(("gpu-a", 8, 0), ("gpu-b", 8, 5))])

        let outcome = await h.run("deploy qwen-2-72b to staging --wait-for-gpus 15m")

        #expect(outcome.succeeded, "\(outcome)")
        let journal = await h.store.journal(of: outcome.operation!).map(\.message)
        #expect(containsInOrder(journal, prefixes: [
            "Waiting up to 15 min for GPUs: needs 1 × 4 = 4 nvidia.com/gpu; free 6 of 16",
            "GPUs are free now: needs 1 × 4 = 4 nvidia.com/gpu; free 11 of 16",
        ]))
        // Where the time went says the wait apart from the checks.
        let time = try #require(h.chat.posts.last?.reply.fields.first { $0.label == "time" }?.value.plainText)
        #expect(time.contains("waiting for GPUs"), "\(time)")
    }

    @Test(arguments: ["soon", "10", "0m", "7h", "99999999999999999999h", "1d"])
    func aWaitThatIsNotATimeIsRefusedAndChangesNothing(_ text: String) async throws {
        let h = Harness()
        let outcome = await h.run("deploy qwen-2-72b to staging --wait-for-gpus \(text)")
        guard case .refused(let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(message.contains("is not a time to wait: say minutes or hours, like `10m`, `90s` or `2h`, up to 6 h"), "\(message)")
        #expect(h.releases.changingCalls.isEmpty)
        #expect(await h.store.allOperations().isEmpty)
    }

    @Test func helmReadinessTimeoutWithoutAutoRollbackFails() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.superseded, .deployed])
        h.releases.script(.upgrade, .fail(.readinessTimeout(detail: "context deadline exceeded")))

        let outcome = await h.run("deploy llama-3-8b to staging")

        let failure = ReleaseFailure.readinessTimeout(detail: "context deadline exceeded")
        guard case .failed(let id?, let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(message == "The engine did not become ready within the readiness budget. context deadline exceeded")
        #expect(
            await h.store.stateHistory(of: id) == [.planned, .queued, .prechecking, .applying, .failed])
        let thread = h.chat.posts(for: id)
        let explained = try #require(thread.first { $0.title == failure.message })
        #expect(explained.reply.tone == .failure)
        #expect(
            explained.reply.hint
                == "Look at the pods' events (`kubectl describe pod`), or raise the environment's readiness budget.")
        #expect(thread.last?.title == "The deploy failed.")
        #expect(thread.last?.reply.hint?.plainText == failure.hint)
        #expect(h.releases.rollbacks.isEmpty)
        #expect(h.releases.revisions(of: target).map(\.state) == [.superseded, .deployed, .failed])
        #expect(await h.store.auditLog().map(\.outcome) == ["accepted", "failed"])
        #expect(await h.store.lastVerification(model: "llama-3-8b", environment: "staging") == nil)
        #expect(h.engines.totalRequests == 0)
    }

    @Test func engineNeverReadyWithoutAutoRollbackFails() async throws {
        let h = Harness { $0.environments["staging"]!.readinessBudget = .zero }
        h.engines.script(Self.llamaStaging, EngineScript(healthStatuses: [503], servedModels: ["llama-3-8b"]))

        let outcome = await h.run("deploy llama-3-8b to staging")

        let expected =
            "The engine at llama-3-8b-staging.inferops-staging.svc.cluster.local:8000 did not become ready within the budget: /health answered 503 (weights still loading)."
        #expect(outcome == .failed(outcome.operation, expected))
        let id = try #require(outcome.operation)
        #expect(await h.store.stateHistory(of: id).suffix(3) == [.applying, .waitingReady, .failed])
        #expect(
            h.chat.posts(for: id).contains {
                $0.title == expected
                    && $0.reply.hint == "Look at the engine's logs (`kubectl logs`) and the pods' events."
            })
        #expect(h.releases.rollbacks.isEmpty)
    }

    @Test func servingTheWrongModelIsNotReady() async throws {
        let h = Harness { $0.environments["staging"]!.readinessBudget = .zero }
        h.engines.script(Self.llamaStaging, EngineScript(servedModels: ["mistral-7b"]))
        let outcome = await h.run("deploy llama-3-8b to staging")
        #expect(outcome.message?.hasSuffix("/v1/models lists mistral-7b, not llama-3-8b.") == true)
    }

    @Test func helmReadinessTimeoutWithAutoRollbackRestoresTheLastGoodRevision() async throws {
        let h = Harness { $0.environments["staging"]!.autoRollback = true }
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.superseded, .deployed])
        h.releases.script(.upgrade, .fail(.readinessTimeout(detail: "context deadline exceeded")))

        let outcome = await h.run("deploy llama-3-8b to staging")

        guard case .failed(let id?, let message) = outcome else {
            Issue.record("outcome: \(outcome)")
            return
        }
        #expect(message == ReleaseFailure.readinessTimeout(detail: "context deadline exceeded").message)
        #expect(h.releases.rollbacks == [2])
        #expect(
            await h.store.stateHistory(of: id) == [
                .planned, .queued, .prechecking, .applying, .rollingBack, .rolledBack,
            ]
        )
        #expect(await h.record(id)?.revision == 4)
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
        let revisions = h.releases.revisions(of: target)
        #expect(revisions.map(\.state) == [.superseded, .superseded, .failed, .deployed])
        #expect(revisions.last?.description == "Rollback to 2")
        let last = try #require(h.chat.posts(for: id).last)
        #expect(last.reply.tone == .warning)
        #expect(
            last.title.hasPrefix(
                "The deploy failed and was rolled back: revision 2 restored as revision 4 and verified in "))
        #expect(await h.store.auditLog().map(\.outcome) == ["accepted", "rolled_back"])
        #expect(await h.store.lastVerification(model: "llama-3-8b", environment: "staging")?.revision == 4)
        let journal = await h.store.journal(of: id).map(\.message)
        #expect(journal.contains("Rolling back automatically to revision 2."))
    }

    /// Production rolls back by configuration; here the new engine answers the warm-up with HTTP 500.
    @Test func badAnswerInProductionRollsBack() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "production")
        h.releases.seed(target, [.deployed])
        h.engines.script(
            "llama-3-8b-production",
            EngineScript(servedModels: ["llama-3-8b"], completions: [.status(500), .completion("Hello again.")])
        )

        let outcome = await h.run("deploy llama-3-8b to production")

        #expect(outcome.message == "Verification failed: warm-up request 1 answered 500.")
        let id = try #require(outcome.operation)
        #expect(h.releases.rollbacks == [1])
        #expect(await h.store.stateHistory(of: id).suffix(4) == [.waitingReady, .warming, .rollingBack, .rolledBack])
        #expect(h.releases.revisions(of: target).map(\.state) == [.superseded, .superseded, .deployed])
    }

    @Test func autoRollbackWithNothingToReturnTo() async throws {
        let h = Harness()
        h.releases.script(.upgrade, .fail(.rolloutFailed(detail: "ProgressDeadlineExceeded")))
        let outcome = await h.run("deploy llama-3-8b to production")
        #expect(
            outcome.message == "There is no earlier good revision to roll back to; the failed release stays as it is.")
        #expect(
            h.chat.posts.last?.reply.hint
                == "Fix the values and deploy again, or free its GPUs with `/infer remove llama-3-8b from production`.")
        #expect(h.releases.rollbacks.isEmpty)
        #expect(await h.record(try #require(outcome.operation))?.state == .failed)
    }

    @Test func failedAutoRollbackIsReported() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "production"), [.deployed])
        h.releases.script(.upgrade, .fail(.rolloutFailed(detail: "ProgressDeadlineExceeded")))
        h.releases.script(.rollback, .fail(.clusterUnreachable(detail: "connection refused")))
        let outcome = await h.run("deploy llama-3-8b to production")
        #expect(outcome.message == "The Kubernetes API is unreachable: connection refused")
        let id = try #require(outcome.operation)
        #expect(await h.store.stateHistory(of: id).suffix(2) == [.rollingBack, .failed])
        #expect(
            h.chat.posts(for: id).last?.title
                == "The automatic rollback failed too: The Kubernetes API is unreachable: connection refused")
    }

    @Test func slowVerificationIsAWarningNotAFailure() async throws {
        let h = Harness { $0.environments["staging"]!.verification.latencyTarget = .zero }
        let outcome = await h.run("deploy llama-3-8b to staging")
        #expect(outcome.succeeded)
        let last = try #require(h.chat.posts.last)
        #expect(last.reply.tone == .warning)
        #expect(last.title.hasSuffix(" (over the 0 ms target)."))
        #expect(await h.record(try #require(outcome.operation))?.state == .succeeded)
    }

    @Test func stuckPendingUpgradeIsRefusedAndRollbackRecoversIt() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.superseded, .deployed, .pendingUpgrade])

        let refused = await h.run("deploy llama-3-8b to staging")

        #expect(refused.message == "The release is stuck in pending-upgrade, left by an interrupted Helm run.")
        #expect(h.releases.upgrades.isEmpty)
        let hint = try #require(h.chat.posts.last).reply.hint
        #expect(hint == "Recover with `/infer rollback` (helm rollback to the last good revision), then deploy again.")

        let recovered = await h.run("rollback llama-3-8b in staging")

        let id = try #require(recovered.operation)
        #expect(recovered == .completed(id))
        #expect(h.releases.rollbacks == [2])
        #expect(
            await h.store.journal(of: id).map(\.message).contains(
                "Running helm rollback to revision 2 (recovering from pending-upgrade)."))
        #expect(
            h.chat.posts.last?.title.hasPrefix(
                "Rolled llama-3-8b in staging back to revision 2 (now revision 4), verified in ") == true)
        #expect(h.releases.revisions(of: target).last?.state == .deployed)

        #expect(await h.run("deploy llama-3-8b to staging").succeeded)
        #expect(h.releases.upgrades.count == 1)
        #expect(h.releases.revisions(of: target).last?.revision == 5)
    }

    @Test func stuckPendingInstallIsRefusedAndRollbackUninstallsIt() async throws {
        let h = Harness()
        let target = h.target("llama-3-8b", in: "staging")
        h.releases.seed(target, [.pendingInstall])

        let refused = await h.run("deploy llama-3-8b to staging")
        #expect(refused.message == "The release is stuck in pending-install, left by an interrupted Helm run.")
        #expect(h.chat.posts.last?.reply.hint == "Recover with `/infer remove` (helm uninstall of the release), then deploy again.")

        let recovered = await h.run("rollback llama-3-8b in staging")

        #expect(recovered.succeeded)
        #expect(h.releases.calls(.uninstall).count == 1)
        #expect(h.releases.rollbacks.isEmpty)
        #expect(h.releases.revisions(of: target).isEmpty)
        #expect(
            h.chat.posts.last?.title
                == "Recovered llama-3-8b-staging: the stuck first install was removed. Deploy again when ready.")
        #expect(
            await h.store.stateHistory(of: try #require(recovered.operation)) == [
                .planned, .queued, .prechecking, .applying, .succeeded,
            ])
    }

    @Test func anotherHelmRunOnTheReleaseIsReported() async throws {
        let h = Harness()
        h.releases.script(.upgrade, .fail(.operationInProgress))
        let outcome = await h.run("deploy llama-3-8b to staging")
        #expect(
            outcome.message == "Helm reports another operation (install/upgrade/rollback) in progress on this release.")
        #expect(
            h.chat.posts.last?.reply.hint
                == "Wait for it to finish; if nothing is running, the release is stuck: see `/infer status`.")
    }
}
