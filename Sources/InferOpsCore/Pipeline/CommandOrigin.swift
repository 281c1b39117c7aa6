/// Where the command being handled came from, for the audit rows written while handling it.
///
/// A task-local value rather than a parameter because audit rows are written deep in the pipeline
/// (refusals, lock changes, an operation's final row in its own task) by code that otherwise has no
/// reason to know the transport; child tasks inherit it, so the final row of an operation carries
/// the same origin as its `accepted` row.
public struct CommandOrigin: Hashable, Sendable {
    public var channel: String
    /// Who typed it; replies meant for them alone (refusals) go to them privately where the platform can.
    public var user: UserID?
    /// Set only by the console and `inferops exec`; see `IncomingCommand.osUser`.
    public var osUser: String?

    public init(channel: String, osUser: String?, user: UserID? = nil) {
        self.channel = channel
        self.osUser = osUser
        self.user = user
    }

    @TaskLocal public static var current: CommandOrigin?
}

extension AuditEntry {
    /// This entry stamped with the origin of the command being handled, when there is one.
    func stamped(with origin: CommandOrigin? = CommandOrigin.current) -> AuditEntry {
        guard let origin else { return self }
        var entry = self
        entry.channel = origin.channel
        entry.osUser = origin.osUser
        return entry
    }
}
