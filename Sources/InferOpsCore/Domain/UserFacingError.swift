/// An error whose message is safe to post in chat: it names what failed, why, and what to do.
///
/// Anything that is not a `UserFacingError` is logged with a correlation id and the user sees
/// only that id, never the error's text.
public protocol UserFacingError: Error, Sendable {
    /// One or two sentences for the chat thread.
    var message: String { get }
    /// The message in parts for a reply: mentions and text from outside InferOps marked.
    var text: RichText { get }
    /// What the user can do next, if anything.
    var hint: String? { get }
}

extension UserFacingError {
    public var hint: String? { nil }

    /// Unless an error says which parts are its own words, all of its message is treated as text
    /// from outside (Helm's stderr, an API server's answer, the user's own input echoed back), so a
    /// renderer shows it literally.
    public var text: RichText { .user(message) }
}

/// A user-facing refusal or failure written by InferOps.
public struct Refusal: UserFacingError, Equatable {
    public var text: RichText
    public var hint: String?
    /// `text` for logs, outcomes and the audit log: mentions as `@id`.
    public var message: String { text.plainText }

    public init(_ text: RichText, hint: String? = nil) {
        self.text = text
        self.hint = hint
    }

    /// A message built from other messages; like any `String` message, shown as text from outside.
    @_disfavoredOverload
    public init(_ message: String, hint: String? = nil) {
        self.init(.user(message), hint: hint)
    }
}
