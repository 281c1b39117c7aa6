import Foundation
import InferOpsCore
import InferOpsTesting
import Logging
import Synchronization
import Testing

/// Secrets written in the configuration (by mistake: `inferops check` refuses them) or known to the
/// adapters never reach chat, the log, the journal or the audit log.
@Suite(.timeLimit(.minutes(1))) struct SecretRedactionTests {
    /// Shaped like a Hugging Face token: the patterns alone would catch it.
    static let shaped = "hf_SEEDEDSECRET1234567890abcdef"
    /// No known shape: only the literal list can catch these, so each proves one path of plumbing.
    static let modelSecret = "plain-model-env-s3cret"
    static let valuesFileSecret = "plain-values-file-s3cret"
    static let kubeToken = "plain-kube-token-s3cret"
    static let seeded = [shaped, modelSecret, valuesFileSecret, kubeToken]

    @Test func redactorKeepsDigestsAndOperationIDsReadable() {
        let redactor = SecretRedactor(literals: [Self.modelSecret])
        let digest = "sha256:" + String(repeating: "0123456789abcdef", count: 4)
        let text = "digest \(digest) short 0123456789ab op-00c0ffee err-1234abcd"
        #expect(redactor.redact(text) == text)
        // Not a plan digest: upper case, other lengths, or base64 stay redacted.
        #expect(redactor.redact(String(repeating: "0123456789ABCDEF", count: 4)) == "<redacted>")
        #expect(redactor.redact(String(repeating: "0123456789abcdef", count: 3)) == "<redacted>")
        #expect(redactor.redact("k " + String(repeating: "a1b2", count: 17)) == "k <redacted>")
        // A literal and its base64 form (how Secret manifests and kubeconfigs carry it).
        let encoded = Data(Self.modelSecret.utf8).base64EncodedString()
        #expect(redactor.redact("value: \(Self.modelSecret) data: \(encoded)") == "value: <redacted> data: <redacted>")
        // A YAML key naming a secret at the end of its line does not swallow the next line.
        #expect(redactor.redact("secretKeyRef:\n  name: hf-token") == "secretKeyRef:\n  name: hf-token")
    }

    @Test func namesOfSecretsAreNotSecrets() {
        let values = JSONValue.object([
            "engine": .object([
                "hfToken": .object(["secretName": .string("hf-token"), "secretKey": .string("token")]),
                "env": .array([
                    .object([
                        "name": .string("API_KEY"),
                        "valueFrom": .object(["secretKeyRef": .object(["name": .string("api"), "key": .string("k")])]),
                    ]),
                    .object(["name": .string("DB_PASSWORD"), "value": .string("by-value-pw")]),
                ]),
                "credentials": .object(["user": .string("svc-user"), "secretName": .string("creds")]),
                "args": .array([.string("--api-key=hf_AbCdEfGhIjKlMnOp")]),
            ])
        ])
        #expect(
            Set(SecretRedactor.sensitiveStrings(in: values)) == ["by-value-pw", "svc-user", "--api-key=hf_AbCdEfGhIjKlMnOp"])
    }

    @Test func seededSecretNeverLeavesTheDaemon() async throws {
        let fakes = FakeServices()
        let configuration = Fixtures.configuration { configuration in
            // Model values: an engine env entry and a key that names a secret.
            configuration.models["llama-3-8b"]?.values = .object([
                "engine": .object([
                    "env": .array([
                        .object(["name": .string("HF_TOKEN"), "value": .string(Self.shaped)]),
                        .object(["name": .string("EXTRA_API_KEY"), "value": .string(Self.modelSecret)]),
                    ])
                ])
            ])
            // What the loader found by value in a values file.
            configuration.knownSecrets = [Self.valuesFileSecret]
        }
        let logs = LogCapture()
        var services = fakes.services
        services.logger = Logger(label: "test") { _ in logs.handler }
        // The kubeconfig's token, as the runtime hands it over.
        let daemon = TestDaemon(
            configuration: configuration, catalog: Fixtures.catalog,
            services: services.redacting(for: configuration, extra: [Self.kubeToken]))
        for environment in configuration.environments.values {
            fakes.engines.script(environment.target(model: "llama-3-8b").release, .healthy(serving: "llama-3-8b"))
        }
        func run(_ text: String) async -> CommandOutcome {
            await daemon.handle(IncomingCommand(user: Fixtures.admin, text: text, channel: "C0OPS"))
        }
        // Helm's own words can quote any of them (an adapter that missed one, an API server echo).
        let echo = "Deployment.apps is invalid: env[0].value: \(Self.shaped), \(Self.modelSecret),\n"
            + "\(Self.valuesFileSecret) (token \(Self.kubeToken))"
        fakes.releases.seed(Fixtures.target("llama-3-8b", in: "production"), [.deployed])

        let dryRun = await run("deploy llama-3-8b to staging --dry-run")
        #expect(dryRun == .completed(nil))
        let deploy = await run("deploy llama-3-8b to staging")
        #expect(deploy.succeeded)
        // A failing deploy with no automatic rollback, and one that rolls back.
        fakes.releases.script(.upgrade, .fail(.rolloutFailed(detail: echo)), .fail(.readinessTimeout(detail: echo)))
        guard case .failed = await run("deploy llama-3-8b to staging") else {
            Issue.record("the failing deploy did not fail")
            return
        }
        guard case .failed = await run("deploy llama-3-8b to production") else {
            Issue.record("the failing deploy did not fail")
            return
        }
        #expect(await run("history llama-3-8b in staging") == .completed(nil))
        #expect(await run("history llama-3-8b in production") == .completed(nil))
        #expect(await run("status") == .completed(nil))
        // An internal error logged in full.
        fakes.releases.script(.history, .throwError(EchoingError(text: echo)))
        _ = await run("history llama-3-8b in staging")

        // The secrets were there to leak: Helm's history holds them verbatim.
        let history = fakes.releases.revisions(of: Fixtures.target("llama-3-8b", in: "staging"))
        #expect(history.contains { revision in Self.seeded.allSatisfy { revision.description.contains($0) } })

        var texts = fakes.chat.events.map(\.text)
        texts += await fakes.store.allJournalEntries().map(\.message)
        texts += await fakes.store.auditLog().map {
            [$0.actor.rawValue, $0.action, $0.environment, $0.subject, $0.outcome, $0.detail]
                .compactMap { $0 }.joined(separator: " ")
        }
        texts += await fakes.store.allOperations().map { [$0.command, $0.outcome ?? ""].joined(separator: " ") }
        texts += logs.lines
        #expect(logs.lines.contains { $0.contains("command failed") })
        for secret in Self.seeded {
            let leaks = texts.filter { $0.contains(secret) }
            #expect(leaks.isEmpty, "\(secret) leaked in \(leaks.count) texts: \(leaks)")
        }

        // The dry run still shows the plan's digest in full, and the deploy its short digest.
        let dryRunReply = try #require(fakes.chat.posts.first { $0.title.hasPrefix("Dry run") }?.reply)
        let digest = try #require(dryRunReply.fields.first { $0.label == "digest" }?.value.plainText)
        #expect(digest.count == "sha256:".count + 64 && !digest.contains("redacted"))
        #expect(dryRunReply.lines[0].plainText.contains("\"value\":\"<redacted>\""), "\(dryRunReply.lines[0])")
        let plan = try #require(await fakes.store.allOperations().first?.planDigest)
        #expect(fakes.chat.transcript.contains("digest: \(plan.dropFirst("sha256:".count).prefix(12))"))
    }
}

struct EchoingError: Error, CustomStringConvertible {
    var text: String
    var description: String { "broken pipe: \(text)" }
}

/// Collects every log line (message and metadata) in memory.
final class LogCapture: Sendable {
    let stored = Mutex<[String]>([])
    var lines: [String] { stored.withLock { $0 } }
    var handler: CapturingHandler { CapturingHandler(capture: self) }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let metadata = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            capture.stored.withLock { $0.append(([event.message.description] + metadata).joined(separator: " ")) }
        }
    }
}
