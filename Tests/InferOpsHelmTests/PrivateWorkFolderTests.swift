import Foundation
import InferOpsCore
import Testing

@testable import InferOpsHelm

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The daemon's work folder in a shared temporary folder: nobody else's folder or link is used,
/// followed or removed.
@Suite("The private work folder")
struct PrivateWorkFolderTests {
    /// A parent like `/tmp` for one test (sticky, writable by all), and its removal.
    static func sharedParent() throws -> String {
        let parent = TestTools.temporaryPath("tmp")
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false)
        chmod(parent, 0o1777)
        return parent
    }

    static func lstatInfo(_ path: String) -> stat? {
        var info = stat()
        return lstat(path, &info) == 0 ? info : nil
    }

    static func contents(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    @Test("fresh, a real folder, mode 0700, owned by this user")
    func fresh() throws {
        let folder = try PrivateWorkFolder()
        defer { folder.remove() }
        let info = try #require(Self.lstatInfo(folder.path))
        #expect(info.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR))
        #expect(info.st_mode & 0o7777 == 0o700)
        #expect(info.st_uid == geteuid())
        #expect((folder.path as NSString).lastPathComponent.hasPrefix("inferops-"))
        #expect(folder.path != (NSTemporaryDirectory() as NSString).appendingPathComponent("inferops-\(getpid())"))
        let other = try PrivateWorkFolder()
        defer { other.remove() }
        #expect(other.path != folder.path)
        folder.remove()
        #expect(Self.lstatInfo(folder.path) == nil)
    }

    @Test("a folder planted at the old name inferops-<pid> is neither used nor removed")
    func plantedFolder() throws {
        let parent = try Self.sharedParent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let old = parent + "/inferops-\(getpid())"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: false)
        chmod(old, 0o777)
        try "planted".write(toFile: old + "/sentinel", atomically: false, encoding: .utf8)

        let folder = try PrivateWorkFolder(in: parent)
        #expect(folder.path != old)
        let valuesFile = try ValuesFile.write(.object(["token": .string("hf_secret")]), in: folder.path)
        #expect(valuesFile.hasPrefix(folder.path + "/"))
        #expect(Self.contents(old) == ["sentinel"])
        folder.remove()
        #expect(Self.lstatInfo(folder.path) == nil)
        #expect(Self.contents(old) == ["sentinel"])
    }

    @Test("a symbolic link planted at the old name is neither followed nor removed")
    func plantedLink() throws {
        let parent = try Self.sharedParent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let target = TestTools.temporaryPath("attacker")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: target) }
        let old = parent + "/inferops-\(getpid())"
        try FileManager.default.createSymbolicLink(atPath: old, withDestinationPath: target)

        let folder = try PrivateWorkFolder(in: parent)
        #expect(folder.path != old)
        _ = try ValuesFile.write(.object(["token": .string("hf_secret")]), in: folder.path)
        #expect(Self.contents(target).isEmpty)
        folder.remove()
        #expect(Self.contents(target).isEmpty)
        let link = try #require(Self.lstatInfo(old))
        #expect(link.st_mode & mode_t(S_IFMT) == mode_t(S_IFLNK))
    }

    @Test("removal unlinks links inside the folder, never what they point to")
    func removalDoesNotFollowLinks() throws {
        let outside = TestTools.temporaryPath("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try "keep".write(toFile: outside + "/keep", atomically: false, encoding: .utf8)

        let folder = try PrivateWorkFolder()
        try FileManager.default.createDirectory(atPath: folder.path + "/helm/cache", withIntermediateDirectories: true)
        try "x".write(toFile: folder.path + "/helm/cache/index", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/to-folder", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(
            atPath: folder.path + "/helm/to-file",
            withDestinationPath: outside + "/keep"
        )
        folder.remove()
        #expect(Self.lstatInfo(folder.path) == nil)
        #expect(Self.contents(outside) == ["keep"])
        #expect(try String(contentsOfFile: outside + "/keep", encoding: .utf8) == "keep")
    }

    @Test("a path that is no longer the folder created is left alone at removal")
    func replacedIsLeftAlone() throws {
        let target = TestTools.temporaryPath("attacker")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: target) }
        try "keep".write(toFile: target + "/keep", atomically: false, encoding: .utf8)

        let folder = try PrivateWorkFolder()
        let moved = folder.path + "-moved"
        #expect(rename(folder.path, moved) == 0)
        defer { try? FileManager.default.removeItem(atPath: moved) }
        try FileManager.default.createSymbolicLink(atPath: folder.path, withDestinationPath: target)
        defer { unlink(folder.path) }
        folder.remove()
        let link = try #require(Self.lstatInfo(folder.path))
        #expect(link.st_mode & mode_t(S_IFMT) == mode_t(S_IFLNK))
        #expect(Self.contents(target) == ["keep"])
    }

    @Test("values files go only into a private folder: a link, an open mode, another owner or a file is refused")
    func ensureRefuses() throws {
        let base = try PrivateWorkFolder()
        defer { base.remove() }
        let privateTarget = base.path + "/real"
        try PrivateWorkFolder.ensure(privateTarget)
        #expect(try #require(Self.lstatInfo(privateTarget)).st_mode & 0o7777 == 0o700)

        let link = base.path + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: privateTarget)
        let open = base.path + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o755)
        let foreign = base.path + "/foreign"
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: false)
        chmod(foreign, 0o700)
        let file = base.path + "/file"
        try "x".write(toFile: file, atomically: false, encoding: .utf8)

        var refused = [
            link: "is a symbolic link, not a folder", open: "has mode 755; others must not have access (0700)",
            file: "is not a folder",
        ]
        if geteuid() == 0, chown(foreign, 65534, 65534) == 0 {
            refused[foreign] = "belongs to user 65534, not to this user (0)"
        }
        for (path, reason) in refused {
            #expect(throws: PrivateWorkFolder.Failure(path: path, reason: reason)) {
                try ValuesFile.write(.object([:]), in: path)
            }
        }
        #expect(Self.contents(privateTarget).isEmpty)
    }

    @Test("a parent others may write to must be sticky and belong to root or this user")
    func unsafeParent() throws {
        let parent = TestTools.temporaryPath("parent")
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        chmod(parent, 0o777)
        #expect(throws: PrivateWorkFolder.Failure(
            path: parent,
            reason: "others may write to it and it is not sticky (mode 777)"
        )) { try PrivateWorkFolder(in: parent) }
        chmod(parent, 0o1777)
        let folder = try PrivateWorkFolder(in: parent)
        folder.remove()
        if geteuid() == 0, chown(parent, 65534, 65534) == 0 {
            #expect(throws: PrivateWorkFolder.Failure(
                path: parent,
                reason: "belongs to user 65534, who could replace what is in it"
            )) { try PrivateWorkFolder(in: parent) }
        }
    }

    /// The pid of a process that has exited and been reaped: no process has it now.
    static func deadPid() throws -> pid_t {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        let pid = process.processIdentifier
        #expect(kill(pid, 0) != 0 && errno == ESRCH)
        return pid
    }

    @Test("the folder's name carries this process's pid, so a later start can tell whose it is")
    func nameCarriesThePid() throws {
        let parent = try Self.sharedParent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let folder = try PrivateWorkFolder(in: parent)
        defer { folder.remove() }
        let name = (folder.path as NSString).lastPathComponent
        #expect(name.hasPrefix("inferops-\(getpid())-"))
        #expect(name.count == "inferops-\(getpid())-".count + 6)
        #expect(PrivateWorkFolder.owningPid(ofFolderNamed: name, prefix: "inferops-") == getpid())
        // A running daemon's folder is never taken for an abandoned one.
        #expect(PrivateWorkFolder.removeAbandoned(in: parent) == 0)
        #expect(Self.lstatInfo(folder.path) != nil)
    }

    @Test("a dead daemon's folder is removed with what it holds, following no link inside it")
    func deadDaemonsFolderIsRemoved() throws {
        let parent = try Self.sharedParent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let outside = TestTools.temporaryPath("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try "keep".write(toFile: outside + "/keep", atomically: false, encoding: .utf8)

        let abandoned = parent + "/inferops-\(try Self.deadPid())-a1B2c3"
        #expect(mkdir(abandoned, 0o700) == 0)
        try FileManager.default.createDirectory(atPath: abandoned + "/helm/cache", withIntermediateDirectories: true)
        try "token: hf_secret".write(toFile: abandoned + "/values-1.yaml", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: abandoned + "/helm/to-outside", withDestinationPath: outside)

        #expect(PrivateWorkFolder.removeAbandoned(in: parent) == 1)
        #expect(Self.lstatInfo(abandoned) == nil)
        #expect(Self.contents(outside) == ["keep"])
        #expect(Self.contents(parent).isEmpty)
    }

    @Test("live daemons' folders, links, files, other names and other users' folders are left alone")
    func everythingElseIsKept() throws {
        let parent = try Self.sharedParent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let target = TestTools.temporaryPath("attacker")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: target) }
        try "keep".write(toFile: target + "/keep", atomically: false, encoding: .utf8)
        let dead = try Self.deadPid()

        var kept: [String] = []
        func folder(_ name: String) -> String {
            let path = parent + "/" + name
            #expect(mkdir(path, 0o700) == 0)
            kept.append(name)
            return path
        }
        _ = folder("inferops-\(getpid())-live01")  // this process: running
        _ = folder("inferops-1-init01")  // pid 1 runs (EPERM when it is another user's: still running)
        _ = folder("inferops-\(dead)")  // the old name, no random part
        _ = folder("inferops-\(dead)-toolong")
        _ = folder("inferops-x\(dead)-abcdef")
        _ = folder("other-\(dead)-abcdef")
        try FileManager.default.createSymbolicLink(
            atPath: parent + "/inferops-\(dead)-link01", withDestinationPath: target)
        kept.append("inferops-\(dead)-link01")
        try "x".write(toFile: parent + "/inferops-\(dead)-file01", atomically: false, encoding: .utf8)
        kept.append("inferops-\(dead)-file01")
        if geteuid() == 0 {
            let foreign = folder("inferops-\(dead)-other1")
            #expect(chown(foreign, 65534, 65534) == 0)
        }

        #expect(PrivateWorkFolder.removeAbandoned(in: parent) == 0)
        #expect(Self.contents(parent) == kept.sorted())
        #expect(Self.contents(target) == ["keep"])
        let link = try #require(Self.lstatInfo(parent + "/inferops-\(dead)-link01"))
        #expect(link.st_mode & mode_t(S_IFMT) == mode_t(S_IFLNK))
    }
}
