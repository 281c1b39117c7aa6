import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `/infer promote`: production gets exactly what staging verified (chart version, chart files,
/// model values), with its own values files and replicas, the stricter success criteria, and an
/// approval request that shows the evidence.
@Suite(.timeLimit(.minutes(1))) struct PromotionTests {
    static let promote = "/infer promote llama-3-8b to production"

    /// Production waits for one approval of `promote`; staging warms up with 3 requests and a 3 s
    /// target, production with 1 and a 2 s target.
    static func harness(_ adjust: @escaping (inout Configuration) -> Void = { _ in }) -> Harness {
        ApprovalTests.harness { configuration in
            configuration.environments["staging"]!.verification.warmupRequests = 3
            configuration.environments["production"]!.verification.warmupRequests = 1
            configuration.environments["production"]!.verification.latencyTarget = .seconds(2)
            adjust(&configuration)
        }
    }

    /// Deploys to staging and returns the succeeded operation.
    static func stagingDeploy(_ h: Harness, _ extra: String = "") async throws -> OperationRecord {
        let outcome = await h.run("/infer deploy llama-3-8b to staging" + extra)
        let id = try #require(outcome.operation, "\(outcome)")
        let record = try await h.waitUntilFinished(id)
        try #require(record.state == .succeeded, "\(record.state)")
        return record
    }

    @Test func aPromotionCarriesStagingsChartAndModelValuesToProductionOnceApproved() async throws {
        let h = Self.harness()
        let staging = try await Self.stagingDeploy(h, " --set replicaCount=2 --set engine.maxModelLen=4096")

        let outcome = await h.run(Self.promote)
        let id = try #require(outcome.operation, "\(outcome)")
        #expect(outcome == .awaitingApproval(id))
        let waiting = try #require(await h.record(id))
        #expect(waiting.kind == .promote)
        #expect(PromotionSource.operation(inPlan: waiting.plan) == staging.id)
        let asked = try #require(h.chat.posts(for: id).first { $0.title.hasPrefix("Approval needed") })
        #expect(asked.text.contains("\(staging.id) in staging, plan \(DeployPlan.short(staging.planDigest!))"), "\(asked.text)")
        #expect(asked.text.contains("(same as the source)"))
        #expect(asked.text.contains("3 warm-up requests, test completion within 2.0 s"), "\(asked.text)")

        #expect(await h.run("/infer approve \(waiting.id)", as: ApprovalTests.approver) == .completed(id))
        let record = try await h.waitUntilFinished(id)
        #expect(record.state == .succeeded)

        let stagingValues = try #require(staging.plan?["values"])
        let productionValues = try #require(record.plan?["values"])
        #expect(DeployPlan.modelValuesDigest(of: productionValues) == DeployPlan.modelValuesDigest(of: stagingValues))
        #expect(record.plan?["chartVersionResolved"] == staging.plan?["chartVersionResolved"])
        #expect(record.plan?["chartDigest"] == staging.plan?["chartDigest"])
        #expect(productionValues["engine"]?["maxModelLen"]?.intValue == 4096)
        // What must differ is production's own: its replicas, values files and release.
        #expect(productionValues["replicaCount"]?.intValue == 1)
        #expect(record.plan?["valuesFiles"] == .array([.string("values/production.yaml")]))
        #expect(record.target == h.target("llama-3-8b", in: "production"))
        let upgrade = try #require(h.releases.upgrades.last)
        #expect(upgrade.target == h.target("llama-3-8b", in: "production"))
        // The stricter criteria: staging's 3 warm-up requests, production's 2 s target.
        #expect(record.plan?["successCriteria"]?["warmupRequests"]?.intValue == 3)
        #expect(record.plan?["successCriteria"]?["latencyTargetMs"]?.intValue == 2000)
        #expect(h.engines.state.completionRequests.filter { $0.service == upgrade.target.release }.count == 4)
    }

    @Test func aPromotionWithoutEvidenceIsRefusedSayingWhatIsMissingAndRecordsNothing() async throws {
        let h = Self.harness()
        let never = await h.run(Self.promote)
        #expect(never.message?.contains("has never been deployed to `staging`") == true, "\(never)")
        #expect(h.chat.transcript.contains("Deploy it there and let it verify: `/infer deploy llama-3-8b to staging`"))

        h.releases.script(.upgrade, .fail(.readinessTimeout(detail: "context deadline exceeded")))
        let failedDeploy = try #require(await h.run("/infer deploy llama-3-8b to staging").operation)
        #expect(try await h.waitUntilFinished(failedDeploy).state == .failed)
        let failed = await h.run(Self.promote)
        #expect(failed.message?.contains("has succeeded: the newest") == true, "\(failed)")

        #expect(await h.store.unfinishedOperations().isEmpty)
        #expect(await h.store.recentOperations(model: nil, environment: "production", limit: 10).isEmpty)
        let refusals = await h.store.auditLog().filter { $0.action == "promote" }.map(\.outcome)
        #expect(refusals == ["refused", "refused"])
    }

    @Test func evidenceOlderThanTheWindowIsRefused() async throws {
        let h = Self.harness { $0.environments["production"]!.promotion.evidenceWindow = .seconds(3600) }
        let staging = try await Self.stagingDeploy(h)
        h.time.advance(by: .seconds(2 * 3600))

        let old = await h.run(Self.promote)

        #expect(old.message?.contains("No verified deploy of llama-3-8b in `staging` within the last 1 h") == true, "\(old)")
        #expect(old.message?.contains(staging.id.rawValue) == true)
    }

    @Test func aChartEditedSinceStagingVerifiedItIsRefused() async throws {
        let h = Self.harness()
        _ = try await Self.stagingDeploy(h)
        h.fakes.planContents.edit("charts/vllm-engine", to: "edited")

        let refused = await h.run(Self.promote)

        #expect(refused.message?.contains("changed since") == true, "\(refused)")
        #expect(refused.message?.contains("would not deploy what was proven") == true)
    }

    @Test func aPromotionNamesTwoDifferentEnvironments() async throws {
        let h = Self.harness()
        let same = await h.run("/infer promote llama-3-8b from production to production")
        #expect(same.message?.contains("not from `production` to itself") == true, "\(same)")
        let unknown = await h.run("/infer promote llama-3-8b from stagin to production")
        #expect(unknown.message?.contains("did you mean") == true || unknown.message?.contains("Did you mean") == true, "\(unknown)")
    }

    @Test func theApprovedSourceIsWhatRunsEvenIfStagingMovesOnMeanwhile() async throws {
        let h = Self.harness()
        let first = try await Self.stagingDeploy(h)
        let id = try #require(await h.run(Self.promote).operation)
        // A newer staging deploy with other values while production waits for its approval.
        _ = try await Self.stagingDeploy(h, " --set engine.maxModelLen=2048")

        #expect(await h.run("/infer approve \(id)", as: ApprovalTests.approver) == .completed(id))
        let record = try await h.waitUntilFinished(id)

        #expect(record.state == .succeeded)
        #expect(PromotionSource.operation(inPlan: record.plan) == first.id)
        #expect(record.plan?["values"]?["engine"]?["maxModelLen"] == nil)
    }
}
