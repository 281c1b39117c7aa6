import Foundation
import InferOpsCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A plan's values, written to a file only the daemon's user can read, for one helm call.
///
/// Values may hold secrets (tokens in env vars), so they never go on the command line, where every
/// local user can read them in `/proc/PID/cmdline`. The file is created with mode 0600 in one
/// `open(O_CREAT|O_EXCL)`, so there is no moment when it exists with wider permissions or could be
/// a link planted by someone else, and it is removed as soon as helm has exited. The folder must be
/// private to the daemon's user (`PrivateWorkFolder.ensure`).
enum ValuesFile {
    struct WriteFailure: Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String { "could not write the values file \(path): \(String(cString: strerror(errno)))" }
    }

    /// Writes `values`, runs `body` with the file's path, and removes the file whatever happens.
    ///
    /// The values are written as canonical JSON: JSON is YAML, so helm reads it as any values file,
    /// and no YAML encoder can change its meaning (`no`, `on` or `1e3` stay what they are).
    static func with<T>(
        _ values: JSONValue,
        in folder: String,
        _ body: (String) async throws -> T
    ) async throws -> T {
        let path = try write(values, in: folder)
        defer { unlink(path) }
        return try await body(path)
    }

    static func write(_ values: JSONValue, in folder: String) throws -> String {
        // A folder someone else made or links to could let them swap the file before helm reads it.
        try PrivateWorkFolder.ensure(folder)
        let path = (folder as NSString).appendingPathComponent("values-\(UUID().uuidString).json")
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { throw WriteFailure(path: path, errno: errno) }
        defer { close(descriptor) }
        do {
            try FileHandle(fileDescriptor: descriptor, closeOnDealloc: false)
                .write(contentsOf: Data((values.canonical + "\n").utf8))
        } catch {
            unlink(path)
            throw error
        }
        return path
    }
}
