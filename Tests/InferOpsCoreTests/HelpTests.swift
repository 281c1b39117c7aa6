import Foundation
import InferOpsConsole
import InferOpsCore
import InferOpsTesting
import Testing

/// Help as the console shows it: it fits a 100-column terminal, and `help deploy` lists what this
/// user may deploy where, with which `--set` keys.
@Suite(.timeLimit(.minutes(1))) struct HelpTests {
    /// The console's rendering of the last reply, line by line.
    static func rendered(_ h: Harness) throws -> [String] {
        let reply = try #require(h.chat.posts.last?.reply)
        return ConsoleRenderer.render(reply, operation: nil, threaded: false)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    static let sandboxKnob = "podAnnotations.inferops\\.dev/simulate-ready-after-seconds"

    /// Staging allows the readiness-delay annotation, as `config/sandbox.yaml` does.
    static func sandboxLike() -> Harness {
        Harness { configuration in
            configuration.environments["staging"]?.allowedSetKeys.append(sandboxKnob)
        }
    }

    static let commands = ["help"] + Fixtures.catalog.specs.map { "help \($0.name)" }

    @Test(arguments: commands)
    func everyLineFitsIn100Columns(_ command: String) async throws {
        let h = Self.sandboxLike()
        #expect(await h.run(command) == .completed(nil))
        let lines = try Self.rendered(h)
        #expect(lines.count > 2)
        for line in lines {
            #expect(line.count <= 100, "\(line.count) columns: \(line)")
        }
    }

    @Test func theOverviewPutsEachUsageOnItsOwnLineUnderItsVerb() async throws {
        let h = Harness()
        #expect(await h.run("help") == .completed(nil))
        let lines = try Self.rendered(h)
        let deploy = try #require(lines.firstIndex { $0.hasPrefix("  deploy — Deploy") })
        #expect(lines[deploy + 1].hasPrefix("      `/infer deploy <model> to <environment>"), "\(lines[deploy + 1])")
        #expect(h.chat.posts.last?.reply.table == nil)
        for spec in Fixtures.catalog.specs {
            #expect(lines.contains { $0.hasPrefix("  \(spec.name) — ") }, "\(spec.name)")
        }
    }

    @Test func deployHelpForAnAdminListsEveryEnvironmentWithItsKeys() async throws {
        let h = Harness()
        #expect(await h.run("help deploy", as: Fixtures.admin) == .completed(nil))
        let lines = try Self.rendered(h)
        #expect(lines.contains("  Models: llama-3-8b (1 GPU each), qwen-2-72b (4 GPUs each)."))
        #expect(lines.contains("  You may deploy to: dev, production, staging."))
        #expect(lines.contains("    production: `replicaCount`"))
        #expect(
            lines.contains("    staging: `replicaCount`, `engine.maxModelLen`, `engine.gpuMemoryUtilization`")
        )
    }

    @Test func deployHelpForAStagingDeployerLeavesProductionOut() async throws {
        let h = Harness()
        #expect(await h.run("help deploy", as: Fixtures.deployer) == .completed(nil))
        let lines = try Self.rendered(h)
        #expect(lines.contains("  You may deploy to: staging."))
        #expect(!lines.contains { $0.contains("production") })
        #expect(lines.contains("    staging: `replicaCount`, `engine.maxModelLen`, `engine.gpuMemoryUtilization`"))
    }

    /// Help is kept once made, per verb and per group of users who may deploy to the same places:
    /// asked in turn by people of different groups, each answer is still their own.
    @Test func keptHelpIsStillEachPersonsOwn() async throws {
        let h = Harness()
        for (user, line) in [(Fixtures.admin, "  You may deploy to: dev, production, staging."),
                             (Fixtures.deployer, "  You may deploy to: staging."),
                             (Fixtures.admin, "  You may deploy to: dev, production, staging.")] {
            #expect(await h.run("help deploy", as: user) == .completed(nil))
            #expect(try Self.rendered(h).contains(line), "\(user)")
        }
        #expect(await h.run("help deploy", as: Fixtures.viewer) == .completed(nil))
        #expect(try Self.rendered(h).contains { $0.contains("You may not deploy to any environment") })
        #expect(await h.run("help status", as: Fixtures.viewer) == .completed(nil))
        #expect(try Self.rendered(h).first?.contains("status: ") == true)
    }

    @Test func deployHelpForSomeoneWhoMayNotDeploySaysSo() async throws {
        let h = Harness()
        #expect(await h.run("help deploy", as: Fixtures.viewer) == .completed(nil))
        let lines = try Self.rendered(h)
        #expect(lines.contains("  You may not deploy to any environment; ask an admin for the `deploy` permission."))
    }

    @Test func theOverviewNamesTheReadinessKnobWhereAnEnvironmentAllowsIt() async throws {
        let h = Self.sandboxLike()
        #expect(await h.run("help", as: Fixtures.deployer) == .completed(nil))
        let text = try Self.rendered(h).joined(separator: "\n")
        #expect(text.contains("Testing knobs (the sandbox's simulated cluster only):"))
        #expect(text.contains("in staging: `--set \(Self.sandboxKnob)=…`"))
        #expect(text.contains("N (Ready N seconds after scheduling; slow engine) or never"))
    }

    @Test func theOverviewHasNoKnobsWhereNoEnvironmentAllowsThem() async throws {
        let h = Harness()
        #expect(await h.run("help") == .completed(nil))
        #expect(!(try Self.rendered(h).joined().contains("simulate")))
        // Nor for a user who may not deploy where they are allowed.
        let sandbox = Self.sandboxLike()
        #expect(await sandbox.run("help", as: Fixtures.releaser) == .completed(nil))
        #expect(!(try Self.rendered(sandbox).joined().contains("simulate")))
    }
}
