import Foundation
import Testing

/// A newcomer's configuration whose kubeconfig does not exist yet (the sandbox not started): what
/// needs no cluster answers, what needs one says so once and fails.
@Suite("Without a cluster")
final class WithoutClusterTests {
    let folder: URL
    let inferops = repositoryRoot.appendingPathComponent(".build/debug/inferops").path
    var kubeconfig: String { folder.appendingPathComponent("no-such-folder/kubeconfig").path }
    var config: String { folder.appendingPathComponent("inferops.yaml").path }

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-nocluster-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let root = repositoryRoot.path
        func environment(_ name: String) -> String {
            """
              \(name):
                kubeContext: emulator
                namespace: inference-\(name)
                chart: \(root)/deploy/charts/vllm-engine
            """
        }
        try """
            chat:
              transport: console
            kubernetes:
              kubeconfig: \(kubeconfig)
            helm:
              binary: \(HelmBinary.helm4.path)
            storage:
              path: \(folder.path)/inferops.sqlite
            server:
              host: 127.0.0.1
              port: 0
            models:
              directory: \(root)/config/models
            commands:
              directory: \(root)/commands
            environments:
            \(environment("staging"))
            \(environment("canary"))
            policy:
              roles:
                - name: admin
                  members: [alice]
                  grants:
                    - permissions: ["*"]
                      environments: ["*"]
                - name: viewer
                  members: [bob]
                  grants:
                    - permissions: [view]
                      environments: ["*"]
            """.write(toFile: config, atomically: true, encoding: .utf8)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    func exec(_ command: String, as user: String = "alice") throws -> Finished {
        try run(inferops, ["exec", "--config", config, "--as", user, command])
    }

    @Test func helpAnswersWithoutACluster() throws {
        let help = try exec("/infer help")
        #expect(help.status == 0, "\(help.output)")
        #expect(help.output.contains("deploy"))
        #expect(!help.output.contains("Cannot read"), "\(help.output)")
    }

    @Test func refusalsAnswerWithoutACluster() throws {
        let typo = try exec("/infer deplyo llama-3-8b to staging")
        #expect(typo.status == 2, "\(typo.output)")
        #expect(typo.output.contains("`deploy`"), "\(typo.output)")

        let unknown = try exec("/infer deploy llama-3-8b to stagign")
        #expect(unknown.status == 2, "\(unknown.output)")
        #expect(unknown.output.contains("staging"), "\(unknown.output)")

        let denied = try exec("/infer deploy llama-3-8b to staging", as: "bob")
        #expect(denied.status == 2, "\(denied.output)")
        #expect(denied.output.lowercased().contains("not allowed") || denied.output.contains("may not"), "\(denied.output)")

        for answer in [typo, unknown, denied] {
            #expect(!answer.output.contains("Cannot read"), "\(answer.output)")
        }
        // A lock is the store's business alone.
        let lock = try exec("/infer lock canary --reason \"maintenance\"")
        #expect(lock.status == 0, "\(lock.output)")
    }

    /// A command that needs the cluster fails with the kubeconfig's own message, when it needs it.
    @Test func aDeployFailsWithTheKubeconfigsMessage() throws {
        let deploy = try exec("/infer deploy llama-3-8b to staging")
        #expect(deploy.status == 1, "\(deploy.output)")
        // Helm is first to need it here, and names the missing file.
        #expect(deploy.output.contains("\(kubeconfig): no such file"), "\(deploy.output)")
    }

    /// Two environments on one unreachable cluster, three models: one line about the cluster, exit 1.
    @Test func statusSaysOnceThatTheClusterIsUnreachable() throws {
        let status = try exec("/infer status")
        #expect(status.status == 1, "\(status.output)")
        let lines = status.output.split(separator: "\n").filter { $0.lowercased().contains("unreachable") }
        #expect(lines.count == 2, "\(status.output)")  // the title, and the one line naming the context
        #expect(lines.filter { $0.contains("`emulator`") }.count == 1, "\(status.output)")
        #expect(!status.output.contains("unknown:"), "\(status.output)")
    }
}
