import Foundation
import InferOpsCore
import InferOpsKube

/// Helm's release records read straight from the Kubernetes API: what `helm status` and `helm
/// history` read, without starting helm.
///
/// Helm 3 and Helm 4 keep one record per revision in the release's namespace: with the default
/// driver a Secret of type `helm.sh/release.v1` named `sh.helm.release.v1.<release>.v<revision>`,
/// with `HELM_DRIVER=configmap` a ConfigMap of that name; both labelled `owner=helm`,
/// `name=<release>`, `status=…`, `version=<revision>`. The record is the release as JSON, gzip
/// compressed and base64 encoded, under the key `release` (a Secret's data is base64 encoded once
/// more by Kubernetes). One list call returns every revision, where helm itself needs a process
/// start (40–300 ms on a busy machine) before its own list call.
///
/// Only the record's name, namespace, revision, `info` and chart metadata are decoded; its values
/// (`config`) and the chart's files never are, so they cannot reach a reply or a log. Reading needs
/// `list` on Secrets (or ConfigMaps) in the release namespaces, which helm needs anyway with the
/// same credentials.
public struct HelmStorage: Sendable {
    /// Where the records are.
    public enum Kind: String, Sendable {
        case secrets, configmaps
    }

    public let kind: Kind
    public let contexts: KubeContexts
    /// A release's records read for a `status` and a `history` asked at the same time are read once.
    let inFlight = SharedReads()

    /// The most a record may decompress to. Kubernetes keeps an object under 1 MiB; a release's JSON
    /// compresses well, but not by more than this.
    static let recordLimit = 64 << 20

    /// - Returns: `nil` for drivers that do not keep records in the Kubernetes API (`sql`, `memory`):
    ///   their releases are read by helm.
    public init?(driver: String, contexts: KubeContexts) {
        switch driver.lowercased() {
        case "", "secret", "secrets": kind = .secrets
        case "configmap", "configmaps": kind = .configmaps
        default: return nil
        }
        self.contexts = contexts
    }

    /// Why the records could not be read. `unreachable` is the cluster's own failure; for anything
    /// else the engine asks helm, which reads the same records its own way.
    public enum ReadFailure: Error, CustomStringConvertible {
        case unreachable(KubeAPIError)
        case unreadable(String)

        public var description: String {
            switch self {
            case .unreachable(let error): error.message
            case .unreadable(let reason): reason
            }
        }
    }

    /// The release as `helm status` shows it: its newest revision, or `nil` when it has none.
    public func status(_ target: ReleaseTarget) async throws(ReadFailure) -> ReleaseStatus? {
        try await records(target).last?.status
    }

    /// The revisions as `helm history --max <max>` lists them: the newest `max`, oldest first.
    public func history(_ target: ReleaseTarget, max: Int) async throws(ReadFailure) -> [ReleaseRevision] {
        try await records(target).suffix(max).map { record in
            let metadata = record.chart?.metadata
            return ReleaseRevision(
                revision: record.version, state: ReleaseState(helm: record.info.status),
                // What helm history prints for a record without a chart.
                chart: metadata.map { "\($0.name)-\($0.version)" } ?? "MISSING",
                appVersion: metadata.map { $0.appVersion ?? "" } ?? "MISSING",
                description: record.info.description ?? "",
                updated: record.info.lastDeployed.flatMap(RFC3339.date(from:))
            )
        }
    }

    /// Every record of the release, oldest revision first. An identical read in flight is joined.
    func records(_ target: ReleaseTarget) async throws(ReadFailure) -> [HelmOutput.Release] {
        do {
            return try await inFlight.read(target.readKey) { () async throws(ReadFailure) in try await readRecords(target) }
        } catch let failure as ReadFailure {
            throw failure
        } catch is CancellationError {
            throw .unreadable("cancelled")
        } catch {
            throw .unreadable("\(error)")
        }
    }

    func readRecords(_ target: ReleaseTarget) async throws(ReadFailure) -> [HelmOutput.Release] {
        let objects: [StoredObject]
        do {
            let api = try await contexts.context(target.kubeContext)
            let selector = percentEncoded("owner=helm,name=\(target.release)")
            objects = try await api.list(
                "/api/v1/namespaces/\(percentEncoded(target.namespace))/\(kind.rawValue)?labelSelector=\(selector)",
                of: StoredObject.self
            )
        } catch let error as KubeAPIError {
            switch error {
            case .unreachable, .tls: throw .unreachable(error)
            default: throw .unreadable(error.message)
            }
        } catch is CancellationError {
            throw .unreadable("cancelled")
        } catch {
            throw .unreadable("\(error)")
        }
        var releases: [HelmOutput.Release] = []
        for object in objects {
            guard let payload = object.data?["release"] else { throw .unreadable("\(object.metadata.name) has no record") }
            do {
                let release = try Self.decodeRecord(payload, base64Twice: kind == .secrets)
                // The label selects; the record itself must agree (helm filters the same way).
                guard release.name == target.release else { continue }
                releases.append(release)
            } catch {
                throw .unreadable("\(object.metadata.name) could not be read: \(error)")
            }
        }
        return releases.sorted { $0.version < $1.version }
    }

    /// One stored record: base64 (twice for a Secret's data), then gzip unless the JSON is plain
    /// (helm reads both), then the release's JSON.
    static func decodeRecord(_ payload: String, base64Twice: Bool) throws -> HelmOutput.Release {
        guard var bytes = Data(base64Encoded: payload) else { throw RecordFailure("its data is not base64") }
        if base64Twice {
            guard let inner = Data(base64Encoded: bytes) else { throw RecordFailure("its record is not base64") }
            bytes = inner
        }
        if Gunzip.isGzip(bytes) {
            do {
                bytes = try Gunzip.decompress(bytes, limit: recordLimit)
            } catch let failure as Gunzip.Failure {
                throw RecordFailure("its record cannot be decompressed: \(failure)")
            }
        }
        do {
            return try HelmOutput.decode(Data(bytes), command: "storage")
        } catch let malformed as HelmOutput.MalformedOutput {
            throw RecordFailure("its release JSON is malformed: \(malformed.reason)")
        }
    }

    struct RecordFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// A Secret or a ConfigMap: its name and its data, nothing else.
    struct StoredObject: Decodable {
        struct Metadata: Decodable {
            var name: String
        }
        var metadata: Metadata
        var data: [String: String]?
    }
}
