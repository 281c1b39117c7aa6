import Foundation
import InferOpsTestSupport

/// A throwaway Python `http.server` on a free loopback port, for exercising the libcurl client
/// against a real socket. The script is inline so the test target needs no resources.
final class PythonHTTPServer {
    let scheme: String
    private let program: PythonServer

    var port: Int { program.port }
    var base: String { "\(scheme)://127.0.0.1:\(port)" }

    /// - Parameter tls: serve HTTPS with this certificate and key, and require client certificates
    ///   signed by `clientCA` when one is given.
    init(tls: (certificate: String, key: String, clientCA: String?)? = nil) async throws {
        scheme = tls == nil ? "http" : "https"
        let arguments = tls.map { [$0.certificate, $0.key, $0.clientCA ?? ""] } ?? []
        program = try await offThePool {
            try PythonServer("the Python test server", program: .source(Self.script), timeout: .seconds(15)) {
                [$0] + arguments
            }
        }
    }

    func stop() {
        program.stop()
    }

    /// `/echo` returns the request as JSON; `/status/N` answers N; `/slow?ms=N` answers after N ms;
    /// `/inflight` counts slow requests still waiting, so a test can cancel one that has arrived.
    static let script = #"""
        import json, os, sys, threading, time
        from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
        from urllib.parse import urlparse, parse_qs

        lock = threading.Lock()
        inflight = [0]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json", extra=()):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def handle_any(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if url.path == "/echo":
                    status = 201 if self.command == "POST" else 200
                    self.reply(status, {
                        "method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("utf-8", "replace"),
                "client": client_name(self.connection),
                    }, extra=[("X-Echo", "yes")])
                elif url.path.startswith("/status/"):
                    code = int(url.path.split("/")[2])
                    self.reply(code, {"status": code}, extra=[("Retry-After", "1")])
                elif url.path == "/slow":
                    with lock:
                        inflight[0] += 1
                    try:
                        time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
                        self.reply(200, {"slow": True})
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    finally:
                        with lock:
                            inflight[0] -= 1
                elif url.path == "/inflight":
                    with lock:
                        self.reply(200, {"inflight": inflight[0]})
                else:
                    self.reply(404, {"error": "not found"})

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        def client_name(connection):
            getpeercert = getattr(connection, "getpeercert", None)
            subject = (getpeercert() or {}).get("subject", ()) if getpeercert else ()
            return next((value for rdn in subject for key, value in rdn if key == "commonName"), None)

        server = Server(("127.0.0.1", 0), Handler)
        if len(sys.argv) > 2:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[2], sys.argv[3])
            if sys.argv[4]:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(sys.argv[4])
            server.socket = context.wrap_socket(server.socket, server_side=True)
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        server.serve_forever()
        """#
}

/// Runs a process to its end without blocking a thread of the concurrency pool.
func runToCompletion(_ process: Process) async throws -> Int32 {
    try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do {
            try process.run()
        } catch {
            process.terminationHandler = nil
            continuation.resume(throwing: error)
        }
    }
}
