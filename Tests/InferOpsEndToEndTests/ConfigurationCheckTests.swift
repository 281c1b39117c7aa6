import Foundation
import InferOpsApp
import InferOpsCore
import Testing

/// `inferops check`: the shipped files are valid, and each kind of mistake is reported with its
/// file, line and a fix.
@Suite("Configuration check")
struct ConfigurationCheckTests {
    @Test("The sandbox and example configurations have no errors", arguments: ["config/sandbox.yaml", "config/inferops.example.yaml"])
    func shippedFilesAreValid(_ file: String) {
        let loaded = ConfigurationLoader(path: repositoryRoot.appendingPathComponent(file).path).load()
        #expect(loaded.critical.isEmpty, "\(loaded.critical)")
        #expect(
            loaded.catalog.names == [
                "cancel", "deploy", "deregister", "disable", "enable", "help", "history", "lock", "register", "rollback",
                "status", "unlock",
            ])
        #expect(loaded.configuration.models.keys.sorted() == ["llama-3-70b", "llama-3-8b", "mistral-7b"])
        #expect(loaded.configuration.environments["staging"] != nil)
    }

    @Test("Mistakes are reported with file, line and a fix")
    func mistakesHaveLines() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-check-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = repositoryRoot.path
        let file = folder.appendingPathComponent("inferops.yaml").path
        try """
            chat:
              transport: console
            models:
              directory: \(root)/config/models
            commands:
              directory: \(root)/commands
            environments:
              staging:
                namespace: inference
                chart: \(root)/deploy/charts/vllm-engine
                readinessBudget: ten minutes
                replicas: many
                autoRollbak: true
              production:
                chart: \(root)/deploy/charts/vllm-engine
            policy:
              roles:
                - name: deployers
                  members: [U1]
                  grants:
                    - permissions: [deploi]
                      environments: [stagign]
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let problems = ConfigurationLoader(path: file).load().problems
        func problem(containing text: String) -> ConfigurationProblem? { problems.first { $0.message.contains(text) } }

        let budget = try #require(problem(containing: "`readinessBudget`"))
        #expect(budget.line == 11 && budget.critical && budget.fix.contains("10m"))
        let replicas = try #require(problem(containing: "`replicas`"))
        #expect(replicas.line == 12)
        let typo = try #require(problem(containing: "unknown key `autoRollbak`"))
        #expect(typo.line == 13 && !typo.critical && typo.message.contains("Did you mean `autoRollback`?"))
        let namespace = try #require(problem(containing: "needs `namespace`"))
        #expect(namespace.line == 15)
        let permission = try #require(problem(containing: "unknown permission `deploi`"))
        #expect(permission.message.contains("Did you mean `deploy`?"))
        let environment = try #require(problem(containing: "unknown environment `stagign`"))
        #expect(environment.message.contains("Did you mean `staging`?"))
        #expect(problems.allSatisfy { $0.file == file || $0.file.hasPrefix(root) })
        #expect(problem(containing: "not valid YAML") == nil)
    }

    @Test("A secret written into the file is refused at its line")
    func literalSecret() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-secret-\(UUID().uuidString.prefix(8)).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "chat:\n  transport: console\n  botToken: xoxb-123456\nenvironments: {}\npolicy: {roles: []}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let problems = ConfigurationLoader(path: file).load().problems
        let secret = try #require(problems.first { $0.message.contains("holds a secret") })
        #expect(secret.line == 3 && secret.critical && secret.fix.contains("{env: VARIABLE}"))
        #expect(!problems.contains { $0.description.contains("xoxb-123456") })
    }

    @Test("Broken YAML is reported at its line")
    func brokenYAML() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-broken-\(UUID().uuidString.prefix(8)).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "chat:\n  transport: console\nenvironments: [staging\npolicy: {}\n".write(toFile: file, atomically: true, encoding: .utf8)
        let problems = ConfigurationLoader(path: file).load().problems
        let syntax = try #require(problems.first { $0.message.contains("not valid YAML") })
        #expect(syntax.line >= 3 && syntax.critical)
    }

    @Test("Secrets written by value in model values, values files, env entries and --set keys are refused at their line")
    func secretValuesRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-check-\(UUID().uuidString.prefix(8))")
        let models = folder.appendingPathComponent("models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = repositoryRoot.path
        let file = folder.appendingPathComponent("inferops.yaml").path
        let valuesFile = folder.appendingPathComponent("staging-values.yaml").path
        let modelFile = models.appendingPathComponent("m.yaml").path
        try """
            name: m
            modelId: org/m
            values:
              engine:
                env:
                  - name: HF_TOKEN
                    value: hf_SEEDEDSECRET1234567890abcdef
                  - name: LOG_LEVEL
                    value: debug
                hfToken:
                  secretName: hf-token
                  secretKey: token
            """.write(toFile: modelFile, atomically: true, encoding: .utf8)
        try """
            engine:
              apiKey: plain-values-s3cret
              env:
                - {name: OPENAI_API_KEY, value: plain-env-s3cret}
                - name: HF_TOKEN
                  valueFrom: {secretKeyRef: {name: hf-token, key: token}}
              extraArgs: ["--served-model-name", "sk-proj-abcdefgh12345678"]
            """.write(toFile: valuesFile, atomically: true, encoding: .utf8)
        try """
            models:
              directory: \(models.path)
            commands:
              directory: \(root)/commands
            environments:
              staging:
                namespace: inference
                chart: \(root)/deploy/charts/vllm-engine
                valuesFiles: [\(valuesFile)]
                allowedSetKeys: [replicaCount, engine.hfToken.secretName, engine.apiKey]
            policy:
              roles:
                - name: deployers
                  members: [U1]
                  grants:
                    - permissions: [deploy]
                      environments: [staging]
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let loaded = ConfigurationLoader(path: file).load()
        let refused = loaded.critical.filter { $0.fix.contains("secretKeyRef") }
            .map { "\(URL(fileURLWithPath: $0.file).lastPathComponent):\($0.line)" }
        #expect(
            Set(refused) == ["m.yaml:7", "staging-values.yaml:2", "staging-values.yaml:4", "staging-values.yaml:7", "inferops.yaml:10"],
            "\(loaded.problems)")
        #expect(loaded.critical.contains { $0.message == "the env entry `HF_TOKEN` holds its secret by value." })
        #expect(loaded.critical.contains { $0.message == "`--set engine.apiKey` would make people type a secret in chat." })
        // Should such a file get through, the runtime still knows its secrets and keeps them out of replies.
        #expect(Set(loaded.configuration.knownSecrets).isSuperset(of: ["plain-values-s3cret", "plain-env-s3cret"]))
    }
}
