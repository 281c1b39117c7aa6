import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Every audit row says where its command came from: the channel always, and for the console and
/// `inferops exec` the operating-system account the adapter found (the core never looks it up).
@Suite(.timeLimit(.minutes(1))) struct AuditOriginTests {
    @Test func consoleRowsCarryTheChannelAndTheOperatingSystemUser() async throws {
        let h = Harness()
        let daemon = h.daemon
        func run(_ text: String, as user: UserID = Fixtures.admin) async -> CommandOutcome {
            await daemon.handle(IncomingCommand(user: user, text: text, channel: "console", osUser: "carol"))
        }

        #expect(await run("lock staging --reason maintenance") == .completed(nil))
        #expect(await run("deploy llama-3-8b to production", as: Fixtures.viewer) != .completed(nil))
        #expect(await run("unlock staging") == .completed(nil))
        #expect(await run("deploy llama-3-8b to staging").succeeded)

        let audit = await h.store.auditLog()
        #expect(audit.map(\.outcome) == ["succeeded", "denied", "succeeded", "accepted", "succeeded"])
        // The operation's final row is written by its own task; it carries the same origin.
        #expect(audit.allSatisfy { $0.channel == "console" && $0.osUser == "carol" }, "\(audit)")
    }

    @Test func chatRowsCarryTheChannelAndNoOperatingSystemUser() async throws {
        let h = Harness()
        #expect(await h.run("deploy llama-3-8b to staging", channel: "C0DEPLOYS").succeeded)
        let audit = await h.store.auditLog()
        #expect(audit.map(\.outcome) == ["accepted", "succeeded"])
        #expect(audit.allSatisfy { $0.channel == "C0DEPLOYS" && $0.osUser == nil }, "\(audit)")
    }
}
