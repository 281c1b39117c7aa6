#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Sends one HTTP request and returns the whole response.
///
/// A protocol so that adapters built on it (the Kubernetes API, engine probes) can be tested
/// against a fake without a server.
public protocol HTTPClient: Sendable {
    /// Sends `request` and waits for the complete response.
    ///
    /// Any status code, 4xx and 5xx included, is a response. Only a failure to get one is thrown.
    /// - Throws: `HTTPTransportError` when no response arrived (refused, DNS, TLS, timeout),
    ///   `CancellationError` when the calling task was cancelled, `HTTPClientShutDown` after shutdown.
    func send(_ request: HTTPRequest) async throws -> HTTPResponse
}

public enum HTTPMethod: String, Sendable, Hashable, CaseIterable {
    case get = "GET"
    case head = "HEAD"
    case post = "POST"
    case put = "PUT"
    case patch = "PATCH"
    case delete = "DELETE"
}

/// Header fields in the order they were given or received; names compare without case.
public struct HTTPHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)]

    public init(_ fields: [(name: String, value: String)] = []) {
        self.fields = fields
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The first value for `name`, compared without case.
    public subscript(name: String) -> String? {
        let wanted = name.lowercased()
        return fields.first { $0.name.lowercased() == wanted }?.value
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// Removes every field called `name` and adds one with `value`.
    public mutating func replace(_ name: String, with value: String) {
        let wanted = name.lowercased()
        fields.removeAll { $0.name.lowercased() == wanted }
        fields.append((name: name, value: value))
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.name)
            hasher.combine(field.value)
        }
    }
}

/// PEM material for TLS: a path that libcurl reads itself, or the bytes (kubeconfig `*-data`
/// fields), handed to libcurl as a blob so no key is ever written to disk.
///
/// Printing or dumping one shows the path or the size, never the bytes: a client key is a secret.
public enum TLSMaterial: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    case file(String)
    case pem([UInt8])

    public var description: String {
        switch self {
        case .file(let path): "file \(path)"
        case .pem(let bytes): "PEM (\(bytes.count) bytes)"
        }
    }

    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["value": description], displayStyle: .enum) }
}

/// How to trust the server and how to prove who we are.
public struct TLSOptions: Sendable, Hashable {
    /// Extra trust anchors, replacing the system bundle (a cluster's own CA). `nil` trusts the system bundle.
    public var certificateAuthority: TLSMaterial?
    /// Client certificate and key for mutual TLS (kubeconfig `client-certificate` / `client-key`).
    public var clientCertificate: TLSMaterial?
    public var clientKey: TLSMaterial?
    /// Skips peer and host name verification. Only for clusters whose kubeconfig says
    /// `insecure-skip-tls-verify: true`.
    public var insecureSkipVerify: Bool

    public init(
        certificateAuthority: TLSMaterial? = nil,
        clientCertificate: TLSMaterial? = nil,
        clientKey: TLSMaterial? = nil,
        insecureSkipVerify: Bool = false
    ) {
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.insecureSkipVerify = insecureSkipVerify
    }
}

public struct HTTPRequest: Sendable, Hashable, CustomStringConvertible {
    public var method: HTTPMethod
    /// An absolute `http://` or `https://` URL, already percent-encoded.
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]?
    /// The whole exchange (connect, send, receive), with millisecond precision. `nil` waits forever.
    public var timeout: Duration?
    public var tls: TLSOptions?

    public init(
        method: HTTPMethod = .get,
        url: String,
        headers: HTTPHeaders = [:],
        body: [UInt8]? = nil,
        timeout: Duration? = .seconds(30),
        tls: TLSOptions? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.tls = tls
    }

    /// Sets `Authorization: Bearer …`. The value never shows in `description`.
    public mutating func setBearerToken(_ token: String) {
        headers.replace("Authorization", with: "Bearer \(token)")
    }

    /// Method and URL only: headers may carry credentials and are left out on purpose.
    public var description: String { "\(method.rawValue) \(url)" }
}

public struct HTTPResponse: Sendable, Hashable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
    public var bodyData: Data { Data(body) }
    /// The body as UTF-8, with invalid bytes replaced.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// No response arrived: libcurl's code and its explanation.
public struct HTTPTransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The raw `CURLcode`.
    public var code: Int
    /// libcurl's detailed message (from its error buffer), or the generic text for the code.
    public var message: String
    /// Method and URL of the request that failed.
    public var request: String

    public init(code: Int, message: String, request: String) {
        self.code = code
        self.message = message
        self.request = request
    }

    /// `CURLE_OPERATION_TIMEDOUT`: the request's timeout elapsed.
    public var isTimeout: Bool { code == 28 }
    /// Refused, unresolvable or unroutable: nothing is listening at that address.
    public var isConnectionFailure: Bool { [5, 6, 7].contains(code) }
    /// Certificate or handshake problems (`CURLE_SSL_*`, `CURLE_PEER_FAILED_VERIFICATION`).
    public var isTLSFailure: Bool { [35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91].contains(code) }

    public var description: String { "\(request): curl error \(code): \(message)" }
}

/// The client was shut down before or while the request ran.
public struct HTTPClientShutDown: Error, Sendable, Hashable, CustomStringConvertible {
    public init() {}
    public var description: String { "the HTTP client was shut down" }
}
