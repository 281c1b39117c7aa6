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

        /// The release as the core records it (helm's output and its stored records alike).
        var status: ReleaseStatus {
            let metadata = chart?.metadata
            return ReleaseStatus(
                name: name,
                namespace: namespace,
                revision: version,
                state: ReleaseState(helm: info.status),
                description: info.description ?? "",
                chart: metadata.map { "\($0.name)-\($0.version)" },
                appVersion: metadata?.appVersion,
                lastDeployed: info.lastDeployed.flatMap(RFC3339.date(from:))
            )
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
        return release.status
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
/// or `+02:00` instead of `Z`). Parsed by hand, byte by byte: `ISO8601DateFormatter` handles at most
/// milliseconds and differs between platforms, and every revision of every history is one of these.
enum RFC3339 {
    static func date(from text: String) -> Date? {
        let bytes = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<(start + count)] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func byte(_ index: Int, in set: String) -> Bool { index < bytes.count && set.utf8.contains(bytes[index]) }
        guard let year = number(0, 4), byte(4, in: "-"), let month = number(5, 2), byte(7, in: "-"),
            let day = number(8, 2), byte(10, in: "Tt "), let hour = number(11, 2), byte(13, in: ":"),
            let minute = number(14, 2), byte(16, in: ":"), let second = number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var index = 19
        var fraction = 0.0
        if byte(index, in: ".") {
            let digits = bytes[(index + 1)...].prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            guard !digits.isEmpty, let value = Double("0." + String(decoding: digits, as: UTF8.self)) else { return nil }
            fraction = value
            index += 1 + digits.count
        }
        var offset = 0
        if byte(index, in: "Zz") {
            index += 1
        } else if byte(index, in: "+-"), let hours = number(index + 1, 2), byte(index + 3, in: ":"),
            let minutes = number(index + 4, 2)
        {
            offset = (hours * 3600 + minutes * 60) * (bytes[index] == UInt8(ascii: "+") ? 1 : -1)
            index += 6
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        let seconds = daysSince1970(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (days from civil).
    static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let shifted = month <= 2 ? year - 1 : year
        let era = (shifted >= 0 ? shifted : shifted - 399) / 400
        let yearOfEra = shifted - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
