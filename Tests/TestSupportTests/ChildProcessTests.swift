import Foundation
import InferOpsTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The launcher every process-running test stands on: input, output lines, signals and exit status,
/// with `/bin/sh` as the child.
@Suite("ChildProcess")
struct ChildProcessTests {
    func shell(_ script: String, errors: ChildProcess.Errors = .merged) throws -> ChildProcess {
        try ChildProcess("sh", executable: "/bin/sh", arguments: ["-c", script], errors: errors)
    }

    @Test func linesSentAreReadAndTheExitStatusIsReported() async throws {
        let child = try shell(#"echo ready; read line; echo "got $line"; exit 3"#)
        try await child.waitForLine(within: .seconds(10)) { $0 == "ready" }
        try child.send("hello\n")
        #expect(try await child.waitForLine(within: .seconds(10)) { $0.hasPrefix("got") } == "got hello")
        #expect(try await child.waitForExit(within: .seconds(10)) == .exited(3))
        #expect(child.lines() == ["ready", "got hello"])
    }

    /// Children inherit the blocked-signal mask of the thread that spawns them, and the threads of
    /// `swift test` block most signals; the launcher clears it, so SIGTERM reaches a program that does
    /// not clear it itself (Python, the daemon). `cat` reports the mask it started with.
    @Test func theChildStartsWithNoSignalBlocked() async throws {
        let child = try ChildProcess("cat", executable: "cat", arguments: ["/proc/self/status"], input: false)
        try await child.waitForExit(within: .seconds(10))
        child.waitForEndOfOutput()
        let blocked = child.lines().first { $0.hasPrefix("SigBlk:") }
        #expect(blocked?.hasSuffix("0000000000000000") == true, "\(blocked ?? child.output)")
    }

    @Test func sigtermReachesTheChildsHandler() async throws {
        let child = try shell(#"trap 'echo terminated; exit 7' TERM; echo ready; while :; do sleep 0.05; done"#)
        try await child.waitForLine(within: .seconds(10)) { $0 == "ready" }
        child.signal(SIGTERM)
        #expect(try await child.waitForExit(within: .seconds(10)) == .exited(7))
        child.waitForEndOfOutput()
        #expect(child.lines().contains("terminated"), "\(child.output)")
    }

    @Test func sigkillIsReportedAsTheSignal() async throws {
        let child = try shell("echo ready; exec sleep 60")
        try await child.waitForLine(within: .seconds(10)) { $0 == "ready" }
        child.signal(SIGKILL)
        let exit = try await child.waitForExit(within: .seconds(10))
        #expect(exit == .signalled(SIGKILL))
        #expect(exit.wasSignalled && exit.status == SIGKILL)
    }

    @Test func closingStdinEndsAReaderAndStopReapsWhatRuns() async throws {
        let reader = try ChildProcess("cat", executable: "cat", arguments: [])
        try reader.send("echoed\n")
        try await reader.waitForLine(within: .seconds(10)) { $0 == "echoed" }
        reader.closeInput()
        #expect(try await reader.waitForExit(within: .seconds(10)) == .exited(0))

        let sleeper = try shell("sleep 60")
        let started = ContinuousClock.now
        sleeper.stop()
        #expect(sleeper.exit == .signalled(SIGKILL))
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func streamsKeptApartAndRunToTheEnd() throws {
        let child = try shell("echo out; echo err >&2", errors: .separate)
        child.waitForExit()
        child.waitForEndOfOutput()
        #expect(child.text(of: .standardOutput) == "out\n")
        #expect(child.text(of: .standardError) == "err\n")

        let finished = try ChildProcess.run("/bin/sh", ["-c", "cat; echo done >&2; exit 4"], input: "piped\n")
        #expect(finished.status == 4)
        #expect(finished.output == "piped\ndone\n")
    }

    @Test func aLineThatNeverComesFailsWithTheOutputSoFar() async throws {
        let ended = try shell("echo something else")
        let error = await #expect(throws: TestFailure.self) {
            try await ended.waitForLine(within: .seconds(10)) { $0 == "ready" }
        }
        #expect(error?.description.contains("something else") == true, "\(String(describing: error))")

        let silent = try shell("exec sleep 60")
        await #expect(throws: TestFailure.self) {
            try await silent.waitForLine(within: .milliseconds(200)) { _ in true }
        }
    }
}
