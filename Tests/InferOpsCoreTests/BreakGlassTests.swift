import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// The emergency path: `rollback --break-glass` in production runs without a second approver, only
/// for the break-glass role, only with a reason, announced in the incident channel and audited.
@Suite(.timeLimit(.minutes(1))) struct BreakGlassTests {
    static let onCall = UserID("U0ONCALL")
    static let rollback = "/infer rollback llama-3-8b in production --break-glass --reason \"INC-4711: revision 2 answers garbage\""

    /// Production waits for approval of rollbacks; the on-call role may roll back and break the glass.
    static func harness() -> Harness {
        let h = ApprovalTests.harness { configuration in
            configuration.policy.roles.append(Policy.Role(
                name: "on-call", members: [onCall.rawValue],
                grants: [Policy.Grant(permissions: ["rollback", "view"], environments: ["production"])]))
            configuration.environments["production"]!.breakGlass = BreakGlassSettings(role: "on-call", channel: "incidents")
        }
        h.releases.seed(h.target("llama-3-8b", in: "production"), [.superseded, .deployed])
        return h
    }

    @Test func theOnCallRoleRollsBackWithoutApprovalAnnouncedAndAudited() async throws {
        let h = Self.harness()

        let outcome = await h.run(Self.rollback, as: Self.onCall)

        let id = try #require(outcome.operation, "\(outcome)")
        let record = try await h.waitUntilFinished(id)
        #expect(record.state == .succeeded)
        #expect(record.approval == nil)
        #expect(h.releases.calls(.rollback).count == 1)
        let notice = try #require(h.chat.posts.first { $0.conversation.channel == "incidents" })
        #expect(notice.title.contains("Break glass in production"))
        #expect(notice.title.contains("INC-4711: revision 2 answers garbage"))
        #expect(notice.text.contains("Review requested"))
        #expect(notice.text.contains(id.rawValue))
        #expect(h.chat.posts(for: id).first?.title.hasPrefix("🚨 Break glass: Roll back llama-3-8b in production") == true)
        let audit = await h.store.auditLog().filter { $0.operation == id }
        #expect(audit.first.map { "\($0.action) \($0.outcome) \($0.detail ?? "")" }
                == "rollback break-glass INC-4711: revision 2 answers garbage")
    }

    @Test func withoutAReasonItIsRefused() async throws {
        let h = Self.harness()
        let outcome = await h.run("/infer rollback llama-3-8b in production --break-glass", as: Self.onCall)
        #expect(outcome.message == "Breaking the glass needs a reason: it goes to the audit log and the review request.")
        #expect(await h.store.recentOperations(model: nil, environment: nil, limit: 5).isEmpty)
    }

    @Test func onlyTheBreakGlassRoleMayAndOnlyWhereItIsConfigured() async throws {
        let h = Self.harness()
        // The admin holds every permission, but is not on call.
        let admin = await h.run(Self.rollback, as: Fixtures.admin)
        #expect(admin.message == "@U0ADMIN may not break the glass in `production`: only the role `on-call` may.", "\(admin)")
        let staging = await h.run("/infer rollback llama-3-8b in staging --break-glass --reason drill", as: Fixtures.deployer)
        #expect(staging.message?.contains("`staging` has no break-glass path") == true, "\(staging)")
        #expect(await h.store.recentOperations(model: nil, environment: nil, limit: 5).isEmpty)
        #expect(await h.store.auditLog().map(\.outcome) == ["denied", "denied"])
        #expect(!h.chat.posts.contains { $0.conversation.channel == "incidents" })
        // Only rollback has the flag.
        let deploy = await h.run("/infer deploy llama-3-8b to production --break-glass", as: Self.onCall)
        #expect(deploy.message?.contains("has no option `--break-glass`") == true, "\(deploy)")
    }

    @Test func withoutTheFlagTheOnCallRollbackWaitsForApprovalLikeAnyOther() async throws {
        let h = Self.harness()
        let outcome = await h.run("/infer rollback llama-3-8b in production --reason slow", as: Self.onCall)
        let id = try #require(outcome.operation)
        #expect(outcome == .awaitingApproval(id))
    }

    /// The authorization matrix for breaking the glass: every role's member, in every environment.
    @Test(arguments: [
        (Fixtures.admin, false), (Fixtures.deployer, false), (Fixtures.releaser, false), (Fixtures.viewer, false),
        (onCall, true),
    ])
    func onlyTheOnCallMemberMayBreakTheGlassAndOnlyInProduction(user: UserID, mayInProduction: Bool) async throws {
        let h = Self.harness()
        for environment in ["dev", "staging", "production"] {
            let outcome = await h.run("/infer rollback llama-3-8b in \(environment) --break-glass --reason drill", as: user)
            if let id = outcome.operation { _ = try await h.waitUntilFinished(id) }
            #expect((outcome.operation != nil) == (mayInProduction && environment == "production"), "\(user) in \(environment): \(outcome)")
        }
    }
}
