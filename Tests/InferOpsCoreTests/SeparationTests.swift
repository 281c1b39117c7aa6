import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Environment separation: a command acts only on the environment it names, and an environment
/// with `channels` takes changes only from them.
@Suite(.timeLimit(.minutes(1))) struct SeparationTests {
    static func harness() -> Harness {
        ApprovalTests.harness { $0.environments["production"]!.channels = ["prod-deploys"] }
    }

    @Test func productionTakesChangesOnlyFromItsChannelsAndReadsAnswerEverywhere() async throws {
        let h = Self.harness()

        let elsewhere = await h.run("/infer deploy llama-3-8b to production", channel: "C0OPS")
        #expect(elsewhere.message == "Changes to `production` are taken only in `prod-deploys`, not in `C0OPS`.", "\(elsewhere)")
        #expect(h.chat.transcript.contains("/in prod-deploys"))
        #expect(await h.store.recentOperations(model: nil, environment: "production", limit: 5).isEmpty)
        #expect(await h.store.auditLog().last.map { "\($0.action) \($0.outcome) \($0.environment ?? "")" } == "deploy denied production")

        #expect(await h.run("/infer status in production", channel: "C0OPS").operation == nil)
        #expect(!h.chat.transcript.hasSuffix("not in `C0OPS`."))
        let staging = await h.run("/infer deploy llama-3-8b to staging", channel: "C0OPS")
        #expect(staging.operation != nil, "staging has no channels: any channel may change it")

        let asked = await h.run("/infer deploy llama-3-8b to production", channel: "prod-deploys")
        let id = try #require(asked.operation, "\(asked)")
        #expect(asked == .awaitingApproval(id))
        // The decision is a production change too: taken from production's channel only.
        let approvedElsewhere = await h.run("/infer approve \(id)", as: ApprovalTests.approver, channel: "C0OPS")
        #expect(approvedElsewhere.message?.contains("taken only in `prod-deploys`") == true, "\(approvedElsewhere)")
        #expect(await h.record(id)?.approval?.approvals == [])
        let cancelledElsewhere = await h.run("/infer cancel \(id)", channel: "C0OPS")
        #expect(cancelledElsewhere.message?.contains("taken only in `prod-deploys`") == true)
        #expect(await h.run("/infer approve \(id)", as: ApprovalTests.approver, channel: "prod-deploys") == .completed(id))
        #expect(try await h.waitUntilFinished(id).state == .succeeded)
    }

    @Test func commandsInStagingNeverTouchProductionsReleasesLocksOrApprovals() async throws {
        let h = ApprovalTests.harness()
        // Production waits for approval, with a release of its own running.
        let production = try await ApprovalTests.requestDeploy(h)
        let before = await h.record(production)

        for command in [
            "/infer deploy llama-3-8b to staging", "/infer lock staging --reason drill",
            "/infer rollback llama-3-8b in staging", "/infer remove llama-3-8b from staging",
            "/infer unlock staging",
        ] {
            let outcome = await h.run(command)
            if let id = outcome.operation { _ = try await h.waitUntilFinished(id) }
        }

        let productionTarget = h.target("llama-3-8b", in: "production")
        #expect(h.releases.calls(.upgrade).allSatisfy { $0.target != productionTarget })
        #expect(h.releases.calls(.rollback).allSatisfy { $0.target != productionTarget })
        #expect(h.releases.calls(.uninstall).allSatisfy { $0.target != productionTarget })
        #expect(await h.store.locks().isEmpty)
        #expect(await h.record(production) == before)
        let stagingOperations = await h.store.recentOperations(model: nil, environment: "staging", limit: 20)
        #expect(stagingOperations.count == 3)
        #expect(stagingOperations.allSatisfy { $0.approval == nil && $0.target?.namespace == "inferops-staging" })

        // A lock on production stops production only.
        #expect(await h.run("/infer lock production --reason freeze").operation == nil)
        #expect(await h.store.locks().map(\.environment) == ["production"])
        let stagingDeploy = try #require(await h.run("/infer deploy llama-3-8b to staging").operation)
        #expect(try await h.waitUntilFinished(stagingDeploy).state == .succeeded)
    }
}

/// Registrations: routing commands in staging change staging's registration and router only.
@Suite(.timeLimit(.minutes(1))) struct RegistrationSeparationTests {
    @Test func routingCommandsInStagingLeaveProductionsRegistrationAndRouter() async throws {
        let h = Harness(routers: false, separate: true)
        let routers = try #require(h.fakes.routers)
        let stagingRouter = routers.router(at: h.settings("staging").url)
        let productionRouter = routers.router(at: h.settings("production").url)
        h.serve("llama-3-8b", in: "staging", at: "10.0.0.1")
        h.serve("llama-3-8b", in: "production", at: "10.0.0.2")
        let production = try #require(await h.store.updateRegistration(
            Registration(model: "llama-3-8b", environment: "production", state: .enabled,
                         endpoints: [h.settings("production").workerURL(podIP: "10.0.0.2")], changedBy: Fixtures.admin,
                         changedAt: h.time.now(), reason: nil),
            expectedVersion: nil))
        productionRouter.seed(RouterReconciler.desiredWorkers(production, settings: h.settings("production")))
        let productionWorkers = productionRouter.state.workers

        for command in ["register", "disable", "enable", "deregister"] {
            let outcome = await h.run("/infer \(command) llama-3-8b in staging --reason drill")
            let id = try #require(outcome.operation, "\(command): \(outcome)")
            #expect(try await h.waitUntilFinished(id).state == .succeeded, "\(command)")
        }

        #expect(await h.registration("llama-3-8b", in: "production") == production)
        #expect(await h.registration("llama-3-8b", in: "staging")?.state == .removed)
        #expect(productionRouter.state.workers == productionWorkers)
        #expect(productionRouter.state.changes.isEmpty)
        #expect(stagingRouter.state.changes.count >= 4)
        #expect(stagingRouter.denies("llama-3-8b"))
    }
}
