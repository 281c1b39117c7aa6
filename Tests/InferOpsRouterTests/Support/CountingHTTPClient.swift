import Foundation
import InferOpsHTTP
import Synchronization

/// Wraps a client and counts the requests it sends, by "METHOD path".
final class CountingHTTPClient: HTTPClient {
    private let inner: any HTTPClient
    private let sent = Mutex<[String]>([])

    init(_ inner: any HTTPClient) { self.inner = inner }

    var requests: [String] { sent.withLock { $0 } }

    func count(_ prefix: String) -> Int { requests.filter { $0.hasPrefix(prefix) }.count }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let path = request.url.replacingOccurrences(of: #"^https?://[^/]+"#, with: "", options: .regularExpression)
        sent.withLock { $0.append("\(request.method.rawValue) \(path)") }
        return try await inner.send(request)
    }
}
