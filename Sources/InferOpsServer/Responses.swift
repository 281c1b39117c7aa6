import Foundation
import Hummingbird

/// An error in the shape OpenAI's API and vLLM use: `{"error":{"message","type","param","code"}}`.
///
/// Clients of the router are OpenAI SDKs; they parse this shape and show `message`, so the deny
/// backend's explanation reaches the person who sent the request instead of a generic failure.
public struct OpenAIError: Sendable, Hashable, Encodable {
    public var message: String
    public var type: String
    /// The request field the error is about; encoded as `null` when there is none, as OpenAI does.
    public var param: String?
    public var code: String?

    public init(message: String, type: String, param: String? = nil, code: String? = nil) {
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    private enum CodingKeys: String, CodingKey {
        case error
    }

    private enum DetailKeys: String, CodingKey {
        case message, type, param, code
    }

    public func encode(to encoder: any Encoder) throws {
        var outer = encoder.container(keyedBy: CodingKeys.self)
        var detail = outer.nestedContainer(keyedBy: DetailKeys.self, forKey: .error)
        try detail.encode(message, forKey: .message)
        try detail.encode(type, forKey: .type)
        try detail.encode(param, forKey: .param)
        try detail.encode(code, forKey: .code)
    }
}

/// Building responses by hand, so every body and content type is exactly what the route promises.
enum Responses {
    /// Sorted keys make bodies stable across runs (tests and logs compare them); unescaped slashes
    /// keep model names such as `meta-llama/Llama-3-8B` readable.
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding the server's own plain structs cannot fail; an empty object keeps the answer JSON anyway.
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }

    static func text(
        _ text: String,
        status: HTTPResponse.Status = .ok,
        contentType: String = "text/plain; charset=utf-8"
    )
        -> Response
    {
        Response(
            status: status,
            headers: [.contentType: contentType],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }
}
