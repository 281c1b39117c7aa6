import Foundation
import Hummingbird
import InferOpsCore
import Logging

/// Finds the registration of `model` in `environment`, or `nil` when none names the model.
///
/// `environment` is `nil` when the request reached the deny backend at its root and no default
/// environment is configured; the daemon then decides which registration applies. A thrown error
/// means the registrations could not be read, which is answered as a temporary failure, never as
/// "not registered".
public typealias DenialLookup = @Sendable (_ environment: String?, _ model: String) async throws -> Registration?

/// The worker that stands in for disabled and deregistered models in the router.
///
/// vllm-router has no enable/disable, and sends requests for an unknown model to any other worker
/// (research/router-probe.md), so the daemon registers this listener as the worker of every model
/// it denies. Requests that arrive here are answered the way an OpenAI server answers an error,
/// with a message that names the model, its state, who changed it, when and why, so the person
/// whose client failed knows what happened and whom to ask.
///
/// It answers at two URL shapes because it is not yet known whether the router keeps a worker
/// URL's path when it forwards: at the root (`/v1/...`, the environment is the configured default)
/// and under `/deny/{environment}/{model}/...` (see ``workerURL(base:environment:model:)``). It
/// never echoes a request's body or headers; only the model name it read is repeated, and only
/// after checking that it is a plausible name.
public struct DenyBackend: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// The environment of requests that arrive at the root, where the URL names none.
        public var defaultEnvironment: String?
        /// The environments the daemon manages. Only these names appear as the `environment` label
        /// of the deny metrics; any other name a request carries is counted as `unknown`.
        public var environments: Set<String>
        /// Who to ask besides the person who changed the model, e.g. `#ml-platform`.
        public var contact: String?
        /// The largest request body read, in bytes; larger ones get 413. Chat requests with long
        /// prompts stay far below the default 1 MiB.
        public var maxBodySize: Int

        public init(
            defaultEnvironment: String? = nil,
            environments: Set<String> = [],
            contact: String? = nil,
            maxBodySize: Int = 1 << 20
        ) {
            self.defaultEnvironment = defaultEnvironment
            self.environments = environments
            self.contact = contact
            self.maxBodySize = maxBodySize
        }
    }

    public var configuration: Configuration
    let lookup: DenialLookup
    let metrics: DaemonMetrics

    public init(configuration: Configuration, metrics: DaemonMetrics, lookup: @escaping DenialLookup) {
        self.configuration = configuration
        self.metrics = metrics
        self.lookup = lookup
    }

    /// The worker URL the daemon registers in the router for a denied model: `{base}/deny/{environment}/{model}`.
    ///
    /// The environment and model are percent-encoded as single path segments, so a model name with a
    /// slash (`meta-llama/Llama-3-8B`) stays one segment; the deny backend decodes them again.
    /// - Parameter base: The daemon's URL as the router reaches it, e.g. `http://10.0.3.7:8470`.
    public static func workerURL(base: String, environment: String, model: String) -> String {
        var base = base
        while base.hasSuffix("/") { base.removeLast() }
        return "\(base)/deny/\(pathSegment(environment))/\(pathSegment(model))"
    }

    private static func pathSegment(_ value: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/%")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    // MARK: Answering

    /// Answers one forwarded request.
    ///
    /// - Parameters:
    ///   - pathEnvironment: The environment segment of a `/deny/{environment}/{model}` URL, still percent-encoded.
    ///   - pathModel: The model segment of that URL; the body's `model` wins when the body has one.
    func respond(
        to request: Request,
        context: some RequestContext,
        pathEnvironment: String?,
        pathModel: String?
    ) async -> Response {
        // Hummingbird tags each request's logger with an id; it is the correlation id of STYLE 5.
        let requestID = context.logger[metadataKey: "hb.request.id"]?.description ?? String(UUID().uuidString.prefix(8))
        let answer = await self.answer(
            to: request,
            requestID: requestID,
            logger: context.logger,
            pathEnvironment: pathEnvironment,
            pathModel: pathModel
        )
        metrics.recordDeniedRequest(environment: answer.environmentLabel, state: answer.state)
        context.logger.debug(
            "deny backend answered",
            metadata: [
                "deny.status": "\(answer.status.code)", "deny.state": "\(answer.state.rawValue)",
                "deny.environment": "\(answer.environmentLabel)",
            ]
        )
        return Responses.json(answer.error, status: answer.status)
    }

    struct Answer {
        var status: HTTPResponse.Status
        var error: OpenAIError
        var state: DeniedRequestState
        var environmentLabel: String
    }

    private func answer(
        to request: Request,
        requestID: String,
        logger: Logger,
        pathEnvironment: String?,
        pathModel: String?
    ) async -> Answer {
        // Under the prefix the URL names the environment; at the root the configured default does.
        let environment: String?
        if let pathEnvironment {
            guard let decoded = Self.decodedSegment(pathEnvironment) else {
                return badRequest(
                    "The URL does not name a valid environment.",
                    code: "invalid_environment",
                    param: nil,
                    environment: nil
                )
            }
            environment = decoded
        } else {
            environment = configuration.defaultEnvironment
        }
        // The body is read only to find the model. Its size is checked before reading when the
        // client declares it, and while reading when it does not (chunked bodies).
        let limit = configuration.maxBodySize
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > limit {
            return tooLarge(environment: environment)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            return tooLarge(environment: environment)
        } catch {
            return badRequest(
                "The request body could not be read.",
                code: "invalid_body",
                param: nil,
                environment: environment
            )
        }

        // The path's model is only a fallback, so it is checked only when the body names none.
        var model = pathModel.map { $0.removingPercentEncoding ?? $0 }
        switch Self.model(in: body) {
        case .named(let named):
            model = named
        case .absent:
            break
        case .invalid(let problem):
            return badRequest(problem.message, code: problem.code, param: problem.param, environment: environment)
        }
        guard let model else {
            return badRequest(
                "The request names no model; set the `model` field to the model to use.",
                code: "model_required",
                param: "model",
                environment: environment
            )
        }
        guard Self.isPlausibleName(model) else {
            return badRequest(
                "The `model` field is not a valid model name.",
                code: "invalid_model",
                param: "model",
                environment: environment
            )
        }

        let registration: Registration?
        do {
            registration = try await lookup(environment, model)
        } catch {
            // The cause stays in the log, keyed by the request id; the client sees only the id (STYLE 5).
            logger.error(
                "deny backend could not read the registration",
                metadata: [
                    "error": "\(String(reflecting: error))", "deny.environment": "\(environment ?? "-")",
                    "deny.request": "\(requestID)",
                ]
            )
            return Answer(
                status: .serviceUnavailable,
                error: OpenAIError(
                    message: "InferOps could not read the registration of the model `\(model)` (request \(requestID))."
                        + " Try again in a few seconds.",
                    type: "server_error",
                    param: nil,
                    code: "registry_unavailable"
                ),
                state: .lookupFailed,
                environmentLabel: label(for: environment)
            )
        }
        return Self.answer(for: registration, model: model, environment: environment, contact: configuration.contact)
            .labelled(registration.map(\.environment) ?? label(for: environment))
    }

    /// The answer for a model whose registration was looked up; pure, so the wording is tested directly.
    static func answer(for registration: Registration?, model: String, environment: String?, contact: String?)
        -> Answer
    {
        guard let registration else {
            let place = environment.map { " in `\($0)`" } ?? ""
            return Answer(
                status: .notFound,
                error: OpenAIError(
                    message: "The model `\(model)` is not registered\(place).",
                    type: "model_not_found",
                    param: "model",
                    code: "model_not_found"
                ),
                state: .unknown,
                environmentLabel: ""
            )
        }
        let name = registration.model
        let place = "`\(registration.environment)`"
        let ask = contact.map { "Ask them or \($0)" } ?? "Ask them"
        let change = "by \(registration.changedBy) at \(iso8601(registration.changedAt))\(because(registration.reason))"
        switch registration.state {
        case .disabled:
            return Answer(
                status: .forbidden,
                error: OpenAIError(
                    message: "The model `\(name)` is disabled in \(place) \(change) \(ask) to enable it.",
                    type: "model_disabled",
                    param: "model",
                    code: "model_disabled"
                ),
                state: .disabled,
                environmentLabel: ""
            )
        case .removed:
            return Answer(
                status: .notFound,
                error: OpenAIError(
                    message:
                        "The model `\(name)` was removed from \(place) \(change) \(ask) to register it again.",
                    type: "model_not_found",
                    param: "model",
                    code: "model_not_found"
                ),
                state: .removed,
                environmentLabel: ""
            )
        case .enabled:
            // The desired state says "serve", but the router still points the model here: its
            // registry lags behind (a repair is pending). Tell the client to retry rather than deny.
            return Answer(
                status: .serviceUnavailable,
                error: OpenAIError(
                    message: "The model `\(name)` is enabled in \(place), but the router has not caught up yet."
                        + " Try again in a few seconds.",
                    type: "server_error",
                    param: "model",
                    code: "model_not_ready"
                ),
                state: .enabled,
                environmentLabel: ""
            )
        }
    }

    /// `: reason.` when there is a reason, else `.`; the reason is kept on one line and gets a full
    /// stop only if it lacks one.
    private static func because(_ reason: String?) -> String {
        let reason = (reason ?? "").split(whereSeparator: \.isNewline).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
        guard let last = reason.last else { return "." }
        return ": \(reason)" + (".!?".contains(last) ? "" : ".")
    }

    /// `2026-11-29T13:05:00Z`: the ISO 8601 style's defaults are UTC, whole seconds and a `Z`.
    static func iso8601(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }

    private func tooLarge(environment: String?) -> Answer {
        Answer(
            status: .contentTooLarge,
            error: OpenAIError(
                message: "The request body is larger than \(configuration.maxBodySize) bytes.",
                type: "invalid_request_error",
                param: nil,
                code: "request_too_large"
            ),
            state: .tooLarge,
            environmentLabel: label(for: environment)
        )
    }

    private func badRequest(_ message: String, code: String, param: String?, environment: String?) -> Answer {
        Answer(
            status: .badRequest,
            error: OpenAIError(message: message, type: "invalid_request_error", param: param, code: code),
            state: .badRequest,
            environmentLabel: label(for: environment)
        )
    }

    /// The `environment` label for a name a request carried: kept only when the daemon manages it.
    private func label(for environment: String?) -> String {
        guard let environment,
            environment == configuration.defaultEnvironment || configuration.environments.contains(environment)
        else { return "unknown" }
        return environment
    }

    // MARK: Reading the request

    enum BodyModel: Equatable {
        case named(String)
        case absent
        case invalid(Problem)
    }

    struct Problem: Equatable {
        var message: String
        var code: String
        var param: String?
    }

    /// The `model` field of an OpenAI request body. An empty body has no model (the path may name
    /// one); anything else must be a JSON object whose `model`, when present, is a string.
    static func model(in body: ByteBuffer) -> BodyModel {
        guard body.readableBytes > 0 else { return .absent }
        do {
            let decoded = try JSONDecoder().decode(ModelField.self, from: Data(body.readableBytesView))
            return decoded.model.flatMap { $0.isEmpty ? nil : BodyModel.named($0) } ?? .absent
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.last?.stringValue == "model" {
            return .invalid(
                Problem(message: "The `model` field must be a string.", code: "invalid_model", param: "model")
            )
        } catch DecodingError.typeMismatch {
            return .invalid(Problem(message: "The request body must be a JSON object.", code: "invalid_json"))
        } catch {
            return .invalid(Problem(message: "The request body is not valid JSON.", code: "invalid_json"))
        }
    }

    /// Only the field the deny backend needs; the rest of the body (prompts, messages) is never decoded.
    private struct ModelField: Decodable {
        var model: String?

        private enum CodingKeys: String, CodingKey {
            case model
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if container.contains(.model), try !container.decodeNil(forKey: .model) {
                model = try container.decode(String.self, forKey: .model)
            } else {
                model = nil
            }
        }
    }

    /// Model names are repeated in the answer, so only short printable ones are accepted; model
    /// names in the wild (`org/name:tag`, `llama-3-8b`) are far shorter than 256 characters.
    static func isPlausibleName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 256
            && !name.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "`" }
    }

    /// A path segment, percent-decoded, or `nil` when it does not decode to a plausible name.
    /// Environment names are shorter and plainer than model names, but the same bound keeps the
    /// label and the message sane.
    static func decodedSegment(_ segment: String) -> String? {
        guard let decoded = segment.removingPercentEncoding, isPlausibleName(decoded) else { return nil }
        return decoded
    }
}

extension DenyBackend.Answer {
    fileprivate func labelled(_ environment: String) -> Self {
        var copy = self
        copy.environmentLabel = environment
        return copy
    }
}
