/// One verb, as declared in `commands/<verb>.yaml`. Parsing, validation and help derive from it.
public struct CommandSpec: Hashable, Sendable, Codable {
    public var name: String
    public var summary: String
    /// The permission the policy must grant in the command's environment; `none` for help.
    public var permission: String
    /// Whether the command changes something (and so becomes an audited operation).
    public var changes: Bool
    public var arguments: [ArgumentSpec]
    public var options: [OptionSpec]
    public var examples: [String]

    public init(
        name: String, summary: String, permission: String, changes: Bool, arguments: [ArgumentSpec] = [],
        options: [OptionSpec] = [], examples: [String] = []
    ) {
        self.name = name
        self.summary = summary
        self.permission = permission
        self.changes = changes
        self.arguments = arguments
        self.options = options
        self.examples = examples
    }

    enum CodingKeys: String, CodingKey { case name, summary, permission, changes, arguments, options, examples }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        summary = try container.decode(String.self, forKey: .summary)
        permission = try container.decode(String.self, forKey: .permission)
        changes = try container.decodeIfPresent(Bool.self, forKey: .changes) ?? false
        arguments = try container.decodeIfPresent([ArgumentSpec].self, forKey: .arguments) ?? []
        options = try container.decodeIfPresent([OptionSpec].self, forKey: .options) ?? []
        examples = try container.decodeIfPresent([String].self, forKey: .examples) ?? []
    }

    /// The usage line shown by help and in errors, e.g. `deploy <model> to <environment> [--dry-run]`.
    public var usage: String {
        var parts = [name]
        for argument in arguments {
            var part = "<\(argument.name)>"
            if let keyword = argument.keyword { part = "\(keyword) \(part)" }
            parts.append(argument.optional ? "[\(part)]" : part)
        }
        for option in options {
            var part = "--\(option.name)"
            switch option.kind {
            case .flag: break
            case .keyvalue: part += " key=value"
            case .revision: part += " N"
            case .string: part += " \"…\""
            }
            if option.repeatable { part += " …" }
            parts.append("[\(part)]")
        }
        return parts.joined(separator: " ")
    }
}

/// What an argument names; validation checks each kind against the configuration.
public enum ArgumentKind: String, Hashable, Sendable, Codable, CaseIterable {
    case model, environment, operation, verb, text
}

public struct ArgumentSpec: Hashable, Sendable, Codable {
    public var name: String
    public var kind: ArgumentKind
    /// The word that introduces the argument (`to`, `in`); `nil` for a plain positional argument.
    public var keyword: String?
    public var optional: Bool
    public var summary: String

    public init(name: String, kind: ArgumentKind, keyword: String? = nil, optional: Bool = false, summary: String = "") {
        self.name = name
        self.kind = kind
        self.keyword = keyword
        self.optional = optional
        self.summary = summary
    }

    enum CodingKeys: String, CodingKey { case name, kind, keyword, optional, summary }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        kind = try container.decode(ArgumentKind.self, forKey: .kind)
        keyword = try container.decodeIfPresent(String.self, forKey: .keyword)
        optional = try container.decodeIfPresent(Bool.self, forKey: .optional) ?? false
        summary = try container.decodeIfPresent(String.self, forKey: .summary) ?? ""
    }
}

public enum OptionKind: String, Hashable, Sendable, Codable, CaseIterable {
    /// Present or absent, no value.
    case flag
    /// Any text (quoted if it has spaces).
    case string
    /// `key=value`.
    case keyvalue
    /// A positive integer.
    case revision
}

public struct OptionSpec: Hashable, Sendable, Codable {
    public var name: String
    public var kind: OptionKind
    public var repeatable: Bool
    public var summary: String

    public init(name: String, kind: OptionKind, repeatable: Bool = false, summary: String = "") {
        self.name = name
        self.kind = kind
        self.repeatable = repeatable
        self.summary = summary
    }

    enum CodingKeys: String, CodingKey { case name, kind, repeatable, summary }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        kind = try container.decode(OptionKind.self, forKey: .kind)
        repeatable = try container.decodeIfPresent(Bool.self, forKey: .repeatable) ?? false
        summary = try container.decodeIfPresent(String.self, forKey: .summary) ?? ""
    }
}
