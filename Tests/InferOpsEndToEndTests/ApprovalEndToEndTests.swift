import Foundation
import InferOpsTestSupport
import Testing

/// A change that waits for a second person, through `inferops exec` against the Kubernetes emulator
/// and the real helm: recorded and left waiting (exit 3), refused to its requester, run by an
/// approver's `exec` with no daemon serving.
@Suite("End to end", .serialized)
struct ApprovalEndToEndTests {
    @Test("A deploy waits for approval, is refused to its requester, and runs when someone else approves it")
    func approvedByAnother() throws {
        let sandbox = try Sandbox(helm: .helm4)
        sandbox.extraEnvironment = "approval: {verbs: [deploy, rollback]}"
        try sandbox.writeConfiguration()

        let asked = try sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(asked.status == 3, "\(asked.output)")
        #expect(asked.output.contains("Approval needed: deploy in staging"), "\(asked.output)")
        #expect(asked.output.contains("[Approve] /infer approve op-"))
        let id = try #require(asked.output.firstMatch(of: /\[(op-[0-9a-f]{8})\]/)?.1).description
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging") == nil)

        let own = try sandbox.exec("/infer approve \(id)")
        #expect(own.status == 2, "\(own.output)")
        #expect(own.output.contains("asked for \(id), so someone else must approve it"), "\(own.output)")
        let notApprover = try sandbox.exec("/infer approve \(id)", as: "bob")
        #expect(notApprover.status == 2, "\(notApprover.output)")

        let approved = try sandbox.exec("/infer approve \(id) --reason \"plan checked\"", as: "carol")
        #expect(approved.status == 0, "\(approved.output)")
        #expect(approved.output.contains("Approved by @carol: plan checked (1 of 1). It runs now."), "\(approved.output)")
        #expect(approved.output.contains("Deployed llama-3-8b to staging: revision 1"), "\(approved.output)")
        #expect(try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed")

        let audit = try sandbox.auditLines().map { "\($0["actor"] as? String ?? "") \($0["action"] as? String ?? "") \($0["outcome"] as? String ?? "")" }
        #expect(audit == [
            "alice deploy approval-requested", "alice approve refused", "bob approve denied", "carol approve counted",
            "alice deploy succeeded",
        ], "\(audit)")
    }

    @Test("With a daemon serving, an approval given through exec still leads to the operation running")
    func approvedWhileADaemonServes() throws {
        let sandbox = try Sandbox(helm: .helm4)
        sandbox.extraEnvironment = "approval: {verbs: [deploy]}"
        try sandbox.writeConfiguration()
        let daemon = try InferOpsDaemon.serve(config: sandbox.config)
        defer {
            daemon.closeInput()
            _ = daemon.waitForExit()
        }
        _ = try daemon.waitForLineBlocking(within: .seconds(30)) { $0.contains("InferOps console") }

        let asked = try sandbox.exec("/infer deploy llama-3-8b to staging")
        #expect(asked.status == 3, "\(asked.output)")
        let id = try #require(asked.output.firstMatch(of: /\[(op-[0-9a-f]{8})\]/)?.1).description

        let approved = try sandbox.exec("/infer approve \(id)", as: "carol")
        #expect(approved.status == 0, "\(approved.output)")
        // Whichever process claims it first runs it: this `exec`, or the serving daemon's next round.
        try eventually("the release deployed by \(id)") {
            try sandbox.releaseState("llama-3-8b-staging", namespace: "inference-staging")?.status == "deployed"
        }
        try eventually("\(id) recorded as succeeded") {
            try sandbox.auditLines().contains { $0["operation"] as? String == id && $0["outcome"] as? String == "succeeded" }
        }
    }
}
