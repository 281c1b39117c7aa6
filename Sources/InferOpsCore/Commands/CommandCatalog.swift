/// Every verb the bot knows, as declared in `commands/`.
public struct CommandCatalog: Hashable, Sendable {
    public let specs: [CommandSpec]

    public init(specs: [CommandSpec]) {
        self.specs = specs.sorted { $0.name < $1.name }
    }

    public var names: [String] { specs.map(\.name) }

    public func spec(named name: String) -> CommandSpec? {
        specs.first { $0.name == name.lowercased() }
    }

    /// Problems a declaration can have that would make parsing ambiguous; `inferops check` reports them.
    public static func problems(in spec: CommandSpec) -> [String] {
        var problems: [String] = []
        if !CommandParser.isName(spec.name) { problems.append("the name `\(spec.name)` is not a lower-case word") }
        if spec.summary.isEmpty { problems.append("the summary is empty") }
        var seen = Set<String>()
        var optionalPositional = false
        for argument in spec.arguments {
            if !seen.insert(argument.name).inserted { problems.append("the argument `\(argument.name)` is declared twice") }
            if argument.keyword == nil {
                if optionalPositional { problems.append("the positional argument `\(argument.name)` follows an optional one") }
                optionalPositional = optionalPositional || argument.optional
            }
        }
        let keywords = spec.arguments.compactMap(\.keyword)
        if Set(keywords).count != keywords.count { problems.append("two arguments share a keyword") }
        for option in spec.options {
            if !seen.insert("--" + option.name).inserted { problems.append("the option `--\(option.name)` is declared twice") }
            if !CommandParser.isName(option.name) { problems.append("the option name `\(option.name)` is not a lower-case word") }
        }
        if spec.examples.isEmpty { problems.append("there are no examples") }
        return problems
    }
}
