import Foundation
import InferOpsCore

/// Parses helm's `--output=json` into the core's records.
///
/// Only the fields the core needs are decoded; the rest is ignored, which keeps both versions on
/// one decoder (Helm 4 adds `apply_method` and `info.resources`, drops an empty `info.deleted`).
/// The release JSON also carries the user-supplied values (`config`) and the chart's own values:
/// they are never decoded, so they cannot leak into a record or a log.
enum HelmOutput {
    /// Why helm's output could not be read; the text never includes the output itself.
    struct MalformedOutput: Error, CustomStringConvertible {
        var command: String
        var reason: String
        var description: String { "helm \(command) printed JSON that could not be read: \(reason)" }
    }

    /// A release as `status --output=json` and `upgrade --output=json` print it.
    struct Release: Decodable {
        var name: String
        var namespace: String
        var version: Int
        var info: Info
        /// Present in `upgrade`/`install` output, absent from `status` output.
        var chart: Chart?

        struct Info: Decodable {
            var status: String
            var description: String?
            var lastDeployed: String?

            enum CodingKeys: String, CodingKey {
                case status, description
                case lastDeployed = "last_deployed"
            }
        }

        struct Chart: Decodable {
            var metadata: Metadata?
            struct Metadata: Decodable {
                var name: String
                var version: String
                var appVersion: String?
            }
        }
    }

    /// One row of `history --output=json`.
    struct Revision: Decodable {
        var revision: Int
        var updated: String?
        var status: String
        var chart: String?
        var appVersion: String?
        var description: String?

        enum CodingKeys: String, CodingKey {
            case revision, updated, status, chart, description
            case appVersion = "app_version"
        }
    }

    static func release(from data: Data, command: String) throws -> ReleaseStatus {
        let release: Release = try decode(data, command: command)
        let metadata = release.chart?.metadata
        return ReleaseStatus(
            name: release.name,
            namespace: release.namespace,
            revision: release.version,
            state: ReleaseState(helm: release.info.status),
            description: release.info.description ?? "",
            chart: metadata.map { "\($0.name)-\($0.version)" },
            appVersion: metadata?.appVersion,
            lastDeployed: release.info.lastDeployed.flatMap(RFC3339.date(from:))
        )
    }

    /// Oldest first, whatever order helm printed them in.
    static func history(from data: Data) throws -> [ReleaseRevision] {
        let rows: [Revision] = try decode(data, command: "history")
        return rows.map {
            ReleaseRevision(
                revision: $0.revision,
                state: ReleaseState(helm: $0.status),
                chart: $0.chart ?? "",
                appVersion: $0.appVersion ?? "",
                description: $0.description ?? "",
                updated: $0.updated.flatMap(RFC3339.date(from:))
            )
        }
        .sorted { $0.revision < $1.revision }
    }

    static func decode<T: Decodable>(_ data: Data, command: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw MalformedOutput(command: command, reason: reason(error))
        } catch {
            throw MalformedOutput(command: command, reason: "not JSON")
        }
    }

    /// The decoding error without the data it quotes (the data may contain values).
    private static func reason(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            "missing \(path(context.codingPath + [key]))"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            "\(path(context.codingPath)) is not a \(type)"
        case .dataCorrupted(let context):
            context.codingPath.isEmpty ? "not JSON" : "\(path(context.codingPath)) is malformed"
        @unknown default:
            "unexpected shape"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty
            ? "the document" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Go's `time.Time` JSON form: RFC 3339 with up to nine fractional digits (`2026-11-29T01:07:30.25426763Z`,
/// or `+02:00` instead of `Z`). Parsed by hand because `ISO8601DateFormatter` handles at most
/// milliseconds and differs between platforms.
enum RFC3339 {
    static func date(from text: String) -> Date? {
        let pattern =
            #/^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+\-])(\d{2}):(\d{2}))$/#
        guard let match = text.wholeMatch(of: pattern) else { return nil }
        let output = match.output
        guard let year = Int(output.1), let month = Int(output.2), let day = Int(output.3),
            let hour = Int(output.4), let minute = Int(output.5), let second = Int(output.6)
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        guard let base = calendar.date(from: components) else { return nil }
        var seconds = base.timeIntervalSinceReferenceDate
        if let fraction = output.7, let value = Double("0." + fraction) { seconds += value }
        if let sign = output.9, let hours = output.10.flatMap({ Int($0) }), let minutes = output.11.flatMap({ Int($0) })
        {
            let offset = Double(hours * 3600 + minutes * 60)
            seconds -= sign == "+" ? offset : -offset
        }
        return Date(timeIntervalSinceReferenceDate: seconds)
    }
}
