import Foundation
import HummingbirdTesting
import InferOpsCore
import Testing

@testable import InferOpsServer

@Suite struct HealthAndReadinessTests {
    @Test func healthzAnswersOkWhileTheProcessRuns() async throws {
        let server = try makeServer(checks: ["router": { false }])
        try await server.application.test(.router) { client in
            // Liveness ignores the readiness checks: a daemon whose router is down must not be restarted.
            let response = try await client.execute(uri: "/healthz", method: .get)
            #expect(response.status == .ok)
            #expect(String(buffer: response.body) == "ok\n")
            #expect(response.headers[.contentType] == "text/plain; charset=utf-8")

            let head = try await client.execute(uri: "/healthz", method: .head)
            #expect(head.status == .ok)
            #expect(head.body.readableBytes == 0)
        }
    }

    @Test func readyzIsOkWhenEveryCheckPasses() async throws {
        let server = try makeServer(checks: ["storage": { true }, "router": { true }, "chat": { true }])
        try await server.application.test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json")
            #expect(
                String(buffer: response.body)
                    == #"{"checks":[{"name":"chat","status":"ok"},{"name":"router","status":"ok"},"#
                    + #"{"name":"storage","status":"ok"}],"failing":[],"status":"ready"}"#
            )
        }
    }

    @Test func readyzIs503AndNamesTheFailingCheck() async throws {
        let router = Flag(false)
        let server = try makeServer(checks: ["storage": { true }, "router": { router.isSet }])
        try await server.application.test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .serviceUnavailable)
            let report = try JSONDecoder().decode(Report.self, from: Data(String(buffer: response.body).utf8))
            #expect(report.status == "unavailable")
            #expect(report.failing == ["router"])
            #expect(report.checks == [.init(name: "router", status: "failing"), .init(name: "storage", status: "ok")])

            // Readiness is evaluated per request: once the router answers, the daemon is ready again.
            router.set(true)
            let again = try await client.execute(uri: "/readyz", method: .get)
            #expect(again.status == .ok)
        }
    }

    @Test func aCheckThatHangsTimesOutInsteadOfHangingReadyz() async throws {
        let server = try makeServer(
            checks: [
                "storage": { true },
                // Waits until cancelled, as a probe stuck on a dead connection would.
                "chat": {
                    try? await Task.sleep(for: .seconds(3600))
                    return true
                },
            ],
            readinessTimeout: .milliseconds(100)
        )
        try await server.application.test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .serviceUnavailable)
            let report = try JSONDecoder().decode(Report.self, from: Data(String(buffer: response.body).utf8))
            #expect(report.failing == ["chat"])
            #expect(report.checks.first { $0.name == "chat" }?.status == "timed_out")
        }
    }

    @Test func readyzWithoutChecksIsReady() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .ok)
            #expect(String(buffer: response.body) == #"{"checks":[],"failing":[],"status":"ready"}"#)
        }
    }

    @Test func unknownPathsAre404() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let unknown = try await client.execute(uri: "/nope", method: .get)
            #expect(unknown.status == .notFound)
            let wrongMethod = try await client.execute(uri: "/healthz", method: .delete)
            #expect(wrongMethod.status == .notFound)
        }
    }

    @Test func invalidConfigurationStopsStartUpWithAMessage() throws {
        #expect(throws: DaemonHTTPServer.InvalidConfiguration.self) {
            try DaemonHTTPServer(configuration: .init(port: 70_000), denials: lookup([]))
        }
        #expect(throws: DaemonHTTPServer.InvalidConfiguration.self) {
            try DaemonHTTPServer(configuration: .init(host: ""), denials: lookup([]))
        }
        #expect(throws: DaemonHTTPServer.InvalidConfiguration.self) {
            try DaemonHTTPServer(configuration: .init(deny: .init(maxBodySize: 0)), denials: lookup([]))
        }
        do {
            _ = try DaemonHTTPServer(configuration: .init(port: -1), denials: lookup([]))
        } catch let error as DaemonHTTPServer.InvalidConfiguration {
            #expect(error.message == "The HTTP port -1 is not between 0 and 65535.")
        }
    }

    struct Report: Decodable, Equatable {
        struct Check: Decodable, Equatable {
            var name: String
            var status: String
        }
        var status: String
        var checks: [Check]
        var failing: [String]
    }
}

@Suite struct MetricsTests {
    @Test func metricsExposeWhatTheDaemonRecordedUnderTheDocumentedNames() async throws {
        let metrics = DaemonMetrics()
        let server = try makeServer(metrics: metrics)
        metrics.recordOperation(kind: .deploy, outcome: .succeeded)
        metrics.recordOperation(kind: .deploy, outcome: .succeeded)
        metrics.recordOperation(kind: .rollback, outcome: .failed)
        metrics.recordStep(kind: .deploy, step: .applying, duration: .seconds(42))
        metrics.recordStep(kind: .deploy, step: .applying, duration: .milliseconds(500))
        metrics.recordReconciliation(.repaired)
        metrics.recordReconciliation(.inSync)
        metrics.recordReconciliation(.inSync)
        metrics.recordRepair(.add, count: 2)
        metrics.recordRepair(.remove)
        metrics.recordRepair(.remove, count: 0)
        metrics.recordDeniedRequest(environment: "staging", state: .disabled)

        try await server.application.test(.router) { client in
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            let text = String(buffer: response.body)

            #expect(text.contains("# TYPE inferops_operations_total counter\n"))
            #expect(sample(text, #"inferops_operations_total{kind="deploy",outcome="succeeded"}"#) == "2")
            #expect(sample(text, #"inferops_operations_total{kind="rollback",outcome="failed"}"#) == "1")
            // Known label sets exist from the start, so alerts see 0 rather than nothing.
            #expect(sample(text, #"inferops_operations_total{kind="lock",outcome="cancelled"}"#) == "0")

            #expect(text.contains("# TYPE inferops_step_duration_seconds histogram\n"))
            #expect(sample(text, #"inferops_step_duration_seconds_count{kind="deploy",step="applying"}"#) == "2")
            #expect(sample(text, #"inferops_step_duration_seconds_sum{kind="deploy",step="applying"}"#) == "42.5")
            #expect(
                sample(text, #"inferops_step_duration_seconds_bucket{kind="deploy",step="applying",le="1.0"}"#) == "1"
            )
            #expect(
                sample(text, #"inferops_step_duration_seconds_bucket{kind="deploy",step="applying",le="60.0"}"#) == "2"
            )

            #expect(text.contains("# TYPE inferops_router_reconciliations_total counter\n"))
            #expect(sample(text, #"inferops_router_reconciliations_total{result="in_sync"}"#) == "2")
            #expect(sample(text, #"inferops_router_reconciliations_total{result="repaired"}"#) == "1")
            #expect(sample(text, #"inferops_router_reconciliations_total{result="failed"}"#) == "0")

            #expect(text.contains("# TYPE inferops_router_repairs_total counter\n"))
            #expect(sample(text, #"inferops_router_repairs_total{action="add"}"#) == "2")
            #expect(sample(text, #"inferops_router_repairs_total{action="remove"}"#) == "1")

            #expect(text.contains("# TYPE inferops_denied_requests_total counter\n"))
            #expect(sample(text, #"inferops_denied_requests_total{environment="staging",state="disabled"}"#) == "1")
        }
    }

    @Test func eachServerHasItsOwnRegistry() async throws {
        let first = DaemonMetrics()
        let second = DaemonMetrics()
        first.recordReconciliation(.failed)
        #expect(sample(first.exposition(), #"inferops_router_reconciliations_total{result="failed"}"#) == "1")
        #expect(sample(second.exposition(), #"inferops_router_reconciliations_total{result="failed"}"#) == "0")
    }
}
