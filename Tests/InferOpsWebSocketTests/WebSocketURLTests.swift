import InferOpsWebSocket
import Testing

/// How a URL is taken apart for libwebsockets: the query string must survive (Slack's ticket).
@Suite struct WebSocketURLTests {
    @Test func slackSocketModeURLKeepsItsQuery() throws {
        let url = try WebSocketURL("wss://wss-primary.slack.com/link/?ticket=1b2c-3d&app_id=A0EMU0001")
        #expect(
            url
                == WebSocketURL(
                    secure: true,
                    host: "wss-primary.slack.com",
                    port: 443,
                    path: "/link/?ticket=1b2c-3d&app_id=A0EMU0001"
                )
        )
        #expect(url.description == "wss://wss-primary.slack.com/link/?…")
    }

    @Test(arguments: [
        ("ws://127.0.0.1:8080/link/?ticket=x", false, "127.0.0.1", 8080, "/link/?ticket=x"),
        ("ws://example.com", false, "example.com", 80, "/"),
        ("WSS://example.com?x=1", true, "example.com", 443, "/?x=1"),
        ("wss://example.com:8443/a/b#frag", true, "example.com", 8443, "/a/b"),
        ("ws://[::1]:9000/s", false, "::1", 9000, "/s"),
    ])
    func parses(text: String, secure: Bool, host: String, port: Int, path: String) throws {
        let url = try WebSocketURL(text)
        #expect(url.secure == secure)
        #expect(url.host == host)
        #expect(url.port == port)
        #expect(url.path == path)
    }

    @Test(arguments: [
        "https://example.com/", "ws://", "ws://:80/", "ws://example.com:0/", "ws://example.com:99999/",
        "ws://user:pw@example.com/", "ws://example.com/a b", "ws://[::1/",
    ])
    func refuses(text: String) {
        #expect(throws: WebSocketError.self) { try WebSocketURL(text) }
    }
}
