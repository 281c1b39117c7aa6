import InferOpsCore
import Testing

/// Work that gives way to acknowledgements waits while events are being acknowledged, and no longer
/// than its bound.
@Suite(.timeLimit(.minutes(1))) struct AcknowledgingTests {
    @Test func quietReturnsAtOnceWhenNothingIsBeingAcknowledged() async {
        let acknowledging = Acknowledging()
        await acknowledging.quiet(within: .seconds(3600))
        #expect(acknowledging.count == 0)
    }

    @Test func quietWaitsUntilTheLastAcknowledgementEnds() async {
        let acknowledging = Acknowledging()
        acknowledging.begin()
        acknowledging.begin()
        let waiter = Task { await acknowledging.quiet(within: .seconds(3600)) }
        while acknowledging.waiters == 0 { await Task.yield() }
        acknowledging.end()
        // One is still being acknowledged: the waiter is still waiting.
        #expect(acknowledging.waiters == 1)
        acknowledging.end()
        await waiter.value
        #expect(acknowledging.waiters == 0)
        #expect(acknowledging.count == 0)
    }

    @Test func quietGivesUpWaitingAfterItsBound() async {
        let acknowledging = Acknowledging()
        acknowledging.begin()
        await acknowledging.quiet(within: .milliseconds(20))
        // It returned with the event still being acknowledged, and left no waiter behind.
        #expect(acknowledging.count == 1)
        #expect(acknowledging.waiters == 0)
    }

    @Test func anEventEndsOnceHoweverOftenItIsEnded() async {
        let acknowledging = Acknowledging()
        let answer = await acknowledging.handling { event in
            #expect(acknowledging.count == 1)
            event.end()
            event.end()
            return 42
        }
        #expect(answer == 42)
        #expect(acknowledging.count == 0)
    }
}
