import Dispatch
import GRDB
import Synchronization

/// Copies the write-ahead log back into the database file beside the writer, not in its commits.
///
/// SQLite's automatic checkpoint runs inside the commit that takes the log past 1,000 pages, on the
/// writer, and syncs the database file: every acknowledgement waiting on that commit, and on the
/// writes queued behind it, waited 200–400 ms for it here. The store turns it off
/// (`wal_autocheckpoint = 0`) and this runs a passive checkpoint on a connection of its own after
/// every `interval` commits. A passive checkpoint takes no write lock, so commits go on while it
/// copies and syncs; once one has caught up with the log's end, the next commit starts the log
/// again from its beginning.
///
/// Under writes that never pause, the log never starts again: a passive checkpoint copies the frames
/// there were when it began, and by its end more have come, so the writer never finds the log all
/// copied. When a checkpoint finds more than `forceAbove` frames in the log, the next commit asks
/// the store for a truncating checkpoint in the writer's own turn: the pause the automatic
/// checkpoint made at every 1,000 pages, made only then.
final class WALCheckpointer: Sendable {
    let interval: Int
    let forceAbove: Int

    private let connection: DatabaseQueue
    private let queue = DispatchQueue(label: "inferops.store.checkpoint", qos: .utility)
    private let state = Mutex(State())

    private struct State {
        var commits = 0
        var running = false
        var passive = 0
        var forced = 0
        var forceDue = false
    }

    /// - Parameters:
    ///   - path: the database file, in WAL mode.
    ///   - interval: commits between passive checkpoints.
    ///   - forceAbove: log frames a passive checkpoint may leave before the writer truncates the log.
    init(path: String, interval: Int = 200, forceAbove: Int = 4_000) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        connection = try DatabaseQueue(path: path, configuration: configuration)
        self.interval = interval
        self.forceAbove = forceAbove
    }

    /// Checkpoints run so far (for tests and the log).
    var counts: (passive: Int, forced: Int) { state.withLock { ($0.passive, $0.forced) } }
    /// Whether no passive checkpoint is running now.
    var idle: Bool { state.withLock { !$0.running } }

    /// Counts a commit; starts a passive checkpoint when `interval` commits have been made since
    /// the last one started and none is running.
    /// - Returns: whether the caller should truncate the log in the writer's turn now.
    func committed() -> Bool {
        let (due, force) = state.withLock { state -> (Bool, Bool) in
            state.commits += 1
            let force = state.forceDue
            if force {
                state.forceDue = false
                state.forced += 1
            }
            guard state.commits >= interval, !state.running else { return (false, force) }
            state.commits = 0
            state.running = true
            return (true, force)
        }
        if due {
            queue.async { [self] in
                // A failed checkpoint (the file busy past the timeout) leaves the log as it is; the
                // next one copies it.
                let result = try? connection.writeWithoutTransaction { try $0.checkpoint(.passive) }
                state.withLock { state in
                    state.running = false
                    state.passive += 1
                    // A log that keeps growing has not started again: commits came faster than the
                    // checkpoints could catch up with them (each copies the frames there were when
                    // it began).
                    if let result, result.walFrameCount > forceAbove { state.forceDue = true }
                }
            }
        }
        return force
    }
}
