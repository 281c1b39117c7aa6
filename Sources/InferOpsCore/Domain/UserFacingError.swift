/// An error whose message is safe to post in chat: it names what failed, why, and what to do.
///
/// Anything that is not a `UserFacingError` is logged with a correlation id and the user sees
/// only that id, never the error's text.
public protocol UserFacingError: Error, Sendable {
    /// One or two sentences for the chat thread.
    var message: String { get }
    /// What the user can do next, if anything.
    var hint: String? { get }
}

extension UserFacingError {
    public var hint: String? { nil }
}

/// A plain user-facing refusal or failure.
public struct Refusal: UserFacingError, Equatable {
    public var message: String
    public var hint: String?
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
}
