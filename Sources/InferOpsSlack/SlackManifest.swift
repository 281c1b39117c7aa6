import InferOpsCore

/// The Slack app manifest, derived from the declared commands: Socket Mode (no public URL),
/// interactivity for the approval buttons, the one `/infer` command with the verbs as its usage
/// hint, the `app_mention` event, and the bot scopes the daemon's Web API calls need, no more:
/// `chat:write` (post, update, ephemeral), `commands`, `app_mentions:read`, `reactions:write` (👀 on
/// a mention). Users are their ids and Slack shows their names in mentions, so no `users:read`.
public enum SlackManifest {
    public static let scopes = ["app_mentions:read", "chat:write", "commands", "reactions:write"]

    /// Slack cuts a slash command's usage hint at 1,000 characters and its description at 2,000.
    static let usageHintLimit = 1000

    public static func make(catalog: CommandCatalog, appName: String = "InferOps") -> JSONValue {
        let verbs = catalog.names.joined(separator: "|")
        let usage = "[\(verbs)] …, e.g. deploy llama-3-8b to staging"
        let description = "Deploy, promote, roll back and route LLM inference: "
            + catalog.specs.filter(\.changes).map(\.name).joined(separator: ", ")
            + "; /infer help lists every command."
        return .object([
            "_metadata": .object(["major_version": .number(1), "minor_version": .number(1)]),
            "display_information": .object([
                "name": .string(appName),
                "description": .string("Chat-ops for LLM inference on your own GPU clusters."),
            ]),
            "features": .object([
                "bot_user": .object(["display_name": .string(appName.lowercased()), "always_online": .bool(true)]),
                "slash_commands": .array([.object([
                    "command": .string("/infer"),
                    "description": .string(String(description.prefix(2000))),
                    "usage_hint": .string(String(usage.prefix(usageHintLimit))),
                    "should_escape": .bool(false),
                ])]),
            ]),
            "oauth_config": .object(["scopes": .object(["bot": .array(scopes.map(JSONValue.string))])]),
            "settings": .object([
                "event_subscriptions": .object(["bot_events": .array([.string("app_mention")])]),
                "interactivity": .object(["is_enabled": .bool(true)]),
                "org_deploy_enabled": .bool(false),
                "socket_mode_enabled": .bool(true),
                "token_rotation_enabled": .bool(false),
            ]),
        ])
    }
}
