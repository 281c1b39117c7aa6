import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A folder that only the daemon's user can enter, made fresh for one run of the daemon, for the
/// values files helm reads and helm's own caches.
///
/// The temporary folder is shared with every local user. A folder at a name anyone can predict
/// (`inferops-<pid>`) can be created first by someone else, or be a symbolic link to a folder of
/// theirs, and a daemon that reuses what it finds there hands them the values (which may hold
/// secrets) or lets them swap a values file between its write and helm's read. So the folder is
/// made by `mkdtemp` (a new, unpredictable name, created in one step, never an existing one), its
/// type and owner are checked on the open folder itself with symbolic links refused, its mode is set
/// to 0700, and removing it never follows a link: what it holds is unlinked, never what a link
/// points to, and a folder that is no longer the one created is left alone.
///
/// The name carries the owning daemon's pid (`inferops-<pid>-XXXXXX`): a daemon killed before it
/// could clean up leaves its folder (values files that may hold secrets, helm's caches) behind, and
/// the next start recognises it by the pid that no longer runs and removes it
/// (`removeAbandoned(in:)`). The random part still makes the name unpredictable.
public final class PrivateWorkFolder: Sendable {
    /// Why a work folder cannot be made or used.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    public let path: String
    /// The device and inode of the folder created, to recognise it again at removal.
    private let device: UInt64
    private let inode: UInt64

    /// Creates a fresh folder named `prefix`, this process's pid, `-` and six random characters in
    /// `parent`.
    /// - Parameter parent: the system's temporary folder by default (`$TMPDIR`, else `/tmp`). It must
    ///   belong to root or the daemon's user, and when others may write to it it must be sticky
    ///   (mode `1777`, as `/tmp` is), so nobody else can rename or remove the new folder.
    /// - Throws: `Failure` when the parent is unsafe or the folder cannot be made.
    public init(in parent: String = NSTemporaryDirectory(), prefix: String = "inferops-") throws {
        try Self.checkParent(parent)
        var template = Array(((parent as NSString).appendingPathComponent(prefix) + "\(getpid())-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else {
            throw Failure(path: parent, reason: "cannot create a folder: \(Self.describe(errno))")
        }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure(path: path, reason: "cannot open: \(Self.describe(errno))") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw Failure(path: path, reason: "cannot read its owner: \(Self.describe(errno))")
        }
        if let problem = Self.problem(with: info, allowedMode: nil) { throw Failure(path: path, reason: problem) }
        // mkdtemp asks for 0700, the umask may have taken some of it away.
        guard fchmod(descriptor, 0o700) == 0 else {
            throw Failure(path: path, reason: "cannot set its mode to 0700: \(Self.describe(errno))")
        }
        self.path = path
        self.device = UInt64(info.st_dev)
        self.inode = UInt64(info.st_ino)
    }

    /// Removes the folder and everything in it, without following any symbolic link; does nothing
    /// when the path is no longer the folder this created (removed already, or replaced).
    public func remove() {
        var info = stat()
        guard lstat(path, &info) == 0, Self.isDirectory(info), UInt64(info.st_dev) == device,
            UInt64(info.st_ino) == inode
        else { return }
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        Self.removeContents(of: descriptor)
        rmdir(path)
    }

    /// Makes `path` a private folder for one caller's files: creates it with mode 0700 when it is
    /// missing (its parent must exist), and otherwise accepts only a real folder, not a symbolic
    /// link, owned by the daemon's user and closed to everyone else.
    /// - Throws: `Failure` saying what is wrong with it.
    public static func ensure(_ path: String) throws {
        if mkdir(path, 0o700) != 0, errno != EEXIST {
            throw Failure(path: path, reason: "cannot create the folder: \(describe(errno))")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw Failure(path: path, reason: describe(errno)) }
        if let problem = problem(with: info, allowedMode: 0o700) { throw Failure(path: path, reason: problem) }
    }

    /// Removes the work folders that daemons which no longer run left in `parent`, and returns how
    /// many it removed.
    ///
    /// A folder is removed only when its name is `prefix`, a pid, `-` and six characters, no process
    /// with that pid exists (`kill(pid, 0)` fails with `ESRCH`; a pid owned by another user answers
    /// `EPERM` and counts as running), and it is a real folder (not a symbolic link) owned by this
    /// user. Everything else is left alone: other users' folders, live daemons' folders, files and
    /// links with such names. Removal follows no link, as `remove()` does. A folder of a daemon in
    /// another pid namespace sharing this temporary folder cannot be told apart from a dead one, so
    /// `TMPDIR` should not be shared that way.
    @discardableResult
    public static func removeAbandoned(in parent: String = NSTemporaryDirectory(), prefix: String = "inferops-")
        -> Int
    {
        let parentDescriptor = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parentDescriptor >= 0 else { return 0 }
        defer { close(parentDescriptor) }
        var removed = 0
        for name in entryNames(of: parentDescriptor) {
            guard let pid = owningPid(ofFolderNamed: name, prefix: prefix), pid != getpid(),
                kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            var info = stat()
            guard fstatat(parentDescriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0,
                problem(with: info, allowedMode: nil) == nil
            else { continue }
            let descriptor = openat(parentDescriptor, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            // The folder opened must be the one checked, not something put in its place since.
            var opened = stat()
            guard fstat(descriptor, &opened) == 0, opened.st_dev == info.st_dev, opened.st_ino == info.st_ino,
                problem(with: opened, allowedMode: nil) == nil
            else {
                close(descriptor)
                continue
            }
            removeContents(of: descriptor)
            if unlinkat(parentDescriptor, name, AT_REMOVEDIR) == 0 { removed += 1 }
        }
        return removed
    }

    /// The pid in a name made by `init` (`prefix`, decimal pid, `-`, six letters or digits), or `nil`
    /// when the name is not one.
    static func owningPid(ofFolderNamed name: String, prefix: String) -> pid_t? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dash = rest.firstIndex(of: "-") else { return nil }
        let digits = rest[..<dash]
        let random = rest[rest.index(after: dash)...]
        guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            random.count == 6, random.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }),
            let pid = pid_t(digits), pid > 0
        else { return nil }
        return pid
    }

    // MARK: - Checks

    /// What makes `info` unfit for a private folder, or `nil`. `allowedMode` are the permission bits
    /// it may have (`nil`: not checked).
    static func problem(with info: stat, allowedMode: mode_t?) -> String? {
        let type = info.st_mode & mode_t(S_IFMT)
        if type == mode_t(S_IFLNK) { return "is a symbolic link, not a folder" }
        if type != mode_t(S_IFDIR) { return "is not a folder" }
        if info.st_uid != geteuid() { return "belongs to user \(info.st_uid), not to this user (\(geteuid()))" }
        if let allowedMode, info.st_mode & 0o777 & ~allowedMode != 0 {
            return "has mode \(String(info.st_mode & 0o7777, radix: 8)); others must not have access (0700)"
        }
        return nil
    }

    /// The parent is followed if it is a link (`/tmp` is one on macOS): what matters is who can
    /// change the folder it leads to.
    static func checkParent(_ parent: String) throws {
        var info = stat()
        guard stat(parent, &info) == 0 else { throw Failure(path: parent, reason: describe(errno)) }
        guard isDirectory(info) else { throw Failure(path: parent, reason: "is not a folder") }
        if info.st_uid != 0, info.st_uid != geteuid() {
            throw Failure(path: parent, reason: "belongs to user \(info.st_uid), who could replace what is in it")
        }
        if info.st_mode & 0o022 != 0, info.st_mode & mode_t(S_ISVTX) == 0 {
            throw Failure(
                path: parent,
                reason: "others may write to it and it is not sticky (mode \(String(info.st_mode & 0o7777, radix: 8)))"
            )
        }
    }

    private static func isDirectory(_ info: stat) -> Bool {
        info.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR)
    }

    private static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Unlinks everything inside the open folder `descriptor` (and closes it). Every step works
    /// relative to an open folder and opens subfolders with `O_NOFOLLOW`, so a link met on the way
    /// is removed itself and nothing it points to is touched.
    private static func removeContents(of folder: Int32) {
        defer { close(folder) }
        for name in entryNames(of: folder) {
            var info = stat()
            guard fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if isDirectory(info) {
                let child = openat(folder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 { removeContents(of: child) }
                unlinkat(folder, name, AT_REMOVEDIR)
            } else {
                unlinkat(folder, name, 0)
            }
        }
    }

    /// The names in the open folder `descriptor`, without `.` and `..`; `descriptor` stays open
    /// (a duplicate is read, so it can still be used for `openat` and `unlinkat`).
    private static func entryNames(of descriptor: Int32) -> [String] {
        let copy = dup(descriptor)
        guard copy >= 0 else { return [] }
        guard let stream = fdopendir(copy) else {
            close(copy)
            return []
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }
}
