import Foundation
import InferOpsHTTP
import InferOpsTestSupport
import Testing

/// HTTPS with a private CA and client certificates, as a real cluster's kubeconfig requires.
@Suite("CurlHTTPClient over TLS")
struct CurlTLSTests {
    /// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
    struct Certificates {
        let directory: String
        var caFile: String { "\(directory)/ca.crt" }
        var serverCertificate: String { "\(directory)/server.crt" }
        var serverKey: String { "\(directory)/server.key" }
        var clientCertificate: String { "\(directory)/client.crt" }
        var clientKey: String { "\(directory)/client.key" }

        func pem(_ path: String) throws -> TLSMaterial {
            .pem(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }

        static func make() async throws -> Certificates {
            let openssl = try requireExecutable("openssl")
            let directory = try temporaryDirectory()
            let script = """
                set -e
                cd "\(directory)"
                key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                "\(openssl)" req -x509 $key -keyout ca.key -out ca.crt -days 1 -subj /CN=inferops-test-ca
                "\(openssl)" req $key -keyout server.key -out server.csr -subj /CN=127.0.0.1
                printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
                "\(openssl)" x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \\
                    -extfile server.ext -out server.crt
                "\(openssl)" req $key -keyout client.key -out client.csr -subj /CN=inferops-daemon
                printf 'extendedKeyUsage=clientAuth\\n' > client.ext
                "\(openssl)" x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \\
                    -extfile client.ext -out client.crt
                """
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", script]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            let status = try await runToCompletion(process)
            guard status == 0 else {
                throw TestFailure("openssl could not make the test certificates (status \(status))")
            }
            return Certificates(directory: directory)
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    @Test func mutualTLSWithPEMBlobsAndWithFiles() async throws {
        let certificates = try await Certificates.make()
        defer { certificates.remove() }
        let server = try await PythonHTTPServer(
            tls: (certificates.serverCertificate, certificates.serverKey, certificates.caFile)
        )
        defer { server.stop() }
        let client = try CurlHTTPClient()

        // kubeconfig `*-data` fields: nothing touches the disk.
        let blobs = TLSOptions(
            certificateAuthority: try certificates.pem(certificates.caFile),
            clientCertificate: try certificates.pem(certificates.clientCertificate),
            clientKey: try certificates.pem(certificates.clientKey)
        )
        let viaBlobs = try await client.send(HTTPRequest(url: "\(server.base)/echo", tls: blobs))
        #expect(viaBlobs.status == 200)
        let echoed = try JSONSerialization.jsonObject(with: viaBlobs.bodyData) as? [String: Any]
        #expect(echoed?["client"] as? String == "inferops-daemon")

        // kubeconfig file paths.
        let files = TLSOptions(
            certificateAuthority: .file(certificates.caFile),
            clientCertificate: .file(certificates.clientCertificate),
            clientKey: .file(certificates.clientKey)
        )
        #expect(try await client.send(HTTPRequest(url: "\(server.base)/echo", tls: files)).status == 200)
        await client.shutdown()
        #expect(!"\(blobs)".contains("PRIVATE KEY"))
    }

    @Test func untrustedServerIsATLSError() async throws {
        let certificates = try await Certificates.make()
        defer { certificates.remove() }
        let server = try await PythonHTTPServer(tls: (certificates.serverCertificate, certificates.serverKey, nil))
        defer { server.stop() }
        let client = try CurlHTTPClient()

        let error = await #expect(throws: HTTPTransportError.self) {
            _ = try await client.send(HTTPRequest(url: "\(server.base)/echo", timeout: .seconds(5)))
        }
        #expect(error?.isTLSFailure == true, "\(String(describing: error))")
        #expect(error?.code == 60)

        // `insecure-skip-tls-verify: true` connects anyway.
        let insecure = TLSOptions(insecureSkipVerify: true)
        #expect(try await client.send(HTTPRequest(url: "\(server.base)/echo", tls: insecure)).status == 200)
        // The right CA connects without skipping verification.
        let trusted = TLSOptions(certificateAuthority: try certificates.pem(certificates.caFile))
        #expect(try await client.send(HTTPRequest(url: "\(server.base)/echo", tls: trusted)).status == 200)
        await client.shutdown()
    }

    @Test func missingClientCertificateIsRefused() async throws {
        let certificates = try await Certificates.make()
        defer { certificates.remove() }
        let server = try await PythonHTTPServer(
            tls: (certificates.serverCertificate, certificates.serverKey, certificates.caFile)
        )
        defer { server.stop() }
        let client = try CurlHTTPClient()
        await #expect(throws: HTTPTransportError.self) {
            _ = try await client.send(
                HTTPRequest(
                    url: "\(server.base)/echo",
                    timeout: .seconds(5),
                    tls: TLSOptions(certificateAuthority: .file(certificates.caFile))
                )
            )
        }
        await client.shutdown()
    }
}
