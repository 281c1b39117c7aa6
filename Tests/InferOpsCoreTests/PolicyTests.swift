import InferOpsCore
import InferOpsTesting
import Testing

@Suite struct PolicyTests {
    /// One row per role and verb: may a member of that role (and of `viewer`, which is everyone)
    /// run the verb in dev, staging and production? Written out cell by cell on purpose.
    struct Row: Sendable, CustomTestStringConvertible {
        var role: String
        var verb: String
        var dev: Bool
        var staging: Bool
        var production: Bool
        var testDescription: String { "\(role) \(verb)" }
    }

    static let table: [Row] = [
        //   role                 verb         dev    staging production
        Row(role: "admin", verb: "deploy", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "rollback", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "cancel", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "lock", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "unlock", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "status", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "history", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "help", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "register", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "deregister", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "enable", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "disable", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "remove", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "approve", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "deny", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "promote", dev: true, staging: true, production: true),
        Row(role: "admin", verb: "slo", dev: true, staging: true, production: true),

        Row(role: "staging-deployer", verb: "deploy", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "rollback", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "cancel", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "lock", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "unlock", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "status", dev: true, staging: true, production: true),
        Row(role: "staging-deployer", verb: "history", dev: true, staging: true, production: true),
        Row(role: "staging-deployer", verb: "help", dev: true, staging: true, production: true),
        Row(role: "staging-deployer", verb: "register", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "deregister", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "enable", dev: false, staging: false, production: false),
        Row(role: "staging-deployer", verb: "disable", dev: false, staging: false, production: false),
        Row(role: "staging-deployer", verb: "remove", dev: false, staging: true, production: false),
        Row(role: "staging-deployer", verb: "approve", dev: false, staging: false, production: false),
        Row(role: "staging-deployer", verb: "deny", dev: false, staging: false, production: false),
        Row(role: "staging-deployer", verb: "promote", dev: false, staging: false, production: false),
        Row(role: "staging-deployer", verb: "slo", dev: true, staging: true, production: true),

        Row(role: "releaser", verb: "deploy", dev: true, staging: false, production: false),
        Row(role: "releaser", verb: "rollback", dev: true, staging: false, production: false),
        Row(role: "releaser", verb: "cancel", dev: true, staging: false, production: false),
        Row(role: "releaser", verb: "lock", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "unlock", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "status", dev: true, staging: true, production: true),
        Row(role: "releaser", verb: "history", dev: true, staging: true, production: true),
        Row(role: "releaser", verb: "help", dev: true, staging: true, production: true),
        Row(role: "releaser", verb: "register", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "deregister", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "enable", dev: false, staging: false, production: true),
        Row(role: "releaser", verb: "disable", dev: false, staging: false, production: true),
        Row(role: "releaser", verb: "remove", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "approve", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "deny", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "promote", dev: false, staging: false, production: false),
        Row(role: "releaser", verb: "slo", dev: true, staging: true, production: true),

        Row(role: "viewer", verb: "deploy", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "rollback", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "cancel", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "lock", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "unlock", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "status", dev: true, staging: true, production: true),
        Row(role: "viewer", verb: "history", dev: true, staging: true, production: true),
        Row(role: "viewer", verb: "help", dev: true, staging: true, production: true),
        Row(role: "viewer", verb: "register", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "deregister", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "enable", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "disable", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "remove", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "approve", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "deny", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "promote", dev: false, staging: false, production: false),
        Row(role: "viewer", verb: "slo", dev: true, staging: true, production: true),
    ]

    static let members: [String: UserID] = [
        "admin": Fixtures.admin, "staging-deployer": Fixtures.deployer, "releaser": Fixtures.releaser,
        "viewer": Fixtures.viewer,
    ]

    @Test func tableCoversEveryRoleVerbAndEnvironment() {
        let covered = Set(Self.table.map { "\($0.role) \($0.verb)" })
        let expected = Set(
            Fixtures.policy.roles.flatMap { role in Fixtures.catalog.names.map { "\(role.name) \($0)" } })
        #expect(covered == expected)
        #expect(Fixtures.configuration().environmentNames == ["dev", "production", "staging"])
    }

    @Test(arguments: table)
    func policyDecides(_ row: Row) {
        let user = Self.members[row.role]!
        let permission = Fixtures.catalog.spec(named: row.verb)!.permission
        let policy = Fixtures.policy
        #expect(policy.allows(user, permission, in: "dev") == row.dev, "dev")
        #expect(policy.allows(user, permission, in: "staging") == row.staging, "staging")
        #expect(policy.allows(user, permission, in: "production") == row.production, "production")
    }

    /// The same table through the whole pipeline for the verbs that name an environment: a denied
    /// cell is refused with a denial and never reaches a port; an allowed one gets past authorization.
    @Test(arguments: table.filter { ["deploy", "rollback", "remove", "lock", "unlock", "history", "status"].contains($0.verb) })
    func intakeEnforces(_ row: Row) async throws {
        for (environment, allowed) in [("dev", row.dev), ("staging", row.staging), ("production", row.production)] {
            let harness = Harness()
            let text =
                switch row.verb {
                case "deploy": "deploy llama-3-8b to \(environment) --dry-run"
                case "rollback": "rollback llama-3-8b in \(environment) --to 1"
                case "remove": "remove llama-3-8b from \(environment)"
                case "lock", "unlock": "\(row.verb) \(environment)"
                case "history": "history llama-3-8b in \(environment)"
                default: "status llama-3-8b in \(environment)"
                }
            let outcome = await harness.run(text, as: Self.members[row.role]!)
            let audit = await harness.store.auditLog()
            let denied = audit.contains { $0.outcome == "denied" }
            #expect(denied == !allowed, "\(text): \(outcome)")
            if !allowed {
                #expect(outcome.message?.contains("may not `\(row.verb)` in `\(environment)`") == true)
                #expect(harness.releases.calls.isEmpty)
                #expect(harness.cluster.capacityCalls == 0)
            }
        }
    }

    // MARK: routing

    /// What a command that touches the router does for one role in one environment.
    enum Routing: String, Sendable {
        /// Denied at authorization: nothing ran, the router and the registration are untouched.
        case denied
        /// Ran, and the router and the registration changed as asked.
        case routed
        /// The deploy or rollback ran and succeeded, but the requester may not `register` there, so
        /// its automatic router change was skipped with a line in the thread.
        case skipped
    }

    /// One row per role and router-changing action, in dev, staging and production. The actions are
    /// the four routing verbs, `deploy --register`, and the automatic ones: `router.autoRegister`
    /// and the refresh that moves an enabled registration to a deploy's or rollback's new replicas.
    struct RoutingRow: Sendable, CustomTestStringConvertible {
        var role: String
        var action: String
        var dev: Routing
        var staging: Routing
        var production: Routing
        var testDescription: String { "\(role) \(action)" }
    }

    static let routingActions = [
        "register", "deregister", "enable", "disable", "deploy --register", "deploy (autoRegister)",
        "deploy (refresh)", "rollback (refresh)",
    ]

    static let routingTable: [RoutingRow] = [
        //        role                 action                   dev        staging    production
        RoutingRow(role: "admin", action: "register", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "deregister", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "enable", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "disable", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "deploy --register", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "deploy (autoRegister)", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "deploy (refresh)", dev: .routed, staging: .routed, production: .routed),
        RoutingRow(role: "admin", action: "rollback (refresh)", dev: .routed, staging: .routed, production: .routed),

        RoutingRow(role: "staging-deployer", action: "register", dev: .denied, staging: .routed, production: .denied),
        RoutingRow(role: "staging-deployer", action: "deregister", dev: .denied, staging: .routed, production: .denied),
        RoutingRow(role: "staging-deployer", action: "enable", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "staging-deployer", action: "disable", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "staging-deployer", action: "deploy --register", dev: .denied, staging: .routed, production: .denied),
        RoutingRow(role: "staging-deployer", action: "deploy (autoRegister)", dev: .denied, staging: .routed, production: .denied),
        RoutingRow(role: "staging-deployer", action: "deploy (refresh)", dev: .denied, staging: .routed, production: .denied),
        RoutingRow(role: "staging-deployer", action: "rollback (refresh)", dev: .denied, staging: .routed, production: .denied),

        RoutingRow(role: "releaser", action: "register", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "releaser", action: "deregister", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "releaser", action: "enable", dev: .denied, staging: .denied, production: .routed),
        RoutingRow(role: "releaser", action: "disable", dev: .denied, staging: .denied, production: .routed),
        RoutingRow(role: "releaser", action: "deploy --register", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "releaser", action: "deploy (autoRegister)", dev: .skipped, staging: .denied, production: .denied),
        RoutingRow(role: "releaser", action: "deploy (refresh)", dev: .skipped, staging: .denied, production: .denied),
        RoutingRow(role: "releaser", action: "rollback (refresh)", dev: .skipped, staging: .denied, production: .denied),

        RoutingRow(role: "viewer", action: "register", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "deregister", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "enable", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "disable", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "deploy --register", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "deploy (autoRegister)", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "deploy (refresh)", dev: .denied, staging: .denied, production: .denied),
        RoutingRow(role: "viewer", action: "rollback (refresh)", dev: .denied, staging: .denied, production: .denied),
    ]

    @Test func routingTableCoversEveryRoleAndAction() {
        let covered = Set(Self.routingTable.map { "\($0.role) \($0.action)" })
        let expected = Set(Fixtures.policy.roles.flatMap { role in Self.routingActions.map { "\(role.name) \($0)" } })
        #expect(covered == expected)
        #expect(Self.routingTable.count == expected.count)
    }

    /// Each cell through the whole pipeline, on fakes with a router in every environment: the
    /// command runs from a state where its change is possible, and the store, the router and the
    /// thread show whether it was denied, routed, or (automatic changes only) skipped.
    @Test(arguments: routingTable)
    func routingIsAuthorized(_ row: RoutingRow) async throws {
        let user = Self.members[row.role]!
        for (environment, expected) in [("dev", row.dev), ("staging", row.staging), ("production", row.production)] {
            let h = Harness(routers: row.action == "deploy (autoRegister)")
            let cell = "\(row.role) \(row.action) in \(environment)"
            let old = "10.0.0.1"
            let new = "10.0.0.2"
            let oldWorker = RouterWorker(url: h.settings(environment).workerURL(podIP: old), model: "llama-3-8b")
            let newWorker = RouterWorker(url: h.settings(environment).workerURL(podIP: new), model: "llama-3-8b")
            let text: String
            let after: RegistrationState?
            switch row.action {
            case "register":
                h.serve("llama-3-8b", in: environment, at: old)
                text = "register llama-3-8b in \(environment)"
                after = .enabled
            case "deregister", "disable":
                h.serve("llama-3-8b", in: environment, at: old)
                try await h.register("llama-3-8b", in: environment, .enabled, at: old)
                text = "\(row.action) llama-3-8b in \(environment)"
                after = row.action == "disable" ? .disabled : .removed
            case "enable":
                h.serve("llama-3-8b", in: environment, at: old)
                try await h.register("llama-3-8b", in: environment, .disabled, reason: "bad answers")
                text = "enable llama-3-8b in \(environment)"
                after = .enabled
            case "deploy --register", "deploy (autoRegister)":
                h.serve("llama-3-8b", in: environment, at: old)
                text = "deploy llama-3-8b to \(environment)" + (row.action == "deploy --register" ? " --register" : "")
                after = .enabled
            default:
                // A registration routed to the replica before the deploy or rollback moves it.
                try await h.register("llama-3-8b", in: environment, .enabled, at: old)
                h.serve("llama-3-8b", in: environment, at: new, deployed: [.superseded, .deployed])
                text = row.action == "deploy (refresh)" ? "deploy llama-3-8b to \(environment)" : "rollback llama-3-8b in \(environment)"
                after = .enabled
            }
            let before = await h.registration("llama-3-8b", in: environment)
            let workersBefore = h.router.state.workers

            let outcome = await h.run(text, as: user)

            let audit = await h.store.auditLog()
            #expect(audit.contains { $0.outcome == "denied" } == (expected == .denied), "\(cell): \(outcome)")
            let registration = await h.registration("llama-3-8b", in: environment)
            switch expected {
            case .denied:
                #expect(outcome.message?.contains("may not `") == true, "\(cell): \(outcome)")
                #expect(h.releases.changingCalls.isEmpty, "\(cell)")
                #expect(h.router.state.changes.isEmpty, "\(cell)")
                #expect(registration == before, "\(cell)")
            case .routed:
                #expect(outcome.succeeded, "\(cell): \(outcome)")
                #expect(registration?.state == after, "\(cell)")
                #expect(registration?.version == (before?.version ?? 0) + 1, "\(cell)")
                if after == .enabled {
                    let expectedWorker = row.action.hasSuffix("(refresh)") ? newWorker : oldWorker
                    #expect(h.router.workers(of: "llama-3-8b") == [expectedWorker], "\(cell)")
                    #expect(registration?.endpoints == [expectedWorker.url], "\(cell)")
                } else {
                    #expect(h.router.denies("llama-3-8b"), "\(cell)")
                }
            case .skipped:
                #expect(outcome.succeeded, "\(cell): \(outcome)")
                #expect(!h.releases.changingCalls.isEmpty, "\(cell): the deploy or rollback itself ran")
                #expect(registration == before, "\(cell)")
                #expect(h.router.state.changes.isEmpty && h.router.state.workers == workersBefore, "\(cell)")
                #expect(
                    h.chat.transcript.contains(
                        "@\(user) may not `register` in `\(environment)`: the permission `register` on `\(environment)` is missing."),
                    "\(cell): \(h.chat.transcript)")
            }
        }
    }

    @Test func denialNamesThePermissionAndTheRolesThatGrantIt() {
        #expect {
            try Fixtures.policy.authorize(Fixtures.deployer, "deploy", in: "production", verb: "deploy")
        } throws: { error in
            guard let denial = error as? Denial else { return false }
            #expect(
                denial.message
                    == "@U0DEPLOYER may not `deploy` in `production`: the permission `deploy` on `production` is missing."
            )
            #expect(denial.hint == "It comes with the role `admin`; ask an administrator to add you.")
            #expect(denial.grantingRoles == ["admin"])
            return true
        }
        #expect {
            try Fixtures.policy.authorize(Fixtures.viewer, "lock", in: "staging", verb: "lock")
        } throws: { error in
            (error as? Denial)?.hint
                == "It comes with the roles `admin`, `staging-deployer`; ask an administrator to add you."
        }
    }

    @Test func denialWhenNoRoleGrantsIt() {
        let policy = Policy(roles: [
            Policy.Role(
                name: "viewer", members: ["*"], grants: [Policy.Grant(permissions: ["view"], environments: ["*"])])
        ])
        #expect {
            try policy.authorize(Fixtures.viewer, "deploy", in: "staging", verb: "deploy")
        } throws: { error in
            (error as? Denial)?.hint == "No role grants it; ask an administrator to change the policy."
        }
    }

    @Test func userIdsAreComparedExactly() {
        #expect(Fixtures.policy.allows(UserID("U0ADMIN"), "deploy", in: "production"))
        #expect(!Fixtures.policy.allows(UserID("u0admin"), "deploy", in: "production"))
        #expect(!Fixtures.policy.allows(UserID("U0ADMIN "), "deploy", in: "production"))
        #expect(!Fixtures.policy.allows(UserID("admin"), "deploy", in: "production"))
    }

    @Test func helpNeedsNoPermission() {
        let nobody = Policy(roles: [])
        #expect(nobody.allows(Fixtures.viewer, "none", in: "production"))
        #expect(!nobody.allows(Fixtures.viewer, "view", in: "production"))
    }

    @Test func unknownEnvironmentOnlyMatchesWildcards() {
        #expect(Fixtures.policy.allows(Fixtures.admin, "deploy", in: "qa"))
        #expect(!Fixtures.policy.allows(Fixtures.deployer, "deploy", in: "qa"))
        #expect(Fixtures.policy.allows(Fixtures.deployer, "view", in: "qa"))
    }
}
