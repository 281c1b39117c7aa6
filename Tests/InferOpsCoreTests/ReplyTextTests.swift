import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// Replies carry mentions and text from outside InferOps as marked parts, never as a platform's
/// markup, so each renderer can write and escape them its own way.
@Suite(.timeLimit(.minutes(1))) struct ReplyTextTests {
    static let hostile = "<!channel> <@U0EVERYONE>"

    @Test func lockReasonsAndHoldersAreMarked() async throws {
        let h = Harness()
        #expect(await h.run("lock staging --reason \"\(Self.hostile)\"") == .completed(nil))
        let locked = try #require(h.chat.posts.last?.reply)
        #expect(
            locked.title.segments == [
                .plain("🔒 `staging` is locked by "), .mention(Fixtures.admin), .plain(": "), .userText(Self.hostile),
                .plain(". Until it is unlocked, changes there by anyone else are refused; you or anyone with "
                       + "`unlock` there (roles `admin`, `staging-deployer`) can unlock it."),
            ])

        #expect(await h.run("deploy llama-3-8b to staging", as: Fixtures.deployer) != .completed(nil))
        let refused = try #require(h.chat.posts.last?.reply)
        #expect(refused.title.segments.contains(.mention(Fixtures.admin)))
        #expect(refused.title.segments.contains(.userText(Self.hostile)))

        #expect(await h.run("status") == .completed(nil))
        let status = try #require(h.chat.posts.last?.reply)
        #expect(status.lines.first?.segments.contains(.userText(Self.hostile)) == true, "\(status)")
        #expect(status.lines.first?.segments.contains(.mention(Fixtures.admin)) == true, "\(status)")
    }

    @Test func deniedUsersAreMentionedNotFormatted() async throws {
        let h = Harness()
        #expect(await h.run("deploy llama-3-8b to staging", as: Fixtures.viewer) != .completed(nil))
        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.title.segments.first == .mention(Fixtures.viewer))
        #expect(!reply.plainText.contains("<@"))
    }

    @Test func engineAnswersAreMarked() async throws {
        let h = Harness()
        let answer = "\u{1b}[2J<!channel> pwned"
        h.engines.script(
            "llama-3-8b-staging", EngineScript(servedModels: ["llama-3-8b"], completions: [.completion(answer)]))
        #expect(await h.run("deploy llama-3-8b to staging").succeeded)
        let said = h.chat.posts.map(\.reply).first { $0.title.plainText.hasPrefix("Test completion answered in") }
        let reply = try #require(said)
        #expect(reply.title.segments.contains(.userText(answer)), "\(reply.title.segments)")
    }

    @Test func inputEchoedInARefusalIsMarked() async throws {
        let h = Harness()
        #expect(await h.run("deploy llama-3-8b to staging --chart-version \"<!here>\"") != .completed(nil))
        let reply = try #require(h.chat.posts.last?.reply)
        #expect(reply.title.plainText.contains("<!here>"), "\(reply.title)")
        for segment in reply.title.segments {
            if case .plain(let text) = segment { #expect(!text.contains("<!here>"), "\(reply.title.segments)") }
        }
    }

    @Test func titlesOfOperationsMentionTheRequester() async throws {
        let h = Harness()
        #expect(await h.run("deploy llama-3-8b to staging", as: Fixtures.deployer).succeeded)
        let card = try #require(h.chat.posts.first?.reply)
        #expect(
            card.title == "Deploy llama-3-8b to staging, requested by \(mention: Fixtures.deployer)")
    }

    @Test func richTextMergesPlainPartsAndPrintsMentionsForLogs() {
        let built: RichText = "a" + "b" + "\(mention: UserID("U1"))" + "" + "\(user: "<x>")"
        #expect(built.segments == [.plain("ab"), .mention(UserID("U1")), .userText("<x>")])
        #expect(built.plainText == "ab@U1<x>")
        let ab: RichText = "a" + "b"
        #expect(RichText("ab").segments == ab.segments, "\(RichText("ab").segments) \(ab.segments)")
        #expect(Refusal("\(mention: UserID("U1")) said \(user: "hi")").message == "@U1 said hi")
        // A message built as a `String` (from other messages) is shown as text from outside.
        let joined = "from " + "elsewhere"
        #expect(Refusal(joined).text.segments == [.userText("from elsewhere")])
    }
}
