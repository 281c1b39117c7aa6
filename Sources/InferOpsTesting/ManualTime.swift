import Foundation
import InferOpsCore
import Synchronization

/// A clock the test sets by hand. `sleep(for:)` only yields, so polling loops run at full speed and
/// no test ever waits for real time to pass.
public final class ManualTime: TimeSource, Sendable {
    /// 2025-06-15T15:06:40Z, on a whole second like every date this clock gives out.
    public static let start = Date(timeIntervalSince1970: 1_750_000_000)

    private struct State {
        var now: Date
        var sleepCount = 0
        var slept: Duration = .zero
    }

    private let state: Mutex<State>
    private let advancesOnSleep: Bool

    /// - Parameters:
    ///   - now: The first time; rounded to whole milliseconds, as the store keeps them.
    ///   - advancesOnSleep: Whether each `sleep(for:)` moves the clock on by its duration.
    public init(now: Date = ManualTime.start, advancesOnSleep: Bool = false) {
        state = Mutex(State(now: Self.wholeMilliseconds(now)))
        self.advancesOnSleep = advancesOnSleep
    }

    public func now() -> Date { state.withLock { $0.now } }

    public func set(_ date: Date) {
        state.withLock { $0.now = Self.wholeMilliseconds(date) }
    }

    public func advance(by duration: Duration) {
        state.withLock { $0.now = Self.wholeMilliseconds($0.now.addingTimeInterval(duration.timeInterval)) }
    }

    /// How many times `sleep(for:)` was called, and how long that would have taken on a real clock.
    public var sleepCount: Int { state.withLock { $0.sleepCount } }
    public var slept: Duration { state.withLock { $0.slept } }

    public func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        state.withLock { state in
            state.sleepCount += 1
            state.slept += duration
            if advancesOnSleep {
                state.now = Self.wholeMilliseconds(state.now.addingTimeInterval(duration.timeInterval))
            }
        }
        await Task.yield()
        try Task.checkCancellation()
    }

    static func wholeMilliseconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded() / 1000)
    }
}

extension Duration {
    /// The duration in seconds, as `Date` arithmetic wants it.
    public var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
