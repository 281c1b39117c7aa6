import InferOpsCore

/// A Slack Web API call that did not do what was asked: its `ok:false` error code (or a 429), sorted
/// by what the daemon can do about it. The code itself is always kept for the log.
public enum SlackFailure: Error, Hashable, Sendable {
    /// The token is wrong, revoked, or lacks a scope: nothing will work until an administrator fixes
    /// the app's installation. Stop retrying and say so in the log and on `/readyz`.
    case credentials(code: String, needed: String?)
    /// The bot cannot post where it was asked: the channel is gone, archived, or the bot is not in it.
    case destination(code: String)
    /// The message to edit or react to is gone or can no longer be changed: post a new one instead.
    case target(code: String)
    /// Slack refused the message or the call as malformed: a defect of InferOps, never retried.
    case request(code: String)
    /// Rate limited (HTTP 429 or `ratelimited`): retry after the time Slack asked for.
    case rateLimited(retryAfter: Duration)
    /// Slack's own trouble or a timeout: an idempotent call may be retried.
    case transient(code: String)
    /// A code this table does not know: logged with the code, not retried.
    case unknown(code: String)

    /// The code as Slack sent it (`ratelimited` for a 429).
    public var code: String {
        switch self {
        case .credentials(let code, _), .destination(let code), .target(let code), .request(let code),
            .transient(let code), .unknown(let code):
            code
        case .rateLimited: "ratelimited"
        }
    }

    /// Whether the same call may be sent again (after `rateLimited`'s wait, or a short backoff).
    public var isRetryable: Bool {
        switch self {
        case .rateLimited, .transient: true
        default: false
        }
    }
}

/// Sorts Slack's error codes (the `default` error schemas of `chat.postMessage`, `chat.update`,
/// `chat.postEphemeral`, `reactions.add`, `users.info` and `auth.test` in Slack's published Web API
/// specification, and `apps.connections.open`'s documented ones). A pure function, pinned by a table.
public enum SlackErrorClassifier {
    static let credentials: Set<String> = [
        "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission",
        "missing_scope", "org_login_required", "ekm_access_denied", "not_allowed_token_type", "team_access_not_granted",
        "invalid_token", "two_factor_setup_required",
    ]
    static let destinations: Set<String> = [
        "channel_not_found", "not_in_channel", "is_archived", "restricted_action", "user_not_in_channel",
        "user_not_found", "user_not_visible", "is_inactive",
    ]
    static let targets: Set<String> = [
        "message_not_found", "cant_update_message", "edit_window_closed", "bad_timestamp", "too_many_reactions",
        "too_many_emoji",
    ]
    static let requests: Set<String> = [
        "msg_too_long", "no_text", "too_many_attachments", "invalid_blocks", "invalid_blocks_format",
        "invalid_arguments", "invalid_arg_name", "invalid_array_arg", "invalid_charset", "invalid_form_data",
        "invalid_post_type", "missing_post_type", "invalid_json", "json_not_object", "no_item_specified",
        "invalid_name", "upgrade_required", "unknown_method", "method_deprecated", "deprecated_endpoint",
        "invalid_attachments",
    ]
    static let transients: Set<String> = [
        "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org",
    ]

    /// - Parameters:
    ///   - code: the `error` of an `ok:false` answer.
    ///   - needed: the `needed` scope Slack names with `missing_scope`.
    public static func classify(_ code: String, needed: String? = nil) -> SlackFailure {
        if code == "ratelimited" || code == "rate_limited" { return .rateLimited(retryAfter: .seconds(1)) }
        if credentials.contains(code) { return .credentials(code: code, needed: needed) }
        if destinations.contains(code) { return .destination(code: code) }
        if targets.contains(code) { return .target(code: code) }
        if requests.contains(code) { return .request(code: code) }
        if transients.contains(code) { return .transient(code: code) }
        return .unknown(code: code)
    }

    /// An HTTP 429 with its `Retry-After` (seconds); a missing or unreadable header waits 1 s, and
    /// an absurd one is held to a minute so one answer cannot stall the daemon.
    public static func rateLimited(retryAfter header: String?) -> SlackFailure {
        let seconds = header.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 1
        return .rateLimited(retryAfter: .seconds(min(max(seconds, 1), 60)))
    }

    /// `already_reacted` means the reaction is there: for an idempotent `reactions.add`, success.
    public static func isSuccess(_ code: String, method: String) -> Bool {
        method == "reactions.add" && code == "already_reacted"
    }
}
