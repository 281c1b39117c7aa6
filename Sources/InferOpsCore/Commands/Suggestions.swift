/// "Did you mean" suggestions by edit distance, the way shells and errbot offer close matches.
public enum Suggestions {
    /// The candidates closest to `word`, closest first, within a distance that grows with its length.
    public static func closest(to word: String, in candidates: [String], limit: Int = 3) -> [String] {
        let target = Array(word.lowercased().unicodeScalars.prefix(64))
        let scored = candidates.compactMap { candidate -> (String, Int)? in
            let lowered = candidate.lowercased()
            if !target.isEmpty, lowered.hasPrefix(String(String.UnicodeScalarView(target))) {
                return (candidate, 0)
            }
            let scalars = Array(lowered.unicodeScalars)
            // Two edits are a typo in `deplyo`, but a different word between `sudo` and `slo`:
            // a short name allows one.
            let threshold = min(target.count, scalars.count) <= 3 ? 1 : max(2, target.count / 3)
            let distance = editDistance(target, scalars)
            return distance <= threshold ? (candidate, distance) : nil
        }
        return scored.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.prefix(limit).map(\.0)
    }

    /// " Did you mean `a` or `b`?", or an empty string when nothing is close.
    public static func didYouMean(_ word: String, in candidates: [String]) -> String {
        let matches = closest(to: word, in: candidates)
        guard !matches.isEmpty else { return "" }
        return " Did you mean " + matches.map { "`\($0)`" }.joined(separator: " or ") + "?"
    }

    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
