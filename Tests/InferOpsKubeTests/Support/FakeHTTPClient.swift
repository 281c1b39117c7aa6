import Foundation
import InferOpsHTTP
import Synchronization

/// An `HTTPClient` that answers from a closure and remembers every request.
final class FakeHTTPClient: HTTPClient {
    typealias Handler = @Sendable (HTTPRequest) throws -> HTTPResponse

    private let handler: Handler
    private let recorded = Mutex<[HTTPRequest]>([])

    init(_ handler: @escaping Handler) {
        self.handler = handler
    }

    /// Answers by path (without the server part and query), 404 for anything else.
    convenience init(routes: [String: HTTPResponse]) {
        self.init { request in
            let path = request.url.replacingOccurrences(of: #"^https?://[^/]+"#, with: "", options: .regularExpression)
            let bare = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
            return routes[bare] ?? .json(404, #"{"kind":"Status","status":"Failure","reason":"NotFound","code":404}"#)
        }
    }

    var requests: [HTTPRequest] { recorded.withLock { $0 } }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        recorded.withLock { $0.append(request) }
        return try handler(request)
    }
}

extension HTTPResponse {
    static func json(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: Array(body.utf8))
    }
}
