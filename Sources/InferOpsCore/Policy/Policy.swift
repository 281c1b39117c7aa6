/// Who may do what where: roles bound to immutable user ids, each granting permissions per environment.
public struct Policy: Hashable, Sendable {
    public var roles: [Role]

    public init(roles: [Role]) { self.roles = roles }

    public struct Role: Hashable, Sendable {
        public var name: String
        /// Immutable chat user ids; `*` means everyone.
        public var members: Set<String>
        public var grants: [Grant]

        public init(name: String, members: Set<String>, grants: [Grant]) {
            self.name = name
            self.members = members
            self.grants = grants
        }

        public func includes(_ user: UserID) -> Bool { members.contains(user.rawValue) || members.contains("*") }
    }

    /// Permissions in environments; `*` in either list means all.
    public struct Grant: Hashable, Sendable {
        public var permissions: Set<String>
        public var environments: Set<String>

        public init(permissions: Set<String>, environments: Set<String>) {
            self.permissions = permissions
            self.environments = environments
        }

        public func allows(_ permission: String, in environment: String) -> Bool {
            (permissions.contains(permission) || permissions.contains("*"))
                && (environments.contains(environment) || environments.contains("*"))
        }
    }

    /// Whether `user` holds `permission` in `environment`.
    public func allows(_ user: UserID, _ permission: String, in environment: String) -> Bool {
        if permission == "none" { return true }
        return roles.contains { role in
            role.includes(user) && role.grants.contains { $0.allows(permission, in: environment) }
        }
    }

    /// The roles that would grant `permission` in `environment`, for the denial message.
    public func rolesGranting(_ permission: String, in environment: String) -> [String] {
        roles.filter { role in role.grants.contains { $0.allows(permission, in: environment) } }.map(\.name).sorted()
    }

    /// Whether `user` is a member of the role called `name`.
    public func isMember(_ user: UserID, of name: String) -> Bool {
        roles.contains { $0.name == name && $0.includes(user) }
    }

    /// Throws a `Denial` unless `user` holds `permission` in `environment`.
    public func authorize(_ user: UserID, _ permission: String, in environment: String, verb: String) throws(Denial) {
        guard allows(user, permission, in: environment) else {
            throw Denial(
                user: user, verb: verb, permission: permission, environment: environment,
                grantingRoles: rolesGranting(permission, in: environment)
            )
        }
    }
}

/// Authorization said no. The message names the missing permission and who could grant it.
public struct Denial: UserFacingError, Equatable {
    public var user: UserID
    public var verb: String
    public var permission: String
    public var environment: String
    public var grantingRoles: [String]

    public var message: String { text.plainText }

    public var text: RichText {
        "\(mention: user) may not `\(verb)` in `\(environment)`: the permission `\(permission)` on `\(environment)` is missing."
    }

    public var hint: String? {
        grantingRoles.isEmpty
            ? "No role grants it; ask an administrator to change the policy."
            : "It comes with the role\(grantingRoles.count == 1 ? "" : "s") " + grantingRoles.map { "`\($0)`" }.joined(separator: ", ")
                + "; ask an administrator to add you."
    }
}

/// A change asked for from a channel its environment does not take changes from.
public struct WrongChannel: UserFacingError, Equatable {
    public var environment: String
    public var channel: String
    public var allowed: [String]

    public init(environment: String, channel: String, allowed: [String]) {
        self.environment = environment
        self.channel = channel
        self.allowed = allowed
    }

    public var message: String { text.plainText }

    public var text: RichText {
        var text: RichText = "Changes to `\(environment)` are taken only in "
        for (index, name) in allowed.enumerated() {
            text += (index == 0 ? "" : ", ") + "\(channel: name)"
        }
        return text + ", not in \(channel: channel)."
    }

    public var hint: String? {
        "Ask there (the console switches channel with `/in \(allowed.first ?? "<channel>")`); reading commands answer everywhere."
    }
}

/// `--break-glass` refused: the environment has no break-glass path, or the user is not in its role.
public struct BreakGlassDenied: UserFacingError, Equatable {
    public var user: UserID
    public var environment: String
    /// The configured role, when there is one.
    public var role: String?

    public init(user: UserID, environment: String, role: String?) {
        self.user = user
        self.environment = environment
        self.role = role
    }

    public var message: String { text.plainText }

    public var text: RichText {
        guard let role else { return "`\(environment)` has no break-glass path: its rollbacks wait for approval like the rest." }
        return "\(mention: user) may not break the glass in `\(environment)`: only the role `\(role)` may."
    }

    public var hint: String? {
        role == nil
            ? "An administrator can add `breakGlass: {role, channel}` to the environment."
            : "Ask for approval instead: run the rollback without `--break-glass`."
    }
}
