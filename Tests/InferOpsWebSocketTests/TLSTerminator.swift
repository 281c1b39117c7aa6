import Foundation
import InferOpsTestSupport

/// A TLS front for the Slack emulator (which speaks only ws://): a private CA, a certificate for
/// `localhost`, and a Python stdlib proxy that terminates TLS and forwards the bytes.
final class TLSTerminator: Sendable {
    let server: PythonServer
    let folder: URL
    var port: Int { server.port }
    var certificateAuthority: String { folder.appendingPathComponent("ca.pem").path }

    static let proxy = """
        import os, socket, ssl, sys, threading
        cert, key, upstream, port_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = socket.create_server(("127.0.0.1", 0))
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.getsockname()[1]))
        os.replace(port_file + ".tmp", port_file)

        def pump(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def serve(raw):
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                return
            upstream_socket = socket.create_connection(("127.0.0.1", upstream))
            threading.Thread(target=pump, args=(tls, upstream_socket), daemon=True).start()
            pump(upstream_socket, tls)

        while True:
            client, _ = server.accept()
            threading.Thread(target=serve, args=(client,), daemon=True).start()
        """

    /// Creates the CA and the certificate with `openssl`, then starts the proxy in front of `upstream`.
    /// Blocks the calling thread.
    init(upstream: Int) throws {
        let folder = try temporaryFolder("inferops-tls")
        self.folder = folder
        let openssl = try requireExecutable("openssl")
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try Self.run(
            openssl,
            ["req", "-x509"] + ec + [
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=InferOps test CA",
            ],
            in: folder
        )
        try Self.run(
            openssl,
            ["req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            in: folder
        )
        try "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(to: folder.appendingPathComponent("ext"), atomically: true, encoding: .utf8)
        try Self.run(
            openssl,
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext",
            ],
            in: folder
        )
        server = try PythonServer("the TLS terminator", program: .source(Self.proxy)) { portFile in
            [
                folder.appendingPathComponent("server.pem").path, folder.appendingPathComponent("server.key").path,
                String(upstream), portFile,
            ]
        }
    }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    private static func run(_ executable: String, _ arguments: [String], in folder: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = folder
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("openssl \(arguments.first ?? "") failed with status \(process.terminationStatus)")
        }
    }
}
