import Foundation
import InferOpsCore
import InferOpsTesting
import Testing

/// `/infer slo`: the success criteria computed from the records.
@Suite(.timeLimit(.minutes(1))) struct ServiceLevelsTests {
    static let start = Date(timeIntervalSince1970: 1_750_000_000)

    /// A finished operation whose journal moves through `steps` (state, seconds after the start).
    static func finished(_ kind: OperationKind, _ state: OperationState, _ steps: [(OperationState, Double)]) -> ServiceLevels.Finished {
        let id = OperationID.random()
        let end = start.addingTimeInterval(steps.last?.1 ?? 0)
        let record = OperationRecord(id: id, kind: kind, requester: UserID("U1"), environment: "staging", model: "m",
                                     state: state, command: kind.rawValue, createdAt: start, updatedAt: end)
        return ServiceLevels.Finished(record: record, journal: steps.map {
            JournalEntry(operation: id, at: start.addingTimeInterval($0.1), state: $0.0, message: "")
        })
    }

    @Test func eachObjectiveCountsWhatMetItsLimitWithItsP95() {
        var operations: [ServiceLevels.Finished] = []
        // 19 deploys ready after 100 s, one after 900 s, one that failed before ready: 19 of 21.
        for _ in 0..<19 {
            operations.append(Self.finished(.deploy, .succeeded, [(.prechecking, 0), (.applying, 1), (.warming, 100), (.succeeded, 110)]))
        }
        operations.append(Self.finished(.promote, .succeeded, [(.prechecking, 0), (.applying, 1), (.verifying, 900), (.succeeded, 910)]))
        operations.append(Self.finished(.deploy, .failed, [(.prechecking, 0), (.applying, 1), (.failed, 700)]))
        // A deploy denied before it acted does not count.
        operations.append(Self.finished(.deploy, .denied, [(.denied, 5)]))
        // Registration changes: 2 in 30 s, one failed disable.
        operations.append(Self.finished(.enable, .succeeded, [(.prechecking, 0), (.succeeded, 30)]))
        operations.append(Self.finished(.disable, .succeeded, [(.prechecking, 0), (.succeeded, 30)]))
        var servedDisable = Self.finished(.disable, .failed, [(.prechecking, 0), (.failed, 30)])
        servedDisable.record.outcome = "The change was not verified: a request for m through the router answered HTTP 200 instead of the denial"
        operations.append(servedDisable)
        // A deregister that failed for another reason (the router was down) served nothing.
        var down = Self.finished(.deregister, .failed, [(.prechecking, 0), (.failed, 30)])
        down.record.outcome = "The router at http://router is unreachable."
        operations.append(down)
        // Rollbacks: one in 60 s, one in 400 s.
        operations.append(Self.finished(.rollback, .succeeded, [(.prechecking, 0), (.succeeded, 60)]))
        operations.append(Self.finished(.rollback, .succeeded, [(.prechecking, 0), (.succeeded, 400)]))
        let verifications = (1...20).map {
            Verification(model: "m", environment: "staging", operation: OperationID("op-\($0)"), at: Self.start,
                         latency: .milliseconds($0 * 200), revision: 1)
        }

        let report = ServiceLevels.report(operations: operations, verifications: verifications, environments: ["staging"],
                                          days: 30, now: Self.start)
        let byKey = Dictionary(uniqueKeysWithValues: report.objectives.map { ($0.key, $0) })

        let deploys = byKey["deploy_ready"]!
        #expect((deploys.count, deploys.met, deploys.meetsTarget) == (21, 19, false))
        #expect(deploys.p95Seconds == 100)
        let verification = byKey["verification_latency"]!
        #expect((verification.count, verification.met) == (20, 15))
        #expect(verification.p95Seconds == 3.8)
        #expect(!verification.meetsTarget)
        let registrations = byKey["registration_effective"]!
        #expect((registrations.count, registrations.met, registrations.meetsTarget) == (4, 2, false))
        let served = byKey["disabled_served"]!
        #expect((served.count, served.met, served.meetsTarget) == (3, 1, false))
        let rollbacks = byKey["rollback_done"]!
        #expect((rollbacks.count, rollbacks.met, rollbacks.p95Seconds) == (2, 1, 400))
    }

    @Test func theCommandReportsTheViewableEnvironmentsFromTheRecords() async throws {
        let h = Harness()
        let id = try #require(await h.run("/infer deploy llama-3-8b to staging").operation)
        _ = try await h.waitUntilFinished(id)

        #expect(await h.run("/infer slo staging --days 7", as: Fixtures.deployer) == .completed(nil))
        let reply = try #require(h.chat.posts.last)
        #expect(reply.title == "Service levels over 7 days in `staging`")
        let deploys = try #require(reply.reply.table?.rows.first)
        #expect(deploys.map(\.plainText) == ["deploys ready within 10 min", "95%", "100.0%", "0 ms", "1", "✓ meets"])

        #expect(await h.run("/infer slo", as: Fixtures.deployer) == .completed(nil))
        #expect(h.chat.posts.last?.title == "Service levels over 30 days in `dev`, `production`, `staging`")
        let bad = await h.run("/infer slo staging --days 0")
        #expect(bad.message == "`--days 0` must be a whole number of days from 1 to 365.")
    }
}
