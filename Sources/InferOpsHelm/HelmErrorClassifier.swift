import Foundation
import InferOpsCore

/// Turns helm's stderr into a `ReleaseFailure`.
///
/// Helm exits with code 1 for every failure, so the text is all there is to go on. The texts it
/// matches are the ones Helm 3.19.0 and Helm 4.1.4 print (catalogued in the Helm probe, §6):
/// - only the part from the first line starting with `Error: ` counts: Helm 4 logs `level=WARN`
///   and `level=ERROR` lines first, which repeat the error in another form;
/// - the error may span several lines: Helm 4 joins one `resource KIND/NS/NAME not ready. status:
///   S, message: M` line per unready resource with the context error that ended the wait;
/// - both spellings are accepted where the versions differ (`Kubernetes`/`kubernetes cluster
///   unreachable`, `re-use`/`reuse`, `Unable`/`unable to continue`).
///
/// Pure and synchronous, so every row of the catalogue is a unit test.
public struct HelmErrorClassifier: Sendable {
    /// The most characters a `detail` may have: enough for one chat line.
    public var maxDetailLength: Int

    public init(maxDetailLength: Int = 300) {
        self.maxDetailLength = maxDetailLength
    }

    /// Classifies one failed run.
    /// - Parameters:
    ///   - stderr: everything helm wrote to stderr.
    ///   - values: the values the call passed, so that sensitive ones are never echoed in a detail.
    public func classify(stderr: String, values: JSONValue = .object([:])) -> ReleaseFailure {
        classify(stderr: stderr, redactor: SecretRedactor(values: values))
    }

    func classify(stderr: String, redactor: SecretRedactor) -> ReleaseFailure {
        let text = Self.errorText(in: stderr)
        let lowered = text.lowercased()
        func has(_ needle: String) -> Bool { lowered.contains(needle.lowercased()) }

        if has("kubernetes cluster unreachable") {
            let reason = text.components(separatedBy: "unreachable: ").dropFirst().joined(separator: "unreachable: ")
            return .clusterUnreachable(detail: detail(reason.isEmpty ? text : reason, redactor))
        }
        if has("another operation (install/upgrade/rollback) is in progress") { return .operationInProgress }
        if has("has no deployed releases") { return .noDeployedRelease }
        if let match = text.firstMatch(of: #/release has no (\d+) version/#) {
            let revision = Int(match.output.1) ?? 0
            return .missingRevision(revision == 0 ? nil : revision)
        }
        if has("release: not found") { return .releaseNotFound }

        let resources = Self.unreadyResources(in: text)
        let failed = resources.filter { $0.status == "Failed" }
        if !failed.isEmpty {
            return .rolloutFailed(detail: detail(failed.map(\.summary).joined(separator: "; "), redactor))
        }
        if has("context deadline exceeded") || has("timed out waiting for the condition") {
            return .readinessTimeout(detail: detail(timeoutDetail(resources, text: lowered), redactor))
        }
        if has("context canceled") { return .cancelled }
        if Self.chartErrorMarkers.contains(where: { has($0) }) || Self.isChartNotFound(text) {
            return .chartError(detail: detail(Self.stripOperationPrefixes(text), redactor))
        }
        let fallback = text.isEmpty ? "helm failed without an error message" : Self.stripOperationPrefixes(text)
        return .unclassified(detail: detail(fallback, redactor))
    }

    /// Texts that mean the chart could not be found, rendered or applied as written.
    static let chartErrorMarkers: [String] = [
        // Finding the chart (see also `isChartNotFound`).
        "no chart version found", "no chart name found", "failed to fetch", "failed to download",
        "is not a valid chart repository", "chart.yaml file is missing", "validation: chart.metadata",
        // Rendering it.
        "parse error", "yaml parse error", "error converting yaml to json", "executing \"", "template: ",
        "execution error at", "values don't meet the specifications of the schema",
        "use --debug flag to render out invalid yaml",
        // Applying it.
        "unable to build kubernetes objects", "cannot re-use a name", "cannot reuse a name",
        "invalid ownership metadata", "unable to continue with install", "unable to continue with update",
        "no matches for kind", "resource mapping not found", " is invalid: ",
    ]

    /// `path "./x" not found`, `repo x not found`, `chart "x" version "1.0" not found in …`.
    static func isChartNotFound(_ text: String) -> Bool {
        text.contains(#/(?i)\bpath "[^"]*" not found/#) || text.contains(#/(?i)\brepo \S+ not found/#)
            || text.contains(#/(?i)\bchart "[^"]*" (?:version "[^"]*" )?not found/#)
    }

    /// The error part of stderr: from the first line starting with `Error: ` to the end, without
    /// that prefix. When there is no such line (helm was killed, or crashed), the lines that are not
    /// slog records or deprecation notices.
    public static func errorText(in stderr: String) -> String {
        let lines = stderr.replacingOccurrences(of: "\r\n", with: "\n").split(
            separator: "\n",
            omittingEmptySubsequences: false
        )
        if let start = lines.firstIndex(where: { $0.hasPrefix("Error: ") }) {
            var errorLines = Array(lines[start...])
            errorLines[0] = errorLines[0].dropFirst("Error: ".count)
            return errorLines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let rest = lines.filter { !$0.hasPrefix("level=") && !$0.hasPrefix("Flag --") && !$0.hasPrefix("WARNING: ") }
        return rest.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// One `resource KIND/NS/NAME not ready. status: S, message: M` line of Helm 4's watcher.
    struct UnreadyResource: Equatable {
        var kind: String
        var namespace: String
        var name: String
        var status: String
        var message: String

        /// `Deployment default/f1-engine (InProgress: Available: 0/1)`: short enough to list several.
        var summary: String {
            status == "Failed"
                ? "\(kind) \(namespace)/\(name): \(message)"
                : "\(kind) \(namespace)/\(name) (\(status): \(message))"
        }
    }

    static func unreadyResources(in text: String) -> [UnreadyResource] {
        text.matches(of: #/resource ([^/\s]+)/([^/\s]+)/([^\s]+) not ready\. status: ([A-Za-z]+), message: ([^\n]*)/#)
            .map {
                UnreadyResource(
                    kind: String($0.output.1),
                    namespace: String($0.output.2),
                    name: String($0.output.3),
                    status: String($0.output.4),
                    message: $0.output.5.trimmingCharacters(in: .whitespaces)
                )
            }
    }

    /// What a readiness timeout says: which resources were still not ready (Helm 4 names them; Helm
    /// 3 only says that the wait ran out), and whether helm then undid the release on its own.
    func timeoutDetail(_ resources: [UnreadyResource], text: String) -> String {
        var sentence: String
        if resources.isEmpty {
            sentence = "Helm's wait ran out (context deadline exceeded)."
        } else {
            let shown = resources.prefix(3).map(\.summary).joined(separator: "; ")
            let more = resources.count > 3 ? " and \(resources.count - 3) more" : ""
            sentence = "Still not ready: \(shown)\(more)."
        }
        if text.contains("has been rolled back") { sentence += " Helm rolled the release back." }
        if text.contains("has been uninstalled") { sentence += " Helm uninstalled the release." }
        return sentence
    }

    /// Drops the `UPGRADE FAILED: `-style prefixes, which repeat what the caller already knows.
    static func stripOperationPrefixes(_ text: String) -> String {
        var text = Substring(text)
        let prefixes = [
            "INSTALLATION FAILED: ", "UPGRADE FAILED: ", "cluster reachability check failed: ",
            "release name check failed: ",
        ]
        var stripped = true
        while stripped {
            stripped = false
            for prefix in prefixes where text.hasPrefix(prefix) {
                text = text.dropFirst(prefix.count)
                stripped = true
            }
        }
        return String(text)
    }

    /// Redacted, on one line, and at most `maxDetailLength` characters.
    func detail(_ text: String, _ redactor: SecretRedactor) -> String {
        let lines = text.split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && $0 != "Use --debug flag to render out invalid YAML" }
        let oneLine = redactor.redact(lines.joined(separator: " "))
        guard oneLine.count > maxDetailLength else { return oneLine }
        return String(oneLine.prefix(max(0, maxDetailLength - 1))) + "…"
    }
}
