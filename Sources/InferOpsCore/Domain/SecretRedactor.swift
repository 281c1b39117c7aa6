import Foundation
import Logging

/// Removes anything that looks like a secret from text that leaves the daemon: chat replies, log
/// lines, journal entries, audit rows and the `detail` of a `ReleaseFailure`.
///
/// Helm's errors can carry values: the API server echoes rejected field values (`Invalid value:
/// "…"`), URLs may hold credentials, and template errors may quote what they were given. A dry run
/// shows merged values and rendered manifests. Two layers catch them: the strings the configuration
/// and the plan hold as secrets (by their key, or by the name of the env var they are the value of,
/// and the kubeconfig's token and client key) are removed literally, and patterns remove the shapes
/// secrets usually have. Over-redacting a harmless word is accepted; leaking a token is not.
///
/// Plan digests (64 lowercase hex characters) are not secrets and stay readable: people compare them
/// between a dry run, the plan and the audit log.
public struct SecretRedactor: Sendable, Hashable {
    public static let placeholder = "<redacted>"

    /// Exact strings to remove, longest first so that a secret containing another is removed whole.
    public let literals: [String]
    /// The secrets as given, without their encodings.
    let secrets: Set<String>
    public var secretsGiven: [String] { secrets.sorted() }

    /// - Parameter literals: secrets known by value. Shorter than 4 characters they are ignored
    ///   (removing every `ab` would make replies unreadable); their base64 form is removed too,
    ///   because Kubernetes Secret manifests and kubeconfigs carry them that way.
    public init(literals: [String] = []) {
        secrets = Set(literals.filter { $0.count >= 4 })
        var all = Set<String>()
        for literal in secrets {
            all.insert(literal)
            let encoded = Data(literal.utf8).base64EncodedString()
            if encoded.count >= 8 { all.insert(encoded) }
        }
        self.literals = all.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// A redactor for the errors of a call that used `values`.
    public init(values: JSONValue) {
        self.init(literals: Self.sensitiveStrings(in: values))
    }

    /// The secrets a configuration holds by value: the sensitive strings of every model's values and
    /// the `extra` ones the adapters know (values files, kubeconfig credentials).
    public init(configuration: Configuration, extra: [String] = []) {
        let models = configuration.models.values.flatMap { Self.sensitiveStrings(in: $0.values) }
        self.init(literals: models + configuration.knownSecrets + extra)
    }

    /// This redactor with more literals.
    public func adding(_ more: [String]) -> SecretRedactor {
        more.isEmpty ? self : SecretRedactor(literals: Array(secrets) + more)
    }

    public func redact(_ text: String) -> String {
        redact(text, patterns: nil)
    }

    /// `text` redacted, running the patterns named (all that the text's clues call for when `nil`).
    func redact(_ text: String, patterns: Clues?) -> String {
        var text = text
        for literal in literals where Self.occurs(literal, in: text) {
            text = text.replacingOccurrences(of: literal, with: Self.placeholder)
        }
        let placeholder = Self.placeholder
        // Each pattern runs only when the text has what it needs to match (most replies hold none
        // of it, and running a pattern costs far more than looking); one pass over the text tells.
        let clues = patterns ?? Clues(in: text)
        // Credentials in URLs: scheme://user:password@host.
        if clues.contains(.url) {
            text = text.replacing(Patterns.urlCredentials) { "\($0.output.1)\(placeholder)@" }
        }
        if clues.contains(.bearer) {
            text = text.replacing(Patterns.bearer) { "\($0.output.1)\(placeholder)" }
        }
        // key=value and key: value where the key names a secret, on one line (a YAML key such as
        // `secretKeyRef:` ends its line and is not followed by a value).
        if clues.contains(.secretKeyValue) {
            text = text.replacing(Patterns.secretKeyValue) { "\($0.output.1)\(placeholder)" }
        }
        // The API server quotes the value it rejected.
        if clues.contains(.invalidValue) {
            text = text.replacing(Patterns.invalidValue) { "\($0.output.1)\"\(placeholder)\"" }
        }
        // Well-known token prefixes: Hugging Face, OpenAI, GitHub, Slack, AWS.
        if clues.contains(.token) {
            text = text.replacing(Patterns.token) { _ in placeholder }
        }
        // Long opaque runs with letters and digits: base64 or hex keys. A plan digest is exempt.
        if clues.contains(.opaqueRun) {
            text = text.replacing(Patterns.opaqueRun) { match in
                let run = match.output
                if Self.isDigest(run) { return String(run) }
                let hasDigit = run.contains(where: \.isNumber)
                let hasLetter = run.contains(where: \.isLetter)
                return hasDigit && hasLetter ? placeholder : String(run)
            }
        }
        return text
    }

    /// The patterns, compiled once (a regex literal is compiled each time it is evaluated).
    enum Patterns {
        nonisolated(unsafe) static let urlCredentials = #/([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@"]+@/#
        nonisolated(unsafe) static let bearer = #/(?i)(bearer\s+)[^\s"',]+/#
        nonisolated(unsafe) static let secretKeyValue = #/
            (?i)
            ( (?: password | passwd | secret | token | api[_\-]?key | apikey | access[_\-]?key | private[_\-]?key
                | credentials? | authorization )
              [A-Za-z0-9_\-]* ["']? [\ \t]* [:=] [\ \t]* ["']? )
            (?: (?: bearer | basic ) \s+ )?
            [^\s"',}\]]+
            /#
        nonisolated(unsafe) static let invalidValue = #/(Invalid value: )"(?:[^"\\]|\\.)*"/#
        nonisolated(unsafe) static let token = #/\b(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|xox[abprs]-|AKIA)[A-Za-z0-9_\-]{8,}/#
        nonisolated(unsafe) static let opaqueRun = #/[A-Za-z0-9+/=_]{32,}/#
    }

    /// Whether `needle` occurs in `haystack`, byte for byte: every text the daemon sends out is
    /// searched many times, and Foundation's locale-aware search (`contains`) costs far more.
    static func occurs(_ needle: String, in haystack: String) -> Bool {
        var haystack = haystack
        var needle = needle
        return haystack.withUTF8 { text in
            needle.withUTF8 { word in
                guard !word.isEmpty else { return true }
                guard text.count >= word.count else { return false }
                let first = word[0]
                var start = 0
                while start <= text.count - word.count {
                    if text[start] == first {
                        var matched = 1
                        while matched < word.count && text[start + matched] == word[matched] { matched += 1 }
                        if matched == word.count { return true }
                    }
                    start += 1
                }
                return false
            }
        }
    }

    /// Which patterns could match a text, found in one pass over its bytes. Each clue is what a
    /// pattern's match must contain, so a pattern whose clue is missing cannot match; a clue found
    /// does not promise a match.
    struct Clues: OptionSet {
        let rawValue: UInt8

        /// `://` followed by characters and an `@`, as in a URL that carries credentials.
        static let url = Clues(rawValue: 1 << 0)
        /// `bearer`, in any case, and a space.
        static let bearer = Clues(rawValue: 1 << 1)
        /// A word a key naming a secret starts with, in any case (`Trigger.secretKeyWords`), the
        /// rest of a key, and `:` or `=`.
        static let secretKeyValue = Clues(rawValue: 1 << 2)
        /// `Invalid value: "`, how the API server quotes what it rejected.
        static let invalidValue = Clues(rawValue: 1 << 3)
        /// The prefix of a well-known access token (`Trigger.tokenPrefixes`) and 8 characters of one.
        static let token = Clues(rawValue: 1 << 4)
        /// A run of at least 32 characters of `[A-Za-z0-9+/=_]`, the shape of a base64 or hex key.
        static let opaqueRun = Clues(rawValue: 1 << 5)

        static let all: Clues = [.url, .bearer, .secretKeyValue, .invalidValue, .token, .opaqueRun]

        init(rawValue: UInt8) { self.rawValue = rawValue }

        init(in text: String) {
            var found = Clues()
            var text = text
            let kinds = Trigger.byteKinds
            text.withUTF8 { bytes in
                kinds.withUnsafeBufferPointer { kinds in
                    var run = 0
                    for index in bytes.indices {
                        let byte = bytes[index]
                        let kind = kinds[Int(byte)]
                        if kind & Trigger.opaque != 0 {
                            run += 1
                            if run == 32 { found.insert(.opaqueRun) }
                        } else {
                            run = 0
                        }
                        guard kind & Trigger.startsWord != 0 else { continue }
                        let lowered = byte &+ (byte >= 65 && byte <= 90 ? 32 : 0)
                        for trigger in Trigger.starting[Int(lowered)] where !found.contains(trigger.clue) {
                            if trigger.matches(bytes, at: index, kinds: kinds) { found.insert(trigger.clue) }
                        }
                    }
                }
            }
            self = found
        }
    }

    /// A word, and what must follow it, whose presence lets a pattern run.
    struct Trigger {
        let word: [UInt8]
        /// Whether the word matches in any case (its bytes are lowercase).
        let anyCase: Bool
        let clue: Clues
        let followedBy: Following

        /// What a pattern's match has after the word.
        enum Following {
            case anything
            /// Whitespace (any byte outside ASCII counts: it may be Unicode whitespace).
            case whitespace
            /// More of a key (`[A-Za-z0-9_-]*`), a quote, blanks, then `:` or `=`.
            case assignment
            /// At least one character that is not `/`, `@`, `"` or ASCII whitespace, then `@`.
            case credentials
            /// At least 8 characters of `[A-Za-z0-9_-]`.
            case tokenBody
        }

        /// Whether the word starts at `index` with what must follow it.
        func matches(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int, kinds: UnsafeBufferPointer<UInt8>) -> Bool {
            guard bytes.count - index >= word.count else { return false }
            for offset in 0..<word.count {
                var byte = bytes[index + offset]
                if anyCase && byte >= 65 && byte <= 90 { byte += 32 }
                if byte != word[offset] { return false }
            }
            var next = index + word.count
            func isKeyByte(_ byte: UInt8) -> Bool { kinds[Int(byte)] & Trigger.keyByte != 0 }
            func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
            func isASCIIWhitespace(_ byte: UInt8) -> Bool { isBlank(byte) || (10...13).contains(byte) }
            switch followedBy {
            case .anything:
                return true
            case .whitespace:
                return next < bytes.count && (isASCIIWhitespace(bytes[next]) || bytes[next] >= 0x80)
            case .assignment:
                while next < bytes.count && isKeyByte(bytes[next]) { next += 1 }
                if next < bytes.count && (bytes[next] == UInt8(ascii: "\"") || bytes[next] == UInt8(ascii: "'")) { next += 1 }
                while next < bytes.count && isBlank(bytes[next]) { next += 1 }
                return next < bytes.count && (bytes[next] == UInt8(ascii: ":") || bytes[next] == UInt8(ascii: "="))
            case .credentials:
                let start = next
                while next < bytes.count, case let byte = bytes[next], byte != UInt8(ascii: "/"),
                      byte != UInt8(ascii: "@"), byte != UInt8(ascii: "\""), !isASCIIWhitespace(byte) {
                    next += 1
                }
                return next > start && next < bytes.count && bytes[next] == UInt8(ascii: "@")
            case .tokenBody:
                let start = next
                while next < bytes.count && isKeyByte(bytes[next]) && next - start < 8 { next += 1 }
                return next - start >= 8
            }
        }

        /// What a key that names a secret starts with (lowercased): the key=value pattern's keys.
        static let secretKeyWords = ["passw", "secret", "token", "api", "access", "private", "credential", "authorization"]
        /// The prefixes of well-known access tokens: Hugging Face, OpenAI, GitHub, Slack, AWS.
        static let tokenPrefixes = ["hf_", "sk-", "ghp_", "gho_", "ghs_", "github_pat_", "xox", "AKIA"]

        static let all: [Trigger] =
            [Trigger(word: Array("://".utf8), anyCase: false, clue: .url, followedBy: .credentials),
             Trigger(word: Array("bearer".utf8), anyCase: true, clue: .bearer, followedBy: .whitespace),
             Trigger(word: Array("Invalid value: \"".utf8), anyCase: false, clue: .invalidValue, followedBy: .anything)]
            + secretKeyWords.map { Trigger(word: Array($0.utf8), anyCase: true, clue: .secretKeyValue, followedBy: .assignment) }
            + tokenPrefixes.map { Trigger(word: Array($0.utf8), anyCase: false, clue: .token, followedBy: .tokenBody) }

        /// The triggers by their first byte, lowercased.
        static let starting: [[Trigger]] = {
            var table = [[Trigger]](repeating: [], count: 256)
            for trigger in all {
                var first = trigger.word[0]
                if first >= 65 && first <= 90 { first += 32 }
                table[Int(first)].append(trigger)
            }
            return table
        }()

        /// A byte of `[A-Za-z0-9+/=_]`, what base64 and hex keys are made of.
        static let opaque: UInt8 = 1 << 0
        /// A byte of `[A-Za-z0-9_-]`, what keys and token bodies are made of.
        static let keyByte: UInt8 = 1 << 1
        /// The first byte of a trigger's word, in either case.
        static let startsWord: UInt8 = 1 << 2

        /// What each byte value is, as the bits above.
        static let byteKinds: [UInt8] = (0..<256).map { value in
            let byte = UInt8(value)
            var kind: UInt8 = 0
            let alphanumeric = (65...90).contains(byte) || (97...122).contains(byte) || (48...57).contains(byte)
            if alphanumeric || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
                || byte == UInt8(ascii: "_") {
                kind |= opaque
            }
            if alphanumeric || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") { kind |= keyByte }
            let lowered = byte >= 65 && byte <= 90 ? byte + 32 : byte
            if !starting[Int(lowered)].isEmpty { kind |= startsWord }
            return kind
        }
    }

    /// Whether `text` holds something shaped like a well-known access token (Hugging Face, OpenAI,
    /// GitHub, Slack, AWS), as a word of its own.
    public static func containsToken(_ text: String) -> Bool {
        text.contains(#/(?:^|[^A-Za-z0-9])(?:hf_|sk-|ghp_|gho_|ghs_|github_pat_|xox[abprs]-|AKIA)[A-Za-z0-9_\-]{8,}/#)
    }

    /// A SHA-256 digest as the plan writes it: exactly 64 lowercase hex characters.
    static func isDigest(_ run: Substring) -> Bool {
        run.count == 64 && run.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// The text with each of its parts redacted; mentions are ids, never secrets (a channel, which
    /// the console takes as typed, is redacted like user text). A part is redacted
    /// on its own, so a secret is caught within the part that carries it (a reason, an engine answer).
    public func redact(_ text: RichText) -> RichText {
        RichText(
            text.segments.map { segment in
                switch segment {
                case .plain(let words): .plain(redact(words))
                case .userText(let words): .userText(redact(words))
                case .channel(let name): .channel(redact(name))
                case .mention: segment
                }
            })
    }

    /// The reply with every text it carries redacted.
    public func redact(_ reply: Reply) -> Reply {
        var reply = reply
        reply.title = redact(reply.title)
        reply.lines = reply.lines.map(redact)
        reply.fields = reply.fields.map { Reply.Field(redact($0.label), redact($0.value)) }
        if var table = reply.table {
            table.headers = table.headers.map(redact)
            table.rows = table.rows.map { $0.map(redact) }
            reply.table = table
        }
        reply.hint = reply.hint.map(redact)
        return reply
    }

    /// Whether a key (or an env var name) names a secret.
    public static func isSensitiveName(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return [
            "password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "accesskey", "access_key",
            "privatekey", "private_key", "credential", "authorization", "auth",
        ]
        .contains { lowered.contains($0) }
    }

    /// Whether a key names where a secret is kept rather than the secret (`secretName`, `secretKey`,
    /// `secretKeyRef`, `tokenSecretName`): its value is a name that replies may show.
    static func namesReference(_ key: String) -> Bool {
        let lowered = key.lowercased()
        return ["name", "ref", "secretkey"].contains { lowered.hasSuffix($0) }
    }

    /// The string values that must never be echoed: every string under a sensitive key (but not the
    /// names of Secrets that hold them, as in `hfToken: {secretName: hf-token, secretKey: token}`),
    /// the `value` of an env entry whose `name` is sensitive (`{name: HF_TOKEN, value: …}`), and any
    /// string shaped like a well-known access token.
    public static func sensitiveStrings(in values: JSONValue) -> [String] {
        var found: [String] = []
        func allStrings(_ value: JSONValue) {
            switch value {
            case .string(let text): found.append(text)
            case .array(let items): items.forEach(allStrings)
            case .object(let object):
                for (key, child) in object where !namesReference(key) { allStrings(child) }
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
                    if isSensitiveName(key) && !namesReference(key) { allStrings(child) } else { walk(child) }
                }
            case .string(let text):
                // A value shaped like a well-known token is a secret whatever its key.
                if containsToken(text) { found.append(text) }
            default: break
            }
        }
        walk(values)
        return found
    }
}

/// A chat transport that passes every reply through the redactor before the platform sees it.
public struct RedactingChat: ChatTransport {
    public let base: any ChatTransport
    public let redactor: SecretRedactor

    public init(base: any ChatTransport, redactor: SecretRedactor) {
        // Wrapping twice would only redact twice; keep one layer with both sets of literals.
        if let inner = base as? RedactingChat {
            self.base = inner.base
            self.redactor = inner.redactor.adding(Array(redactor.secrets))
        } else {
            self.base = base
            self.redactor = redactor
        }
    }

    @discardableResult
    public func post(
        _ reply: Reply, in conversation: Conversation, operation: OperationID?
    ) async throws -> MessageRef {
        try await base.post(redactor.redact(reply), in: conversation, operation: operation)
    }

    public func update(_ message: MessageRef, with reply: Reply, operation: OperationID?) async throws {
        try await base.update(message, with: redactor.redact(reply), operation: operation)
    }

    public var isConnected: Bool {
        get async { await base.isConnected }
    }
}

/// A log handler that passes every message and metadata value through the redactor, so an error
/// logged in full (with a correlation id) cannot carry a secret into the log.
public struct RedactingLogHandler: LogHandler {
    public var base: any LogHandler
    public let redactor: SecretRedactor

    public init(base: any LogHandler, redactor: SecretRedactor) {
        if let inner = base as? RedactingLogHandler {
            self.base = inner.base
            self.redactor = inner.redactor.adding(Array(redactor.secrets))
        } else {
            self.base = base
            self.redactor = redactor
        }
    }

    public func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: redactor.redact(event.message.description))
        event.metadata = event.metadata.map(redact)
        base.log(event: event)
    }

    func redact(_ metadata: Logger.Metadata) -> Logger.Metadata {
        metadata.mapValues(redact)
    }

    func redact(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(redactor.redact(text))
        case .stringConvertible(let convertible): .string(redactor.redact(convertible.description))
        case .array(let items): .array(items.map(redact))
        case .dictionary(let dictionary): .dictionary(redact(dictionary))
        }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    public var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    public var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }
}

extension Logger {
    /// This logger with every line passing the redactor.
    public func redacting(_ redactor: SecretRedactor) -> Logger {
        let handler = RedactingLogHandler(base: self.handler, redactor: redactor)
        return Logger(label: label) { _ in handler }
    }
}
