import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsSlack
import InferOpsTestSupport
import Logging
import Testing

/// The Slack transport against the emulator: threads, ephemeral refusals, card edits, and order
/// kept through a storm of 429s.
@Suite struct SlackChatTests {
    struct Posted {
        var kind: String
        var text: String
        var thread: String?
        var ts: String?
        var user: String?
    }

    static func posts(_ slack: SlackEmulator, query: String = "") throws -> [Posted] {
        let json = try JSONValue(parsing: slack.control("GET", "posts" + query).body)
        guard case .array(let list)? = json["posts"] else { return [] }
        return list.map {
            Posted(kind: $0["kind"]?.stringValue ?? "", text: $0["text"]?.stringValue ?? "",
                   thread: $0["thread_ts"]?.stringValue, ts: $0["ts"]?.stringValue, user: $0["user"]?.stringValue)
        }
    }

    static func chat(_ slack: SlackEmulator, _ http: CurlHTTPClient) -> SlackChat {
        SlackChat(
            api: SlackWebAPI(http: http, token: Secret(SlackEmulator.botToken),
                             settings: .init(baseURL: slack.url + "/api/", attempts: 20)),
            logger: Logger(label: "test.slack-chat"), connected: { true })
    }

    @Test func aThreadAnEphemeralRefusalAndACardEdit() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let http = try CurlHTTPClient()
        let chat = Self.chat(slack, http)
        let operation = OperationID("op-00000001")
        let card = try await chat.post(Reply(.progress, "deploy of llama-3-8b to staging"), in: Conversation(channel: "C0DEPLOY01"),
                                       operation: operation)
        #expect(card.thread == nil && card.threadRoot == card.id)
        let step = try await chat.post(Reply(.progress, "Applying"), in: Conversation(channel: "C0DEPLOY01", thread: card.threadRoot),
                                       operation: operation)
        #expect(step.thread == card.id && step.threadRoot == card.id)
        try await chat.update(card, with: Reply(.success, "deploy done"), operation: operation)
        var refusal = Reply(.failure, "bob may not deploy to production.")
        refusal.privateTo = UserID("U0BOB0001")
        let ephemeral = try await chat.post(refusal, in: Conversation(channel: "C0DEPLOY01"), operation: nil)
        // An ephemeral message cannot be edited; an update of it does nothing.
        try await chat.update(ephemeral, with: Reply(.info, "x"), operation: nil)

        let posts = try Self.posts(slack)
        #expect(posts.map(\.kind) == ["post", "post", "update", "ephemeral"])
        #expect(posts[1].thread == card.id)
        #expect(posts[2].ts == card.id && posts[2].text.contains("deploy done"))
        #expect(posts[3].user == "U0BOB0001" && posts[3].text.contains("may not deploy"))
        #expect(try slack.calls().allSatisfy { ($0["schemaErrors"] as? [Any] ?? []).isEmpty })
        await http.shutdown()
    }

    /// Posts to three threads at once while every other call is answered 429: each post is
    /// delivered once, and each thread reads in the order its posts were given.
    @Test func aStormOf429sDeliversEveryPostInOrderPerThread() async throws {
        let slack = try await offThePool { try SlackEmulator() }
        defer { slack.stop() }
        let http = try CurlHTTPClient()
        let chat = Self.chat(slack, http)
        var threads: [String] = []
        for index in 0..<3 {
            threads.append(try await chat.post(Reply(.progress, "card \(index)"), in: Conversation(channel: "C0DEPLOY01"),
                                               operation: nil).id)
        }
        let perThread = 12
        #expect(slack.control("POST", "ratelimit", json: #"{"method":"chat.postMessage","count":18,"retryAfter":1}"#).status == 200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, thread) in threads.enumerated() {
                group.addTask {
                    // One reporter per thread, as an operation has: each post awaited before the next.
                    for step in 0..<perThread {
                        try await chat.post(Reply(.progress, "thread \(index) step \(step)"),
                                            in: Conversation(channel: "C0DEPLOY01", thread: thread), operation: nil)
                    }
                }
            }
            try await group.waitForAll()
        }
        let limited = try slack.calls("chat.postMessage").filter { ($0["status"] as? Int) == 429 }.count
        #expect(limited == 18)
        for (index, thread) in threads.enumerated() {
            let texts = try Self.posts(slack, query: "?channel=C0DEPLOY01&thread_ts=\(thread)").filter { $0.ts != thread }.map(\.text)
            let steps: [Int] = texts.compactMap { text in
                guard let range = text.range(of: "step ") else { return nil }
                return Int(text[range.upperBound...].prefix { $0.isNumber })
            }
            #expect(steps == Array(0..<perThread), "thread \(index): \(texts)")
        }
        await http.shutdown()
    }
}
