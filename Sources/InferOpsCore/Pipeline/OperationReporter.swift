import Foundation

/// Moves one operation through its states, writing each change to the store before reporting it
/// in the operation's thread, and keeps the status card at the top of the thread current.
public actor OperationReporter {
    public private(set) var operation: OperationRecord
    let services: Services
    let channel: String
    /// Whether the operation is to stop (the daemon is stopping, or a cancel was asked for): a move
    /// then stops at the safe point before it.
    let shouldSuspend: @Sendable () -> Bool
    var stepStarted: ContinuousClock.Instant
    /// Time spent in each state this reporter moved through (since this daemon took the operation).
    var spent: [OperationState: Duration] = [:]
    /// Time the operation waited for free GPUs before Helm ran, and the pods seen waiting for a
    /// node with free GPUs: where the time went says them apart (`TimeBreakdown`).
    public private(set) var gpuWait: Duration = .zero
    public private(set) var unschedulablePods: Set<String> = []
    /// When this reporter took the operation, on the services' clock.
    let began: Date
    /// When the status card was last edited: edits come at most about once a second.
    var lastCardEdit: ContinuousClock.Instant?
    /// An edit held back by that limit; `keepCardCurrent` makes it when the second is up, unless a
    /// newer edit made it first.
    var heldCardEdit: RichText??
    /// Says `keepCardCurrent` has an edit to make.
    let held: AsyncStream<Void>
    let heldContinuation: AsyncStream<Void>.Continuation
    /// The state the store holds, which every write names as the one it expects. It runs ahead of
    /// `operation.state` once the store claimed the release (`releaseClaimed`).
    var storedState: OperationState

    public init(operation: OperationRecord, services: Services, channel: String,
                shouldSuspend: @escaping @Sendable () -> Bool = { false }) {
        var operation = operation
        operation.command = services.redactor.redact(operation.command)
        self.operation = operation
        self.services = services
        self.channel = channel
        self.shouldSuspend = shouldSuspend
        self.stepStarted = .now
        self.began = services.time.now()
        self.storedState = operation.state
        (held, heldContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The store moved the operation to `prechecking` when it claimed the release for it.
    public func releaseClaimed() {
        storedState = .prechecking
    }

    /// Writes the operation, expecting the store to hold `storedState`.
    /// - Throws: `OperationAlreadyEnded` when it was closed meanwhile (by a `cancel` in another process).
    func write() async throws {
        try await services.store.update(operation, from: storedState)
        storedState = operation.state
    }

    /// Posts the status card when the intake could not (it stopped, or the chat failed), so every
    /// operation has a thread to report in.
    public func ensureCard() async throws {
        guard operation.card == nil else { return }
        let card = try await services.chat.post(
            StatusCard.reply(for: operation), in: Conversation(channel: channel, thread: operation.request?.thread),
            operation: operation.id)
        operation.card = card
        operation.thread = card.threadRoot
        try await write()
    }

    /// Says in the thread that the operation is picked up again after its daemon stopped.
    public func noteResumption() async throws {
        operation.checkpoint.resumptions += 1
        try await write()
        let was = operation.state.rawValue.replacingOccurrences(of: "_", with: " ")
        let message = "Resuming after InferOps restarted: it was \(was). Checking the release, the engines and the router before going on."
        try await journal(message)
        try await say(Reply(.progress, message))
        await editCard(detail: RichText(message), force: true)
    }

    /// Says in the thread that the daemon is stopping with the operation where it is; the next
    /// start resumes it. Best effort: the daemon is on its way out.
    public func suspend() async {
        let at = operation.state.rawValue.replacingOccurrences(of: "_", with: " ")
        let message = "InferOps is stopping: this operation pauses while \(at) and resumes when InferOps starts again."
        try? await journal(message)
        try? await say(Reply(.warning, message))
        await editCard(detail: RichText(message), force: true)
    }

    /// What the operation read before a side effect; written with the next move (or now).
    public func setCheckpoint(_ checkpoint: Checkpoint) async throws {
        operation.checkpoint = checkpoint
        try await write()
    }

    /// Edits the status card, at most about once a second unless `force`. An edit held back by the
    /// limit is left to `keepCardCurrent` (the latest one only).
    func editCard(detail: RichText?, force: Bool = false) async {
        guard let card = operation.card else { return }
        let now = ContinuousClock.now
        if !force, let last = lastCardEdit, last.duration(to: now) < .seconds(1) {
            heldCardEdit = .some(detail)
            heldContinuation.yield()
            return
        }
        heldCardEdit = nil
        lastCardEdit = now
        do {
            try await services.chat.update(card, with: StatusCard.reply(for: operation, detail: detail), operation: operation.id)
        } catch {
            services.logger.warning("status card not edited", metadata: ["operation": "\(operation.id)", "error": "\(error)"])
        }
    }

    /// Makes each edit the once-a-second limit held back when its second is up, so the card never
    /// stays behind the thread. Runs beside the operation's steps until its task is cancelled.
    public func keepCardCurrent() async {
        for await _ in held {
            if let last = lastCardEdit {
                try? await Task.sleep(for: .seconds(1) - last.duration(to: .now))
            }
            if Task.isCancelled { return }
            guard let edit = heldCardEdit else { continue }
            await editCard(detail: edit, force: true)
        }
    }

    /// Moves to `state` (recorded first), then posts `message` in the thread.
    public func move(to state: OperationState, _ message: String, fields: [Reply.Field] = []) async throws {
        try await move(to: state, RichText(message), fields: fields)
    }

    /// Moves to `state` (recorded first), then posts `message`, which may mention people, in the thread.
    public func move(to state: OperationState, _ message: RichText, fields: [Reply.Field] = []) async throws {
        guard operation.state.canMove(to: state) || operation.state == state else {
            throw OperationStateError(from: operation.state, to: state)
        }
        // The safe point of a graceful stop: before the next step records itself.
        if shouldSuspend() { throw OperationSuspended() }
        let finishedStep = operation.state
        operation.state = state
        operation.updatedAt = services.time.now()
        try await write()
        if finishedStep != state {
            services.observer.stepFinished(kind: operation.kind, step: finishedStep, duration: stepStarted.duration(to: .now))
            spent[finishedStep, default: .zero] += stepStarted.duration(to: .now)
        }
        stepStarted = .now
        try await journal(message.plainText)
        try await say(Reply(.progress, message, fields: fields))
        await editCard(detail: message)
    }

    /// Posts a reply in the thread and journals its title.
    public func report(_ reply: Reply, journal shouldJournal: Bool = true) async throws {
        if shouldJournal { try await journal(reply.title.plainText, duration: stepStarted.duration(to: .now)) }
        try await say(reply)
    }

    func waitedForGPUs(_ duration: Duration) {
        gpuWait += duration
    }

    func sawUnschedulable(_ pods: [String]) {
        unschedulablePods.formUnion(pods)
    }

    /// Seconds since the current state began, for "took 2.1 s".
    public func stepDuration() -> Duration { stepStarted.duration(to: .now) }

    /// Time spent in each state so far, the current one included.
    public func timeSpent() -> [OperationState: Duration] {
        var spent = spent
        spent[operation.state, default: .zero] += stepStarted.duration(to: .now)
        return spent
    }

    /// Back to `awaiting_approval` with a new plan and a fresh request (no approvals): the plan
    /// changed after it was approved.
    public func askApprovalAgain(plan: JSONValue, digest: String, request: ApprovalRequest, _ message: String) async throws {
        operation.plan = plan
        operation.planDigest = digest
        operation.approval = request
        try await move(to: .awaitingApproval, message)
    }

    public func setPlan(_ plan: JSONValue, digest: String) async throws {
        operation.plan = plan
        operation.planDigest = digest
        try await write()
    }

    /// The revision the operation produced or restored; it also joins the revisions it made.
    public func setRevision(_ revision: Int?) async throws {
        operation.revision = revision
        if let revision, !operation.revisions.contains(revision) { operation.revisions.append(revision) }
        try await write()
    }

    /// A revision the operation made that did not become the release's (a failed upgrade or rollback),
    /// so history attributes it too.
    public func recordFailedRevision(_ revision: Int) async throws {
        guard !operation.revisions.contains(revision) else { return }
        operation.revisions.append(revision)
        try await write()
    }

    /// Ends the operation: records the final state and outcome, audits it, updates the card.
    public func finish(_ state: OperationState, _ reply: Reply) async throws {
        guard operation.state.canMove(to: state) else {
            throw OperationStateError(from: operation.state, to: state)
        }
        services.observer.stepFinished(kind: operation.kind, step: operation.state, duration: stepStarted.duration(to: .now))
        operation.state = state
        operation.outcome = services.redactor.redact(reply.title.plainText)
        operation.updatedAt = services.time.now()
        // State, last journal entry and audit row in one transaction: all or none after a crash.
        try await services.store.recordEnd(
            operation, from: storedState,
            journal: JournalEntry(operation: operation.id, at: services.time.now(), state: operation.state,
                                  message: services.redactor.redact(reply.title.plainText)),
            audit: AuditEntry(
                at: services.time.now(), actor: operation.requester, action: operation.kind.rawValue,
                environment: operation.environment, subject: operation.model ?? operation.target?.release,
                outcome: state.rawValue, operation: operation.id,
                detail: operation.planDigest.map(services.redactor.redact)
            ).stamped(with: CommandOrigin.current ?? CommandOrigin(channel: channel, osUser: nil)))
        storedState = operation.state
        services.observer.operationFinished(kind: operation.kind, outcome: state)
        try await say(reply)
        await editCard(detail: reply.title, force: true)
    }

    func journal(_ message: String, duration: Duration? = nil) async throws {
        try await services.store.appendJournal(
            JournalEntry(operation: operation.id, at: services.time.now(), state: operation.state,
                         message: services.redactor.redact(message), duration: duration)
        )
    }

    func say(_ reply: Reply) async throws {
        try await services.chat.post(
            reply, in: Conversation(channel: channel, thread: operation.thread), operation: operation.id
        )
    }
}

/// A transition the state machine does not allow: a bug, never user input.
public struct OperationStateError: Error, CustomStringConvertible {
    public var from: OperationState
    public var to: OperationState
    public var description: String { "operation cannot move from \(from.rawValue) to \(to.rawValue)" }
}

extension Duration {
    /// `2.1 s`, `340 ms`, `3 min 12 s`, `10 min`, `26 h 5 min`: how durations read in chat.
    public var spoken: String {
        let milliseconds = Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
        if milliseconds < 1000 { return "\(Int(milliseconds.rounded())) ms" }
        let seconds = milliseconds / 1000
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let whole = Int(seconds.rounded())
        if whole >= 3600 {
            let minutes = whole % 3600 / 60
            return "\(whole / 3600) h" + (minutes == 0 ? "" : " \(minutes) min")
        }
        return "\(whole / 60) min" + (whole % 60 == 0 ? "" : " \(whole % 60) s")
    }

    /// Seconds as a `TimeInterval`, for date arithmetic.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    public var milliseconds: Int {
        Int(components.seconds) * 1000 + Int(components.attoseconds / 1_000_000_000_000_000)
    }
}
