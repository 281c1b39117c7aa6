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

    /// `file:line: error: message. Fix: fix.`: the message and the fix are each a sentence, so the
    /// fix never reads as the end of the message.
    public var description: String {
        "\(file):\(line): \(critical ? "error" : "warning"): \(Self.sentence(message))"
            + (fix.isEmpty ? "" : " Fix: \(Self.sentence(fix))")
    }

    /// The text with a full stop unless it already ends a sentence.
    static func sentence(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let last = trimmed.last, !".?!".contains(last) else { return trimmed }
        return trimmed + "."
    }
}

/// Reads YAML nodes with their line numbers so every problem can name its file and line.
final class YAMLReader {
    let file: String
    private(set) var problems: [ConfigurationProblem] = []

    init(file: String) { self.file = file }

    func load() -> Node? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            let exists = FileManager.default.fileExists(atPath: file)
            problem(line: 0, exists ? "the file cannot be read." : "the file does not exist.",
                    fix: exists ? "check its permissions" : "check the path, or pass another file with `--config`")
            return nil
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                problem(line: 1, "the file is empty.", fix: "see config/inferops.example.yaml")
                return nil
            }
            return node
        } catch let error as YamlError {
            problem(line: Self.line(of: error), "it is not valid YAML: \(Self.summary(of: error)).", fix: "correct the YAML syntax")
            return nil
        } catch {
            problem(line: 1, "it is not valid YAML.", fix: "correct the YAML syntax")
            return nil
        }
    }

    func problem(_ node: Node?, _ message: String, fix: String, critical: Bool = true) {
        problem(line: node.map(Self.line) ?? 1, message, fix: fix, critical: critical)
    }

    func problem(line: Int, _ message: String, fix: String, critical: Bool = true) {
        problems.append(ConfigurationProblem(file: file, line: line, message: ConfigurationProblem.sentence(message), fix: fix,
                                             critical: critical))
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

    /// The mapping's keys that are not in `known`. They are errors: a typo such as `replica: 2` would
    /// otherwise be ignored and the default used without a word.
    func checkKeys(_ node: Node, known: [String], in section: String) {
        guard let mapping = node.mapping else { return }
        for (key, _) in mapping {
            guard let name = key.string, !known.contains(name) else { continue }
            let matches = Suggestions.closest(to: name, in: known)
            problem(key, "unknown key `\(name)` in \(section)." + Suggestions.didYouMean(name, in: known),
                    fix: matches.first.map { "rename it to `\($0)`" }
                        ?? "remove it or use one of: \(known.joined(separator: ", "))")
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

    /// A whole number in `range`; a wrong one is reported with `suggested` (the default) as the fix,
    /// never a bound that would be a poor choice, such as `replicas: 0`.
    func int(_ node: Node?, _ key: String, in section: String, range: ClosedRange<Int>, suggested: Int) -> Int? {
        guard let value = node?[key] else { return nil }
        guard let number = value.int, range.contains(number) else {
            problem(value, "`\(key)` in \(section) must be a whole number from \(range.lowerBound) to \(range.upperBound).",
                    fix: "write e.g. `\(key): \(range.clamped(suggested))`")
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

    /// A duration; a wrong one is reported with `suggested` (the default) as the fix.
    func duration(_ node: Node?, _ key: String, in section: String, suggested: Duration) -> Duration? {
        guard let value = node?[key] else { return nil }
        guard let text = value.string, let duration = Self.parseDuration(text) else {
            problem(value, "`\(key)` in \(section) must be a duration like `90s`, `10m` or `1h`.",
                    fix: "write e.g. `\(key): \(Self.durationText(suggested))`")
            return nil
        }
        return duration
    }

    /// A duration as the configuration writes it: `10m`, `90s`, `1500ms`.
    static func durationText(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds % 3_600_000 == 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
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

extension ClosedRange where Bound == Int {
    /// The nearest value inside the range.
    func clamped(_ value: Int) -> Int { Swift.min(Swift.max(value, lowerBound), upperBound) }
}
