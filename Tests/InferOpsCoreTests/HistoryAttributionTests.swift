import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `/infer history` names the operation behind every revision InferOps made, failed ones included.
@Suite(.timeLimit(.minutes(1))) struct HistoryAttributionTests {
    /// What Helm writes as the description of a failed revision: its raw error, over several lines.
    static let helmError = """
        timed out waiting for the condition
          Deployment/llama-3-8b-production: 0 of 1 replicas ready
          env HF_TOKEN token: plainSecretValue42 was rejected
        """ + String(repeating: " and more detail", count: 20)

    @Test func aFailedDeployAndItsAutomaticRollbackAreBothAttributed() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "production"), [.deployed])
        h.releases.script(.upgrade, .fail(.readinessTimeout(detail: Self.helmError)))

        let deploy = await h.run("deploy llama-3-8b to production", as: Fixtures.admin)
        let id = try #require(deploy.operation)
        #expect(await h.record(id)?.state == .rolledBack)
        #expect(await h.record(id)?.revisions == [2, 3])

        #expect(await h.run("history llama-3-8b in production", as: Fixtures.viewer) == .completed(nil))
        let rows = try #require(h.chat.posts.last?.reply.table?.rows).map { $0.map(\.plainText) }
        #expect(rows.map { $0[0] } == ["3", "2", "1"])
        #expect(rows.map { $0[3] } == ["@U0ADMIN", "@U0ADMIN", "(outside InferOps)"])
        #expect(rows.map { $0[4] } == ["deploy \(id)", "deploy \(id)", ""])
        #expect(rows[0][6] == "Rollback to 1")
        // The failed revision's description: one line, short, with the secret taken out.
        let description = rows[1][6]
        #expect(description.hasPrefix("Upgrade \"llama-3-8b-production\" failed: The engine did not become ready"))
        #expect(!description.contains("\n") && description.count <= 120, "\(description)")
        #expect(description.hasSuffix("…"))
        #expect(!h.chat.transcript.contains("plainSecretValue42"))
    }

    @Test func aFailedDeployWithoutRollbackAndAFailedRollbackAreAttributed() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.superseded, .deployed])
        h.releases.script(.upgrade, .fail(.rolloutFailed(detail: "progress deadline exceeded")))
        let deploy = try #require(await h.run("deploy llama-3-8b to staging").operation)
        h.releases.script(.rollback, .fail(.readinessTimeout(detail: "still not ready")))
        let rollback = try #require(await h.run("rollback llama-3-8b in staging --to 1").operation)
        #expect(await h.record(deploy)?.revisions == [3])
        #expect(await h.record(rollback)?.revisions == [4])

        #expect(await h.run("history llama-3-8b in staging") == .completed(nil))
        let rows = try #require(h.chat.posts.last?.reply.table?.rows).map { $0.map(\.plainText) }
        #expect(rows.map { $0[0] } == ["4", "3", "2", "1"])
        #expect(rows.map { $0[1] } == ["failed", "failed", "deployed", "superseded"])
        #expect(rows.map { $0[4] } == ["rollback \(rollback)", "deploy \(deploy)", "", ""])
    }

    @Test func aCancelledDeploysFailedRevisionIsAttributed() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        let gate = Gate()
        h.releases.script(.upgrade, .hold(gate))
        let deploy = h.start("deploy llama-3-8b to staging")
        try await gate.waitUntilReached()
        let id = try await h.operation(titled: "Deploy llama-3-8b to staging")
        #expect(await h.run("cancel \(id)") == .completed(id))
        #expect(await deploy.value == .failed(id, "cancelled"))
        #expect(await h.record(id)?.revisions == [2])
        #expect(await h.run("history llama-3-8b in staging") == .completed(nil))
        let rows = try #require(h.chat.posts.last?.reply.table?.rows).map { $0.map(\.plainText) }
        #expect(rows.map { $0[1] } == ["failed", "deployed"])
        #expect(rows.map { $0[4] } == ["deploy \(id)", ""])
    }

    @Test func aDeployThatFailsBeforeHelmWritesARevisionClaimsNone() async throws {
        let h = Harness()
        h.releases.seed(h.target("llama-3-8b", in: "staging"), [.deployed])
        // A chart error: Helm stops before it records a revision.
        h.releases.script(.upgrade, .fail(.chartError(detail: "template: bad")))
        let deploy = try #require(await h.run("deploy llama-3-8b to staging").operation)
        #expect(await h.record(deploy)?.revisions == [])
        #expect(await h.run("history llama-3-8b in staging") == .completed(nil))
        #expect(h.chat.posts.last?.reply.table?.rows.map { $0[3].plainText } == ["(outside InferOps)"])
    }
}
