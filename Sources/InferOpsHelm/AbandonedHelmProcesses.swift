import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds and stops helm processes that a killed daemon left running on one release.
///
/// helm runs in its own process group (see `ProcessRunner`), so a daemon killed with SIGKILL does
/// not take it along: a `helm upgrade --wait` goes on waiting, holding the release `pending-*`, and a
/// restarted daemon that rolled back or upgraded beside it would race it. They are found in `/proc`
/// by their argument vector, the one `HelmCommand` builds: `argv[0]` is the helm binary this engine
/// runs, and the arguments name the release (after `--`), its namespace (`--namespace=`), and the same
/// cluster: the same `--kubeconfig=` and `--kube-context=`, or none, as this engine passes (daemons and
/// tests on one host may work on same-named releases of different clusters). A process this daemon
/// started itself (its parent is this process) is never touched. Linux only; on other systems
/// nothing is found.
struct AbandonedHelmProcesses {
    /// One process found in `/proc`.
    struct Candidate: Equatable {
        var pid: pid_t
        var parent: pid_t
        var group: pid_t
    }

    let helmPath: String
    let release: String
    let namespace: String
    /// The `--kubeconfig` the engine passes, `nil` when it passes none.
    var kubeconfig: String? = nil
    /// The target's `--kube-context`, `nil` when it has none.
    var kubeContext: String? = nil
    var procRoot = "/proc"

    /// The helm processes on the release whose parent is not this process.
    func find() -> [Candidate] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: procRoot) else { return [] }
        let own = getpid()
        return entries.compactMap { entry -> Candidate? in
            guard let pid = pid_t(entry), pid != own, matches(Self.arguments(of: pid, in: procRoot)),
                  let info = Self.stat(of: pid, in: procRoot), info.parent != own, info.state != "Z"
            else { return nil }
            return Candidate(pid: pid, parent: info.parent, group: info.group)
        }
    }

    /// Whether an argument vector is this engine's helm working on this release.
    func matches(_ argv: [String]) -> Bool {
        guard let first = argv.first, Self.samePath(first, helmPath) else { return false }
        let arguments = argv.dropFirst()
        guard let separator = arguments.firstIndex(of: "--") else { return false }
        let flags = arguments[..<separator]
        func flag(_ name: String) -> String? {
            flags.last { $0.hasPrefix("--\(name)=") }.map { String($0.dropFirst(name.count + 3)) }
        }
        guard flag("namespace") == namespace, flag("kubeconfig") == kubeconfig, flag("kube-context") == kubeContext
        else { return false }
        return arguments[arguments.index(after: separator)...].first == release
    }

    /// SIGTERM to each process's group (helm then marks the revision it was writing failed rather
    /// than leaving it pending), up to `grace` for them to exit, then SIGKILL to what is left.
    /// - Returns: how many processes were found and stopped.
    func stop(grace: Duration) async -> Int {
        let found = find()
        guard !found.isEmpty else { return 0 }
        let ownGroup = getpgrp()
        // A process that leads its own group is signalled with its group (plugins helm started);
        // one that shares a group with anything else, this daemon's above all, is signalled alone.
        let signal = { (candidate: Candidate, number: Int32) in
            if candidate.group == candidate.pid && candidate.group != ownGroup {
                _ = kill(-candidate.group, number)
            } else {
                _ = kill(candidate.pid, number)
            }
        }
        for candidate in found { signal(candidate, SIGTERM) }
        let deadline = ContinuousClock.now.advanced(by: grace)
        while ContinuousClock.now < deadline && found.contains(where: isRunning) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for candidate in found where isRunning(candidate) { signal(candidate, SIGKILL) }
        return found.count
    }

    /// Whether the process still runs: it exists, is not a zombie, and is the same process (the
    /// same parent and group, so a reused pid is not mistaken for it).
    func isRunning(_ candidate: Candidate) -> Bool {
        guard let info = Self.stat(of: candidate.pid, in: procRoot) else { return false }
        return info.state != "Z" && info.group == candidate.group
    }

    /// `/proc/<pid>/cmdline`: the argument vector, NUL-separated.
    static func arguments(of pid: pid_t, in procRoot: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: "\(procRoot)/\(pid)/cmdline"), !data.isEmpty else {
            return []
        }
        var parts = data.split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    /// The parent, the process group and the state letter from `/proc/<pid>/stat`. The command
    /// name in parentheses may itself hold spaces and parentheses, so fields are read after the last `)`.
    static func stat(of pid: pid_t, in procRoot: String) -> (parent: pid_t, group: pid_t, state: Character)? {
        guard let data = FileManager.default.contents(atPath: "\(procRoot)/\(pid)/stat") else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count >= 4, let state = fields[0].first, let parent = pid_t(fields[1]),
              let group = pid_t(fields[2])
        else { return nil }
        return (parent, group, state)
    }

    /// The same file: equal as written, or once symbolic links and `..` are resolved.
    static func samePath(_ first: String, _ second: String) -> Bool {
        if first == second { return true }
        let resolve = { (path: String) in
            URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
        }
        return first.hasPrefix("/") && resolve(first) == resolve(second)
    }
}
