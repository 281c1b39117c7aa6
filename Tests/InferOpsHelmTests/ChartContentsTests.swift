import Foundation
import InferOpsCore
import InferOpsHelm
import Testing

/// A plan's digest binds to what its chart and values files contain: every change to a file changes
/// it, the same files read the same, and a file that cannot be read stops the plan.
@Suite struct ChartContentsTests {
    let folder: URL

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("chart-contents-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("chart/templates"), withIntermediateDirectories: true)
        try write("chart/Chart.yaml", "apiVersion: v2\nname: vllm-engine\nversion: \"0.3.1\"\nappVersion: v0.6.3\n")
        try write("chart/values.yaml", "replicaCount: 1\n")
        try write("chart/templates/deployment.yaml", "kind: Deployment\n")
        try write("values.yaml", "replicaCount: 2\n")
    }

    func write(_ path: String, _ text: String) throws {
        try text.write(to: folder.appendingPathComponent(path), atomically: true, encoding: .utf8)
    }

    func read() throws -> PlanContents {
        try ChartContents().contents(
            chart: folder.appendingPathComponent("chart").path, chartVersion: nil,
            valuesFiles: [folder.appendingPathComponent("values.yaml").path])
    }

    @Test func readsTheChartsVersionAndDigestsEveryFile() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let first = try read()
        #expect(first.chartVersion == "0.3.1")
        #expect(first.chartDigest?.hasPrefix("sha256:") == true)
        #expect(first.valuesDigests.count == 1)
        #expect(try read() == first)

        try write("chart/templates/deployment.yaml", "kind: Deployment\nspec: {}\n")
        let template = try read()
        #expect(template.chartDigest != first.chartDigest)
        #expect(template.valuesDigests == first.valuesDigests)

        try write("values.yaml", "replicaCount: 3\n")
        #expect(try read().valuesDigests != first.valuesDigests)

        // A file moved to another name with the same bytes is another chart.
        try FileManager.default.moveItem(
            at: folder.appendingPathComponent("chart/templates/deployment.yaml"),
            to: folder.appendingPathComponent("chart/templates/engine.yaml"))
        #expect(try read().chartDigest != template.chartDigest)
    }

    @Test func aPackagedChartIsHashedWholeAndARemoteOneIsBoundByItsReference() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        try write("engine-0.3.1.tgz", "not really gzip, but bytes all the same")
        let packaged = try ChartContents().contents(
            chart: folder.appendingPathComponent("engine-0.3.1.tgz").path, chartVersion: "0.3.1", valuesFiles: [])
        #expect(packaged.chartDigest?.hasPrefix("sha256:") == true)
        #expect(packaged.chartVersion == "0.3.1")

        let remote = try ChartContents().contents(chart: "oci://registry.example/charts/vllm-engine", chartVersion: "0.3.1",
                                                  valuesFiles: [])
        #expect(remote == PlanContents(chartVersion: "0.3.1", chartDigest: nil, valuesDigests: []))
    }

    @Test func aValuesFileThatCannotBeReadStopsThePlan() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: Refusal.self) {
            try ChartContents().contents(chart: folder.appendingPathComponent("chart").path, chartVersion: nil,
                                         valuesFiles: [folder.appendingPathComponent("missing.yaml").path])
        }
    }
}
