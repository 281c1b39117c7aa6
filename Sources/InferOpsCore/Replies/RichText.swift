/// Text of a reply, in parts a renderer treats differently: our own words, mentions of a chat user,
/// and text that came from outside InferOps (reasons typed by users, engine answers, Kubernetes
/// event messages, Helm descriptions). The core never writes a platform's markup: Slack's `<@U1>`
/// in the core would be posted verbatim by the console, and a reason of `<!channel>` would ping a
/// whole Slack channel if it were not marked for escaping.
///
/// Written like a string: `"Locked by \(mention: user): \(user: reason)"`. Plain interpolations
/// are InferOps' own words (names, numbers, ids it validated).
public struct RichText: Hashable, Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public enum Segment: Hashable, Sendable {
        /// InferOps' own words; may carry the reply model's light markup (backticks).
        case plain(String)
        /// A chat user; each platform writes its own mention.
        case mention(UserID)
        /// Text from outside InferOps; a renderer shows it literally, never as markup or control.
        case userText(String)
        /// A chat channel as the configuration names it (a Slack channel id, a console channel);
        /// each platform writes its own link.
        case channel(String)
    }

    /// The parts in order; adjacent plain parts are merged, empty ones left out, so equal texts
    /// compare equal however they were built.
    public private(set) var segments: [Segment] = []

    public init(_ segments: [Segment] = []) {
        for segment in segments { append(segment) }
    }

    /// InferOps' own words.
    public init(_ plain: String) {
        append(.plain(plain))
    }

    public init(stringLiteral value: String) {
        append(.plain(value))
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(stringInterpolation.segments)
    }

    /// Text from outside InferOps, as one part.
    public static func user(_ text: String) -> RichText {
        RichText([.userText(text)])
    }

    /// For logs, the journal, tests and outcomes: mentions as `@id`, channels in backticks, user
    /// text as it came.
    public var plainText: String {
        segments.map { segment in
            switch segment {
            case .plain(let text), .userText(let text): text
            case .mention(let user): "@\(user)"
            case .channel(let channel): "`\(channel)`"
            }
        }.joined()
    }

    public var description: String { plainText }

    public var isEmpty: Bool { segments.isEmpty }

    public mutating func append(_ segment: Segment) {
        switch segment {
        case .plain(let text), .userText(let text):
            if text.isEmpty { return }
        case .mention, .channel:
            break
        }
        if case .plain(let text) = segment, case .plain(let previous)? = segments.last {
            segments[segments.count - 1] = .plain(previous + text)
        } else {
            segments.append(segment)
        }
    }

    public mutating func append(_ text: RichText) {
        for segment in text.segments { append(segment) }
    }

    public static func + (lhs: RichText, rhs: RichText) -> RichText {
        var result = lhs
        result.append(rhs)
        return result
    }

    public static func += (lhs: inout RichText, rhs: RichText) {
        lhs.append(rhs)
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var segments: [Segment] = []

        public init(literalCapacity: Int, interpolationCount: Int) {}

        public mutating func appendLiteral(_ literal: String) {
            segments.append(.plain(literal))
        }

        /// InferOps' own value: a name, a number, an id.
        public mutating func appendInterpolation<T>(_ value: T) {
            segments.append(.plain(String(describing: value)))
        }

        public mutating func appendInterpolation(_ text: RichText) {
            segments.append(contentsOf: text.segments)
        }

        public mutating func appendInterpolation(mention user: UserID) {
            segments.append(.mention(user))
        }

        public mutating func appendInterpolation(channel: String) {
            segments.append(.channel(channel))
        }

        /// Text from outside InferOps: a reason, an engine's answer, a Kubernetes event message.
        public mutating func appendInterpolation(user text: String) {
            segments.append(.userText(text))
        }
    }
}

/// What a reply's lines and table cells accept: our own `String`s, or `RichText` with mentions and
/// user text.
public protocol RichTextConvertible: Sendable {
    var richText: RichText { get }
}

extension String: RichTextConvertible {
    public var richText: RichText { RichText(self) }
}

extension RichText: RichTextConvertible {
    public var richText: RichText { self }
}
