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
    ]

    static let members: [String: UserID] = [
        "admin": Fixtures.admin, "staging-deployer": Fixtures.deployer, "viewer": Fixtures.viewer,
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
    @Test(arguments: table.filter { ["deploy", "rollback", "lock", "unlock", "history", "status"].contains($0.verb) })
    func dispatcherEnforces(_ row: Row) async throws {
        for (environment, allowed) in [("dev", row.dev), ("staging", row.staging), ("production", row.production)] {
            let harness = Harness()
            let text =
                switch row.verb {
                case "deploy": "deploy llama-3-8b to \(environment) --dry-run"
                case "rollback": "rollback llama-3-8b in \(environment) --to 1"
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
