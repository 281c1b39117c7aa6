import Foundation
import HummingbirdTesting
import InferOpsCore
import Testing

@testable import InferOpsServer

@Suite struct DenyBackendTests {
    static let disabledMessage =
        "The model `llama-3-8b` is disabled in `staging` by U024BE7LH at 2026-11-29T13:05:00Z:"
        + " bad answers under load. Ask them or #ml-platform to enable it."

    @Test func aDisabledModelIs403WithWhoWhenAndWhy() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                headers: [.contentType: "application/json"],
                body: json(#"{"model":"llama-3-8b","prompt":"the secret prompt","max_tokens":8}"#)
            )
            #expect(response.status == .forbidden)
            #expect(response.headers[.contentType] == "application/json")
            let error = try decodeError(response.body)
            #expect(
                error
                    == .init(
                        message: Self.disabledMessage,
                        type: "model_disabled",
                        param: "model",
                        code: "model_disabled"
                    )
            )
            #expect(!String(buffer: response.body).contains("secret"))
        }
    }

    @Test func aChatCompletionForADisabledModelGetsTheSameAnswer() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions",
                method: .post,
                headers: [.authorization: "Bearer sk-client-token"],
                body: json(#"{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"stream":true}"#)
            )
            #expect(response.status == .forbidden)
            #expect(try decodeError(response.body).message == Self.disabledMessage)
            // Neither the body nor the headers come back.
            let body = String(buffer: response.body)
            #expect(!body.contains("sk-client-token") && !body.contains("messages"))
            #expect(response.headers[.authorization] == nil)
        }
    }

    @Test func aRemovedModelIs404WithWhoWhenAndWhy() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/embeddings",
                method: .post,
                body: json(#"{"model":"mistral-7b","input":"x"}"#)
            )
            #expect(response.status == .notFound)
            let error = try decodeError(response.body)
            #expect(error.type == "model_not_found")
            #expect(error.code == "model_not_found")
            #expect(error.param == "model")
            // The reason already ends with a full stop; the message does not add a second one.
            #expect(
                error.message
                    == "The model `mistral-7b` was removed from `staging` by U0G9QF9C6 at 2026-11-29T13:05:00Z:"
                    + " replaced by llama-3-8b. Ask them or #ml-platform to register it again."
            )
        }
    }

    @Test func anUnknownModelIs404NamingTheEnvironment() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"foo","prompt":"x"}"#)
            )
            #expect(response.status == .notFound)
            #expect(
                try decodeError(response.body)
                    == .init(
                        message: "The model `foo` is not registered in `staging`.",
                        type: "model_not_found",
                        param: "model",
                        code: "model_not_found"
                    )
            )
        }
    }

    @Test func withoutADefaultEnvironmentTheLookupDecides() async throws {
        let asked = Recorder()
        let server = try makeServer(
            deny: .init(environments: ["staging"]),
            denials: { environment, model in
                asked.append("\(environment ?? "nil")/\(model)")
                return environment == nil && model == "llama-3-8b" ? disabledLlama : nil
            }
        )
        try await server.application.test(.router) { client in
            let disabled = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b"}"#)
            )
            #expect(disabled.status == .forbidden)
            let unknown = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"foo"}"#)
            )
            #expect(try decodeError(unknown.body).message == "The model `foo` is not registered.")
        }
        #expect(asked.values == ["nil/llama-3-8b", "nil/foo"])
    }

    @Test func underThePrefixTheEnvironmentAndModelComeFromThePath() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            // No model in the body: the path names it.
            let fromPath = try await client.execute(
                uri: "/deny/staging/llama-3-8b/v1/chat/completions",
                method: .post,
                body: json(#"{"messages":[{"role":"user","content":"hi"}]}"#)
            )
            #expect(fromPath.status == .forbidden)
            #expect(try decodeError(fromPath.body).message == Self.disabledMessage)

            // The path's environment is used for the lookup: production has its own registration.
            let production = try await client.execute(
                uri: "/deny/production/llama-3-8b/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b"}"#)
            )
            #expect(production.status == .notFound)
            #expect(
                try decodeError(production.body).message
                    == "The model `llama-3-8b` was removed from `production` by U0PROD at 2026-11-29T13:05:00Z."
                    + " Ask them or #ml-platform to register it again."
            )

            // An empty body is fine under the prefix.
            let empty = try await client.execute(uri: "/deny/staging/mistral-7b/v1/completions", method: .post)
            #expect(empty.status == .notFound)
            #expect(try decodeError(empty.body).message.hasPrefix("The model `mistral-7b` was removed"))
        }
    }

    @Test func theBodysModelWinsOverThePaths() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/deny/staging/mistral-7b/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b"}"#)
            )
            #expect(response.status == .forbidden)
            #expect(try decodeError(response.body).message == Self.disabledMessage)
        }
    }

    @Test func theWorkerURLRoundTripsModelNamesWithSlashes() async throws {
        let url = DenyBackend.workerURL(
            base: "http://10.0.3.7:8181/",
            environment: "staging",
            model: "meta-llama/Llama-3-8B"
        )
        #expect(url == "http://10.0.3.7:8181/deny/staging/meta-llama%2FLlama-3-8B")
        let path = String(url.dropFirst("http://10.0.3.7:8181".count))

        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(uri: path + "/v1/completions", method: .post)
            #expect(response.status == .forbidden)
            #expect(
                try decodeError(response.body).message
                    == "The model `meta-llama/Llama-3-8B` is disabled in `staging` by U024BE7LH at"
                    + " 2026-11-29T13:05:00Z: licence review. Ask them or #ml-platform to enable it."
            )
        }
    }

    @Test(arguments: ["/v1/responses", "/tokenize", "/generate", "/v1/completions/render", "/v1/rerank"])
    func anyOtherPostIsAnsweredByTheDenyBackend(path: String) async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let atRoot = try await client.execute(uri: path, method: .post, body: json(#"{"model":"llama-3-8b"}"#))
            #expect(atRoot.status == .forbidden)
            let prefixed = try await client.execute(
                uri: "/deny/staging/llama-3-8b" + path,
                method: .post,
                body: json(#"{"model":"llama-3-8b"}"#)
            )
            #expect(prefixed.status == .forbidden)
        }
    }

    @Test func modelsAndHealthAnswerTheRoutersProbesAtBothShapes() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            for prefix in ["", "/deny/staging/llama-3-8b"] {
                let models = try await client.execute(uri: prefix + "/v1/models", method: .get)
                #expect(models.status == .ok)
                #expect(String(buffer: models.body) == #"{"data":[],"object":"list"}"#)
                let health = try await client.execute(uri: prefix + "/health", method: .get)
                #expect(health.status == .ok)
            }
        }
    }

    @Test func aBodyWithoutAModelIs400() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            for body in [#"{"prompt":"hi"}"#, #"{"model":null}"#, #"{"model":""}"#, ""] {
                let response = try await client.execute(uri: "/v1/completions", method: .post, body: json(body))
                #expect(response.status == .badRequest)
                #expect(
                    try decodeError(response.body)
                        == .init(
                            message: "The request names no model; set the `model` field to the model to use.",
                            type: "invalid_request_error",
                            param: "model",
                            code: "model_required"
                        )
                )
            }
        }
    }

    @Test func malformedJSONIs400WithoutEchoingIt() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let broken = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b", "prompt": <script>"#)
            )
            #expect(broken.status == .badRequest)
            #expect(
                try decodeError(broken.body)
                    == .init(
                        message: "The request body is not valid JSON.",
                        type: "invalid_request_error",
                        code: "invalid_json"
                    )
            )
            #expect(!String(buffer: broken.body).contains("script"))

            let array = try await client.execute(uri: "/v1/completions", method: .post, body: json(#"["llama-3-8b"]"#))
            #expect(array.status == .badRequest)
            #expect(try decodeError(array.body).message == "The request body must be a JSON object.")

            let number = try await client.execute(uri: "/v1/completions", method: .post, body: json(#"{"model":42}"#))
            #expect(number.status == .badRequest)
            #expect(try decodeError(number.body).message == "The `model` field must be a string.")

            let control = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"llama\u0007"}"#)
            )
            #expect(control.status == .badRequest)
            #expect(try decodeError(control.body).code == "invalid_model")

            let long = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":""# + String(repeating: "m", count: 300) + #""}"#)
            )
            #expect(long.status == .badRequest)
            #expect(!String(buffer: long.body).contains("mmmm"))
        }
    }

    @Test func implausibleNamesInThePathAre400() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            // An environment the URL names is used as given or refused; it never falls back to the default.
            let environment = try await client.execute(
                uri: "/deny/stag%0Aing/llama-3-8b/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b"}"#)
            )
            #expect(environment.status == .badRequest)
            #expect(try decodeError(environment.body).code == "invalid_environment")

            let model = try await client.execute(uri: "/deny/staging/llama%07/v1/completions", method: .post)
            #expect(model.status == .badRequest)
            #expect(try decodeError(model.body).code == "invalid_model")
        }
    }

    @Test func anOversizedBodyIs413() async throws {
        let server = try makeServer()
        let limit = 1 << 20
        try await server.application.test(.router) { client in
            let prompt = String(repeating: "x", count: limit)
            let response = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b","prompt":"\#(prompt)"}"#)
            )
            #expect(response.status == .contentTooLarge)
            #expect(
                try decodeError(response.body)
                    == .init(
                        message: "The request body is larger than 1048576 bytes.",
                        type: "invalid_request_error",
                        code: "request_too_large"
                    )
            )
            // A body just under the limit is read.
            let fits = String(repeating: "x", count: limit - 100)
            let small = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b","prompt":"\#(fits)"}"#)
            )
            #expect(small.status == .forbidden)
        }
    }

    @Test func anEnabledModelThatReachesTheDenyBackendIsATemporaryFailure() async throws {
        let server = try makeServer()
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"qwen-2-7b"}"#)
            )
            #expect(response.status == .serviceUnavailable)
            let error = try decodeError(response.body)
            #expect(error.code == "model_not_ready")
            #expect(error.message.contains("is enabled in `staging`"))
        }
    }

    @Test func aLookupFailureIs503WithACorrelationIdAndNoErrorText() async throws {
        struct DatabaseLocked: Error {}
        let server = try makeServer(denials: { _, _ in throw DatabaseLocked() })
        try await server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions",
                method: .post,
                body: json(#"{"model":"llama-3-8b"}"#)
            )
            #expect(response.status == .serviceUnavailable)
            let error = try decodeError(response.body)
            #expect(error.code == "registry_unavailable")
            #expect(
                error.message.hasPrefix("InferOps could not read the registration of the model `llama-3-8b` (request ")
            )
            #expect(!error.message.contains("DatabaseLocked"))
        }
    }

    @Test func everyAnswerIsCountedWithABoundedEnvironmentLabel() async throws {
        let metrics = DaemonMetrics()
        let server = try makeServer(metrics: metrics)
        try await server.application.test(.router) { client in
            let requests: [(String, String)] = [
                ("/v1/completions", #"{"model":"llama-3-8b"}"#),
                ("/v1/chat/completions", #"{"model":"llama-3-8b"}"#),
                ("/v1/completions", #"{"model":"mistral-7b"}"#),
                ("/v1/completions", #"{"model":"foo"}"#),
                ("/deny/production/llama-3-8b/v1/completions", ""),
                // An environment the daemon does not manage is not a label value.
                ("/deny/attacker-chosen/foo/v1/completions", ""),
                ("/v1/completions", "{"),
            ]
            for (path, body) in requests {
                _ = try await client.execute(uri: path, method: .post, body: json(body))
            }
            _ = try await client.execute(uri: "/v1/models", method: .get)
        }
        let text = metrics.exposition()
        #expect(sample(text, #"inferops_denied_requests_total{environment="staging",state="disabled"}"#) == "2")
        #expect(sample(text, #"inferops_denied_requests_total{environment="staging",state="removed"}"#) == "1")
        #expect(sample(text, #"inferops_denied_requests_total{environment="staging",state="unknown"}"#) == "1")
        #expect(sample(text, #"inferops_denied_requests_total{environment="production",state="removed"}"#) == "1")
        #expect(sample(text, #"inferops_denied_requests_total{environment="unknown",state="unknown"}"#) == "1")
        #expect(sample(text, #"inferops_denied_requests_total{environment="staging",state="bad_request"}"#) == "1")
        #expect(!text.contains("attacker-chosen"))
    }

    @Test func theMessageReadsWellWithoutReasonOrContact() {
        var registration = disabledLlama
        registration.reason = "  flaky\nunder load  "
        #expect(
            DenyBackend.answer(for: registration, model: "llama-3-8b", environment: "staging", contact: nil).error
                .message
                == "The model `llama-3-8b` is disabled in `staging` by U024BE7LH at 2026-11-29T13:05:00Z:"
                + " flaky under load. Ask them to enable it."
        )
        registration.reason = nil
        #expect(
            DenyBackend.answer(for: registration, model: "llama-3-8b", environment: "staging", contact: "#ml").error
                .message
                == "The model `llama-3-8b` is disabled in `staging` by U024BE7LH at 2026-11-29T13:05:00Z."
                + " Ask them or #ml to enable it."
        )
    }
}
