import InferOpsCore
import InferOpsSlack
import Testing

/// Every error code the Web API methods InferOps calls can answer (their `default` error schemas in
/// Slack's published specification), and what the daemon does with it.
@Suite struct SlackErrorClassifierTests {
    static let table: [(code: String, expected: SlackFailure)] = [
        ("not_authed", .credentials(code: "not_authed", needed: nil)),
        ("invalid_auth", .credentials(code: "invalid_auth", needed: nil)),
        ("account_inactive", .credentials(code: "account_inactive", needed: nil)),
        ("token_revoked", .credentials(code: "token_revoked", needed: nil)),
        ("no_permission", .credentials(code: "no_permission", needed: nil)),
        ("org_login_required", .credentials(code: "org_login_required", needed: nil)),
        ("channel_not_found", .destination(code: "channel_not_found")),
        ("not_in_channel", .destination(code: "not_in_channel")),
        ("is_archived", .destination(code: "is_archived")),
        ("restricted_action", .destination(code: "restricted_action")),
        ("user_not_in_channel", .destination(code: "user_not_in_channel")),
        ("user_not_found", .destination(code: "user_not_found")),
        ("user_not_visible", .destination(code: "user_not_visible")),
        ("is_inactive", .destination(code: "is_inactive")),
        ("message_not_found", .target(code: "message_not_found")),
        ("cant_update_message", .target(code: "cant_update_message")),
        ("edit_window_closed", .target(code: "edit_window_closed")),
        ("bad_timestamp", .target(code: "bad_timestamp")),
        ("too_many_reactions", .target(code: "too_many_reactions")),
        ("too_many_emoji", .target(code: "too_many_emoji")),
        ("msg_too_long", .request(code: "msg_too_long")),
        ("no_text", .request(code: "no_text")),
        ("too_many_attachments", .request(code: "too_many_attachments")),
        ("invalid_arg_name", .request(code: "invalid_arg_name")),
        ("invalid_array_arg", .request(code: "invalid_array_arg")),
        ("invalid_charset", .request(code: "invalid_charset")),
        ("invalid_form_data", .request(code: "invalid_form_data")),
        ("invalid_post_type", .request(code: "invalid_post_type")),
        ("missing_post_type", .request(code: "missing_post_type")),
        ("invalid_json", .request(code: "invalid_json")),
        ("json_not_object", .request(code: "json_not_object")),
        ("no_item_specified", .request(code: "no_item_specified")),
        ("invalid_name", .request(code: "invalid_name")),
        ("upgrade_required", .request(code: "upgrade_required")),
        ("request_timeout", .transient(code: "request_timeout")),
        ("fatal_error", .transient(code: "fatal_error")),
        ("team_added_to_org", .transient(code: "team_added_to_org")),
        ("rate_limited", .rateLimited(retryAfter: .seconds(1))),
        ("ratelimited", .rateLimited(retryAfter: .seconds(1))),
        ("something_new", .unknown(code: "something_new")),
    ]

    @Test(arguments: table.indices)
    func eachCodeHasItsClass(_ index: Int) {
        let row = Self.table[index]
        #expect(SlackErrorClassifier.classify(row.code) == row.expected, "\(row.code)")
        #expect(SlackErrorClassifier.classify(row.code).code == (row.code == "rate_limited" ? "ratelimited" : row.code))
    }

    @Test func onlyRateLimitsAndSlacksOwnTroubleAreRetried() {
        let retried = Self.table.filter { $0.expected.isRetryable }.map(\.code)
        #expect(retried == ["request_timeout", "fatal_error", "team_added_to_org", "rate_limited", "ratelimited"])
    }

    @Test func aMissingScopeNamesTheScope() {
        #expect(SlackErrorClassifier.classify("missing_scope", needed: "chat:write")
                == .credentials(code: "missing_scope", needed: "chat:write"))
    }

    @Test(arguments: [("3", 3), (" 30 ", 30), (nil, 1), ("soon", 1), ("0", 1), ("86400", 60)] as [(String?, Int)])
    func retryAfterIsReadAndBounded(_ header: String?, _ seconds: Int) {
        #expect(SlackErrorClassifier.rateLimited(retryAfter: header) == .rateLimited(retryAfter: .seconds(seconds)))
    }

    @Test func alreadyReactedIsSuccessForReactionsOnly() {
        #expect(SlackErrorClassifier.isSuccess("already_reacted", method: "reactions.add"))
        #expect(!SlackErrorClassifier.isSuccess("already_reacted", method: "chat.postMessage"))
    }
}
