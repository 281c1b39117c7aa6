import InferOpsCore
import Synchronization
import Testing

/// One operation per release at a time, in the order the runner started them, whatever order they
/// reach the gate in.
@Suite(.timeLimit(.minutes(1))) struct ReleaseGateTests {
    static let release = "llama-3-8b-staging"

    /// The order operations got the release in.
    final class Order: Sendable {
        let ids = Mutex<[String]>([])
        func append(_ id: OperationID) { ids.withLock { $0.append(id.rawValue) } }
        var all: [String] { ids.withLock { $0 } }
    }

    @Test func theOrderOfReservationsWinsOverTheOrderOfArrival() async throws {
        let gate = ReleaseGate()
        let first = OperationID("op-00000001"), second = OperationID("op-00000002")
        gate.reserve(Self.release, for: first)
        gate.reserve(Self.release, for: second)
        let order = Order()
        // The second arrives first: it waits for the first, which has not arrived yet.
        let late = Task {
            #expect(await gate.acquire(Self.release, for: second))
            order.append(second)
            gate.release(Self.release)
        }
        await Task.yield()
        #expect(gate.holder(of: Self.release) == nil)
        #expect(await gate.acquire(Self.release, for: first))
        order.append(first)
        gate.release(Self.release)
        await late.value
        #expect(order.all == ["op-00000001", "op-00000002"])
        #expect(gate.holder(of: Self.release) == nil)
    }

    @Test func aWithdrawnPlaceLetsTheNextGo() async throws {
        let gate = ReleaseGate()
        let first = OperationID("op-00000001"), second = OperationID("op-00000002")
        gate.reserve(Self.release, for: first)
        gate.reserve(Self.release, for: second)
        let waiting = Task { await gate.acquire(Self.release, for: second) }
        await Task.yield()
        gate.withdraw(Self.release, for: first)
        #expect(await waiting.value)
        #expect(gate.holder(of: Self.release) == second)
        gate.release(Self.release)
        // Withdrawing a place that is gone, or never was, changes nothing.
        gate.withdraw(Self.release, for: first)
        #expect(gate.holder(of: Self.release) == nil)
        #expect(await gate.acquire(Self.release, for: OperationID("op-00000003")))
    }

    @Test func aCancelledWaiterLeavesItsPlace() async throws {
        let gate = ReleaseGate()
        let holder = OperationID("op-00000001"), leaving = OperationID("op-00000002"), next = OperationID("op-00000003")
        #expect(await gate.acquire(Self.release, for: holder))
        gate.reserve(Self.release, for: leaving)
        gate.reserve(Self.release, for: next)
        let cancelled = Task { await gate.acquire(Self.release, for: leaving) }
        let after = Task { await gate.acquire(Self.release, for: next) }
        cancelled.cancel()
        #expect(await cancelled.value == false)
        gate.release(Self.release)
        #expect(await after.value)
        #expect(gate.holder(of: Self.release) == next)
    }
}
