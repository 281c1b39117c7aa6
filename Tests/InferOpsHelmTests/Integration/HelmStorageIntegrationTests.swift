import Foundation
import InferOpsCore
import InferOpsHTTP
import InferOpsKube
import InferOpsTestSupport
import Testing

@testable import InferOpsHelm

/// `HelmStorage` reads the records the real Helm 3.19.0 and Helm 4.1.4 write, with either driver,
/// and answers exactly what `helm status` and `helm history` answer, through every state a release
/// goes through: installed, upgraded, failed, rolled back, left pending by a killed helm, removed.
@Suite("Helm's records read from the Kubernetes API", .timeLimit(.minutes(2)))
struct HelmStorageIntegrationTests {
    let tools: IntegrationTools

    init() throws {
        tools = try IntegrationTools.require()
    }

    func upgrade(_ values: JSONValue, timeout: Duration = .seconds(60)) -> ReleaseUpgrade {
        ReleaseUpgrade(
            target: ReleaseTarget(release: "llama-staging", namespace: "models", kubeContext: "emulator"),
            chart: tools.chart, values: values, timeout: timeout
        )
    }

    @Test(
        "status and history from the records equal helm's own",
        arguments: HelmVersion.allCases, ["secret", "configmap"]
    )
    func matchesHelm(_ version: HelmVersion, _ driver: String) async throws {
        try await KubeEmulator.with { emulator in
            let http = try CurlHTTPClient()
            let contexts = KubeContexts(source: .kubeconfig(try Kubeconfig.load(path: emulator.kubeconfig)), http: http)
            let helm = try emulator.engine(version, driver: driver)
            let stored = try emulator.engine(version, driver: driver, storage: contexts)
            let storage = try #require(stored.storage)
            let target = upgrade(readyAfter(1)).target

            var seen: [[ReleaseState]] = []
            /// Both ways of reading agree, and say `states`, oldest revision first.
            func expectSameAnswers(_ states: [ReleaseState], sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let status = try await helm.status(target)
                #expect(try await stored.status(target) == status, sourceLocation: sourceLocation)
                let history = try await helm.history(target)
                #expect(try await stored.history(target) == history, sourceLocation: sourceLocation)
                #expect(try await storage.history(target, max: 2) == Array(history.suffix(2)), sourceLocation: sourceLocation)
                #expect(history.map(\.state) == states, sourceLocation: sourceLocation)
                #expect(status?.revision == history.last?.revision, sourceLocation: sourceLocation)
                seen.append(states)
            }

            try await expectSameAnswers([])
            #expect(try await stored.status(target) == nil)

            _ = try await stored.upgrade(upgrade(readyAfter(1)))
            try await expectSameAnswers([.deployed])
            let status = try #require(try await stored.status(target))
            #expect(status.chart == "vllm-engine-0.1.0")
            #expect(status.appVersion == "v0.6.3")
            #expect(status.lastDeployed != nil)

            _ = try await stored.upgrade(upgrade(readyAfter(1).merging(.object(["replicaCount": .number(2)]))))
            try await expectSameAnswers([.superseded, .deployed])

            _ = await releaseFailure { try await stored.upgrade(upgrade(readyAfter(-1), timeout: .seconds(2))) }
            try await expectSameAnswers([.superseded, .deployed, .failed])

            _ = try await stored.rollback(target, to: 1, timeout: .seconds(60))
            try await expectSameAnswers([.superseded, .superseded, .failed, .deployed])
            #expect(try await stored.status(target)?.description == "Rollback to 1")

            try await emulator.killHelmWhilePending(
                version, stored, upgrade(readyAfter(-1)), state: .pendingUpgrade
            )
            try await expectSameAnswers([.superseded, .superseded, .failed, .deployed, .pendingUpgrade])

            try await stored.uninstall(target, timeout: .seconds(60))
            try await expectSameAnswers([])
            #expect(seen.count == 7)
            await http.shutdown()
        }
    }

    @Test("an unreachable API server is the cluster's failure, as helm would say")
    func unreachable() async throws {
        let folder = TestTools.temporaryPath("storage-unreachable")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let kubeconfig = try IntegrationTools.unreachableKubeconfig(in: folder)
        let http = try CurlHTTPClient()
        let engine = HelmReleaseEngine(
            helmPath: try IntegrationTools.helm(.v4), kubeconfig: kubeconfig,
            environment: ["HELM_CACHE_HOME": folder + "/cache", "HELM_CONFIG_HOME": folder + "/config"],
            workingDirectory: folder + "/work", version: .v4,
            storage: HelmStorage(driver: "secret", contexts: KubeContexts(source: .kubeconfig(try Kubeconfig.load(path: kubeconfig)), http: http))
        )
        let target = ReleaseTarget(release: "x", namespace: "models")
        for failure in [await releaseFailure { try await engine.status(target) }, await releaseFailure { try await engine.history(target) }] {
            guard case .clusterUnreachable(let detail) = failure else {
                Issue.record("expected the cluster to be unreachable, got \(String(describing: failure))")
                continue
            }
            #expect(detail.contains("http://127.0.0.1:1"))
        }
        await http.shutdown()
    }

    @Test("a release with a record the storage cannot read is left to helm, and answers what helm answers")
    func unreadableRecord() async throws {
        try await KubeEmulator.with { emulator in
            let http = try CurlHTTPClient()
            let contexts = KubeContexts(source: .kubeconfig(try Kubeconfig.load(path: emulator.kubeconfig)), http: http)
            let helm = try emulator.engine(.v3)
            let stored = try emulator.engine(.v3, storage: contexts)
            let target = upgrade(readyAfter(1)).target
            _ = try await stored.upgrade(upgrade(readyAfter(1)))
            // A second revision whose record is not a release.
            let api = try await contexts.context("emulator")
            let garbage = Data("not a release".utf8).base64EncodedString()
            let secret = #"""
                {"apiVersion":"v1","kind":"Secret","type":"helm.sh/release.v1",
                 "metadata":{"name":"sh.helm.release.v1.llama-staging.v2","namespace":"models",
                  "labels":{"owner":"helm","name":"llama-staging","status":"deployed","version":"2"}},
                 "data":{"release":"\#(Data(garbage.utf8).base64EncodedString())"}}
                """#
            let _: JSONValue = try await api.create("/api/v1/namespaces/models/secrets", json: Array(secret.utf8))
            let storage = try #require(stored.storage)
            await #expect(throws: HelmStorage.ReadFailure.self) { try await storage.status(target) }
            await #expect(throws: HelmStorage.ReadFailure.self) { try await storage.history(target, max: 256) }
            // helm skips a record it cannot decode: revision 1 is what it reports, and so does the engine.
            let status = try await stored.status(target)
            #expect(status?.revision == 1)
            #expect(status == (try await helm.status(target)))
            #expect(try await stored.history(target).map(\.revision) == [1])
            await http.shutdown()
        }
    }
}
