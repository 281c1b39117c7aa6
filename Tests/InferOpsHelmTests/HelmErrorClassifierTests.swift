import InferOpsCore
import Testing

@testable import InferOpsHelm

/// One row of the failure catalogue: what helm printed and what it must be classified as.
struct StderrCase: CustomTestStringConvertible, Sendable {
    var name: String
    var version: HelmVersion
    var stderr: String
    var expected: ReleaseFailure

    var testDescription: String { "\(version): \(name)" }
}

private let notReady4 = "resource Deployment/default/f1-engine not ready. status: InProgress, message: Available: 0/1"
/// Longer than a detail may be, so the expected detail is cut.
private let ownership =
    #"ConfigMap "f9-config" in namespace "default" exists and cannot be imported into the current release: invalid ownership metadata; label validation error: missing key "app.kubernetes.io/managed-by": must be set to "Helm"; annotation validation error: missing key "meta.helm.sh/release-name": must be set to "f9"; annotation validation error: missing key "meta.helm.sh/release-namespace": must be set to "default""#
private let timeout3 = ReleaseFailure.readinessTimeout(detail: "Helm's wait ran out (context deadline exceeded).")

/// The Helm probe's §6 tables, every row, with the exact text of Helm 3.19.0 and Helm 4.1.4.
let catalogue: [StderrCase] = [
    // Timeouts and failed readiness.
    StderrCase(
        name: "upgrade --install of a new release, wait timeout",
        version: .v3,
        stderr: "Error: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "upgrade --install of a new release, wait timeout",
        version: .v4,
        stderr: "Error: \(notReady4)\ncontext deadline exceeded\n",
        expected: .readinessTimeout(
            detail: "Still not ready: Deployment default/f1-engine (InProgress: Available: 0/1)."
        )
    ),
    StderrCase(
        name: "install --wait timeout",
        version: .v3,
        stderr: "Error: INSTALLATION FAILED: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "install --wait timeout",
        version: .v4,
        stderr: """
            Error: INSTALLATION FAILED: resource Deployment/default/i4-engine not ready. status: InProgress, message: Available: 0/1
            context deadline exceeded

            """,
        expected: .readinessTimeout(
            detail: "Still not ready: Deployment default/i4-engine (InProgress: Available: 0/1)."
        )
    ),
    StderrCase(
        name: "upgrade --wait timeout",
        version: .v3,
        stderr: "Error: UPGRADE FAILED: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "upgrade --wait timeout",
        version: .v4,
        stderr: """
            level=WARN msg="upgrade failed" name=f1 error="\(notReady4)\\ncontext deadline exceeded"
            Error: UPGRADE FAILED: \(notReady4)
            context deadline exceeded

            """,
        expected: .readinessTimeout(
            detail: "Still not ready: Deployment default/f1-engine (InProgress: Available: 0/1)."
        )
    ),
    StderrCase(
        name: "--wait=legacy upgrade timeout (Helm 3 text)",
        version: .v4,
        stderr: "Error: UPGRADE FAILED: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "--wait=legacy install timeout (Helm 3 text)",
        version: .v4,
        stderr: "Error: INSTALLATION FAILED: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "ProgressDeadlineExceeded (waits the full timeout)",
        version: .v3,
        stderr: "Error: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "ProgressDeadlineExceeded (fails at once)",
        version: .v4,
        stderr:
            "Error: resource Deployment/default/f10-engine not ready. status: Failed, message: Progress deadline exceeded\n",
        expected: .rolloutFailed(detail: "Deployment default/f10-engine: Progress deadline exceeded")
    ),
    StderrCase(
        name: "rollback --wait timeout",
        version: .v3,
        stderr: "Error: release g1 failed: context deadline exceeded\n",
        expected: timeout3
    ),
    StderrCase(
        name: "rollback --wait timeout",
        version: .v4,
        stderr: """
            Error: release g1 failed: resource Deployment/default/g1-engine not ready. status: InProgress, message: Available: 0/1
            context deadline exceeded

            """,
        expected: .readinessTimeout(
            detail: "Still not ready: Deployment default/g1-engine (InProgress: Available: 0/1)."
        )
    ),
    StderrCase(
        name: "install --atomic timeout",
        version: .v3,
        stderr:
            "Error: release f2 failed, and has been uninstalled due to atomic being set: context deadline exceeded\n",
        expected: .readinessTimeout(
            detail: "Helm's wait ran out (context deadline exceeded). Helm uninstalled the release."
        )
    ),
    StderrCase(
        name: "install --rollback-on-failure timeout",
        version: .v4,
        stderr: """
            Error: release f2 failed, and has been uninstalled due to rollback-on-failure being set: resource Deployment/default/f2-engine not ready. status: InProgress, message: Available: 0/1
            context deadline exceeded

            """,
        expected: .readinessTimeout(
            detail:
                "Still not ready: Deployment default/f2-engine (InProgress: Available: 0/1). Helm uninstalled the release."
        )
    ),
    StderrCase(
        name: "upgrade --atomic timeout",
        version: .v3,
        stderr:
            "Error: UPGRADE FAILED: release f2b failed, and has been rolled back due to atomic being set: context deadline exceeded\n",
        expected: .readinessTimeout(
            detail: "Helm's wait ran out (context deadline exceeded). Helm rolled the release back."
        )
    ),
    StderrCase(
        name: "upgrade --rollback-on-failure timeout",
        version: .v4,
        stderr: """
            level=WARN msg="upgrade failed" name=f2b error="resource Deployment/default/f2b-engine not ready. status: InProgress, message: Available: 0/1\\ncontext deadline exceeded"
            Error: UPGRADE FAILED: release f2b failed, and has been rolled back due to rollback-on-failure being set: resource Deployment/default/f2b-engine not ready. status: InProgress, message: Available: 0/1
            context deadline exceeded

            """,
        expected: .readinessTimeout(
            detail:
                "Still not ready: Deployment default/f2b-engine (InProgress: Available: 0/1). Helm rolled the release back."
        )
    ),
    StderrCase(
        name: "SIGTERM during install wait",
        version: .v3,
        stderr: "Error: context canceled\n",
        expected: .cancelled
    ),
    StderrCase(
        name: "SIGTERM during upgrade wait",
        version: .v3,
        stderr: "Error: UPGRADE FAILED: context canceled\n",
        expected: .cancelled
    ),
    StderrCase(
        name: "SIGTERM during install wait",
        version: .v4,
        stderr: "Error: context canceled\n",
        expected: .cancelled
    ),
    StderrCase(
        name: "SIGTERM during upgrade wait",
        version: .v4,
        stderr: """
            level=WARN msg="upgrade failed" name=f5 error="context canceled"
            Error: UPGRADE FAILED: context canceled

            """,
        expected: .cancelled
    ),

    // Concurrency, missing releases and conflicts.
    StderrCase(
        name: "another operation in progress",
        version: .v3,
        stderr: "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n",
        expected: .operationInProgress
    ),
    StderrCase(
        name: "another operation in progress",
        version: .v4,
        stderr: "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n",
        expected: .operationInProgress
    ),
    StderrCase(
        name: "install while the name is in use",
        version: .v3,
        stderr: "Error: INSTALLATION FAILED: cannot re-use a name that is still in use\n",
        expected: .chartError(detail: "cannot re-use a name that is still in use")
    ),
    StderrCase(
        name: "install while the name is in use",
        version: .v4,
        stderr: """
            level=ERROR msg="release name check failed" error="cannot reuse a name that is still in use"
            Error: INSTALLATION FAILED: release name check failed: cannot reuse a name that is still in use

            """,
        expected: .chartError(detail: "cannot reuse a name that is still in use")
    ),
    StderrCase(
        name: "upgrade without --install of a release that never existed",
        version: .v3,
        stderr: "Error: UPGRADE FAILED: \"nope\" has no deployed releases\n",
        expected: .noDeployedRelease
    ),
    StderrCase(
        name: "upgrade without --install of a release that never existed",
        version: .v4,
        stderr: "Error: UPGRADE FAILED: \"nope\" has no deployed releases\n",
        expected: .noDeployedRelease
    ),
    StderrCase(
        name: "rollback to a missing revision",
        version: .v3,
        stderr: "Error: release has no 99 version\n",
        expected: .missingRevision(99)
    ),
    StderrCase(
        name: "rollback to a missing revision",
        version: .v4,
        stderr: "Error: release has no 99 version\n",
        expected: .missingRevision(99)
    ),
    StderrCase(
        name: "rollback with one revision, or pending-install",
        version: .v3,
        stderr: "Error: release has no 0 version\n",
        expected: .missingRevision(nil)
    ),
    StderrCase(
        name: "rollback with one revision, or pending-install",
        version: .v4,
        stderr: "Error: release has no 0 version\n",
        expected: .missingRevision(nil)
    ),
    StderrCase(
        name: "rollback, status, history, get of a missing release",
        version: .v3,
        stderr: "Error: release: not found\n",
        expected: .releaseNotFound
    ),
    StderrCase(
        name: "rollback, status, history, get of a missing release",
        version: .v4,
        stderr: "Error: release: not found\n",
        expected: .releaseNotFound
    ),
    StderrCase(
        name: "uninstall of a missing release",
        version: .v3,
        stderr: "Error: uninstall: Release not loaded: nope: release: not found\n",
        expected: .releaseNotFound
    ),
    StderrCase(
        name: "uninstall of a missing release",
        version: .v4,
        stderr: "Error: uninstall: Release not loaded: nope: release: not found\n",
        expected: .releaseNotFound
    ),
    StderrCase(
        name: "an object exists that helm does not own",
        version: .v3,
        stderr: "Error: INSTALLATION FAILED: Unable to continue with install: \(ownership)\n",
        expected: .chartError(detail: String("Unable to continue with install: \(ownership)".prefix(299)) + "…")
    ),
    StderrCase(
        name: "an object exists that helm does not own",
        version: .v4,
        stderr: "Error: INSTALLATION FAILED: unable to continue with install: \(ownership)\n",
        expected: .chartError(detail: String("unable to continue with install: \(ownership)".prefix(299)) + "…")
    ),
    StderrCase(
        name: "API server unreachable",
        version: .v3,
        stderr:
            "Error: Kubernetes cluster unreachable: Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused\n",
        expected: .clusterUnreachable(
            detail: "Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused"
        )
    ),
    StderrCase(
        name: "API server unreachable",
        version: .v4,
        stderr:
            "Error: kubernetes cluster unreachable: Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused\n",
        expected: .clusterUnreachable(
            detail: "Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused"
        )
    ),
    StderrCase(
        name: "API server unreachable during install",
        version: .v4,
        stderr:
            "Error: INSTALLATION FAILED: cluster reachability check failed: kubernetes cluster unreachable: Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused\n",
        expected: .clusterUnreachable(
            detail: "Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused"
        )
    ),
    StderrCase(
        name: "no openapi, validation on",
        version: .v3,
        stderr:
            "Error: INSTALLATION FAILED: unable to build kubernetes objects from release manifest: error validating \"\": error validating data: failed to download openapi: the server could not find the requested resource\n",
        expected: .chartError(
            detail:
                "unable to build kubernetes objects from release manifest: error validating \"\": error validating data: failed to download openapi: the server could not find the requested resource"
        )
    ),
    StderrCase(
        name: "no openapi, validation on",
        version: .v4,
        stderr:
            "Error: INSTALLATION FAILED: unable to build kubernetes objects from release manifest: error validating \"\": error validating data: failed to download openapi: the server could not find the requested resource\n",
        expected: .chartError(
            detail:
                "unable to build kubernetes objects from release manifest: error validating \"\": error validating data: failed to download openapi: the server could not find the requested resource"
        )
    ),
    StderrCase(
        name: "--force with server-side apply",
        version: .v4,
        stderr: """
            Flag --force has been deprecated, use --force-replace instead
            Error: UPGRADE FAILED: invalid operation: cannot use server-side apply and force replace together

            """,
        expected: .unclassified(detail: "invalid operation: cannot use server-side apply and force replace together")
    ),
]

/// Chart problems as `helm template` and `upgrade` print them (captured from both binaries).
let chartCatalogue: [StderrCase] = [
    StderrCase(
        name: "chart path missing",
        version: .v3,
        stderr: "Error: path \"./nope\" not found\n",
        expected: .chartError(detail: "path \"./nope\" not found")
    ),
    StderrCase(
        name: "chart path missing",
        version: .v4,
        stderr: "Error: path \"./nope\" not found\n",
        expected: .chartError(detail: "path \"./nope\" not found")
    ),
    StderrCase(
        name: "chart repository unknown",
        version: .v3,
        stderr: "Error: repo nope not found\n",
        expected: .chartError(detail: "repo nope not found")
    ),
    StderrCase(
        name: "chart version missing from the repository",
        version: .v4,
        stderr: "Error: chart \"vllm-engine\" version \"9.9.9\" not found in https://charts.example.com repository\n",
        expected: .chartError(
            detail: "chart \"vllm-engine\" version \"9.9.9\" not found in https://charts.example.com repository"
        )
    ),
    StderrCase(
        name: "template execution error",
        version: .v3,
        stderr: """
            Error: template: tiny/templates/x.yaml:1:44: executing "tiny/templates/x.yaml" at <.Values.model.name>: nil pointer evaluating interface {}.name

            Use --debug flag to render out invalid YAML

            """,
        expected: .chartError(
            detail:
                "template: tiny/templates/x.yaml:1:44: executing \"tiny/templates/x.yaml\" at <.Values.model.name>: nil pointer evaluating interface {}.name"
        )
    ),
    StderrCase(
        name: "template execution error",
        version: .v4,
        stderr: """
            Error: tiny/templates/x.yaml:1:44
              executing "tiny/templates/x.yaml" at <.Values.model.name>:
                nil pointer evaluating interface {}.name

            Use --debug flag to render out invalid YAML

            """,
        expected: .chartError(
            detail:
                "tiny/templates/x.yaml:1:44 executing \"tiny/templates/x.yaml\" at <.Values.model.name>: nil pointer evaluating interface {}.name"
        )
    ),
    StderrCase(
        name: "template parse error",
        version: .v3,
        stderr:
            "Error: parse error at (tiny/templates/y.yaml:2): unclosed action started at tiny/templates/y.yaml:1\n\nUse --debug flag to render out invalid YAML\n",
        expected: .chartError(
            detail: "parse error at (tiny/templates/y.yaml:2): unclosed action started at tiny/templates/y.yaml:1"
        )
    ),
    StderrCase(
        name: "rendered YAML invalid",
        version: .v4,
        stderr:
            "Error: YAML parse error on tiny/templates/z.yaml: error converting YAML to JSON: yaml: line 4: did not find expected key\n\nUse --debug flag to render out invalid YAML\n",
        expected: .chartError(
            detail:
                "YAML parse error on tiny/templates/z.yaml: error converting YAML to JSON: yaml: line 4: did not find expected key"
        )
    ),
    StderrCase(
        name: "values schema",
        version: .v3,
        stderr:
            "Error: values don't meet the specifications of the schema(s) in the following chart(s):\ntiny:\n- at '/replicas': got string, want integer\n\n",
        expected: .chartError(
            detail:
                "values don't meet the specifications of the schema(s) in the following chart(s): tiny: - at '/replicas': got string, want integer"
        )
    ),
    StderrCase(
        name: "invalid release name",
        version: .v4,
        stderr: """
            level=ERROR msg="release name check failed" error="release name \\"-r\\": invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53"
            Error: release name check failed: release name "-r": invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53
            """,
        expected: .unclassified(
            detail:
                #"release name "-r": invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53"#
        )
    ),
]

@Suite("Classifying helm's stderr")
struct HelmErrorClassifierTests {
    let classifier = HelmErrorClassifier()

    @Test("every row of the probe's failure catalogue", arguments: catalogue)
    func catalogueRow(_ row: StderrCase) {
        #expect(classifier.classify(stderr: row.stderr) == row.expected)
    }

    @Test("chart and render errors", arguments: chartCatalogue)
    func chartRow(_ row: StderrCase) {
        #expect(classifier.classify(stderr: row.stderr) == row.expected)
    }

    @Test("the catalogue covers both versions for every situation helm 3 has")
    func catalogueCoversBothVersions() {
        let v3 = Set(catalogue.filter { $0.version == .v3 }.map(\.name))
        let v4 = Set(catalogue.filter { $0.version == .v4 }.map(\.name))
        #expect(
            v3.subtracting(v4).subtracting([
                "ProgressDeadlineExceeded (waits the full timeout)",
                "install --atomic timeout", "upgrade --atomic timeout",
            ]).isEmpty
        )
        #expect(catalogue.count == 42)
    }

    @Test("the error text starts at the first `Error: ` line and keeps the lines after it")
    func errorTextSkipsSlogLines() {
        let stderr = """
            level=WARN msg="upgrade failed" name=x error="boom"
            level=ERROR msg="something" error="Error: not at line start"
            Error: UPGRADE FAILED: first
            second

            """
        #expect(HelmErrorClassifier.errorText(in: stderr) == "UPGRADE FAILED: first\nsecond")
    }

    @Test("without an Error line, slog and deprecation lines are dropped")
    func errorTextWithoutErrorLine() {
        let stderr = "level=WARN msg=\"x\"\nFlag --atomic has been deprecated\npanic: runtime error\n"
        #expect(HelmErrorClassifier.errorText(in: stderr) == "panic: runtime error")
        #expect(classifier.classify(stderr: "") == .unclassified(detail: "helm failed without an error message"))
    }

    @Test("CRLF line ends are read like LF")
    func crlf() {
        let stderr = "Error: \(notReady4)\r\ncontext deadline exceeded\r\n"
        #expect(
            classifier.classify(stderr: stderr)
                == .readinessTimeout(
                    detail: "Still not ready: Deployment default/f1-engine (InProgress: Available: 0/1)."
                )
        )
    }

    @Test("several unready resources are listed, at most three by name")
    func severalResources() {
        let lines = (1...5).map {
            "resource Deployment/prod/m\($0)-engine not ready. status: InProgress, message: Available: 0/2"
        }
        let stderr = "Error: UPGRADE FAILED: " + lines.joined(separator: "\n") + "\ncontext deadline exceeded\n"
        guard case .readinessTimeout(let detail) = classifier.classify(stderr: stderr) else {
            Issue.record("not a readiness timeout")
            return
        }
        #expect(detail.hasPrefix("Still not ready: Deployment prod/m1-engine (InProgress: Available: 0/2); "))
        #expect(detail.hasSuffix("Deployment prod/m3-engine (InProgress: Available: 0/2) and 2 more."))
    }

    @Test("a failed resource wins over the timeout that follows it")
    func failedResourceWins() {
        let stderr = """
            Error: UPGRADE FAILED: resource Deployment/default/a-engine not ready. status: InProgress, message: Available: 0/1
            resource Deployment/default/b-engine not ready. status: Failed, message: Progress deadline exceeded
            context deadline exceeded
            """
        #expect(
            classifier.classify(stderr: stderr)
                == .rolloutFailed(detail: "Deployment default/b-engine: Progress deadline exceeded")
        )
    }

    @Test("details are cut to the limit")
    func detailsAreShort() {
        let long = "Error: " + String(repeating: "x ", count: 400)
        guard case .unclassified(let detail) = classifier.classify(stderr: long) else {
            Issue.record("expected unclassified")
            return
        }
        #expect(detail.count == 300)
        #expect(detail.hasSuffix("…"))
    }
}

@Suite("Keeping secrets out of failure details")
struct SecretRedactionTests {
    let classifier = HelmErrorClassifier()

    @Test("a rejected value quoted by the API server is removed")
    func invalidValue() {
        let stderr = """
            Error: UPGRADE FAILED: cannot patch "m-engine" with kind Deployment: Deployment.apps "m-engine" is invalid: spec.template.spec.containers[0].env[0].value: Invalid value: "s3cr3t-v@lue with spaces": must be no more than 63 characters
            """
        let failure = classifier.classify(stderr: stderr)
        #expect(
            failure
                == .chartError(
                    detail:
                        "cannot patch \"m-engine\" with kind Deployment: Deployment.apps \"m-engine\" is invalid: spec.template.spec.containers[0].env[0].value: Invalid value: \"<redacted>\": must be no more than 63 characters"
                )
        )
    }

    @Test("values under sensitive keys or env names are removed wherever they appear")
    func sensitiveValues() {
        let values = JSONValue.object([
            "engine": .object([
                "env": .array([
                    .object(["name": .string("HF_TOKEN"), "value": .string("plain-looking-secret")]),
                    .object(["name": .string("LOG_LEVEL"), "value": .string("debug-level")]),
                ]),
                "apiKey": .string("opensesame"),
            ])
        ])
        let stderr = "Error: something echoed plain-looking-secret and opensesame and debug-level\n"
        let failure = classifier.classify(stderr: stderr, values: values)
        #expect(failure == .unclassified(detail: "something echoed <redacted> and <redacted> and debug-level"))
    }

    @Test("token shapes, credentials in URLs and key=value secrets are removed")
    func patterns() {
        let redactor = SecretRedactor()
        #expect(
            redactor.redact("Get \"https://bob:hunter2@registry.example.com/v2/\": 401")
                == "Get \"https://<redacted>@registry.example.com/v2/\": 401"
        )
        #expect(
            redactor.redact("hf_AbCdEfGhIjKlMnOpQrStUv and sk-proj-abcdefgh1234 ok")
                == "<redacted> and <redacted> ok"
        )
        #expect(redactor.redact("Authorization: Bearer abc.def.ghi") == "Authorization: <redacted>")
        #expect(redactor.redact("bearer abc.def.ghi") == "bearer <redacted>")
        #expect(redactor.redact("password=pa55word token: \"xyz\"") == "password=<redacted> token: \"<redacted>\"")
        #expect(redactor.redact("key ZXhhbXBsZS1zZWNyZXQta2V5LWZvci10ZXN0aW5nLW9ubHk9 end") == "key <redacted> end")
        // Names of resources and plain prose stay readable.
        let prose = "resource Deployment/default/llama-3-1-8b-instruct-production-engine not ready"
        #expect(redactor.redact(prose) == prose)
    }

    @Test("slog lines before the error, which repeat values in another form, never reach the detail")
    func slogLinesAreNotUsed() {
        let stderr = """
            level=WARN msg="upgrade failed" values="map[token:abc]"
            Error: UPGRADE FAILED: context canceled
            """
        #expect(classifier.classify(stderr: stderr) == .cancelled)
    }
}
