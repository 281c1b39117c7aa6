import Foundation
import InferOpsApp
import InferOpsCore
import InferOpsTestSupport
import Testing

/// `inferops check`: the shipped files are valid, and each kind of mistake is reported with its
/// file, line and a fix.
@Suite("Configuration check")
struct ConfigurationCheckTests {
    @Test("The sandbox and example configurations have no errors", arguments: ["config/sandbox.yaml", "config/inferops.example.yaml"])
    func shippedFilesAreValid(_ file: String) {
        let loaded = ConfigurationLoader(path: repositoryRoot.appendingPathComponent(file).path).load()
        #expect(loaded.problems.isEmpty, "\(loaded.problems)")
        #expect(
            loaded.catalog.names == [
                "approve", "cancel", "deny", "deploy", "deregister", "disable", "enable", "help", "history", "lock",
                "promote", "register", "remove", "rollback", "slo", "status", "unlock",
            ])
        #expect(loaded.configuration.models.keys.sorted() == ["llama-3-70b", "llama-3-8b", "mistral-7b"])
        #expect(loaded.configuration.environments["staging"] != nil)
    }

    @Test("deploy/slack-manifest.json is what `inferops manifest` derives from commands/ now")
    func slackManifestIsCurrent() throws {
        let root = repositoryRoot.path
        let derived = try run(InferOpsDaemon.executable, ["manifest", "--commands", "\(root)/commands"])
        #expect(derived.status == 0, "\(derived.output)")
        let committed = try String(contentsOfFile: "\(root)/deploy/slack-manifest.json", encoding: .utf8)
        #expect(derived.output == committed, "re-run: .build/debug/inferops manifest > deploy/slack-manifest.json")
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
        #expect(typo.line == 13 && typo.critical && typo.message.contains("Did you mean `autoRollback`?"))
        let namespace = try #require(problem(containing: "needs `namespace`"))
        #expect(namespace.line == 15)
        let permission = try #require(problem(containing: "unknown permission `deploi`"))
        #expect(permission.message.contains("Did you mean `deploy`?"))
        let environment = try #require(problem(containing: "unknown environment `stagign`"))
        #expect(environment.message.contains("Did you mean `staging`?"))
        #expect(problems.allSatisfy { $0.file == file || $0.file.hasPrefix(root) })
        #expect(problem(containing: "not valid YAML") == nil)
    }

    @Test("An unknown key in any section is an error with the key that was meant")
    func unknownKeysAreErrors() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = repositoryRoot.path
        let models = folder.appendingPathComponent("models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try "name: m\nmodelId: org/m\ngpuPerReplica: 2\n"
            .write(to: models.appendingPathComponent("m.yaml"), atomically: true, encoding: .utf8)
        let file = folder.appendingPathComponent("inferops.yaml").path
        try """
            chat:
              transport: console
              console: {usr: alice}
            kubernetes: {kubeconfg: kubeconfig}
            helm: {binay: helm}
            storage: {pth: x.sqlite}
            server: {prot: 8470}
            models: {directory: models, dir: models}
            commands: {directory: \(root)/commands, directroy: x}
            environments:
              staging:
                namespace: inference
                chart: \(root)/deploy/charts/vllm-engine
                replica: 2
                verification: {warmupRequest: 2}
                capacity: {whenshort: wait}
                engineAccess: {dirct: "http://{service}:{port}"}
                router: {url: "http://127.0.0.1:30080", autoregister: true}
            policy:
              role: []
              roles:
                - name: deployers
                  member: [U1]
                  grants:
                    - permission: [deploy]
                      environments: [staging]
            polcy: {}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let problems = ConfigurationLoader(path: file).load().problems
        let expected: [(key: String, meant: String, line: Int)] = [
            ("usr", "user", 3), ("kubeconfg", "kubeconfig", 4), ("binay", "binary", 5), ("pth", "path", 6),
            ("prot", "port", 7), ("dir", "directory", 8), ("directroy", "directory", 9), ("replica", "replicas", 14),
            ("warmupRequest", "warmupRequests", 15), ("whenshort", "whenShort", 16), ("dirct", "direct", 17),
            ("autoregister", "autoRegister", 18), ("role", "roles", 20), ("member", "members", 23),
            ("permission", "permissions", 25), ("polcy", "policy", 27),
        ]
        for (key, meant, line) in expected {
            let typo = problems.first { $0.message.hasPrefix("unknown key `\(key)` ") }
            #expect(typo?.critical == true && typo?.line == line, "\(key): \(String(describing: typo))")
            #expect(typo?.message.contains("Did you mean `\(meant)`") == true, "\(String(describing: typo))")
            #expect(typo?.fix == "rename it to `\(meant)`", "\(String(describing: typo))")
        }
        let model = try #require(problems.first { $0.message.hasPrefix("unknown key `gpuPerReplica` in a model") })
        #expect(model.critical && model.line == 3 && model.file.hasSuffix("models/m.yaml"))
        #expect(model.message.contains("Did you mean `gpusPerReplica`?"))
        // `engineAccess: {dirct: …}` is reported once, as the typo, not also as a malformed value.
        #expect(!problems.contains { $0.message.hasPrefix("`engineAccess` must be") })
    }

    @Test("Fixes suggest the default, not a bound such as `replicas: 0`")
    func fixesSuggestDefaults() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: """
                  staging:
                    namespace: inference
                    chart: \(chart)
                    replicas: -1
                    readinessBudget: soon
                    verification: {warmupRequests: 1000, maxTokens: 0, latencyTarget: fast}
                    router: {url: "http://127.0.0.1:30080", enginePort: 0}
                """,
            in: folder)
        let problems = ConfigurationLoader(path: file).load().problems
        func fix(for key: String) -> String? { problems.first { $0.message.hasPrefix("`\(key)`") }?.fix }
        #expect(fix(for: "replicas") == "write e.g. `replicas: 1`")
        #expect(fix(for: "readinessBudget") == "write e.g. `readinessBudget: 10m`")
        #expect(fix(for: "warmupRequests") == "write e.g. `warmupRequests: 3`")
        #expect(fix(for: "maxTokens") == "write e.g. `maxTokens: 16`")
        #expect(fix(for: "latencyTarget") == "write e.g. `latencyTarget: 3s`")
        #expect(fix(for: "enginePort") == "write e.g. `enginePort: 8000`")
        #expect(!problems.contains { $0.fix.contains(": 0`") }, "\(problems)")
    }

    @Test("Every message is a sentence that ends before its fix")
    func messagesEndBeforeTheFix() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = repositoryRoot.path
        let commands = folder.appendingPathComponent("commands")
        try FileManager.default.createDirectory(at: commands, withIntermediateDirectories: true)
        try "name: Bad\nsummary: \"\"\n".write(to: commands.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
        try "name: [\n".write(to: commands.appendingPathComponent("broken.yaml"), atomically: true, encoding: .utf8)
        let file = folder.appendingPathComponent("inferops.yaml").path
        try """
            chat: {transport: slack, consol: {}}
            helm: {driver: etcd}
            server: {port: http, maxConnections: 0, idleTimeout: forever}
            models: {directory: empty}
            commands: {directory: commands}
            environments:
              Staging: {namespace: x, chart: \(root)/deploy/charts/vllm-engine}
              dev:
                namespace: dev
                chart: vllm/vllm-engine
                valuesFiles: [missing.yaml]
                allowedSetKeys: [engine.apiKey]
                capacity: {whenShort: maybe}
                engineAccess: nearby
                router: {url: "ftp://x", workerURL: "http://x"}
            policy:
              roles:
                - name: r
                  members: []
                  grants: [{permissions: [deploi], environments: [prod]}]
            """.write(toFile: file, atomically: true, encoding: .utf8)
        var problems = ConfigurationLoader(path: file).load().problems
        problems += ConfigurationLoader(path: folder.appendingPathComponent("missing.yaml").path).load().problems
        try "a: [\n".write(toFile: file, atomically: true, encoding: .utf8)
        problems += ConfigurationLoader(path: file).load().problems
        #expect(problems.count >= 20, "\(problems)")
        for problem in problems {
            #expect(problem.message.last.map { ".?!".contains($0) } == true, "\(problem.message)")
            let fix = try #require(problem.description.range(of: " Fix: "), "\(problem)")
            #expect(".?!".contains(problem.description[problem.description.index(before: fix.lowerBound)]))
            #expect(problem.description.hasSuffix("."), "\(problem)")
        }
    }

    @Test("An allowed `--set` key that the chart's values do not have is an error; map-typed and escaped keys are not")
    func allowedSetKeysMatchTheChart() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: """
                  staging:
                    namespace: inference
                    chart: \(chart)
                    allowedSetKeys:
                      - replicaCount
                      - replicacount
                      - engine.extraArgs
                      - engine.hfToken.secretNam
                      - podAnnotations.inferops\\.dev/simulate-ready-after-seconds
                      - image.tag.latest
                      - tolerations[0].key
                      - resources.gpus
                """,
            in: folder)
        let problems = ConfigurationLoader(path: file).load().problems.filter { $0.message.contains("allowed `--set` key") }
        #expect(problems.map(\.line) == [13, 15, 17], "\(problems)")
        #expect(problems.allSatisfy { $0.critical && $0.message.contains("\(chart)/values.yaml") })
        #expect(problems.first?.message.contains("Did you mean `replicaCount`?") == true)
        #expect(problems.dropFirst().first?.message.contains("Did you mean `engine.hfToken.secretName`") == true)
        #expect(problems.last?.message.contains("has no `image.tag`") == true)
    }

    @Test("Production's changes wait for one approval by default; `approval:` sets the verbs, the count and the validity")
    func approvalPolicies() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: """
                  production: {namespace: p, chart: \(chart)}
                  staging: {namespace: s, chart: \(chart)}
                  eu-production:
                    namespace: e
                    chart: \(chart)
                    approval: {verbs: [deploy, rollback], approvals: 2, validFor: 2h}
                  dev:
                    namespace: d
                    chart: \(chart)
                    approval: {verbs: [deploy, rolback, lock], approvals: 0, validFor: soon}
                """,
            in: folder)
        let loaded = ConfigurationLoader(path: file).load()
        let environments = loaded.configuration.environments
        #expect(environments["production"]?.approval == ApprovalPolicy(verbs: ApprovalPolicy.productionVerbs))
        #expect(environments["staging"]?.approval == ApprovalPolicy.noApproval)
        #expect(environments["eu-production"]?.approval == ApprovalPolicy(verbs: ["deploy", "rollback"], approvals: 2,
                                                                         validFor: .seconds(7200)))
        let problems = loaded.problems.map(\.message)
        #expect(problems.contains { $0.contains("`rolback` is not a verb that can wait for approval. Did you mean `rollback`?") },
                "\(problems)")
        #expect(problems.contains { $0.contains("`lock` is not a verb that can wait for approval.") })
        #expect(problems.contains { $0.contains("`approvals` in environments.dev.approval must be a whole number from 1 to 10") })
        #expect(problems.contains { $0.contains("validFor") })
    }

    @Test("Promotion, channels, locks and break glass are read per environment, their mistakes named")
    func separationSettings() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: """
                  staging: {namespace: s, chart: \(chart), router: {url: "http://router:30000"}}
                  production:
                    namespace: p
                    chart: \(chart)
                    router: {url: "http://router:30000"}
                    channels: [C0PROD]
                    promotion: {from: staging, evidenceWindow: 6h}
                    whenLocked: queue
                  dev:
                    namespace: d
                    chart: \(chart)
                    promotion: {from: stagin}
                    whenLocked: wait
                    breakGlass: {role: oncall, channel: C0INC}
                """,
            in: folder)
        let loaded = ConfigurationLoader(path: file).load()
        let production = try #require(loaded.configuration.environments["production"])
        #expect(production.channels == ["C0PROD"])
        #expect(production.promotion == PromotionSettings(from: "staging", evidenceWindow: .seconds(6 * 3600)))
        #expect(production.whenLocked == .queue)
        #expect(loaded.configuration.environments["staging"]?.channels == [])
        let problems = loaded.problems.map(\.message)
        #expect(problems.contains { $0.contains("`promotion.from: stagin` of `dev` is not another environment. Did you mean `staging`?") },
                "\(problems)")
        #expect(problems.contains { $0.contains("`whenLocked: wait` is not a choice.") })
        #expect(problems.contains { $0.contains("the break-glass role `oncall` of `dev` is not a policy role.") })
        #expect(problems.contains { $0.contains("`staging` and `production` share the router http://router:30000") })
    }

    @Test("keepPrevious is read per environment; without a router, or over a week, it is an error")
    func keepPreviousSettings() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: """
                  staging: {namespace: s, chart: \(chart), router: {url: "http://router-s:30000"}, keepPrevious: 30m}
                  production: {namespace: p, chart: \(chart), router: {url: "http://router-p:30000"}, keepPrevious: 200h}
                  dev: {namespace: d, chart: \(chart), keepPrevious: 10m}
                  qa: {namespace: q, chart: \(chart), router: {url: "http://router-q:30000"}, keepPrevious: soon}
                """,
            in: folder)
        let loaded = ConfigurationLoader(path: file).load()
        #expect(loaded.configuration.environments["staging"]?.keepPrevious == .seconds(1800))
        #expect(loaded.configuration.environments["production"]?.keepPrevious == nil)
        #expect(loaded.configuration.environments["dev"]?.keepPrevious == nil)
        let problems = loaded.problems.map(\.message)
        #expect(problems.contains { $0.contains("`keepPrevious` keeps the previous revision for a rollback that only switches the router, and `dev` has no router.") },
                "\(problems)")
        #expect(problems.contains { $0.contains("`keepPrevious: 8 d 8 h` would hold") || $0.contains("would hold the previous revision's GPUs for over a week") },
                "\(problems)")
        #expect(problems.contains { $0.contains("`keepPrevious` in environments.qa must be a duration like `90s`, `10m` or `1h`.") },
                "\(problems)")
    }

    @Test("A replicated router lists each replica's own address; one replica, or one that is not a URL, is an error")
    func routerReplicas() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: """
                  staging:
                    namespace: s
                    chart: \(chart)
                    router: {url: "http://router-s:30000", replicas: ["http://router-s-0:30000", "http://router-s-1:30000"]}
                  production: {namespace: p, chart: \(chart), router: {url: "http://router-p:30000", replicas: ["http://router-p-0:30000"]}}
                  dev: {namespace: d, chart: \(chart), router: {url: "http://router-d:30000", replicas: ["router-d-0:30000", "http://router-d-1:30000"]}}
                """,
            in: folder)
        let loaded = ConfigurationLoader(path: file).load()
        #expect(loaded.configuration.environments["staging"]?.router?.replicas == ["http://router-s-0:30000", "http://router-s-1:30000"])
        #expect(loaded.configuration.environments["production"]?.router?.replicas == [])
        let problems = loaded.problems.map(\.message)
        #expect(problems.contains { $0.contains("one router replica is the router itself.") }, "\(problems)")
        #expect(problems.contains { $0.contains("the router replica `router-d-0:30000` is not an http(s) URL.") }, "\(problems)")
    }

    @Test("A model's values that the chart does not have are an error at their line")
    func modelValuesMatchTheChart() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let chart = repositoryRoot.appendingPathComponent("deploy/charts/vllm-engine").path
        let file = try writeConfiguration(
            models: ["m"],
            environments: "  staging:\n    namespace: inference\n    chart: \(chart)",
            in: folder)
        try """
            name: m
            modelId: org/m
            values:
              replicacount: 2
              resources: {gpus: 2}
              podAnnotations:
                example.com/team: ml
              engine:
                extraArgs: ["--max-model-len", "8192"]
                hfTokn: {secretName: hf}
            """.write(to: folder.appendingPathComponent("models/model-0.yaml"), atomically: true, encoding: .utf8)
        let problems = ConfigurationLoader(path: file).load().problems.filter { $0.message.contains("chart's values") }
        #expect(problems.map(\.line).sorted() == [4, 10], "\(problems)")
        #expect(problems.allSatisfy { $0.critical })
        #expect(problems.contains { $0.message.contains("Did you mean `replicaCount`?") })
        #expect(problems.contains { $0.message.contains("Did you mean `engine.hfToken`?") })
    }

    @Test("A bare `inferops check` reads config/inferops.yaml, or says where it looked and fails")
    func bareCheckSaysWhereItLooked() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        func check(in directory: URL) throws -> Finished {
            try ChildProcess.run(InferOpsDaemon.executable, ["check"], workingDirectory: directory.path)
        }
        let missing = try check(in: folder)
        #expect(missing.status != 0)
        #expect(missing.output.contains("\(folder.resolvingSymlinksInPath().path)/config/inferops.yaml does not exist")
                    || missing.output.contains("\(folder.path)/config/inferops.yaml does not exist"), "\(missing.output)")
        #expect(missing.output.contains("--config"), "\(missing.output)")

        let config = folder.appendingPathComponent("config")
        try FileManager.default.createDirectory(at: config, withIntermediateDirectories: true)
        try "replica: 2\n".write(to: config.appendingPathComponent("inferops.yaml"), atomically: true, encoding: .utf8)
        let found = try check(in: folder)
        #expect(found.status == 1)
        #expect(found.output.contains("config/inferops.yaml:1: error: unknown key `replica`"), "\(found.output)")
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

    @Test("Slack's settings are read, its tokens only as references, and its mistakes named at their line")
    func slackSettings() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-slack-\(UUID().uuidString.prefix(8)).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        func load(_ chat: String) throws -> ConfigurationLoader.Loaded {
            try ("chat:\n" + chat + "environments: {}\npolicy: {roles: []}\n").write(toFile: file, atomically: true, encoding: .utf8)
            return ConfigurationLoader(path: file).load()
        }
        let good = try load("""
              transport: slack
              notices: C0OPS
              slack:
                apiURL: http://127.0.0.1:9/api/
                appToken: {file: /run/secrets/slack-app}
                command: /deploybot
                watchdog: 12s

            """)
        let slack = good.configuration.chat.slack
        #expect(good.configuration.chat.transport == "slack")
        #expect(good.configuration.chat.noticesChannel == "C0OPS")
        #expect(slack.apiURL == "http://127.0.0.1:9/api/" && slack.command == "/deploybot" && slack.watchdog == .seconds(12))
        #expect(slack.appToken == .file("/run/secrets/slack-app") && slack.botToken == .environment("SLACK_BOT_TOKEN"))
        #expect(!good.problems.contains { $0.message.contains("chat") }, "\(good.problems)")

        let bad = try load("""
              transport: slak
              slack:
                apiURL: slack.com
                appToken: xapp-1-A0-1-abcdef
                botToken: {vault: x}
                command: infer
                watchdog: 1s

            """)
        func problem(_ text: String) -> ConfigurationProblem? { bad.problems.first { $0.message.contains(text) } }
        #expect(problem("the chat transport `slak` is not available")?.line == 2)
        #expect(problem("`chat.slack.apiURL` must be an http(s) URL")?.line == 4)
        #expect(problem("`appToken` holds a secret")?.line == 5)
        #expect(problem("`chat.slack.botToken` must be `{env: VARIABLE}` or `{file: /path/to/secret}`")?.line == 6)
        #expect(problem("must be a slash command")?.line == 7)
        #expect(problem("`chat.slack.watchdog` must be at least 2s")?.line == 8)
        #expect(!bad.problems.contains { $0.description.contains("xapp-1-A0-1-abcdef") })
        // Without notices, Slack's are only logged; the console prints its own.
        #expect(try load("  transport: slack\n").configuration.chat.noticesChannel == nil)
        #expect(try load("  transport: console\n").configuration.chat.noticesChannel == "console")
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
