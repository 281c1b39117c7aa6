import Foundation

/// Renders one audit row as a line of JSON for `inferops audit`.
///
/// Written by hand rather than with `JSONEncoder` on a struct because the encoder does not promise
/// key order; a fixed order keeps lines readable and diffable. Only the string escaping is left to
/// `JSONEncoder`, which gets it right.
enum AuditLine {
    static func render(_ record: AuditRecord) -> String {
        let entry = record.entry
        let fields: [(String, String?)] = [
            ("at", StoredTime.iso8601(milliseconds: record.atMilliseconds)),
            ("actor", entry.actor.rawValue),
            ("action", entry.action),
            ("environment", entry.environment),
            ("subject", entry.subject),
            ("outcome", entry.outcome),
            ("operation", entry.operation?.rawValue),
            ("detail", entry.detail),
            ("channel", entry.channel),
            ("os_user", entry.osUser),
        ]
        let members = fields.compactMap { key, value in
            value.map { quote(key) + ":" + quote($0) }
        }
        return "{" + members.joined(separator: ",") + "}"
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }()

    /// A JSON string literal. Encoding a `String` cannot fail, so a failure is a programming error.
    private static func quote(_ string: String) -> String {
        guard let data = try? encoder.encode(string), let text = String(data: data, encoding: .utf8) else {
            preconditionFailure("JSONEncoder could not encode a string")
        }
        return text
    }
}
