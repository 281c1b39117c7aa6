import Foundation
import InferOpsCore
import InferOpsHTTP
import Testing

@testable import InferOpsKube

@Suite("Kubeconfig")
struct KubeconfigTests {
    static let caPEM = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
    static let certPEM = "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n"
    static let keyPEM = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"
    static let token = "eyJhbGciOiJSUzI1NiJ9.very-secret-token"

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    static let dataConfig = """
        apiVersion: v1
        kind: Config
        current-context: prod
        clusters:
        - name: prod-cluster
          cluster:
            server: https://10.1.2.3:6443/
            certificate-authority-data: \(base64(caPEM))
        - name: lab-cluster
          cluster:
            server: https://lab.example:443
            insecure-skip-tls-verify: true
        contexts:
        - name: prod
          context:
            cluster: prod-cluster
            user: prod-admin
            namespace: inference
        - name: lab
          context:
            cluster: lab-cluster
            user: lab-user
        users:
        - name: prod-admin
          user:
            client-certificate-data: \(base64(certPEM))
            client-key-data: \(base64(keyPEM))
        - name: lab-user
          user:
            token: \(token)
        """

    @Test func runtimeNamesEveryCredentialForTheRedactor() async throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
        let path = folder + "/kubeconfig"
        try Self.dataConfig.replacingOccurrences(of: Self.base64(Self.keyPEM), with: Self.base64(key))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let runtime = try KubeRuntime(kubeconfig: path)
        defer { Task { await runtime.shutdown() } }
        let literals = runtime.credentialLiterals
        #expect(literals.contains(Self.token))
        #expect(literals.contains(key.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(literals.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"))
        // As the kubeconfig writes it (`client-key-data`), the redactor removes it too.
        let redactor = SecretRedactor(literals: literals)
        #expect(redactor.redact("echo \(Self.base64(key)) and \(Self.token)") == "echo <redacted> and <redacted>")
    }

    @Test func dataFieldsBecomePEMBlobs() throws {
        let config = try Kubeconfig.parse(Self.dataConfig, directory: "/etc/kube")
        #expect(config.currentContext == "prod")
        #expect(config.contextNames == ["lab", "prod"])
        let prod = try config.connection()
        #expect(prod.contextName == "prod")
        #expect(prod.server == "https://10.1.2.3:6443")
        #expect(prod.namespace == "inference")
        #expect(prod.tls.certificateAuthority == .pem(Array(Self.caPEM.utf8)))
        #expect(prod.tls.clientCertificate == .pem(Array(Self.certPEM.utf8)))
        #expect(prod.tls.clientKey == .pem(Array(Self.keyPEM.utf8)))
        #expect(prod.tls.insecureSkipVerify == false)
        #expect(prod.credential == nil)
    }

    @Test func tokenAndInsecureContext() throws {
        let config = try Kubeconfig.parse(Self.dataConfig, directory: "/etc/kube")
        let lab = try config.connection(context: "lab")
        #expect(lab.server == "https://lab.example:443")
        #expect(lab.tls.insecureSkipVerify)
        #expect(lab.tls.certificateAuthority == nil)
        #expect(lab.namespace == nil)
        #expect(try lab.credential?.token().reveal() == Self.token)
    }

    @Test func tokensNeverShowInDescriptions() throws {
        let config = try Kubeconfig.parse(Self.dataConfig, directory: "/etc/kube")
        let lab = try config.connection(context: "lab")
        var dumped = ""
        dump(config, to: &dumped)
        dump(lab, to: &dumped)
        let texts = [
            "\(config)", "\(lab)", String(reflecting: lab), String(describing: lab.credential), dumped,
            "\(Secret(Self.token))", String(reflecting: Secret(Self.token)),
        ]
        for text in texts {
            #expect(!text.contains("very-secret-token"), "leaked in: \(text)")
            #expect(!text.contains("PRIVATE KEY"), "leaked in: \(text)")
        }
        #expect("\(Secret(Self.token))" == "<redacted>")
    }

    @Test func relativeFilesResolveAgainstTheKubeconfigDirectory() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "  file-token\n".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
        let yaml = """
            current-context: files
            clusters:
            - name: c
              cluster:
                server: https://kube.local
                certificate-authority: certs/ca.crt
            contexts:
            - name: files
              context: {cluster: c, user: u}
            users:
            - name: u
              user:
                client-certificate: /abs/client.crt
                client-key: client.key
                tokenFile: token
            """
        try yaml.write(toFile: "\(directory)/config", atomically: true, encoding: .utf8)
        let connection = try Kubeconfig.load(path: "\(directory)/config").connection()
        #expect(connection.tls.certificateAuthority == .file("\(directory)/certs/ca.crt"))
        #expect(connection.tls.clientCertificate == .file("/abs/client.crt"))
        #expect(connection.tls.clientKey == .file("\(directory)/client.key"))
        #expect(connection.credential == .tokenFile("\(directory)/token"))
        #expect(try connection.credential?.token().reveal() == "file-token")
        // Rotated tokens are picked up: the file is read on every use.
        try "rotated".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
        #expect(try connection.credential?.token().reveal() == "rotated")
    }

    @Test func missingContextNamesTheKnownOnes() throws {
        let config = try Kubeconfig.parse(Self.dataConfig, directory: "/")
        let error = #expect(throws: KubeconfigError.self) { try config.connection(context: "staging") }
        #expect(error == .contextNotFound("staging", source: "kubeconfig", available: ["lab", "prod"]))
        #expect(error?.message.contains("`staging`") == true)
        #expect(error?.hint == "Known contexts: `lab`, `prod`.")
    }

    @Test func noCurrentContextIsAnError() throws {
        let yaml = """
            clusters: [{name: c, cluster: {server: "http://x"}}]
            contexts: [{name: only, context: {cluster: c}}]
            """
        let config = try Kubeconfig.parse(yaml, directory: "/")
        #expect(throws: KubeconfigError.noCurrentContext(source: "kubeconfig", available: ["only"])) {
            try config.connection()
        }
        #expect(try config.connection(context: "only").credential == nil)
    }

    @Test func danglingReferencesAreNamed() throws {
        let yaml = """
            current-context: a
            clusters: [{name: c, cluster: {server: "http://x"}}]
            contexts:
            - {name: a, context: {cluster: missing}}
            - {name: b, context: {cluster: c, user: nobody}}
            """
        let config = try Kubeconfig.parse(yaml, directory: "/")
        #expect(throws: KubeconfigError.clusterNotFound("missing", context: "a", source: "kubeconfig")) {
            try config.connection()
        }
        #expect(throws: KubeconfigError.userNotFound("nobody", context: "b", source: "kubeconfig")) {
            try config.connection(context: "b")
        }
    }

    @Test func execPluginsAreReportedAsUnsupported() throws {
        let yaml = """
            current-context: eks
            clusters: [{name: c, cluster: {server: "https://eks"}}]
            contexts: [{name: eks, context: {cluster: c, user: aws}}]
            users:
            - name: aws
              user:
                exec:
                  apiVersion: client.authentication.k8s.io/v1beta1
                  command: aws
                  args: [eks, get-token]
            """
        let config = try Kubeconfig.parse(yaml, directory: "/")
        let error = #expect(throws: KubeconfigError.self) { try config.connection() }
        #expect(error == .unsupportedAuthentication("exec credential plugins", context: "eks"))
        #expect(error?.hint != nil)
    }

    @Test func brokenYAMLDoesNotEchoItsContent() throws {
        let yaml = """
            users:
            - name: u
              user:
                token: \(Self.token)
                  bad: [indent
            """
        let error = #expect(throws: KubeconfigError.self) { try Kubeconfig.parse(yaml, directory: "/") }
        #expect(error?.message.contains("very-secret-token") == false)
        let notBase64 = """
            clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "%%%"}}]
            """
        #expect(
            throws: KubeconfigError.invalid(source: "kubeconfig", detail: "certificate-authority-data is not base64")
        ) {
            try Kubeconfig.parse(notBase64, directory: "/")
        }
    }

    @Test func severalFilesMergeFirstWins() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try """
        clusters: [{name: c, cluster: {server: "https://first"}}]
        contexts: [{name: one, context: {cluster: c}}]
        """.write(toFile: "\(directory)/a", atomically: true, encoding: .utf8)
        try """
        current-context: two
        clusters: [{name: c, cluster: {server: "https://second"}}, {name: d, cluster: {server: "https://d"}}]
        contexts: [{name: two, context: {cluster: d}}, {name: one, context: {cluster: d}}]
        """.write(toFile: "\(directory)/b", atomically: true, encoding: .utf8)
        let paths = Kubeconfig.defaultPaths(environment: [
            "KUBECONFIG": "\(directory)/a:\(directory)/missing:\(directory)/b"
        ])
        #expect(paths.count == 3)
        let merged = try Kubeconfig.load(paths: paths)
        #expect(merged.currentContext == "two")
        #expect(try merged.connection().server == "https://d")
        #expect(try merged.connection(context: "one").server == "https://first")
        #expect(Kubeconfig.defaultPaths(environment: ["HOME": "/home/op"]) == ["/home/op/.kube/config"])
        #expect(throws: KubeconfigError.unreadable(path: "/nonexistent/config")) {
            try Kubeconfig.load(paths: ["/nonexistent/config"])
        }
    }

    @Test func inClusterServiceAccount() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "sa-token\n".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
        try Self.caPEM.write(toFile: "\(directory)/ca.crt", atomically: true, encoding: .utf8)
        try "inferops\n".write(toFile: "\(directory)/namespace", atomically: true, encoding: .utf8)
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let connection = try ClusterConnection.inCluster(environment: environment, directory: directory)
        #expect(connection.contextName == "in-cluster")
        #expect(connection.server == "https://10.96.0.1:443")
        #expect(connection.tls.certificateAuthority == .file("\(directory)/ca.crt"))
        #expect(connection.namespace == "inferops")
        #expect(try connection.credential?.token().reveal() == "sa-token")

        let v6 = try ClusterConnection.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
            directory: directory
        )
        #expect(v6.server == "https://[fd00::1]:6443")

        #expect(throws: KubeconfigError.notInCluster) {
            try ClusterConnection.inCluster(environment: [:], directory: directory)
        }
        #expect(throws: KubeconfigError.unreadable(path: "/nonexistent/token")) {
            try ClusterConnection.inCluster(environment: environment, directory: "/nonexistent")
        }
    }

    @Test func contextsAreCreatedOnceAndSendTheToken() async throws {
        let config = try Kubeconfig.parse(Self.dataConfig, directory: "/")
        let http = FakeHTTPClient { _ in .json(200, #"{"items":[]}"#) }
        let contexts = KubeContexts(source: .kubeconfig(config), http: http)
        let first = try await contexts.context("lab")
        let current = try await contexts.context(nil)
        #expect(current.name == "prod")
        #expect(try await contexts.context("prod").name == "prod")
        await #expect(throws: KubeconfigError.self) { try await contexts.context("nope") }

        _ = try await first.send(.get, "/api/v1/nodes")
        let request = try #require(http.requests.first)
        #expect(request.url == "https://lab.example:443/api/v1/nodes")
        #expect(request.headers["Authorization"] == "Bearer \(Self.token)")
        #expect(request.headers["Accept"] == "application/json")
        #expect(request.tls?.insecureSkipVerify == true)
        #expect(!request.description.contains("secret"))

        let inCluster = KubeContexts(
            source: .inCluster(ClusterConnection(contextName: "in-cluster", server: "https://10.96.0.1:443")),
            http: http
        )
        #expect(try await inCluster.context(nil).name == "in-cluster")
        #expect(try await inCluster.context("in-cluster").name == "in-cluster")
        await #expect(throws: KubeconfigError.self) { try await inCluster.context("prod") }
    }
}

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("inferops-kube-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
