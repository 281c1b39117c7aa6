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
                "cancel", "deploy", "deregister", "disable", "enable", "help", "history", "lock", "register", "remove",
                "rollback", "status", "unlock",
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

    @Test("The example binds loopback and states the listener's limits")
    func exampleListener() {
        let example = repositoryRoot.appendingPathComponent("config/inferops.example.yaml").path
        let server = ConfigurationLoader(path: example).load().configuration.server
        #expect(server.host == "127.0.0.1")
        #expect(server.port == ServerSettings.defaultPort)
        #expect(server.idleTimeout == .seconds(60) && server.readTimeout == .seconds(10))
        #expect(server.maxConnections == 1024)
    }

    @Test("The listener's limits are read, and bad ones are reported at their line")
    func listenerLimits() throws {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("inferops-limits-\(UUID().uuidString.prefix(8)).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "server:\n  idleTimeout: 5s\n  readTimeout: 1500ms\n  maxConnections: 64\n"
            .appending("environments: {}\npolicy: {roles: []}\n").write(toFile: file, atomically: true, encoding: .utf8)
        let server = ConfigurationLoader(path: file).load().configuration.server
        #expect(server.idleTimeout == .seconds(5) && server.readTimeout == .milliseconds(1500))
        #expect(server.maxConnections == 64)

        try "server:\n  idleTimeout: forever\n  maxConnections: 0\nenvironments: {}\npolicy: {roles: []}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let problems = ConfigurationLoader(path: file).load().problems
        #expect(problems.contains { $0.line == 2 && $0.critical && $0.message.contains("`idleTimeout`") })
        #expect(problems.contains { $0.line == 3 && $0.critical && $0.message.contains("`maxConnections`") })
    }

    /// A configuration with its own model catalog, in a fresh folder; returns the file's path.
    private func writeConfiguration(models: [String], environments: String, in folder: URL) throws -> String {
        let root = repositoryRoot.path
        let modelsFolder = folder.appendingPathComponent("models")
        try FileManager.default.createDirectory(at: modelsFolder, withIntermediateDirectories: true)
        for (index, name) in models.enumerated() {
            try "name: \(name)\nmodelId: org/model-\(index)\n"
                .write(to: modelsFolder.appendingPathComponent("model-\(index).yaml"), atomically: true, encoding: .utf8)
        }
        let file = folder.appendingPathComponent("inferops.yaml").path
        try """
            chat:
              transport: console
            models:
              directory: models
            commands:
              directory: \(root)/commands
            environments:
            \(environments)
            policy:
              roles: []
            """.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    private func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("inferops-names-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test("Environment and model names must be DNS labels")
    func namesAreDNSLabels() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let long = String(repeating: "a", count: 64)
        let file = try writeConfiguration(
            models: ["llama-3-8b", "llama_3", "llama.3", "-llama"],
            environments: """
                  staging:
                    namespace: inference
                    chart: \(chart)
                  gpu_prod:
                    namespace: inference
                    chart: \(chart)
                  dev-:
                    namespace: inference
                    chart: \(chart)
                  \(long):
                    namespace: inference
                    chart: \(chart)
                """,
            in: folder)
        let loaded = ConfigurationLoader(path: file).load()
        func problem(containing text: String) -> ConfigurationProblem? { loaded.problems.first { $0.message.contains(text) } }

        let underscore = try #require(problem(containing: "environment name `gpu_prod` is not a DNS label"))
        #expect(underscore.critical && underscore.line == 11 && underscore.message.contains("only lower-case letters, digits and `-`"))
        let dash = try #require(problem(containing: "environment name `dev-` is not a DNS label"))
        #expect(dash.line == 14 && dash.message.contains("start and end with a letter or a digit"))
        let tooLong = try #require(problem(containing: "environment name `\(long)` is not a DNS label"))
        #expect(tooLong.line == 17 && tooLong.message.contains("64 characters"))
        for model in ["llama_3", "llama.3", "-llama"] {
            let bad = try #require(problem(containing: "model name `\(model)` is not a DNS label"))
            #expect(bad.critical && bad.file.hasSuffix(".yaml") && bad.file.contains("/models/"))
        }
        #expect(loaded.configuration.environmentNames == ["staging"])
        #expect(loaded.configuration.modelNames == ["llama-3-8b"])
    }

    @Test("A chart from a `helm repo add` repository is refused: helm runs with its own settings")
    func repositoryChartsAreRefused() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["llama-3-8b"],
            environments: """
                  staging:
                    namespace: inference
                    chart: vllm/vllm-engine
                  canary:
                    namespace: canary
                    chart: oci://registry.example.com/charts/vllm-engine
                  dev:
                    namespace: dev
                    chart: \(chart)
                """,
            in: folder)
        let problems = ConfigurationLoader(path: file).load().problems.filter { $0.message.contains("chart folder") }
        #expect(problems.count == 1, "\(problems)")
        let problem = try #require(problems.first)
        #expect(problem.critical && problem.line == 10 && problem.message.contains("`vllm/vllm-engine`"))
        #expect(problem.fix.contains("oci://"))
    }

    @Test("A release name longer than Helm's 53 characters is refused")
    func releaseNamesFitHelm() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let environment = "staging-" + String(repeating: "x", count: 30)  // 38 characters
        let file = try writeConfiguration(
            models: ["llama-3-8b", "meta-llama-3-70b-instruct"],  // releases of 49 and 64 characters
            environments: """
                  \(environment):
                    namespace: inference
                    chart: \(chart)
                """,
            in: folder)
        let problems = ConfigurationLoader(path: file).load().problems
        let tooLong = problems.filter { $0.message.contains("Helm allows at most 53") }
        #expect(tooLong.count == 1)
        let problem = try #require(tooLong.first)
        #expect(problem.critical && problem.line == 8)
        #expect(problem.message.contains("`meta-llama-3-70b-instruct-\(environment)`") && problem.message.contains("64 characters"))
    }

    @Test("Two environments that map to the same release are reported with both locations")
    func releaseCollisions() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        // `a` in `b-c` and `a-b` in `c` are both the release `a-b-c`.
        let file = try writeConfiguration(
            models: ["a", "a-b"],
            environments: """
                  b-c:
                    kubeContext: gpu
                    namespace: shared
                    chart: \(chart)
                  c:
                    kubeContext: gpu
                    namespace: shared
                    chart: \(chart)
                  elsewhere-c:
                    kubeContext: gpu
                    namespace: other
                    chart: \(chart)
                """,
            in: folder)
        let problems = ConfigurationLoader(path: file).load().problems
        let collisions = problems.filter { $0.message.contains("would overwrite") }
        #expect(collisions.count == 1, "\(collisions)")
        let collision = try #require(collisions.first)
        #expect(collision.critical && collision.line == 12)
        #expect(collision.message.contains("`b-c` (\(file):8)") && collision.message.contains("`c` (\(file):12)"))
        #expect(collision.message.contains("`a-b-c`") && collision.message.contains("namespace `shared`"))

        // `inferops check` prints it and fails.
        let inferops = repositoryRoot.appendingPathComponent(".build/debug/inferops").path
        let check = try run(inferops, ["check", "--config", file])
        #expect(check.status == 1)
        #expect(check.output.contains("\(file):12: error: the environments `b-c` (\(file):8) and `c` (\(file):12)"))
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
