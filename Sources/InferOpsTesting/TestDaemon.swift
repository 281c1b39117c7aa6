import InferOpsCore

/// The intake and a running runner on the given services, for tests that drive the bot command by
/// command. The runner runs until this is released.
public final class TestDaemon: Sendable {
    public let intake: Intake
    public var runner: OperationRunner { intake.runner }
    let loop: Task<Void, Never>

    public init(configuration: Configuration, catalog: CommandCatalog, services: Services,
                identity: OperationRunner.Identity = .random(),
                settings: OperationRunner.Settings = OperationRunner.Settings(heartbeatInterval: .milliseconds(50))) {
        let runner = OperationRunner(configuration: configuration, catalog: catalog, services: services,
                                     identity: identity, settings: settings)
        intake = Intake(configuration: configuration, catalog: catalog, services: services, runner: runner)
        loop = Task { await runner.run() }
    }

    deinit {
        intake.runner.stop()
    }

    /// Accepts the command and waits until the operation it starts has ended.
    public func handle(_ command: IncomingCommand) async -> CommandOutcome {
        await intake.handle(command)
    }

    /// Stops the runner gracefully and waits until it has stopped.
    public func stop() async {
        intake.runner.stop()
        await loop.value
    }
}
