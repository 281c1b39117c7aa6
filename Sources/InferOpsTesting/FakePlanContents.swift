import InferOpsCore
import Synchronization

/// Plan contents a test sets: what the chart and each values file "contain" is a label per path,
/// changed with `edit(_:to:)` to stand for someone editing the file.
public final class FakePlanContents: PlanContentsReader {
    let labels = Mutex<[String: String]>([:])

    public init() {}

    /// From now on, `path` reads as containing `label`.
    public func edit(_ path: String, to label: String) {
        labels.withLock { $0[path] = label }
    }

    public func contents(chart: String, chartVersion: String?, valuesFiles: [String]) throws -> PlanContents {
        let labels = labels.withLock { $0 }
        return PlanContents(
            chartVersion: chartVersion ?? "0.1.0", chartDigest: "chart:" + (labels[chart] ?? "original"),
            valuesDigests: valuesFiles.map { "values:" + (labels[$0] ?? "original") })
    }
}
