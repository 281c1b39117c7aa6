import InferOpsCore

/// Removes anything that looks like a secret from helm's error text before it becomes the `detail`
/// of a `ReleaseFailure`, which is posted in chat and written to the audit log.
///
/// Helm's errors can carry values: the API server echoes rejected field values (`Invalid value:
/// "…"`), URLs may hold credentials, and template errors may quote what they were given. Two layers
/// catch them: the string values the plan marked as sensitive (by their key, or by the name of the
/// env var they are the value of) are removed literally, and patterns remove the shapes secrets
/// usually have. Over-redacting a harmless word is accepted; leaking a token is not.
struct SecretRedactor: Sendable {
    static let placeholder = "<redacted>"

    /// Exact strings to remove, longest first so that a secret containing another is removed whole.
    let literals: [String]

    init(literals: [String] = []) {
        self.literals = Set(literals.filter { $0.count >= 4 }).sorted { $0.count > $1.count }
    }

    /// A redactor for the errors of a call that used `values`.
    init(values: JSONValue) {
        self.init(literals: Self.sensitiveStrings(in: values))
    }

    func redact(_ text: String) -> String {
        var text = text
        for literal in literals { text = text.replacingOccurrences(of: literal, with: Self.placeholder) }
        let placeholder = Self.placeholder
        // Credentials in URLs: scheme://user:password@host.
        text = text.replacing(#/([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@"]+@/#) { "\($0.output.1)\(placeholder)@" }
        text = text.replacing(#/(?i)(bearer\s+)[^\s"',]+/#) { "\($0.output.1)\(placeholder)" }
        // key=value and key: value where the key names a secret.
        text = text.replacing(
            #/
            (?i)
            ( (?: password | passwd | secret | token | api[_\-]?key | apikey | access[_\-]?key | private[_\-]?key
                | credentials? | authorization )
              [A-Za-z0-9_\-]* ["']? \s* [:=] \s* ["']? )
            (?: (?: bearer | basic ) \s+ )?
            [^\s"',}\]]+
            /#
        ) { "\($0.output.1)\(placeholder)" }
        // The API server quotes the value it rejected.
        text = text.replacing(#/(Invalid value: )"(?:[^"\\]|\\.)*"/#) { "\($0.output.1)\"\(placeholder)\"" }
        // Well-known token prefixes: Hugging Face, OpenAI, GitHub, Slack, AWS.
        text = text.replacing(#/\b(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|xox[abprs]-|AKIA)[A-Za-z0-9_\-]{8,}/#) { _ in
            placeholder
        }
        // Long opaque runs with letters and digits: base64 or hex keys, digests.
        text = text.replacing(#/[A-Za-z0-9+/=_]{32,}/#) { match in
            let run = match.output
            let hasDigit = run.contains(where: \.isNumber)
            let hasLetter = run.contains(where: \.isLetter)
            return hasDigit && hasLetter ? placeholder : String(run)
        }
        return text
    }

    /// Whether a key (or an env var name) names a secret.
    static func isSensitiveName(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return [
            "password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "accesskey", "access_key",
            "privatekey", "private_key", "credential", "authorization", "auth",
        ]
        .contains { lowered.contains($0) }
    }

    /// The string values that must never be echoed: every string under a sensitive key, and the
    /// `value` of an env entry whose `name` is sensitive (`{name: HF_TOKEN, value: …}`).
    static func sensitiveStrings(in values: JSONValue) -> [String] {
        var found: [String] = []
        func allStrings(_ value: JSONValue) {
            switch value {
            case .string(let text): found.append(text)
            case .array(let items): items.forEach(allStrings)
            case .object(let object): object.values.forEach(allStrings)
            default: break
            }
        }
        func walk(_ value: JSONValue) {
            switch value {
            case .array(let items): items.forEach(walk)
            case .object(let object):
                if let name = object["name"]?.stringValue, isSensitiveName(name), let secret = object["value"] {
                    allStrings(secret)
                }
                for (key, child) in object {
                    if isSensitiveName(key) { allStrings(child) } else { walk(child) }
                }
            default: break
            }
        }
        walk(values)
        return found
    }
}
