import Foundation
import InferOpsCore
import Yams

/// A problem in a configuration or command file, with where it is and how to fix it.
public struct ConfigurationProblem: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String
    public var fix: String
    /// Critical problems stop start-up; the rest are warnings.
    public var critical: Bool

    public var description: String {
        "\(file):\(line): \(critical ? "error" : "warning"): \(message)" + (fix.isEmpty ? "" : " Fix: \(fix)")
    }
}

/// Reads YAML nodes with their line numbers so every problem can name its file and line.
final class YAMLReader {
    let file: String
    private(set) var problems: [ConfigurationProblem] = []

    init(file: String) { self.file = file }

    func load() -> Node? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            problem(line: 0, "cannot read the file", fix: "check the path and its permissions")
            return nil
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                problem(line: 1, "the file is empty", fix: "see config/inferops.example.yaml")
                return nil
            }
            return node
        } catch let error as YamlError {
            problem(line: Self.line(of: error), "it is not valid YAML: \(Self.summary(of: error))", fix: "correct the YAML syntax")
            return nil
        } catch {
            problem(line: 1, "it is not valid YAML", fix: "correct the YAML syntax")
            return nil
        }
    }

    func problem(_ node: Node?, _ message: String, fix: String, critical: Bool = true) {
        problem(line: node.map(Self.line) ?? 1, message, fix: fix, critical: critical)
    }

    func problem(line: Int, _ message: String, fix: String, critical: Bool = true) {
        problems.append(ConfigurationProblem(file: file, line: line, message: message, fix: fix, critical: critical))
    }

    static func line(_ node: Node) -> Int { node.mark?.line ?? 1 }

    static func line(of error: YamlError) -> Int {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return 1
        }
    }

    static func summary(of error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        default: return "\(error)"
        }
    }

    // MARK: typed access

    /// The mapping's keys that are not in `known`: likely typos, reported as warnings.
    func checkKeys(_ node: Node, known: [String], in section: String) {
        guard let mapping = node.mapping else { return }
        for (key, _) in mapping {
            guard let name = key.string, !known.contains(name) else { continue }
            problem(key, "unknown key `\(name)` in \(section)." + Suggestions.didYouMean(name, in: known),
                    fix: "remove it or use one of: \(known.joined(separator: ", "))", critical: false)
        }
    }

    func mapping(_ node: Node?, _ key: String, in section: String, required: Bool = false) -> Node? {
        guard let value = node?[key] else {
            if required { problem(node, "\(section) needs `\(key)`.", fix: "add `\(key):`") }
            return nil
        }
        guard value.mapping != nil else {
            problem(value, "`\(key)` in \(section) must be a mapping.", fix: "indent its keys under `\(key):`")
            return nil
        }
        return value
    }

    func string(_ node: Node?, _ key: String, in section: String, required: Bool = false) -> String? {
        guard let value = node?[key] else {
            if required { problem(node, "\(section) needs `\(key)`.", fix: "add `\(key): …`") }
            return nil
        }
        guard let text = value.string, value.scalar != nil else {
            problem(value, "`\(key)` in \(section) must be text.", fix: "write `\(key): some-text`")
            return nil
        }
        return text
    }

    func int(_ node: Node?, _ key: String, in section: String, range: ClosedRange<Int>) -> Int? {
        guard let value = node?[key] else { return nil }
        guard let number = value.int, range.contains(number) else {
            problem(value, "`\(key)` in \(section) must be a whole number from \(range.lowerBound) to \(range.upperBound).",
                    fix: "write e.g. `\(key): \(range.lowerBound)`")
            return nil
        }
        return number
    }

    func bool(_ node: Node?, _ key: String, in section: String) -> Bool? {
        guard let value = node?[key] else { return nil }
        guard let flag = value.bool else {
            problem(value, "`\(key)` in \(section) must be true or false.", fix: "write `\(key): true` or `\(key): false`")
            return nil
        }
        return flag
    }

    func strings(_ node: Node?, _ key: String, in section: String) -> [String]? {
        guard let value = node?[key] else { return nil }
        guard let sequence = value.sequence else {
            problem(value, "`\(key)` in \(section) must be a list.", fix: "write `\(key): [a, b]`")
            return nil
        }
        return sequence.compactMap { item in
            guard let text = item.string else {
                problem(item, "items of `\(key)` in \(section) must be text.", fix: "quote the item")
                return nil
            }
            return text
        }
    }

    func duration(_ node: Node?, _ key: String, in section: String) -> Duration? {
        guard let value = node?[key] else { return nil }
        guard let text = value.string, let duration = Self.parseDuration(text) else {
            problem(value, "`\(key)` in \(section) must be a duration like `90s`, `10m` or `1h`.", fix: "write e.g. `\(key): 10m`")
            return nil
        }
        return duration
    }

    static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if suffix == "s", number.hasSuffix("m") { continue }
            guard let value = Double(number), value > 0, value < 1e7 else { return nil }
            return .milliseconds(Int64((value * factor * 1000).rounded()))
        }
        return nil
    }
}
