import Foundation
import InferOpsCore
import InferOpsHTTP
import Testing

@testable import InferOpsKube

@Suite("Kubernetes API errors and engine access, against a fake HTTP client")
struct KubeAPITests {
    static let connection = ClusterConnection(
        contextName: "prod",
        server: "https://api.prod:6443",
        credential: .token(Secret("t0ken"))
    )

    static func contexts(_ http: FakeHTTPClient) -> KubeContexts {
        KubeContexts(source: .inCluster(connection), http: http)
    }

    static let target = ReleaseTarget(release: "llama-prod", namespace: "ml", kubeContext: "prod")

    @Test func statusCodesBecomeNamedUserFacingErrors() async throws {
        let cases: [(Int, String, KubeAPIError)] = [
            (
                401, #"{"kind":"Status","message":"Unauthorized","code":401}"#,
                .unauthorized(context: "prod", server: "https://api.prod:6443")
            ),
            (
                403,
                #"{"kind":"Status","message":"nodes is forbidden: User \"system:serviceaccount:ops:bot\" cannot list resource \"nodes\"","code":403}"#,
                .forbidden(
                    context: "prod",
                    message: #"nodes is forbidden: User "system:serviceaccount:ops:bot" cannot list resource "nodes""#
                )
            ),
            (
                404, #"{"kind":"Status","message":"the server could not find the requested resource","code":404}"#,
                .notFound(
                    context: "prod",
                    path: "/api/v1/nodes",
                    message: "the server could not find the requested resource"
                )
            ),
            (500, "oops", .status(context: "prod", code: 500, path: "/api/v1/nodes", message: "oops")),
        ]
        for (status, body, expected) in cases {
            let inspector = KubernetesClusterInspector(
                contexts: Self.contexts(FakeHTTPClient { _ in .json(status, body) })
            )
            let error = await #expect(throws: KubeAPIError.self) { try await inspector.gpuCapacity(kubeContext: nil) }
            #expect(error == expected)
            #expect(error?.hint != nil)
            #expect(error?.message.contains("t0ken") == false)
        }
    }

    @Test func transportFailuresSayTheAPIIsUnreachable() async throws {
        let http = FakeHTTPClient { request in
            throw HTTPTransportError(
                code: 7,
                message: "Failed to connect to api.prod port 6443",
                request: request.description
            )
        }
        let inspector = KubernetesClusterInspector(contexts: Self.contexts(http))
        let error = await #expect(throws: KubeAPIError.self) { try await inspector.workload(Self.target) }
        #expect(
            error
                == .unreachable(
                    context: "prod",
                    server: "https://api.prod:6443",
                    detail: "Failed to connect to api.prod port 6443"
                )
        )
        let tls = FakeHTTPClient { request in
            throw HTTPTransportError(code: 60, message: "SSL certificate problem", request: request.description)
        }
        let tlsError = await #expect(throws: KubeAPIError.self) {
            try await KubernetesClusterInspector(contexts: Self.contexts(tls)).gpuCapacity(kubeContext: nil)
        }
        #expect(tlsError?.hint?.contains("certificate-authority") == true)
    }

    @Test func workloadWithoutDeploymentWantsNoReplicas() async throws {
        let http = FakeHTTPClient(routes: [
            "/api/v1/namespaces/ml/pods": .json(
                200,
                #"{"items":[{"metadata":{"name":"llama-prod-b"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}},{"metadata":{"name":"llama-prod-a"},"status":{"phase":"Pending"}}]}"#
            )
        ])
        let snapshot = try await KubernetesClusterInspector(contexts: Self.contexts(http)).workload(Self.target)
        #expect(snapshot.desiredReplicas == 0)
        #expect(snapshot.pods.map(\.name) == ["llama-prod-a", "llama-prod-b"])
        #expect(snapshot.readyReplicas == 1)
        let podsRequest = try #require(http.requests.first { $0.url.contains("/pods") })
        #expect(podsRequest.url.contains("labelSelector=app.kubernetes.io%2Finstance%3Dllama-prod"))
    }

    @Test func listsFollowContinueTokens() async throws {
        let http = FakeHTTPClient { request in
            if request.url.contains("continue=next%2B1") {
                return .json(
                    200,
                    #"{"items":[{"metadata":{"name":"n2"},"status":{"allocatable":{"nvidia.com/gpu":"2"}}}]}"#
                )
            }
            if request.url.contains("/nodes") {
                return .json(
                    200,
                    #"{"metadata":{"continue":"next+1"},"items":[{"metadata":{"name":"n1"},"status":{"allocatable":{"nvidia.com/gpu":"4"}}}]}"#
                )
            }
            return .json(200, #"{"items":[]}"#)
        }
        let capacity = try await KubernetesClusterInspector(contexts: Self.contexts(http)).gpuCapacity(
            kubeContext: "prod"
        )
        #expect(capacity.nodes.map(\.node) == ["n1", "n2"])
        #expect(capacity.allocatable == 6)
    }

    @Test func eventsForAPod() async throws {
        let http = FakeHTTPClient(routes: [
            "/api/v1/namespaces/ml/events": .json(
                200,
                #"{"items":[{"metadata":{"name":"e2"},"involvedObject":{"kind":"Pod","name":"p"},"type":"Warning","reason":"FailedScheduling","message":"0/2 nodes are available","count":3,"lastTimestamp":"2026-01-01T00:00:05Z","source":{"component":"default-scheduler"}},{"metadata":{"name":"e1"},"involvedObject":{"kind":"Pod","name":"p"},"type":"Normal","reason":"SuccessfulCreate","message":"created","lastTimestamp":"2026-01-01T00:00:01Z"}]}"#
            )
        ])
        let events = try await KubernetesClusterInspector(contexts: Self.contexts(http))
            .events(forPod: "p", namespace: "ml", kubeContext: nil)
        #expect(events.map(\.reason) == ["SuccessfulCreate", "FailedScheduling"])
        #expect(events.last?.count == 3)
        #expect(events.last?.source == "default-scheduler")
        #expect(http.requests.first?.url.contains("fieldSelector=involvedObject.name%3Dp") == true)
    }

    static let endpoint = EngineEndpoint(target: target, service: "llama-prod", port: 8000)

    @Test func serviceProxyPathAndDirectTemplate() {
        #expect(
            KubernetesEngineClient.proxyPath(endpoint: Self.endpoint, path: "/v1/models")
                == "/api/v1/namespaces/ml/services/llama-prod:8000/proxy/v1/models"
        )
        #expect(
            KubernetesEngineClient.directURL(
                template: "http://{service}.{namespace}.svc.cluster.local:{port}/",
                endpoint: Self.endpoint,
                path: "health"
            ) == "http://llama-prod.ml.svc.cluster.local:8000/health"
        )
        #expect(
            KubernetesEngineClient.directURL(
                template: "http://127.0.0.1:{port}",
                endpoint: Self.endpoint,
                path: "/health"
            )
                == "http://127.0.0.1:8000/health"
        )
    }

    @Test func engineThroughTheProxy() async throws {
        let http = FakeHTTPClient { request in
            if request.url.hasSuffix("/proxy/v1/completions") {
                return .json(200, #"{"echo":\#(String(decoding: request.body ?? [], as: UTF8.self))}"#)
            }
            if request.url.hasSuffix("/proxy/health") { return HTTPResponse(status: 503) }  // the engine, still loading
            if request.url.hasSuffix("/proxy/missing") { return .json(404, #"{"detail":"Not Found"}"#) }
            return .json(404, #"{"kind":"Status","code":404}"#)
        }
        let engines = KubernetesEngineClient(contexts: Self.contexts(http))
        let posted = try await engines.post(
            Self.endpoint,
            path: "/v1/completions",
            json: Data(#"{"prompt":"hi"}"#.utf8),
            timeout: .seconds(5)
        )
        #expect(posted.status == 200)
        #expect(String(decoding: posted.body, as: UTF8.self) == #"{"echo":{"prompt":"hi"}}"#)
        let request = try #require(http.requests.first)
        #expect(
            request.url == "https://api.prod:6443/api/v1/namespaces/ml/services/llama-prod:8000/proxy/v1/completions"
        )
        #expect(request.headers["Authorization"] == "Bearer t0ken")
        #expect(request.headers["Content-Type"] == "application/json")
        #expect(request.timeout == .seconds(5))
        // The engine's own statuses pass through.
        #expect(try await engines.get(Self.endpoint, path: "/health", timeout: .seconds(1)).status == 503)
        #expect(try await engines.get(Self.endpoint, path: "/missing", timeout: .seconds(1)).status == 404)
    }

    @Test func proxyFailuresAreEngineUnreachable() async throws {
        let responses: [HTTPResponse] = [
            .json(
                503,
                #"{"kind":"Status","status":"Failure","message":"no endpoints available for service \"llama-prod\"","reason":"ServiceUnavailable","code":503}"#
            ),
            .json(
                404,
                #"{"kind":"Status","status":"Failure","message":"services \"llama-prod\" not found","reason":"NotFound","details":{"name":"llama-prod","kind":"services"},"code":404}"#
            ),
            .json(
                502,
                #"{"kind":"Status","message":"error trying to reach service: dial tcp 10.0.0.7:8000: connect: connection refused","code":502}"#
            ),
        ]
        for response in responses {
            let engines = KubernetesEngineClient(contexts: Self.contexts(FakeHTTPClient { _ in response }))
            let error = await #expect(throws: EngineUnreachable.self) {
                try await engines.get(Self.endpoint, path: "/health", timeout: .seconds(1))
            }
            #expect(error?.detail.contains("llama-prod.ml.svc.cluster.local:8000") == true)
        }
        let down = FakeHTTPClient { request in
            throw HTTPTransportError(code: 7, message: "Connection refused", request: request.description)
        }
        await #expect(throws: EngineUnreachable.self) {
            try await KubernetesEngineClient(contexts: Self.contexts(down))
                .get(Self.endpoint, path: "/health", timeout: .seconds(1))
        }
        await #expect(throws: EngineUnreachable.self) {
            try await KubernetesEngineClient(
                contexts: Self.contexts(down),
                access: .direct(urlTemplate: "http://127.0.0.1:{port}")
            )
            .get(Self.endpoint, path: "/health", timeout: .seconds(1))
        }
        let forbidden = FakeHTTPClient { _ in
            .json(403, #"{"kind":"Status","message":"services \"llama-prod:8000\" is forbidden","code":403}"#)
        }
        await #expect(throws: KubeAPIError.self) {
            try await KubernetesEngineClient(contexts: Self.contexts(forbidden))
                .get(Self.endpoint, path: "/health", timeout: .seconds(1))
        }
    }

    @Test func directAccessSendsNoCredentials() async throws {
        let http = FakeHTTPClient { _ in .json(200, #"{"object":"list","data":[]}"#) }
        let engines = KubernetesEngineClient(contexts: Self.contexts(http)) { endpoint in
            endpoint.target.namespace == "ml" ? .direct(urlTemplate: "http://{release}.internal:{port}") : .serviceProxy
        }
        let response = try await engines.get(Self.endpoint, path: "/v1/models", timeout: .seconds(2))
        #expect(response.status == 200)
        let request = try #require(http.requests.first)
        #expect(request.url == "http://llama-prod.internal:8000/v1/models")
        #expect(request.headers["Authorization"] == nil)
    }
}
