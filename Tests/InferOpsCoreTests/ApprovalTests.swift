import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Production changes wait for a second person: each rule of DESIGN §3's approval, on the intake
/// and the runner with fakes.
@Suite(.timeLimit(.minutes(1))) struct ApprovalTests {
    static let approver = UserID("U0APPROVER")
    static let secondApprover = UserID("U0APPROVER2")
    static let deploy = "/infer deploy llama-3-8b to production"

    /// Production asks for `approvals` approvals of the default verbs; two people may approve there.
    static func harness(approvals: Int = 1, validFor: Duration = .seconds(30 * 60),
                        _ adjust: @escaping (inout Configuration) -> Void = { _ in }) -> Harness {
        Harness { configuration in
            defer { adjust(&configuration) }
            configuration.environments["production"]!.approval =
                ApprovalPolicy(verbs: ApprovalPolicy.productionVerbs, approvals: approvals, validFor: validFor)
            configuration.policy.roles.append(Policy.Role(
                name: "production-approver", members: [approver.rawValue, secondApprover.rawValue],
                grants: [Policy.Grant(permissions: ["approve", "view"], environments: ["production"])]))
        }
    }

    /// Asks for the deploy and returns its id, once it waits for approval.
    static func requestDeploy(_ h: Harness, as user: UserID = Fixtures.admin) async throws -> OperationID {
        let outcome = await h.run(deploy, as: user)
        let id = try #require(outcome.operation, "\(outcome)")
        try await h.waitUntil(id, is: .awaitingApproval)
        return id
    }

    func audit(_ h: Harness, _ id: OperationID) async -> [String] {
        await h.store.auditLog().filter { $0.operation == id || $0.subject == id.rawValue }
            .map { "\($0.actor.rawValue) \($0.action) \($0.outcome)" }
    }

    @Test func aProductionDeployWaitsWithARequestThenRunsOnceApproved() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)

        let waiting = try #require(await h.record(id))
        #expect(waiting.owner == nil)
        let request = try #require(waiting.approval)
        #expect(request.digest == waiting.planDigest)
        #expect(request.required == 1)
        #expect(request.expiresAt == waiting.createdAt.addingTimeInterval(30 * 60))
        #expect(h.releases.changingCalls.isEmpty)
        let asked = try #require(h.chat.posts(for: id).first { $0.title.hasPrefix("Approval needed") })
        #expect(asked.conversation.thread == waiting.card?.id)
        #expect(asked.reply.actions.map(\.name) == ["approve", "deny"])
        #expect(asked.reply.actions.allSatisfy { $0.value == request.digest })
        #expect(asked.text.contains(request.digest))
        #expect(asked.text.contains("vllm/vllm-openai:v0.6.3"))
        #expect(asked.text.contains("meta-llama/Meta-Llama-3-8B-Instruct@main"))

        let outcome = await h.run("/infer approve \(id) --reason \"looked at the plan\"", as: Self.approver)
        #expect(outcome == .completed(id))
        let record = try await h.waitUntilFinished(id)
        #expect(record.state == .succeeded)
        #expect(record.approval?.approvals.map(\.by) == [Self.approver])
        #expect(h.releases.calls(.upgrade).count == 1)
        #expect(containsInOrder(h.thread(id), prefixes: ["Approval needed", "Approved by", "Queued"]))
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
        #expect(containsInOrder(await audit(h, id), [
            "U0ADMIN deploy approval-requested", "U0APPROVER approve counted", "U0ADMIN deploy succeeded",
        ], by: ==))
    }

    @Test func anApproverMayNameTheModelAndEnvironmentWhenOneOperationWaitsThere() async throws {
        let h = Self.harness()
        let none = await h.run("/infer approve llama-3-8b in production", as: Self.approver)
        #expect(none.message == "Nothing on llama-3-8b waits for approval in `production`.", "\(none)")
        let bad = await h.run("/infer approve op-xyz", as: Self.approver)
        #expect(bad.message == "`op-xyz` is not an operation id (they look like `op-1a2b3c4d`).")

        let first = try await Self.requestDeploy(h)
        let second = try await Self.requestDeploy(h)
        let two = await h.run("/infer approve llama-3-8b in production", as: Self.approver)
        #expect(two.message?.hasPrefix("2 operations on llama-3-8b wait for approval in `production`") == true, "\(two)")
        #expect(await h.run("/infer deny \(second)", as: Self.approver) == .completed(second))

        #expect(await h.run("/infer approve llama-3-8b in production", as: Self.approver) == .completed(first))
        #expect(try await h.waitUntilFinished(first).state == .succeeded)
        #expect(await audit(h, first).contains("U0APPROVER approve counted"))
    }

    @Test func theRequestShowsWhatRunsAndTheValuesDiffWithSecretsRedacted() async throws {
        let h = Self.harness { configuration in
            configuration.environments["production"]!.approval = ApprovalPolicy(verbs: ["deploy"])
            configuration.environments["production"]!.allowedSetKeys = ["replicaCount", "engine.apiKey"]
        }
        let first = try await Self.requestDeploy(h)
        #expect(await h.run("/infer approve \(first)", as: Self.approver) == .completed(first))
        _ = try await h.waitUntilFinished(first)

        let second = try #require(await h.run(Self.deploy + " --set replicaCount=2 --set engine.apiKey=zz-s3cr3t-value-42").operation)
        let asked = try #require(h.chat.posts(for: second).first { $0.title.hasPrefix("Approval needed") })

        #expect(asked.text.contains("running now: revision 1 (deployed), chart vllm-engine-0.1.0"), "\(asked.text)")
        #expect(asked.text.contains("Values against the last successful deploy here (\(first)):"), "\(asked.text)")
        #expect(asked.reply.lines.map(\.plainText).contains("  replicaCount: 1 → 2"), "\(asked.reply.lines)")
        let added = try #require(asked.reply.lines.map(\.plainText).first { $0.contains("+ engine.apiKey") })
        #expect(!added.contains("zz-s3cr3t-value-42"), "\(added)")
    }

    @Test func theRequesterCannotApproveTheirOwnOperation() async throws {
        let h = Self.harness()
        // The approver asks: even holding `approve`, they may not approve themselves.
        let outcome = await h.run("/infer rollback llama-3-8b in production", as: Self.approver)
        #expect(outcome.message?.contains("may not") == true, "\(outcome)")  // no rollback permission
        let id = try await Self.requestDeploy(h)

        let refused = await h.run("/infer approve \(id)", as: Fixtures.admin)

        #expect(refused.message?.contains("asked for \(id), so someone else must approve it") == true, "\(refused)")
        #expect(await h.record(id)?.state == .awaitingApproval)
        #expect(await h.record(id)?.approval?.approvals == [])
        #expect(await audit(h, id).contains("U0ADMIN approve refused"))
    }

    @Test func anApproverMustHoldApproveInTheEnvironment() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)

        // The releaser may disable in production, the deployer may view it: neither may approve.
        for user in [Fixtures.releaser, Fixtures.deployer] {
            let outcome = await h.run("/infer approve \(id)", as: user)
            #expect(outcome.message?.contains("the permission `approve` on `production` is missing") == true, "\(outcome)")
        }
        #expect(await h.record(id)?.state == .awaitingApproval)
        #expect(await h.record(id)?.approval?.approvals == [])
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func twoApprovalsFromDifferentPeopleAreNeededAndOnePersonCountsOnce() async throws {
        let h = Self.harness(approvals: 2)
        let id = try await Self.requestDeploy(h)

        #expect(await h.run("/infer approve \(id)", as: Self.approver) == .completed(id))
        let twice = await h.run("/infer approve \(id)", as: Self.approver)
        #expect(twice.message?.contains("already approved") == true, "\(twice)")
        #expect(await h.record(id)?.state == .awaitingApproval)
        #expect(await h.record(id)?.approval?.approvals.count == 1)
        #expect(h.releases.changingCalls.isEmpty)

        let second = await h.run("/infer approve \(id)", as: Self.secondApprover)
        #expect(second == .completed(id), "\(second) \(h.thread(id))")
        let record = try await h.waitUntilFinished(id)
        #expect(record.state == .succeeded)
        #expect(record.approval?.approvals.map(\.by) == [Self.approver, Self.secondApprover])
    }

    @Test func anExpiredRequestSaysSoAndNothingRuns() async throws {
        let h = Self.harness(validFor: .seconds(600))
        let id = try await Self.requestDeploy(h)

        h.time.advance(by: .seconds(601))
        let late = await h.run("/infer approve \(id)", as: Self.approver)

        #expect(late.message?.contains("expired") == true, "\(late)")
        try await h.waitUntil(id, is: .expired)
        #expect(h.thread(id).contains { $0.hasPrefix("Expired: 0 of 1 approvals came within 10 min") })
        #expect(await h.run("/infer approve \(id)", as: Self.approver).message?.contains("has already ended: expired") == true)
        #expect(h.releases.changingCalls.isEmpty)
        #expect(await audit(h, id).contains("U0APPROVER approve refused"))
    }

    @Test func theRunnerExpiresARequestNobodyAnswers() async throws {
        let h = Self.harness(validFor: .seconds(60))
        let id = try await Self.requestDeploy(h)

        h.time.advance(by: .seconds(61))

        try await h.waitUntil(id, is: .expired)
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func aDeniedOperationNeverRuns() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)

        #expect(await h.run("/infer deny \(id) --reason \"launch freeze\"", as: Self.approver) == .completed(id))

        #expect(await h.record(id)?.state == .denied)
        #expect(h.thread(id).contains { $0.hasPrefix("Denied by @U0APPROVER: launch freeze. It will not run.") })
        let after = await h.run("/infer approve \(id)", as: Self.secondApprover)
        #expect(after.message?.contains("has already ended: denied") == true, "\(after)")
        #expect(h.releases.changingCalls.isEmpty)
        #expect(containsInOrder(await audit(h, id), ["U0ADMIN deploy denied", "U0APPROVER deny succeeded",
                                                     "U0APPROVER2 approve refused"], by: ==))
    }

    @Test func aCancelledRequestCanNeverRunLater() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)

        _ = await h.run("/infer cancel \(id)", as: Fixtures.admin)
        try await h.waitUntil(id, is: .cancelled)

        let after = await h.run("/infer approve \(id)", as: Self.approver)
        #expect(after.message?.contains("has already ended: cancelled") == true, "\(after)")
        #expect(h.releases.changingCalls.isEmpty)
    }

    @Test func buttonsTakeTheSamePathAndForgedOrReplayedDecisionsAreRefused() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)
        let digest = try #require(await h.record(id)?.approval?.digest)
        func press(_ name: String, _ operation: OperationID, _ value: String, event: String, as user: UserID = Self.approver)
            async -> Intake.Acknowledgement
        {
            await h.daemon.intake.accept(ChatEvent(
                id: event, kind: .action(ChatAction(name: name, operation: operation, value: value)), user: user,
                channel: "C0OPS"))
        }

        let forged = await press("approve", id, "sha256:" + String(repeating: "0", count: 64), event: "e1")
        #expect(forged == .answered(.refused(
            "That approve was for plan 000000000000, but \(id) now waits for plan \(String(digest.dropFirst(7).prefix(12))).")))
        let wrongOperation = await press("approve", OperationID("op-nothere"), digest, event: "e2")
        #expect(wrongOperation.refusal?.contains("may not") == true || wrongOperation.refusal?.contains("no operation") == true)
        let notAnApprover = await press("approve", id, digest, event: "e3", as: Fixtures.deployer)
        #expect(notAnApprover.refusal?.contains("the permission `approve` on `production` is missing") == true)
        #expect(await h.record(id)?.approval?.approvals == [])

        #expect(await press("approve", id, digest, event: "e4") == .answered(.completed(id)))
        #expect(await press("approve", id, digest, event: "e4") == .duplicate)
        let record = try await h.waitUntilFinished(id)
        #expect(record.state == .succeeded)
        let again = await press("approve", id, digest, event: "e5", as: Self.secondApprover)
        #expect(again.refusal?.contains("has already ended: succeeded") == true)
        #expect(h.releases.calls(.upgrade).count == 1)
    }

    @Test func aWaitingOperationSurvivesARestartWithItsExpiry() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)
        let before = try #require(await h.record(id)?.approval)
        await h.daemon.stop()

        let next = h.anotherDaemon()
        #expect(await h.record(id)?.state == .awaitingApproval)
        #expect(await h.record(id)?.approval == before)
        let outcome = await next.handle(IncomingCommand(user: Self.approver, text: "/infer approve \(id)", channel: "C0OPS"))
        #expect(outcome == .completed(id))
        let record = try await h.waitUntilFinished(id, by: next)
        #expect(record.state == .succeeded)
        await next.stop()
    }

    @Test func stagingNeedsNoApprovalAndProductionReadsNeedNone() async throws {
        let h = Self.harness()
        let staged = await h.run("/infer deploy llama-3-8b to staging")
        #expect(try await h.waitUntilFinished(#require(staged.operation)).state == .succeeded)
        #expect(await h.run("/infer status llama-3-8b in production") == .completed(nil))
    }

    @Test func aPlanWhoseValuesFileChangedAfterApprovalAsksAgainAndAppliesNothing() async throws {
        let h = Self.harness()
        let id = try await Self.requestDeploy(h)
        let approvedDigest = try #require(await h.record(id)?.approval?.digest)
        // Someone edits production's values file between the approval and the run.
        h.fakes.planContents.edit("values/production.yaml", to: "replicas doubled")

        let outcome = await h.run("/infer approve \(id)", as: Self.approver)

        #expect(outcome == .awaitingApproval(id), "\(outcome)")
        let waiting = try #require(await h.record(id))
        #expect(waiting.state == .awaitingApproval)
        #expect(waiting.owner == nil)
        let request = try #require(waiting.approval)
        #expect(request.digest != approvedDigest)
        #expect(request.digest == waiting.planDigest)
        #expect(request.approvals == [])
        #expect(h.releases.changingCalls.isEmpty)
        #expect(containsInOrder(h.thread(id), prefixes: [
            "Approval needed", "Approved by", "The plan changed after it was approved", "Approval needed",
        ]))
        // The old approval's button is refused; the new plan runs once approved.
        let stale = await h.daemon.intake.accept(ChatEvent(
            id: "e-stale", kind: .action(ChatAction(name: "approve", operation: id, value: approvedDigest)),
            user: Self.secondApprover, channel: "C0OPS"))
        #expect(stale.refusal?.contains("now waits for plan") == true, "\(stale)")
        let second = await h.run("/infer approve \(id)", as: Self.secondApprover)
        #expect(second == .completed(id), "\(second) \(h.thread(id))")
        #expect(await h.record(id)?.state == .succeeded)
        #expect(illegalMoves(await h.store.stateHistory(of: id)) == [])
    }

    @Test func theDigestCoversTheChartAndValuesFilesContents() throws {
        var plan = try DeployPlanner.plan(
            model: Fixtures.llama, environment: Fixtures.settings("production"), chartVersion: nil, overrides: [])
        plan.contents = PlanContents(chartVersion: "0.1.0", chartDigest: "sha256:chart", valuesDigests: ["sha256:values"])
        let digest = plan.digest
        var edited = plan
        edited.contents?.valuesDigests = ["sha256:other values"]
        #expect(edited.digest != digest)
        edited = plan
        edited.contents?.chartDigest = "sha256:other chart"
        #expect(edited.digest != digest)
        edited = plan
        edited.contents?.chartVersion = "0.2.0"
        #expect(edited.digest != digest)
    }

    @Test func theDefaultAsksForProductionsChangingVerbsOnly() {
        let production = ApprovalPolicy.defaultPolicy(forEnvironment: "production")
        #expect(production.verbs == ["deploy", "promote", "rollback", "remove", "register", "deregister", "enable", "disable"])
        #expect(production.approvals == 1)
        #expect(production.validFor == .seconds(1800))
        #expect(ApprovalPolicy.defaultPolicy(forEnvironment: "staging").verbs.isEmpty)
    }
}

extension Intake.Acknowledgement {
    /// The refusal's message, when the event was answered with one.
    var refusal: String? {
        if case .answered(.refused(let message)) = self { return message }
        return nil
    }
}
