import Foundation
import InferOpsCore
import Testing

@testable import InferOpsHelm

/// The runner is tested with small Python programs standing in for helm: they can fill both pipes,
/// handle or ignore SIGTERM, and say when they are ready, which `sleep` cannot.
@Suite("Running a child process")
struct ProcessRunnerTests {
    let python: String

    init() throws {
        python = try #require(TestTools.python3(), "python3 is needed on PATH for the process tests")
    }

    @Test("both pipes are drained concurrently: 4 MiB on each does not deadlock")
    func largeOutput() async throws {
        let script = """
            import sys
            for _ in range(64):
                sys.stdout.write("o" * 65536); sys.stdout.flush()
                sys.stderr.write("e" * 65536); sys.stderr.flush()
            sys.exit(3)
            """
        let output = try await ProcessRunner().run(executable: python, arguments: ["-c", script], environment: [:])
        #expect(output.status == 3)
        #expect(!output.signalled)
        #expect(output.stdout.count == 64 * 65536)
        #expect(output.stderr.count == 64 * 65536)
    }

    @Test("arguments reach the child verbatim: no shell in between")
    func argvIsVerbatim() async throws {
        let hostile = ["llama; rm -rf /", "$(id)", "`id`", "a b", "*", "--flag=x"]
        let output = try await ProcessRunner().run(
            executable: python,
            arguments: ["-c", "import sys, json; print(json.dumps(sys.argv[1:]))"] + hostile,
            environment: ["INFEROPS_TEST": "1"]
        )
        let echoed = try JSONDecoder().decode([String].self, from: output.stdout)
        #expect(echoed == hostile)
    }

    @Test("the environment is exactly the one given")
    func environment() async throws {
        let output = try await ProcessRunner().run(
            executable: python,
            arguments: ["-c", "import os; print(os.environ.get('HELM_DRIVER', '-'))"],
            environment: ["HELM_DRIVER": "configmap"]
        )
        #expect(String(decoding: output.stdout, as: UTF8.self) == "configmap\n")
    }

    @Test("cancelling sends SIGTERM, waits for the exit and reports what was printed")
    func cancellation() async throws {
        let marker = TestTools.temporaryPath("ready")
        defer { unlink(marker) }
        let script = """
            import signal, sys, time
            def stop(signum, frame):
                sys.stderr.write("Error: context canceled\\n"); sys.exit(1)
            signal.signal(signal.SIGTERM, stop)
            open(sys.argv[1], "w").close()
            time.sleep(60)
            """
        let task = Task {
            try await ProcessRunner().run(executable: python, arguments: ["-c", script, marker], environment: [:])
        }
        try await TestTools.waitUntil("the child has started", timeout: .seconds(20)) {
            FileManager.default.fileExists(atPath: marker)
        }
        let clock = ContinuousClock()
        let start = clock.now
        task.cancel()
        do {
            _ = try await task.value
            Issue.record("expected cancellation")
        } catch ProcessRunError.cancelled(let output) {
            #expect(output?.status == 1)
            #expect(output?.stderrText == "Error: context canceled\n")
        }
        #expect(clock.now - start < .seconds(10))
    }

    @Test("a child that ignores SIGTERM gets SIGKILL after the grace period")
    func killAfterGrace() async throws {
        let marker = TestTools.temporaryPath("ready")
        defer { unlink(marker) }
        let script = """
            import signal, sys, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            open(sys.argv[1], "w").close()
            time.sleep(60)
            """
        let task = Task {
            try await ProcessRunner(terminationGrace: .milliseconds(300))
                .run(executable: python, arguments: ["-c", script, marker], environment: [:])
        }
        try await TestTools.waitUntil("the child has started", timeout: .seconds(20)) {
            FileManager.default.fileExists(atPath: marker)
        }
        task.cancel()
        do {
            _ = try await task.value
            Issue.record("expected cancellation")
        } catch ProcessRunError.cancelled(let output) {
            #expect(output?.signalled == true)
            #expect(output?.status == SIGKILL)
        }
    }

    @Test("a task cancelled before the launch never starts the child")
    func cancelledBeforeLaunch() async throws {
        let marker = TestTools.temporaryPath("started")
        defer { unlink(marker) }
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await ProcessRunner().run(
                executable: python,
                arguments: ["-c", "open(__import__('sys').argv[1], 'w').close()", marker],
                environment: [:]
            )
        }
        await #expect(throws: ProcessRunError.self) { try await task.value }
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test("a child that outlives its deadline is stopped")
    func deadline() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await ProcessRunner().run(
                executable: python,
                arguments: ["-c", "import time; time.sleep(60)"],
                environment: [:],
                deadline: .milliseconds(300)
            )
            Issue.record("expected the deadline to stop it")
        } catch ProcessRunError.deadlineExceeded(let output) {
            #expect(output.signalled)
            #expect(output.status == SIGTERM)
        }
        #expect(clock.now - start < .seconds(10))
    }

    @Test("a missing executable is a launch failure")
    func missingExecutable() async {
        await #expect {
            try await ProcessRunner().run(executable: "/nonexistent/helm", arguments: [], environment: [:])
        } throws: { error in
            if case ProcessRunError.launchFailed(let reason) = error { return reason.contains("/nonexistent/helm") }
            return false
        }
    }
}

@Suite("Temporary values files")
struct ValuesFileTests {
    @Test("written as canonical JSON with mode 0600, removed afterwards")
    func lifecycle() async throws {
        let folder = TestTools.temporaryPath("values")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let values = JSONValue.object([
            "b": .number(2), "a": .object(["token": .string("hf_x"), "ratio": .number(0.5)]),
        ])
        let seen = try await ValuesFile.with(values, in: folder) { path in
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let folderAttributes = try FileManager.default.attributesOfItem(atPath: folder)
            #expect((folderAttributes[.posixPermissions] as? NSNumber)?.intValue == 0o700)
            #expect(
                try String(contentsOfFile: path, encoding: .utf8) == #"{"a":{"ratio":0.5,"token":"hf_x"},"b":2}"# + "\n"
            )
            return path
        }
        #expect(!FileManager.default.fileExists(atPath: seen))
    }

    @Test("removed when the body throws")
    func removedOnError() async throws {
        let folder = TestTools.temporaryPath("values")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        struct Boom: Error {}
        var seen = ""
        await #expect(throws: Boom.self) {
            try await ValuesFile.with(.object([:]), in: folder) { path in
                seen = path
                throw Boom()
            }
        }
        #expect(!seen.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: seen))
    }
}
