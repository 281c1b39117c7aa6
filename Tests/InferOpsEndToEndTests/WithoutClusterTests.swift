import Foundation
import InferOpsTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A newcomer's configuration whose kubeconfig does not exist yet (the sandbox not started): what
/// needs no cluster answers, what needs one says so once and fails.
@Suite("Without a cluster")
final class WithoutClusterTests {
    let folder: URL
    let inferops = repositoryRoot.appendingPathComponent(".build/debug/inferops").path
    var kubeconfig: String { folder.appendingPathComponent("no-such-folder/kubeconfig").path }
    var config: String { folder.appendingPathComponent("inferops.yaml").path }

    init() throws {
        folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("inferops-nocluster-\(UUID().uuidString.prefix(8))")
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

    /// `/in <channel>` switches the console's channel (a name or an upper-case id) and `exec --in`
    /// sets it; the audit rows say where each command was typed.
    @Test func theConsoleAndExecSayWhichChannelTheyTypeIn() throws {
        let session = try run(inferops, ["serve", "--config", config], input: """
            /in
            /in two words
            /in #C0OPS
            /infer lock staging --reason drill
            /infer unlock staging

            """)
        #expect(session.status == 2, "\(session.output)")
        #expect(session.output.contains("✗ `/in` needs a channel name or id, e.g. `/in prod-deploys`."), "\(session.output)")
        #expect(session.output.contains("• You are now in C0OPS."))
        let viaExec = try run(inferops, ["exec", "--config", config, "--as", "alice", "--in", "C0EXEC", "/infer lock canary"])
        #expect(viaExec.status == 0, "\(viaExec.output)")

        let audit = try run(inferops, ["audit", "--config", config]).output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let channels = audit.map { "\($0["action"] as? String ?? "") \($0["channel"] as? String ?? "")" }
        #expect(channels == ["lock C0OPS", "unlock C0OPS", "lock C0EXEC"], "\(audit)")
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

    /// Piped `serve` is a script: it ends naming each line that did not succeed, and its exit status
    /// says the worst that happened (2 refused, 1 failed), as `exec` does for one command.
    @Test func pipedServeEndsWithTheLinesThatDidNotSucceed() throws {
        let refused = try run(inferops, ["serve", "--config", config], input: """
            /infer help
            # a comment line still counts as a line

            /as bob
            /infer deploy llama-3-8b to staging
            /as alice
            /infer deplyo llama-3-8b to staging
            /infer lock canary --reason "maintenance"

            """)
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains(
            "2 of 6 commands did not succeed: line 5 `/infer deploy llama-3-8b to staging` refused; "
                + "line 7 `/infer deplyo llama-3-8b to staging` refused."), "\(refused.output)")

        let failed = try run(inferops, ["serve", "--config", config], input: """
            /as alice
            /infer deplyo llama-3-8b to staging
            /infer deploy llama-3-8b to staging
            /as
            """)
        #expect(failed.status == 1, "\(failed.output)")
        #expect(failed.output.contains(
            "3 of 4 commands did not succeed: line 2 `/infer deplyo llama-3-8b to staging` refused; "
                + "line 3 `/infer deploy llama-3-8b to staging` failed; line 4 `/as` refused."), "\(failed.output)")

        let done = try run(inferops, ["serve", "--config", config], input: "/infer help\n/infer help deploy\n")
        #expect(done.status == 0, "\(done.output)")
        #expect(done.output.hasSuffix("All 2 commands succeeded.\n"), "\(done.output)")
    }

    /// `/readyz` asks the chat: with the console's output gone (the reader of its pipe closed after
    /// the greeting), the daemon is not ready and says `chat` is why; with it open, it is ready.
    @Test(arguments: [true, false]) func readinessAsksTheChat(outputOpen: Bool) async throws {
        let process = try InferOpsDaemon.serve(config: config, errors: .separate)
        defer { process.stop() }
        try await process.waitForLine(in: .standardOutput, within: .seconds(30)) { $0.contains("InferOps console") }
        if !outputOpen {
            process.closeOutput(.standardOutput)
        }

        let bound = try await process.listenerPort(within: .seconds(30))
        let (body, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(bound)/readyz")!)
        let status = (response as? HTTPURLResponse)?.statusCode
        let report = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        let failing = report["failing"] as? [String]
        if outputOpen {
            #expect(status == 200, "\(report)")
            #expect(failing == [])
        } else {
            #expect(status == 503, "\(report)")
            #expect(failing == ["chat"])
        }
    }
}
