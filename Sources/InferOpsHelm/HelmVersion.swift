import Foundation

/// The Helm major version, because Helm 3 and Helm 4 differ in flags, in log output and in what
/// `--wait` checks; everything else about a run is the same.
public enum HelmVersion: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case v3 = 3
    case v4 = 4

    /// Reads the output of `helm version --template '{{.Version}}'` (`v3.19.0`) or `--short`
    /// (`v4.1.4+g05fa379`). Returns `nil` for a major version this adapter does not know, so a
    /// future Helm 5 is refused at start-up rather than driven with flags it may not accept.
    public init?(versionString: String) {
        var text = Substring(versionString.trimmingCharacters(in: .whitespacesAndNewlines))
        if text.hasPrefix("v") { text = text.dropFirst() }
        guard let major = text.split(separator: ".", maxSplits: 1).first.flatMap({ Int($0) }) else { return nil }
        self.init(rawValue: major)
    }

    public var description: String { "Helm \(rawValue)" }
}
