/// Opens WebSocket connections.
///
/// A protocol so that the Socket Mode layer above it can be tested against a fake that scripts
/// events, without a server. `WebSocketRuntime` is the implementation over libwebsockets.
public protocol WebSocketClient: Sendable {
    /// Connects and returns once the opening handshake is done.
    /// - Throws: `WebSocketError.connectFailed` when the connection, TLS or the handshake fails,
    ///   `WebSocketError.runtimeStopped` after shutdown, `CancellationError` when the task was cancelled.
    func connect(to url: WebSocketURL) async throws -> any WebSocketSession
}

/// One open WebSocket: the messages it receives, and the two things one can do with it.
public protocol WebSocketSession: Sendable {
    /// Everything the connection receives, in order, ending with exactly one `.closed`, after which
    /// the stream finishes. Meant for one consumer.
    var events: AsyncStream<WebSocketEvent> { get }

    /// Queues a text message; it is written in order, without waiting for the network.
    /// - Throws: `WebSocketError.notOpen` once the connection closed or `close` was called.
    func send(text: String) throws

    /// Starts the close handshake after the messages already queued; `events` then ends with
    /// `.closed`. Calling it again, or on a closed connection, does nothing.
    /// - Parameters:
    ///   - code: an RFC 6455 status code (1000 normal, 1001 going away, 4000–4999 private).
    ///   - reason: at most 123 bytes of UTF-8 are sent.
    func close(code: Int, reason: String)
}

/// What a connection reports.
public enum WebSocketEvent: Sendable, Hashable {
    case text(String)
    case binary([UInt8])
    /// The connection is gone. `code` is the peer's close code, the one this side sent, 1006 when
    /// the connection was lost without a close frame (TCP reset, dead peer), 1009 when a message
    /// exceeded `maxMessageBytes`, or 1001 when the runtime shut down.
    case closed(code: Int, reason: String)
}

public enum WebSocketError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidURL(String)
    /// Refused, DNS, TLS or a handshake the server declined. `message` is libwebsockets' own.
    case connectFailed(url: String, message: String)
    /// `send` after the connection closed, or after `close`.
    case notOpen
    case runtimeStopped
    /// The libwebsockets context or its thread could not be created.
    case startFailed(String)

    public var description: String {
        switch self {
        case .invalidURL(let reason): "invalid WebSocket URL: \(reason)"
        case .connectFailed(let url, let message): "could not connect to \(url): \(message)"
        case .notOpen: "the WebSocket connection is not open"
        case .runtimeStopped: "the WebSocket runtime has stopped"
        case .startFailed(let message): "could not start the WebSocket runtime: \(message)"
        }
    }
}

/// A `ws://` or `wss://` URL taken apart the way libwebsockets needs it.
///
/// The path keeps its query string verbatim: Slack's Socket Mode URL is
/// `wss://wss-primary.slack.com/link/?ticket=…&app_id=…` and the ticket must reach the server.
/// `description` leaves the query out, because the ticket is a credential for one connection.
public struct WebSocketURL: Sendable, Hashable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: Int
    /// The request target: the path and the query string, always starting with `/`.
    public var path: String

    public init(secure: Bool, host: String, port: Int? = nil, path: String = "/") {
        self.secure = secure
        self.host = host
        self.port = port ?? (secure ? 443 : 80)
        self.path = path.hasPrefix("/") ? path : "/" + path
    }

    /// - Throws: `WebSocketError.invalidURL` for another scheme, user info, a missing host or a bad port.
    public init(_ string: String) throws(WebSocketError) {
        let secure: Bool
        var rest: Substring
        if string.lowercased().hasPrefix("wss://") {
            secure = true
            rest = string.dropFirst(6)
        } else if string.lowercased().hasPrefix("ws://") {
            secure = false
            rest = string.dropFirst(5)
        } else {
            throw .invalidURL("the scheme must be ws:// or wss://")
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        guard !authority.contains("@") else { throw .invalidURL("user info is not supported") }
        guard target.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw .invalidURL("the path must be percent-encoded ASCII")
        }

        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL("unclosed IPv6 address") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw .invalidURL("unexpected text after the IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .invalidURL("the host is missing") }
        var port: Int?
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .invalidURL("the port must be a number from 1 to 65535")
            }
            port = value
        }
        self.init(secure: secure, host: String(host), port: port, path: target)
    }

    /// The URL without its query string and fragment (safe to log).
    public var description: String {
        let scheme = secure ? "wss" : "ws"
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let defaultPort = secure ? 443 : 80
        let shownPort = port == defaultPort ? "" : ":\(port)"
        let query = path.firstIndex(of: "?")
        let shownPath = query.map { String(path[..<$0]) + "?…" } ?? path
        return "\(scheme)://\(shownHost)\(shownPort)\(shownPath)"
    }
}
