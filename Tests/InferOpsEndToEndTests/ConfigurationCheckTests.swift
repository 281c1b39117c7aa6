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
}
