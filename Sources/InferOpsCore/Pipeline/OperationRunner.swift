import Foundation
import Synchronization

/// Runs recorded operations: one per daemon, a service of its group.
///
/// It claims operations in the store (an owner with a heartbeat), drives each through its state
/// machine from the state it was recorded in, carries out cancels recorded by anyone (at once when
/// asked here, within a heartbeat when asked from another process), and takes over operations whose
/// owner's heartbeat expired: a crashed daemon's work is reconciled with reality and resumed or
/// ended as `interrupted`, never just closed. On a graceful stop it lets running steps reach a safe
/// point, gives the rest up where they are, and the next start resumes them.
public actor OperationRunner {
    public struct Settings: Sendable {
        /// How often the owner renews its heartbeat and looks for cancels and abandoned operations.
        public var heartbeatInterval: Duration
        /// An owner whose heartbeat is older than this is presumed dead.
        public var lease: Duration
        /// How long a graceful stop waits for running steps to reach a safe point.
        public var shutdownBound: Duration
        /// Whether an owner is known to be gone without waiting for its lease (a process on this
        /// host that no longer exists); the composition root knows how to ask.
        public var ownerIsGone: @Sendable (OperationOwner) -> Bool
        /// How long a submitted operation waits, at most, while the intake acknowledges other events
        /// (a burst of commands is acknowledged first, then worked on).
        public var acknowledgementsFirst: Duration

        public init(heartbeatInterval: Duration = .seconds(1), lease: Duration = .seconds(30),
                    shutdownBound: Duration = .seconds(30),
                    ownerIsGone: @escaping @Sendable (OperationOwner) -> Bool = { _ in false },
                    acknowledgementsFirst: Duration = .milliseconds(100)) {
            self.heartbeatInterval = heartbeatInterval
            self.lease = lease
            self.shutdownBound = shutdownBound
            self.ownerIsGone = ownerIsGone
            self.acknowledgementsFirst = acknowledgementsFirst
        }
    }

    /// This daemon as an owner of operations.
    public struct Identity: Sendable {
        public var instance: String
        public var host: String
        public var pid: Int32

        public init(instance: String, host: String, pid: Int32) {
            self.instance = instance
            self.host = host
            self.pid = pid
        }

        /// A fresh instance id for this process.
        public static func random(host: String = "localhost", pid: Int32 = 0) -> Identity {
            var generator = SystemRandomNumberGenerator()
            let instance = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16) }.joined()
            return Identity(instance: instance, host: host, pid: pid)
        }
    }

    /// Where a cancel will be carried out.
    public enum CancelRoute: Sendable {
        case here
        case elsewhere(OperationOwner)
        case takenOver
        case ended(OperationState)
    }

    nonisolated let configuration: Configuration
    nonisolated let catalog: CommandCatalog
    nonisolated let services: Services
    nonisolated let identity: Identity
    nonisolated let settings: Settings
    nonisolated let validator: CommandValidator
    nonisolated let gate = ReleaseGate()
    /// Wakes operations queued behind a lock (`waitWhileLocked`).
    nonisolated let lockReleases = Wakeups()
    /// The events the intake is acknowledging now: submitted operations start once there are none.
    public nonisolated let acknowledging = Acknowledging()

    var running: [OperationID: StopSignal] = [:]
    /// Recorded by the intake and not started yet, each with its status card when it was posted.
    var submitted: [(id: OperationID, card: MessageRef?)] = []
    /// Whether the next round renews the heartbeat and looks at the whole store (once per heartbeat
    /// interval, and when a cancel needs an abandoned operation taken over); a round woken by the
    /// intake only starts what it submitted.
    var fullRoundDue = true
    /// How the most recent operations ended here (the oldest forgotten first), for `outcome(of:)`.
    var outcomes: [OperationID: CommandOutcome] = [:]
    var outcomeOrder: [OperationID] = []
    static let outcomesKept = 1000
    var waiters: [OperationID: [CheckedContinuation<CommandOutcome, Never>]] = [:]
    /// Set by `stop()`, which may be called from any thread (a signal handler, a shutdown hook).
    /// Shared with every operation's `StopSignal`, so a stop reaches running steps at once, not
    /// when the runner next gets to them.
    nonisolated let stopRequested = StopFlag()
    var stopping: Bool { stopRequested.isSet }
    let wakeups: AsyncStream<Void>
    let wake: AsyncStream<Void>.Continuation

    public init(configuration: Configuration, catalog: CommandCatalog, services: Services,
                identity: Identity = .random(), settings: Settings = Settings()) {
        self.configuration = configuration
        self.catalog = catalog
        self.services = services.redacting(for: configuration)
        self.identity = identity
        self.settings = settings
        self.validator = CommandValidator(configuration: configuration, catalog: catalog)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// This daemon as the owner of an operation, with a heartbeat at `date`.
    public nonisolated func owner(at date: Date) -> OperationOwner {
        OperationOwner(instance: identity.instance, host: identity.host, pid: identity.pid, heartbeat: date)
    }

    // MARK: for the intake

    /// Starts an operation the intake recorded (owned by this runner already), with the status card
    /// the intake posted for it, whose reference is stored before the operation's first step.
    public func submit(_ id: OperationID, card: MessageRef? = nil) {
        // Submitted again (approved after its plan changed and it asked again): its last ending is past.
        outcomes[id] = nil
        submitted.append((id, card))
        wake.yield()
    }

    /// Waits until the operation has ended here, and says how.
    public func outcome(of id: OperationID) async -> CommandOutcome {
        if let outcome = outcomes[id] { return outcome }
        if stopping && running[id] == nil && !isSubmitted(id) {
            return .failed(id, "stopped: InferOps is shutting down")
        }
        return await withCheckedContinuation { waiters[id, default: []].append($0) }
    }

    /// Records a cancel and carries it out: at once when the operation runs here.
    public func cancel(_ id: OperationID, by user: UserID) async -> CancelRoute {
        let stored: OperationRecord?
        do {
            stored = try await services.store.requestCancel(id, by: user, at: services.time.now())
        } catch {
            services.logger.error("cancel not recorded", metadata: ["operation": "\(id)", "error": "\(error)"])
            stored = nil
        }
        guard let stored else { return .ended(.failed) }
        if stored.state.isFinished { return .ended(stored.state) }
        if let signal = running[id] {
            signal.stop(.cancel(by: user))
            return .here
        }
        if isSubmitted(id) { return .here }
        let stale = services.time.now().addingTimeInterval(-settings.lease.seconds)
        if let owner = stored.owner, owner.instance != identity.instance, owner.heartbeat >= stale,
           !settings.ownerIsGone(owner) {
            return .elsewhere(owner)
        }
        fullRoundDue = true
        wake.yield()
        return .takenOver
    }

    /// Stops taking work, and asks every running operation to stop at its next safe point; after
    /// `shutdownBound`, the rest are stopped where they are. Either way they are resumed on the
    /// next start. Callable from anywhere; `run()` returns once they have stopped.
    public nonisolated func stop() {
        stopRequested.set()
        wake.yield()
        wake.finish()
    }

    func isSubmitted(_ id: OperationID) -> Bool {
        submitted.contains { $0.id == id }
    }

    /// Whether this runner was given `id` and has not ended it yet.
    public func isStarting(_ id: OperationID) -> Bool {
        running[id] != nil || isSubmitted(id)
    }

    // MARK: the loop

    /// Runs until `stop()` (or the task is cancelled), then until the running operations have
    /// stopped.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.tick() }
            await pump(into: &group)
            for await _ in wakeups {
                if stopping || Task.isCancelled { break }
                await pump(into: &group)
            }
            // Every running operation's signal shares the stop flag: each pauses at its next safe point.
            stop()
            group.addTask { await self.forceStopAfterBound() }
        }
        // Operations accepted but never started stay recorded (and are given up, for the next start).
        for (id, _) in submitted { try? await services.store.releaseOwnership(of: id, instance: identity.instance) }
        for (id, waiting) in waiters {
            for waiter in waiting { waiter.resume(returning: .failed(id, "stopped: InferOps is shutting down")) }
        }
        waiters = [:]
    }

    /// Wakes the loop every heartbeat interval: renew, look for cancels and abandoned work.
    func tick() async {
        while !stopping {
            do {
                try await Task.sleep(for: settings.heartbeatInterval)
            } catch {
                stop()
                return
            }
            fullRoundDue = true
            wake.yield()
        }
    }

    /// Stops what is still running when the bound has passed: each gives its operation up where it is.
    func forceStopAfterBound() async {
        let deadline = ContinuousClock.now.advanced(by: settings.shutdownBound)
        while !running.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for signal in running.values { signal.stop(.suspend) }
    }

    /// One round: start what the intake submitted; when a full round is due, also renew the
    /// heartbeat, carry out cancels from elsewhere, and claim and start what else is runnable.
    func pump(into group: inout DiscardingTaskGroup) async {
        // Recorded by the intake with this runner as their owner: nothing to claim. They start once
        // the intake has acknowledged the events that came with them (or after the bound).
        if !submitted.isEmpty { await acknowledging.quiet(within: settings.acknowledgementsFirst) }
        // They stay listed as submitted until this round has started them: `isStarting` must not
        // answer no while one is between the two (its record is read first).
        let fresh = submitted
        for (id, card) in fresh where running[id] == nil {
            do {
                guard var record = try await services.store.operation(id), !record.state.isFinished,
                      record.owner?.instance == identity.instance
                else { continue }
                if let card, record.card == nil {
                    record.card = card
                    record.thread = card.threadRoot
                    do {
                        try await services.store.update(record, from: record.state)
                    } catch {
                        // Not fatal: the operation's first step writes the whole record, card included.
                        services.logger.warning("status card reference not stored",
                                                metadata: ["operation": "\(id)", "error": "\(error)"])
                    }
                }
                start(record, takenOver: false, into: &group)
            } catch {
                services.logger.error("submitted operation not started", metadata: ["operation": "\(id)", "error": "\(error)"])
            }
        }
        // Submitted meanwhile ones come after these and wait for the next round.
        submitted.removeFirst(min(fresh.count, submitted.count))
        guard fullRoundDue else { return }
        fullRoundDue = false
        // A lock released by another process is noticed here.
        lockReleases.wakeAll()
        let now = services.time.now()
        do {
            let owned = try await services.store.heartbeat(instance: identity.instance, at: now)
            for record in owned {
                if let request = record.cancelRequest { running[record.id]?.stop(.cancel(by: request.by)) }
            }
            // Fencing: an operation another daemon took over (this one looked dead to it) is left to
            // that daemon at once, whatever step it is in here.
            let ownedIDs = Set(owned.map(\.id))
            for (id, signal) in running where !ownedIDs.contains(id) {
                if let record = try await services.store.operation(id), !record.state.isFinished,
                   let owner = record.owner, owner.instance != identity.instance {
                    signal.stop(.takenOver(by: owner))
                }
            }
            // Each with whether it is taken over from another daemon, and whether that daemon is known
            // to be gone (then its lease counts as over, whatever its last heartbeat said).
            var candidates: [(id: OperationID, takenOver: Bool, ownerGone: Bool)] = []
            let stale = now.addingTimeInterval(-settings.lease.seconds)
            let unfinished = try await services.store.unfinishedSummaries()
            await expireOverdue(unfinished, now: now)
            for record in unfinished
            where running[record.id] == nil && !candidates.contains(where: { $0.id == record.id })
                && record.state != .awaitingApproval {
                guard let owner = record.owner else {
                    candidates.append((record.id, !Self.notStarted.contains(record.state), false))
                    continue
                }
                guard owner.instance != identity.instance else { continue }
                let gone = settings.ownerIsGone(owner)
                if owner.heartbeat < stale || gone { candidates.append((record.id, true, gone)) }
            }
            for (id, takenOver, ownerGone) in candidates {
                guard let claimed = try await services.store.claimOwnership(
                    of: id, by: owner(at: services.time.now()), staleBefore: ownerGone ? .distantFuture : stale)
                else { continue }
                start(claimed, takenOver: takenOver, into: &group)
            }
        } catch {
            services.logger.error("runner round failed", metadata: ["error": "\(error)"])
        }
    }

    /// What the release gate and the store's claim serialize on: the release, or the model in its
    /// environment for an operation without one.
    static func releaseKey(of record: OperationRecord) -> String {
        record.target?.release ?? "\(record.environment)/\(record.model ?? "")"
    }

    func start(_ claimed: OperationRecord, takenOver: Bool, into group: inout DiscardingTaskGroup) {
        let signal = StopSignal(runnerStopping: stopRequested)
        running[claimed.id] = signal
        // Run again (approved after its plan changed and it asked again): the last ending is past.
        outcomes[claimed.id] = nil
        // Its place in line for the release is taken now, in the order operations start.
        gate.reserve(Self.releaseKey(of: claimed), for: claimed.id)
        group.addTask { await self.drive(claimed, takenOver: takenOver, signal: signal) }
    }

    static let notStarted: Set<OperationState> = [.requested, .planned, .approved, .queued]

    func finished(_ id: OperationID, _ outcome: CommandOutcome) {
        running[id] = nil
        outcomes[id] = outcome
        outcomeOrder.append(id)
        if outcomeOrder.count > Self.outcomesKept { outcomes[outcomeOrder.removeFirst()] = nil }
        for waiter in waiters.removeValue(forKey: id) ?? [] { waiter.resume(returning: outcome) }
    }

    /// Runs one operation to its end (or until it is given up), racing it against its stop signal
    /// so a cancel or a forced stop interrupts whatever step it is in.
    nonisolated func drive(_ claimed: OperationRecord, takenOver: Bool, signal: StopSignal) async {
        let origin = CommandOrigin(channel: claimed.request?.channel ?? "console", osUser: claimed.request?.osUser)
        let outcome = await CommandOrigin.$current.withValue(origin) {
            let result = await withTaskGroup(of: Execution?.self) { group in
                group.addTask { await self.execute(claimed, takenOver: takenOver, signal: signal) }
                group.addTask {
                    await signal.waitForStop()
                    return nil
                }
                var result: Execution?
                while let next = await group.next() {
                    if let next {
                        result = next
                    }
                    group.cancelAll()
                }
                return result
            }
            // Recorded here, outside the group: the step's task was cancelled to stop it, and the
            // store refuses work from a cancelled task.
            switch result {
            case .ended(let outcome): return outcome
            case .threw(let error, let reporter, let holding):
                let outcome = await ended(reporter, by: error, signal: signal)
                if let holding { gate.release(holding) }
                return outcome
            case nil: return CommandOutcome.failed(claimed.id, "stopped")
            }
        }
        // Ended before it reached the release (refused, interrupted, waiting again): its place goes.
        gate.withdraw(Self.releaseKey(of: claimed), for: claimed.id)
        await finished(claimed.id, outcome)
    }

    /// How `execute` came back: ended (recorded), or with an error `drive` records.
    enum Execution: Sendable {
        case ended(CommandOutcome)
        case threw(any Error, OperationReporter, holding: String?)
    }

    // MARK: one operation

    nonisolated func execute(_ claimed: OperationRecord, takenOver: Bool, signal: StopSignal) async -> Execution {
        let reporter = OperationReporter(operation: claimed, services: services,
                                         channel: claimed.request?.channel ?? "console",
                                         shouldSuspend: { signal.isSuspending || signal.reason != nil })
        // The card's edits held back by the once-a-second limit are made beside the steps.
        return await withTaskGroup(of: Void.self) { group in
            group.addTask { await reporter.keepCardCurrent() }
            let execution = await steps(claimed, reporter: reporter, takenOver: takenOver, signal: signal)
            group.cancelAll()
            return execution
        }
    }

    nonisolated func steps(
        _ claimed: OperationRecord, reporter: OperationReporter, takenOver: Bool, signal: StopSignal
    ) async -> Execution {
        let id = claimed.id
        var holding: String?
        do {
            try await reporter.ensureCard()
            if takenOver {
                try await reporter.noteResumption()
            }
            if let cancel = claimed.cancelRequest {
                return .ended(try await closeCancelled(reporter, by: cancel.by))
            }
            let work = try await plan(claimed, reporter: reporter)
            guard let work else {
                if await reporter.operation.state == .awaitingApproval { return .ended(.awaitingApproval(id)) }
                return .ended(.failed(id, "interrupted"))
            }
            let release = Self.releaseKey(of: claimed)
            if Self.notStarted.contains(claimed.state) {
                if let holder = gate.holder(of: release) {
                    try await reporter.move(to: .queued, "Queued behind \(holder) on \(release); it starts when that one ends.")
                } else {
                    try await reporter.move(to: .queued, "Queued.")
                }
                try await waitWhileLocked(claimed, reporter: reporter)
            }
            while true {
                guard await gate.acquire(release, for: id) else { throw CancellationError() }
                holding = release
                // A stop asked for before the race in `drive` noticed it still stops the operation here;
                // a graceful one pauses it before it claims the release, which the one before it may
                // have paused holding.
                if signal.reason != nil { throw CancellationError() }
                if signal.isSuspending { throw OperationSuspended() }
                try Task.checkCancellation()
                guard Self.notStarted.contains(claimed.state) || claimed.state == .prechecking else { break }
                let holder = try await services.store.claimRelease(for: id, release: release, at: services.time.now())
                // Resumed after a restart, the operation that held the release may reach the gate after
                // this one: it runs here, so this one lets it go first and waits for its end.
                if let holder, holder.id != id, await isStarting(holder.id) {
                    gate.release(release)
                    holding = nil
                    _ = await outcome(of: holder.id)
                    continue
                }
                if let holder {
                    let refusal = Refusal(
                        "\(holder.id) (\(holder.kind.rawValue) by \(mention: holder.requester), \(holder.state.rawValue)) is already working on \(release).",
                        hint: "Wait for it to end, or `/infer cancel \(holder.id)`."
                    )
                    try await reporter.finish(.failed, .error(refusal))
                    gate.release(release)
                    return .ended(.refused(refusal.message))
                }
                await reporter.releaseClaimed()
                break
            }
            let outcome = try await work()
            gate.release(release)
            return .ended(outcome)
        } catch {
            // The release is let go only once the end is recorded, so the next operation on it
            // never finds this one still holding it in the store.
            return .threw(error, reporter, holding: holding)
        }
    }

    /// In an environment that queues operations behind a lock (`whenLocked: queue`), waits while
    /// someone other than the requester holds it, saying so once in the thread. Checked again when
    /// a lock is released here and every heartbeat (a lock released by another process).
    nonisolated func waitWhileLocked(_ record: OperationRecord, reporter: OperationReporter) async throws {
        guard configuration.environments[record.environment]?.whenLocked == .queue else { return }
        var announced = false
        while true {
            let locks = try await services.store.locks()
            guard let lock = locks.first(where: { $0.environment == record.environment }), lock.holder != record.requester
            else {
                if announced { try await reporter.report(Reply(.progress, "`\(record.environment)` is unlocked: starting.")) }
                return
            }
            if !announced {
                announced = true
                try await reporter.report(Reply(
                    .progress,
                    "Queued: `\(lock.environment)` is locked by \(mention: lock.holder)" + (lock.reason.map { ": \(user: $0)" } ?? "")
                        + ". It starts when the lock is released.",
                    hint: "`/infer cancel \(record.id)` removes it from the queue."))
            }
            await lockReleases.next()
            try Task.checkCancellation()
        }
    }

    /// A lock was released here: operations queued behind it look again at once.
    public nonisolated func lockReleased() {
        lockReleases.wakeAll()
    }

    /// How an operation that threw ends: cancelled, given up for the next start, failed.
    nonisolated func ended(_ reporter: OperationReporter, by error: any Error, signal: StopSignal) async -> CommandOutcome {
        let id = await reporter.operation.id
        let interruptedByStop = error is CancellationError || (error as? ReleaseFailure) == .cancelled
            || error is OperationSuspended || signal.reason != nil
        if let ended = error as? OperationAlreadyEnded {
            return .failed(id, ended.state.rawValue)
        }
        if interruptedByStop {
            switch signal.reason {
            case .takenOver(let owner):
                // Another daemon runs it now; it writes the record from here on.
                services.logger.warning("operation taken over", metadata: ["operation": "\(id)", "by": "\(owner.description)"])
                return .failed(id, "taken over by \(owner.description)")
            case .cancel(let user):
                // Helm marks the revision it was writing failed when stopped; it is this operation's.
                let record = await reporter.operation
                if let target = record.target, record.checkpoint.applyStarted,
                   let now = try? await services.releases.status(target),
                   now.revision > max(record.checkpoint.revisionBefore ?? 0, record.revisions.max() ?? 0) {
                    try? await reporter.recordFailedRevision(now.revision)
                }
                do {
                    try await reporter.finish(.cancelled, Reply(
                        .warning, "Cancelled by \(mention: user). Helm was stopped cleanly; `/infer status` shows where the release stands."))
                } catch {
                    services.logger.error("cancel not recorded", metadata: ["operation": "\(id)", "error": "\(error)"])
                }
                return .failed(id, "cancelled")
            case .suspend, nil:
                if signal.isSuspending || signal.reason == .suspend {
                    // Helm stopped mid-upgrade marks the revision it was writing failed: that is not
                    // a failure of the deploy, and the resumed one applies again.
                    let record = await reporter.operation
                    if (error as? ReleaseFailure) == .cancelled, record.kind.deploysPlan, let target = record.target,
                       let now = try? await services.releases.status(target),
                       now.revision > (record.checkpoint.revisionBefore ?? 0) {
                        try? await reporter.recordFailedRevision(now.revision)
                        var checkpoint = record.checkpoint
                        checkpoint.stoppedRevision = now.revision
                        try? await reporter.setCheckpoint(checkpoint)
                    }
                    await reporter.suspend()
                    try? await services.store.releaseOwnership(of: id, instance: identity.instance)
                    return .failed(id, "stopped: InferOps is shutting down")
                }
            }
        }
        if let failure = error as? any UserFacingError {
            try? await reporter.finish(.failed, .error(failure))
            return .failed(id, failure.message)
        }
        // The workflow could not record its own end; record a failure so nothing is left in flight.
        let correlation = OperationID.random().rawValue.replacingOccurrences(of: "op-", with: "err-")
        services.logger.error("operation failed", metadata: ["operation": "\(id)", "correlation": "\(correlation)", "error": "\(error)"])
        try? await reporter.finish(.failed, Reply(.failure, "The operation stopped on an internal error (reference \(correlation)).",
                                                  hint: "The daemon's log has the details under that reference."))
        return .failed(id, "internal error \(correlation)")
    }

    /// A cancel asked for while nobody ran the operation: the release is put in order first (a
    /// helm left running is stopped, a `pending-*` state recovered), then the record is closed.
    nonisolated func closeCancelled(_ reporter: OperationReporter, by user: UserID) async throws -> CommandOutcome {
        let record = await reporter.operation
        var note = ""
        if let target = record.target, OperationState.holdingRelease.contains(record.state),
           record.kind.deploysPlan || record.kind == .rollback || record.kind == .remove {
            let recovery = ReleaseRecovery(services: services, reporter: reporter, target: target,
                                           budget: configuration.environments[record.environment]?.readinessBudget ?? .seconds(300))
            note = try await recovery.putInOrder(lastGood: record.checkpoint.lastGood)
        }
        try await reporter.finish(.cancelled, Reply(
            .warning, "Cancelled by \(mention: user) after the daemon that ran it stopped." + RichText(note.isEmpty ? "" : " " + note)))
        return .failed(record.id, "cancelled")
    }

    /// The work of an operation, from its request. A request that no longer validates or plans to
    /// the same digest (the configuration changed while it waited) ends as `interrupted`.
    nonisolated func plan(_ record: OperationRecord, reporter: OperationReporter) async throws
        -> (@Sendable () async throws -> CommandOutcome)?
    {
        guard let request = record.request else {
            try await reporter.finish(.interrupted, Reply(
                .failure, "Interrupted: this operation was recorded without its request, so it cannot be resumed.",
                hint: "Run the command again."))
            return nil
        }
        let validated: ValidatedCommand
        do {
            validated = try validator.validate(request.parsed)
        } catch {
            try await reporter.finish(.interrupted, Reply(
                .failure, "Interrupted: the configuration changed since it was accepted: \(error.text)",
                hint: "Run the command again if it is still wanted."))
            return nil
        }
        let services = self.services
        let resuming = !Self.notStarted.contains(record.state)
        switch validated {
        case .deploy(_, let environment, _, _, _, _, _), .promote(_, _, let environment):
            var register = false
            if case .deploy(_, _, _, _, _, let flag, _) = validated { register = flag }
            let plan: DeployPlan
            do {
                if case .promote = validated {
                    plan = try await OperationPlanning.promotionPlan(
                        validated, pinned: PromotionSource.operation(inPlan: record.plan), store: services.store,
                        reading: services.planContents, now: services.time.now())
                } else {
                    plan = try OperationPlanning.deployPlan(validated, reading: services.planContents)
                }
            } catch let refusal as Refusal {
                try await reporter.finish(.interrupted, Reply(.failure, "Interrupted: it no longer plans: \(refusal.text)",
                                                              hint: refusal.hint))
                return nil
            }
            if let digest = record.planDigest, digest != plan.digest, record.state == .approved, record.approval != nil {
                try await askApprovalAgain(record, plan: plan, environment: environment, reporter: reporter)
                return nil
            }
            if let digest = record.planDigest, digest != plan.digest {
                try await reporter.finish(.interrupted, Reply(
                    .failure, "Interrupted: the plan changed since it was accepted (the configuration was edited); nothing more was applied.",
                    hint: "Ask again to apply the new plan: `/infer \(record.command)`."))
                return nil
            }
            if record.state == .planned {
                try await reporter.setPlan(plan.canonical, digest: plan.digest)
                try await reporter.report(Reply(
                    .progress, "Plan ready: \(plan.replicas) × \(plan.model.modelID)@\(plan.model.revision), \(plan.gpusPerReplica.counting("GPU")) each.",
                    fields: [Reply.Field("chart", plan.chart + (plan.chartVersion.map { " \($0)" } ?? "")),
                             Reply.Field("digest", plan.shortDigest)]))
            }
            // A promotion is held to its own success criteria: the stricter of both environments'.
            var criteria = environment
            if let verification = plan.verification { criteria.verification = verification }
            let workflow = DeployWorkflow(
                services: services, plan: plan, environment: criteria, reporter: reporter,
                registrar: Registrar(services: services, environment: environment),
                registers: register || environment.router?.autoRegister == true,
                routingDenial: automaticRoutingDenial(request.requester, in: environment))
            return { resuming ? try await workflow.resume() : try await workflow.run() }
        case .rollback(let model, let environment, let revision):
            let workflow = RollbackWorkflow(
                services: services, model: model, environment: environment, requestedRevision: revision,
                reporter: reporter, registrar: Registrar(services: services, environment: environment),
                routingDenial: automaticRoutingDenial(request.requester, in: environment))
            return { resuming ? try await workflow.resume() : try await workflow.run() }
        case .remove(let model, let environment, let reason):
            let workflow = RemoveWorkflow(services: services, model: model, environment: environment, reason: reason,
                                          reporter: reporter, registrar: Registrar(services: services, environment: environment))
            return { resuming ? try await workflow.resume() : try await workflow.run() }
        case .routing(let kind, let model, let environment, let reason):
            guard let registrar = Registrar(services: services, environment: environment) else {
                try await reporter.finish(.interrupted, Reply(.failure, "Interrupted: `\(environment.name)` has no router configured any more."))
                return nil
            }
            let workflow = RegistrationWorkflow(services: services, model: model, environment: environment,
                                                registrar: registrar, change: kind, reason: reason, reporter: reporter)
            let configuration = self.configuration
            return { resuming ? try await workflow.resume(configuration: configuration) : try await workflow.run() }
        case .status, .history, .lock, .unlock, .cancel, .help, .decide, .decideWaiting, .slo:
            try await reporter.finish(.interrupted, Reply(.failure, "Interrupted: `\(record.command)` is not an operation."))
            return nil
        }
    }

    /// The router changes a deploy or rollback makes on its own (`router.autoRegister`, following
    /// new replicas) act for the requester, so they take the `register` permission too. Without it
    /// they are skipped, not the deploy; an explicit `--register` was refused at intake instead.
    nonisolated func automaticRoutingDenial(_ user: UserID, in environment: EnvironmentSettings) -> Denial? {
        do {
            try configuration.policy.authorize(user, "register", in: environment.name, verb: "register")
            return nil
        } catch {
            return error
        }
    }
}

/// Why a running operation is being stopped.
public enum StopReason: Hashable, Sendable {
    case cancel(by: UserID)
    /// Another daemon took the operation over (this one's heartbeat looked stale to it).
    case takenOver(by: OperationOwner)
    /// The daemon is stopping: the operation is given up where it is, to be resumed.
    case suspend
}

/// Thrown at a safe point (before a step records itself) while the daemon stops gracefully.
public struct OperationSuspended: Error {}

/// Tells one running operation to stop: at its next safe point (a graceful stop) or at once.
final class StopSignal: Sendable {
    /// The runner's own stop, which every operation pauses for at its next safe point.
    let runnerStopping: StopFlag

    init(runnerStopping: StopFlag = StopFlag()) {
        self.runnerStopping = runnerStopping
    }

    struct State: WaitedOn {
        var reason: StopReason?
        var suspending = false
        var waiters = Waiters()
    }

    let state = Mutex(State())

    var reason: StopReason? { state.withLock { $0.reason } }
    var isSuspending: Bool { state.withLock { $0.suspending } || runnerStopping.isSet }

    /// Stops at once; the first reason wins.
    func stop(_ reason: StopReason) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            if reason == .suspend { state.suspending = true }
            return state.waiters.takeAll()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when `stop` is called, or when the task is cancelled.
    func waitForStop() async {
        await state.wait { $0.reason != nil }
    }
}

/// A flag any thread may set once and read.
final class StopFlag: Sendable {
    let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}
