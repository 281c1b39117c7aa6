import Crypto
import Foundation
import InferOpsCore

/// Reads what a deploy plan's chart and values files contain, for its digest: a chart folder is
/// hashed file by file (relative path and bytes, in path order) and its version read from
/// `Chart.yaml`; a packaged chart (`.tgz`) is hashed whole; a chart elsewhere (`oci://`, a
/// repository reference) cannot be read here and is bound by its reference and version only.
public struct ChartContents: PlanContentsReader {
    public init() {}

    public func contents(chart: String, chartVersion: String?, valuesFiles: [String]) throws -> PlanContents {
        var contents = PlanContents(chartVersion: chartVersion)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: chart, isDirectory: &isFolder) {
            if isFolder.boolValue {
                contents.chartDigest = try Self.folderDigest(chart)
                contents.chartVersion = try Self.declaredVersion(folder: chart) ?? chartVersion
            } else {
                contents.chartDigest = try Self.fileDigest(chart, what: "the chart")
            }
        }
        contents.valuesDigests = try valuesFiles.map { try Self.fileDigest($0, what: "the values file") }
        return contents
    }

    static func fileDigest(_ path: String, what: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Refusal("\(what.prefix(1).uppercased() + what.dropFirst()) `\(path)` cannot be read, so the plan cannot be made.",
                          hint: "Check that it exists and that the daemon may read it.")
        }
        return "sha256:" + hex(SHA256.hash(data: data))
    }

    /// Every regular file under `folder`, by relative path: each path and its bytes, with their
    /// lengths, so no two different folders hash alike.
    static func folderDigest(_ folder: String) throws -> String {
        let root = URL(fileURLWithPath: folder).standardizedFileURL
        guard let walker = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isRegularFileKey], options: [])
        else {
            throw Refusal("The chart folder `\(folder)` cannot be read, so the plan cannot be made.")
        }
        var files: [(path: String, url: URL)] = []
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            let path = String(url.standardizedFileURL.path.dropFirst(root.path.count)).trimmingPrefix("/")
            files.append((String(path), url))
        }
        var hasher = SHA256()
        for file in files.sorted(by: { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }) {
            guard let data = FileManager.default.contents(atPath: file.url.path) else {
                throw Refusal("The chart file `\(file.url.path)` cannot be read, so the plan cannot be made.")
            }
            hasher.update(data: Data("\(file.path.utf8.count):\(file.path)\(data.count):".utf8))
            hasher.update(data: data)
        }
        return "sha256:" + hex(hasher.finalize())
    }

    /// The top-level `version:` of the folder's `Chart.yaml`.
    static func declaredVersion(folder: String) throws -> String? {
        guard let data = FileManager.default.contents(atPath: folder + "/Chart.yaml") else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("version:") {
            let value = line.dropFirst("version:".count).trimmingCharacters(in: .whitespaces)
            return value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
        }
        return nil
    }
}
