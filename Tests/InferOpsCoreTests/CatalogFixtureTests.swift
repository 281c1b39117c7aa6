import Foundation
import InferOpsCore
import Testing

/// The fixture catalog must say what `commands/*.yaml` say, or the parser tests test something else.
/// The test target has no YAML library; these files use a small, regular subset that a line reader handles.
@Suite struct CatalogFixtureTests {
    static let commandsFolder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("commands")

    /// `commands/<verb>.yaml` read as a `CommandSpec`.
    static func declaration(_ verb: String) throws -> CommandSpec {
        let text = try String(contentsOf: commandsFolder.appendingPathComponent("\(verb).yaml"), encoding: .utf8)
        var top: [String: String] = [:]
        var section = ""
        var items: [String: [[String: String]]] = [:]
        var examples: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
            if line.hasPrefix("#") { continue }
            if !line.hasPrefix(" ") {
                let (key, value) = pair(line)
                if value.isEmpty { section = key } else { top[key] = value }
            } else if line.hasPrefix("  - ") {
                let item = String(line.dropFirst(4))
                if section == "examples" {
                    examples.append(item)
                } else {
                    let (key, value) = pair(item)
                    items[section, default: []].append([key: value])
                }
            } else {
                let (key, value) = pair(line.trimmingCharacters(in: .whitespaces))
                items[section]![items[section]!.count - 1][key] = value
            }
        }
        return CommandSpec(
            name: top["name"] ?? "", summary: top["summary"] ?? "", permission: top["permission"] ?? "",
            changes: top["changes"] == "true",
            arguments: (items["arguments"] ?? []).map {
                ArgumentSpec(
                    name: $0["name"]!, kind: ArgumentKind(rawValue: $0["kind"]!)!, keyword: $0["keyword"],
                    optional: $0["optional"] == "true", summary: $0["summary"] ?? ""
                )
            },
            options: (items["options"] ?? []).map {
                OptionSpec(
                    name: $0["name"]!, kind: OptionKind(rawValue: $0["kind"]!)!, repeatable: $0["repeatable"] == "true",
                    summary: $0["summary"] ?? ""
                )
            },
            examples: examples
        )
    }

    static func pair(_ line: String) -> (String, String) {
        guard let colon = line.firstIndex(of: ":") else { return (line, "") }
        return (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
    }

    @Test func everyDeclaredVerbIsInTheFixture() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.commandsFolder.path)
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        #expect(files == Fixtures.catalog.names)
    }

    @Test(arguments: Fixtures.catalog.names)
    func fixtureMatchesDeclaration(verb: String) throws {
        #expect(try Self.declaration(verb) == Fixtures.catalog.spec(named: verb))
    }

    @Test(arguments: Fixtures.specs)
    func declarationHasNoProblems(spec: CommandSpec) {
        #expect(CommandCatalog.problems(in: spec) == [])
    }
}
