import Foundation
import InferOpsApp
import InferOpsCore
import InferOpsTestSupport
import InferOpsTesting
import Logging
import Synchronization
import Testing

/// A secret seeded into every place one can be configured never shows in a chat reply, a log line,
/// helm's argv, the journal or the audit log, with the real helm against the Kubernetes emulator.
///
/// `inferops check` refuses such a configuration, so `inferops exec` would not start with it. To show
/// what happens at runtime if one gets through anyway (a values file edited after the check), the
/// test loads it with `ConfigurationLoader`, confirms the refusals, and starts `Runtime` in process
/// as `inferops exec` does, only with the log captured.
@Suite("Secrets end to end", .serialized)
struct SecretsEndToEndTests {
    static let shaped = "hf_SEEDEDSECRET1234567890abcdef"
    static let modelSecret = "plain-model-s3cret"
    static let valuesSecret = "plain-values-s3cret"
    static let kubeToken = "plain-kube-token-s3cret"
    static let kubeKey = "plain-kube-key-s3cret"
    static let seeded = [shaped, modelSecret, valuesSecret, kubeToken, kubeKey]

    @Test("A seeded secret shows nowhere: deploy, dry run, failing deploy, history, status, audit")
    func seededSecretNeverShows() async throws {
        let sandbox = try Sandbox(helm: .helm4)
        let folder = sandbox.folder
        let root = repositoryRoot.path

        // The kubeconfig: the user's token and client key.
        let pem = "-----BEGIN PRIVATE KEY-----\n\(Self.kubeKey)\n\(Self.shaped)\n-----END PRIVATE KEY-----\n"
        var kubeconfig = try String(contentsOfFile: sandbox.kubeconfig, encoding: .utf8)
        kubeconfig = kubeconfig.replacingOccurrences(
            of: "    token: kubeemu-token\n",
            with: "    token: \(Self.kubeToken)\n    client-key-data: \(Data(pem.utf8).base64EncodedString())\n")
        try kubeconfig.write(toFile: sandbox.kubeconfig, atomically: true, encoding: .utf8)

        // Helm through a wrapper that records every argv.
        let argvLog = folder.appendingPathComponent("helm-argv.log").path
        let wrapper = folder.appendingPathComponent("helm").path
        try "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '\(argvLog)'\nexec '\(HelmBinary.helm4.path)' \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)

        // A model whose values hold secrets in engine env entries, and a values file that holds one.
        let models = folder.appendingPathComponent("models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try """
            name: llama-3-8b
            modelId: meta-llama/Meta-Llama-3-8B-Instruct
            gpusPerReplica: 1
            image: vllm/vllm-openai:v0.6.3
            values:
              engine:
                env:
                  - name: HF_TOKEN
                    value: \(Self.shaped)
                  - name: MODEL_API_KEY
                    value: \(Self.modelSecret)
            """.write(to: models.appendingPathComponent("llama-3-8b.yaml"), atomically: true, encoding: .utf8)
        let valuesFile = folder.appendingPathComponent("values.yaml").path
        try (String(contentsOfFile: "\(root)/deploy/values/sandbox.yaml", encoding: .utf8)
            + "  example.com/api-password: \(Self.valuesSecret)\n  example.com/hf-token: \(Self.shaped)\n")
            .write(toFile: valuesFile, atomically: true, encoding: .utf8)
        func environment(_ name: String, budget: String) -> String {
            """
              \(name):
                kubeContext: emulator
                namespace: inference-\(name)
                chart: \(root)/deploy/charts/vllm-engine
                valuesFiles: [\(valuesFile)]
                readinessBudget: \(budget)
                allowedSetKeys: [replicaCount, podAnnotations.inferops\\.dev/simulate-ready-after-seconds]
                verification:
                  warmupRequests: 1
                  requestTimeout: 5s

            """
        }
        try """
            kubernetes:
              kubeconfig: \(sandbox.kubeconfig)
            helm:
              binary: \(wrapper)
            storage:
              path: \(folder.path)/inferops.sqlite
            models:
              directory: \(models.path)
            commands:
              directory: \(root)/commands
            environments:
            \(environment("staging", budget: "40s"))\(environment("quick", budget: "6s"))
            policy:
              roles:
                - name: admin
                  members: [alice]
                  grants:
                    - permissions: ["*"]
                      environments: ["*"]
            """.write(toFile: sandbox.config, atomically: true, encoding: .utf8)

        // `inferops check` refuses every one of them.
        let loaded = ConfigurationLoader(path: sandbox.config).load()
        let refused = Set(loaded.critical.filter { $0.fix.contains("secretKeyRef") }.map { URL(fileURLWithPath: $0.file).lastPathComponent })
        #expect(refused == ["llama-3-8b.yaml", "values.yaml"], "\(loaded.problems)")

        // Past the check anyway: the runtime as `inferops exec` starts it, with the log captured.
        let chat = LogLines()
        let runtime = try await Runtime.start(loaded) { line in chat.stored.withLock { $0.append(line) } }
        let logs = LogLines()
        var services = runtime.services
        services.logger = Logger(label: "inferops") { _ in logs.handler }
        let daemon = TestDaemon(configuration: runtime.configuration, catalog: loaded.catalog, services: services)
        func run(_ text: String) async -> CommandOutcome {
            await daemon.handle(IncomingCommand(user: UserID("alice"), text: text, channel: "exec"))
        }

        #expect(await run("/infer deploy llama-3-8b to staging --dry-run") == .completed(nil))
        #expect(await run("/infer deploy llama-3-8b to staging").succeeded)
        let failing = await run(#"/infer deploy llama-3-8b to quick --set podAnnotations.inferops\.dev/simulate-ready-after-seconds=never"#)
        #expect(!failing.succeeded)
        #expect(await run("/infer history llama-3-8b in staging") == .completed(nil))
        #expect(await run("/infer history llama-3-8b in quick") == .completed(nil))
        #expect(await run("/infer status") == .completed(nil))

        var journal: [String] = []
        for operation in try await runtime.store.recentOperations(model: nil, environment: nil, limit: 100) {
            journal += try await runtime.store.journal(of: operation.id).map(\.message)
            journal.append(operation.command + " " + (operation.outcome ?? ""))
        }
        let audit = try await runtime.store.auditLines()
        await runtime.shutdown()

        // The secrets were live: Helm stored them with the release, and the dry run had them to show.
        let stored = try sandbox.helmRun(["get", "values", "llama-3-8b-staging", "--namespace", "inference-staging", "--all"])
        #expect(stored.output.contains(Self.modelSecret) && stored.output.contains(Self.valuesSecret))
        let transcript = chat.lines
        let dryRun = try #require(transcript.first { $0.contains("Rendered manifests:") })
        #expect(dryRun.contains("MODEL_API_KEY") && dryRun.contains("<redacted>"))
        // The plan's digest is not a secret: it stays whole.
        #expect(dryRun.contains(#/digest: sha256:[0-9a-f]{64}/#), "\(dryRun)")
        #expect(transcript.contains { $0.contains("failed") }, "\(transcript)")
        let argv = try String(contentsOfFile: argvLog, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(argv.contains { $0.hasPrefix("upgrade ") })
        #expect(!journal.isEmpty && audit.count >= 4)

        let places: [(String, [String])] = [
            ("chat", transcript), ("log", logs.lines), ("helm argv", argv), ("journal", journal), ("audit", audit),
        ]
        for (place, texts) in places {
            for secret in Self.seeded {
                let leaks = texts.filter { $0.contains(secret) }
                #expect(leaks.isEmpty, "\(secret) in the \(place): \(leaks)")
            }
        }
    }
}

/// Lines collected from another thread: chat output, or every log line (message and metadata).
final class LogLines: Sendable {
    let stored = Mutex<[String]>([])
    var lines: [String] { stored.withLock { $0 } }
    var handler: Handler { Handler(owner: self) }

    struct Handler: LogHandler {
        let owner: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let metadata = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            owner.stored.withLock { $0.append(([event.message.description] + metadata).joined(separator: " ")) }
        }
    }
}
