/// What the files a deploy plan names contain, so its digest binds to contents, not names: an
/// approval given for one chart or values file does not carry over to another with the same name.
public struct PlanContents: Hashable, Sendable {
    /// The chart's version as its `Chart.yaml` says (or as requested, for a chart not read here).
    public var chartVersion: String?
    /// SHA-256 over the chart's files (a folder: every file's relative path and bytes, in path
    /// order; a packaged chart: its bytes). `nil` for a chart not on this machine (`oci://`).
    public var chartDigest: String?
    /// SHA-256 of each values file's bytes, in the plan's order.
    public var valuesDigests: [String]

    public init(chartVersion: String? = nil, chartDigest: String? = nil, valuesDigests: [String] = []) {
        self.chartVersion = chartVersion
        self.chartDigest = chartDigest
        self.valuesDigests = valuesDigests
    }
}

/// Reads what a plan's chart and values files contain. Synchronous, like the store's reads: a few
/// local files, read on the calling thread, so planning keeps the order operations arrived in.
public protocol PlanContentsReader: Sendable {
    /// - Throws: `Refusal` when a file the plan names cannot be read.
    func contents(chart: String, chartVersion: String?, valuesFiles: [String]) throws -> PlanContents
}

/// Reads nothing: plans digest names only. For tests that do not look at contents.
public struct UnreadPlanContents: PlanContentsReader {
    public init() {}
    public func contents(chart: String, chartVersion: String?, valuesFiles: [String]) throws -> PlanContents {
        PlanContents(chartVersion: chartVersion)
    }
}
