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
        let output = try await ProcessRunner(stdoutLimit: 8 << 20, stderrLimit: 8 << 20)
            .run(executable: python, arguments: ["-c", script], environment: [:])
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

    @Test("the child inherits only its standard descriptors, not the daemon's sockets and files")
    func onlyStandardDescriptors() async throws {
        // Like SwiftNIO's listening socket: open without close-on-exec.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        let output = try await ProcessRunner().run(
            executable: python,
            arguments: ["-c", """
                import os, sys
                try:
                    os.fstat(int(sys.argv[1])); print("open")
                except OSError:
                    print("closed")
                """, "\(listener)"],
            environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        )
        #expect(String(decoding: output.stdout, as: UTF8.self) == "closed\n", "\(output.stderrText)")
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
        // A bound on a hang, not a timing target: the child sleeps 60 s; a loaded 2-core machine has
        // taken over 10 s to let the runner see the signal and reap it.
        #expect(clock.now - start < .seconds(30))
    }

    @Test("cancelling sends SIGTERM to the child's whole process group: a grandchild gets it too")
    func groupSignal() async throws {
        let ready = TestTools.temporaryPath("ready")
        let terminated = TestTools.temporaryPath("terminated")
        defer {
            unlink(ready)
            unlink(ready + ".grandchild")
            unlink(terminated)
        }
        let grandchild = """
            import signal, sys, time
            def stop(signum, frame):
                open(sys.argv[1], "w").close(); sys.exit(0)
            signal.signal(signal.SIGTERM, stop)
            open(sys.argv[2], "w").close()
            time.sleep(60)
            """
        // Like helm with a credential plugin running: on SIGTERM it waits for the plugin to end.
        let child = """
            import os, signal, subprocess, sys, time
            terminated, ready, grandchild = sys.argv[1], sys.argv[2], sys.argv[3]
            plugin = subprocess.Popen(
                [sys.executable, "-c", grandchild, terminated, ready + ".grandchild"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            def stop(signum, frame):
                plugin.wait(); sys.exit(1)
            signal.signal(signal.SIGTERM, stop)
            while not os.path.exists(ready + ".grandchild"): time.sleep(0.01)
            open(ready, "w").close()
            time.sleep(60)
            """
        let task = Task {
            try await ProcessRunner(terminationGrace: .seconds(5))
                .run(executable: python, arguments: ["-c", child, terminated, ready, grandchild], environment: [:])
        }
        try await TestTools.waitUntil("the child and its grandchild have started", timeout: .seconds(20)) {
            FileManager.default.fileExists(atPath: ready)
        }
        task.cancel()
        do {
            _ = try await task.value
            Issue.record("expected cancellation")
        } catch ProcessRunError.cancelled(let output) {
            // The child exited on its own after the grandchild did, not by SIGKILL.
            #expect(output?.signalled == false)
            #expect(output?.status == 1)
        }
        #expect(FileManager.default.fileExists(atPath: terminated), "the grandchild never got SIGTERM")
    }

    @Test("output beyond the limit keeps the tail after a truncation line")
    func outputIsCapped() async throws {
        let script = """
            import sys
            for letter in b"ABCDEFGH":
                sys.stdout.buffer.write(bytes([letter]) * (1 << 20))
            sys.stdout.flush()
            sys.stderr.write("x" * (3 << 20) + "\\nError: the last line\\n")
            """
        let output = try await ProcessRunner().run(executable: python, arguments: ["-c", script], environment: [:])
        #expect(output.status == 0)
        #expect(output.stdoutDropped == 7 << 20)
        let marker = Data("… \(7 << 20) bytes truncated …\n".utf8)
        #expect(output.stdout == marker + Data(repeating: UInt8(ascii: "H"), count: 1 << 20))
        let stderrTotal = (3 << 20) + "\nError: the last line\n".utf8.count
        #expect(output.stderrDropped == stderrTotal - (1 << 20))
        #expect(output.stderrText.hasPrefix("… \(stderrTotal - (1 << 20)) bytes truncated …\n"))
        #expect(output.stderrText.hasSuffix("x\nError: the last line\n"))
    }

    @Test("a child printing 256 MiB does not grow the runner's memory by more than a few MiB")
    func memoryIsBounded() async throws {
        let script = """
            import sys
            chunk = b"m" * (1 << 20)
            for _ in range(256):
                sys.stdout.buffer.write(chunk)
            """
        let before = Self.peakResidentBytes()
        let output = try await ProcessRunner().run(executable: python, arguments: ["-c", script], environment: [:])
        let growth = Self.peakResidentBytes() - before
        #expect(output.stdoutDropped == 255 << 20)
        #expect(output.stdout.count < (1 << 20) + 100)
        // Keeping everything would add 256 MiB; the runner holds at most twice the limit.
        #expect(growth < 64 << 20, "peak resident memory grew by \(growth >> 20) MiB")
    }

    /// The process's peak resident set size so far.
    static func peakResidentBytes() -> Int {
        var usage = rusage()
        #if canImport(Darwin)
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #else
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
        #endif
    }

    @Test("a grandchild that holds stdout open after the child exits does not hold up the run")
    func heldOutput() async throws {
        let pidFile = TestTools.temporaryPath("grandchild")
        defer { unlink(pidFile) }
        // The grandchild inherits stdout and stderr and sleeps for 60 s; the child exits at once.
        let script = """
            import os, subprocess, sys
            plugin = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            with open(sys.argv[1], "w") as f: f.write(str(plugin.pid))
            print("done", flush=True)
            os._exit(0)
            """
        let clock = ContinuousClock()
        let start = clock.now
        let output = try await ProcessRunner(outputGrace: .milliseconds(500))
            .run(executable: python, arguments: ["-c", script, pidFile], environment: [:], deadline: .seconds(10))
        let elapsed = clock.now - start
        #expect(output.succeeded)
        #expect(String(decoding: output.stdout, as: UTF8.self) == "done\n")
        #expect(elapsed < .seconds(20), "returned after \(elapsed); the grandchild sleeps 60 s")
        let grandchild = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8)))
        try await TestTools.waitUntil("the grandchild in the child's group is gone", timeout: .seconds(10)) {
            Self.isGone(grandchild)
        }
    }

    @Test("a grandchild that left the group and holds stdout open does not hold up the run either")
    func heldOutputOutsideTheGroup() async throws {
        let pidFile = TestTools.temporaryPath("grandchild")
        defer { unlink(pidFile) }
        let script = """
            import os, subprocess, sys
            plugin = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
            with open(sys.argv[1], "w") as f: f.write(str(plugin.pid))
            os._exit(0)
            """
        let clock = ContinuousClock()
        let start = clock.now
        let output = try await ProcessRunner(outputGrace: .milliseconds(500))
            .run(executable: python, arguments: ["-c", script, pidFile], environment: [:], deadline: .seconds(10))
        let elapsed = clock.now - start
        if let grandchild = pid_t((try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? "") {
            kill(grandchild, SIGKILL)  // it escaped the group; this test started it and stops it
        }
        #expect(output.succeeded)
        #expect(elapsed < .seconds(20), "returned after \(elapsed); the grandchild sleeps 60 s")
    }

    /// Whether `pid` has exited (gone, or a zombie waiting for its new parent to reap it).
    static func isGone(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else {
            return kill(pid, 0) != 0
        }
        guard let end = stat.range(of: ") ", options: .backwards) else { return false }
        return stat[end.upperBound...].hasPrefix("Z")
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

@Suite("Keeping the tail of a stream")
struct TailBufferTests {
    @Test("a stream within the limit is kept whole")
    func whole() {
        var buffer = TailBuffer(limit: 10)
        Data("0123456789".utf8).withUnsafeBytes { buffer.append($0) }
        #expect(buffer.dropped == 0)
        #expect(buffer.bytes == Data("0123456789".utf8))
    }

    @Test("a longer stream keeps its last bytes after a truncation line; storage stays under twice the limit")
    func tail() {
        var buffer = TailBuffer(limit: 1 << 20)
        var peak = 0
        let chunk = [UInt8](repeating: 0, count: 65536)
        for index in 0..<1600 {  // 100 MiB, the last chunk different
            var bytes = chunk
            if index == 1599 { bytes[65535] = 1 }
            bytes.withUnsafeBytes { buffer.append($0) }
            peak = max(peak, buffer.storage.count)
        }
        #expect(buffer.dropped == 99 << 20)
        #expect(peak <= (2 << 20) + 65536)
        let marker = Data("… \(99 << 20) bytes truncated …\n".utf8)
        #expect(buffer.bytes.count == marker.count + (1 << 20))
        #expect(buffer.bytes.prefix(marker.count) == marker)
        #expect(buffer.bytes.last == 1)
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
