import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsKube
import Testing

@testable import InferOpsHelm

/// Decoding Helm's stored release records: base64, gzip, the release JSON.
@Suite("Helm's stored release records")
struct HelmStorageRecordTests {
    /// `{"name":"r","namespace":"models","version":2,"info":{…"last_deployed":"2026-11-29T01:07:30.25426763Z"},
    /// "chart":{"metadata":{"name":"vllm-engine","version":"0.1.0","appVersion":"v0.6.3"}},
    /// "config":{"apiKey":"s3cr3t-planted"},"manifest":"kind: Deployment"}`, gzip compressed and
    /// base64 encoded as Helm stores it.
    static let record =
        "H4sIAAAAAAACA02OvW7DMAyEXyXgbBuy3Dqo5m5d2wxdCkKiXaH6g8QYCAK/eyWjCLqRx493d4eAnkBBhu4YS0Lddh8NuVLFjXKxMYCSHdiwRFB3KIx8LZUylFy8kamcoaKzTXyw8JHWjIZOOvrkiKkCDgt/PR4USCHnfhx7+fIuRiXOahKDfH6S83mePmHvQH9j5hbnidEgY5v/6m7O+Z7CagP97whiGAdRFUzp8hA3MczDBHvzjGGxazPCZN/oVq9l0nniPjkMXItVyGOwC5WaDT82GHV6PVp7Cgz7L+QuXhoyAQAA"
    /// The same JSON, base64 encoded without compression (helm reads both).
    static let plainRecord =
        "eyJuYW1lIjoiciIsIm5hbWVzcGFjZSI6Im1vZGVscyIsInZlcnNpb24iOjIsImluZm8iOnsic3RhdHVzIjoiZGVwbG95ZWQiLCJkZXNjcmlwdGlvbiI6IlVwZ3JhZGUgY29tcGxldGUiLCJsYXN0X2RlcGxveWVkIjoiMjAyNi0xMS0yOVQwMTowNzozMC4yNTQyNjc2M1oifSwiY2hhcnQiOnsibWV0YWRhdGEiOnsibmFtZSI6InZsbG0tZW5naW5lIiwidmVyc2lvbiI6IjAuMS4wIiwiYXBwVmVyc2lvbiI6InYwLjYuMyJ9fSwiY29uZmlnIjp7ImFwaUtleSI6InMzY3IzdC1wbGFudGVkIn0sIm1hbmlmZXN0Ijoia2luZDogRGVwbG95bWVudCJ9"
    /// 1 MiB of zeros, gzip compressed to 1,051 bytes.
    static let megabyteOfZeros = "H4sIAAAAAAACA+3BMQEAAADCoPVPbQhfoA" + String(repeating: "A", count: 1354) + "PgMc6jinAAAQAA=="

    func expectTheRecord(_ release: HelmOutput.Release) {
        #expect(release.name == "r")
        #expect(release.namespace == "models")
        #expect(release.version == 2)
        #expect(release.info.status == "deployed")
        #expect(release.info.description == "Upgrade complete")
        #expect(release.info.lastDeployed == "2026-11-29T01:07:30.25426763Z")
        #expect(release.chart?.metadata?.name == "vllm-engine")
        #expect(release.chart?.metadata?.appVersion == "v0.6.3")
    }

    @Test("a ConfigMap's record: base64 of gzip")
    func configMapRecord() throws {
        expectTheRecord(try HelmStorage.decodeRecord(Self.record, base64Twice: false))
    }

    @Test("a Secret's record: Kubernetes' base64 of it")
    func secretRecord() throws {
        let wrapped = Data(Self.record.utf8).base64EncodedString()
        expectTheRecord(try HelmStorage.decodeRecord(wrapped, base64Twice: true))
    }

    @Test("an uncompressed record")
    func plainRecord() throws {
        expectTheRecord(try HelmStorage.decodeRecord(Self.plainRecord, base64Twice: false))
    }

    @Test("damaged records fail with the reason and never quote the record")
    func damaged() {
        let cases: [(String, String)] = [
            ("not base64!", "its data is not base64"),
            (String(Self.record.prefix(120)), "its record cannot be decompressed: the compressed data is truncated"),
            (Data("{\"name\":1}".utf8).base64EncodedString(), "its release JSON is malformed: name is not a String"),
            (
                Data(#"{"name":"r","namespace":"models","version":"s3cr3t-planted","info":{"status":"deployed"}}"#.utf8)
                    .base64EncodedString(),
                "its release JSON is malformed: version is not a Int"
            ),
        ]
        for (payload, reason) in cases {
            do {
                _ = try HelmStorage.decodeRecord(payload, base64Twice: false)
                Issue.record("\(reason): decoded")
            } catch {
                #expect("\(error)" == reason)
                #expect(!"\(error)".contains("s3cr3t"))
            }
        }
    }

    @Test("a stream that decompresses beyond the limit is refused")
    func limit() throws {
        let compressed = try #require(Data(base64Encoded: Self.megabyteOfZeros))
        #expect(try Gunzip.decompress(compressed, limit: 2 << 20).count == 1 << 20)
        #expect(throws: Gunzip.Failure.self) { try Gunzip.decompress(compressed, limit: 256 << 10) }
    }

    @Test("drivers whose records are not in the Kubernetes API are read by helm")
    func drivers() {
        struct NoNetwork: HTTPClient {
            func send(_ request: HTTPRequest) async throws -> HTTPResponse { throw CancellationError() }
        }
        let contexts = KubeContexts(source: .onFirstUse { throw KubeconfigError.notInCluster }, http: NoNetwork())
        #expect(HelmStorage(driver: "secret", contexts: contexts)?.kind == .secrets)
        #expect(HelmStorage(driver: "", contexts: contexts)?.kind == .secrets)
        #expect(HelmStorage(driver: "configmap", contexts: contexts)?.kind == .configmaps)
        #expect(HelmStorage(driver: "sql", contexts: contexts) == nil)
        #expect(HelmStorage(driver: "memory", contexts: contexts) == nil)
    }
}
