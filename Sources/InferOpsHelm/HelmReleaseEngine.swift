import Foundation
import InferOpsCore
import Synchronization

/// The `ReleaseEngine` that runs the real `helm` binary, Helm 3 or Helm 4.
///
/// Every call is one helm process started with an argument vector (`HelmCommand`), never a shell,
/// so no chat text can become a shell command. Helm's exit code is 1 for every failure, so failures
/// are classified from stderr by `HelmErrorClassifier`; successes are read from `--output=json`.
///
/// Helm runs in an environment built from an allow-list (`processEnvironment`), never the daemon's
/// whole one: helm reads settings such as `HELM_NAMESPACE`, `HELM_KUBECONTEXT`, `HELM_KUBEAPISERVER`
/// and `HELM_KUBETOKEN` from its environment, and the daemon's environment also holds the chat
/// tokens, which helm and its plugins have no business seeing.
public final class HelmReleaseEngine: ReleaseEngine {
    /// The variables helm gets from the daemon's environment: where programs are, and the home
    /// folder that `~/.kube/config` and kubeconfig `exec` credential plugins are found from.
    public static let inheritedVariables = ["PATH", "HOME"]
    /// Also passed when no kubeconfig is configured, so helm finds the cluster the way the daemon
    /// does (`$KUBECONFIG`, `~/.kube/config`, or the pod's service account).
    public static let kubeconfigDiscoveryVariables = [
        "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
    ]
    /// The most helm may print on stdout before a call fails: more than any release's JSON or
    /// rendered manifests (Kubernetes stores a release in at most 1 MiB, compressed), far less than
    /// would strain the daemon.
    public static let stdoutLimit = 16 << 20

    /// The helm executable.
    public let helmPath: String
    /// Passed as `--kubeconfig`; `nil` leaves the choice to helm (`$KUBECONFIG`, `~/.kube/config`).
    public let kubeconfig: String?
    /// Helm settings from the configuration, e.g. `HELM_DRIVER=configmap`; they win over the defaults
    /// of `processEnvironment`.
    public let environment: [String: String]
    /// Where the temporary values files go (created with mode 0700 when missing; an existing folder
    /// must be a private one of the daemon's user), and helm's cache, configuration and data folders.
    public let workingDirectory: String
    /// Where `status` and `history` read Helm's records without starting helm; `nil`: helm reads them.
    public let storage: HelmStorage?

    private let configuredVersion: HelmVersion?
    private let detectedVersion = Mutex<HelmVersion?>(nil)
    private let runner: ProcessRunner
    private let classifier = HelmErrorClassifier()
    /// How long a call that does not wait on the cluster (status, history, template, version) may
    /// take before helm is stopped.
    private let queryDeadline: Duration
    /// How long a helm left running by a stopped daemon may take to exit after SIGTERM.
    private let abandonedProcessGrace: Duration

    /// - Parameters:
    ///   - helmPath: the helm executable.
    ///   - kubeconfig: passed as `--kubeconfig` when set.
    ///   - environment: Helm settings for every run (`HELM_DRIVER`); see `processEnvironment`.
    ///   - workingDirectory: where the temporary values files are written (mode 0600, removed after
    ///     each call) and helm keeps its caches; a private folder such as a `PrivateWorkFolder`.
    ///   - version: the Helm major version; `nil` asks the binary once (`helm version`) and keeps
    ///     the answer.
    ///   - terminationGrace: how long helm may take to exit after SIGTERM (it records the revision
    ///     as failed meanwhile) before it gets SIGKILL.
    ///   - queryDeadline: the limit for calls that do not wait for resources.
    ///   - abandonedProcessGrace: how long `stopAbandonedProcesses` waits after SIGTERM before SIGKILL.
    ///   - storage: Helm's records in the Kubernetes API, for `status` and `history`. It must reach
    ///     the cluster helm reaches: the same kubeconfig and driver. A record it cannot read (a
    ///     refused list, a format it does not know) is left to helm.
    public init(
        helmPath: String,
        kubeconfig: String? = nil,
        environment: [String: String] = [:],
        workingDirectory: String,
        version: HelmVersion? = nil,
        terminationGrace: Duration = .seconds(30),
        queryDeadline: Duration = .seconds(120),
        abandonedProcessGrace: Duration = .seconds(5),
        storage: HelmStorage? = nil
    ) {
        self.storage = storage
        self.helmPath = helmPath
        self.kubeconfig = kubeconfig
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.configuredVersion = version
        self.runner = ProcessRunner(terminationGrace: terminationGrace, stdoutLimit: Self.stdoutLimit)
        self.queryDeadline = queryDeadline
        self.abandonedProcessGrace = abandonedProcessGrace
    }

    /// The Helm major version: the configured one, or the binary's own answer, asked once.
    ///
    /// Call it at start-up to fail early on a missing or unsupported binary.
    /// - Throws: `ReleaseFailure.unclassified` when helm cannot be run or is neither 3 nor 4.
    public func version() async throws -> HelmVersion {
        if let configuredVersion { return configuredVersion }
        if let known = detectedVersion.withLock({ $0 }) { return known }
        let output = try await run(HelmCommand.versionQuery, deadline: queryDeadline)
        let text = String(decoding: output.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard output.succeeded, let version = HelmVersion(versionString: text) else {
            let shown =
                output.succeeded
                ? "version \(text.prefix(40))"
                : classifier.detail(
                    HelmErrorClassifier.errorText(in: output.stderrText),
                    SecretRedactor()
                )
            throw ReleaseFailure.unclassified(detail: "\(helmPath) is not a supported helm (3 or 4): \(shown)")
        }
        detectedVersion.withLock { $0 = version }
        return version
    }

    public func upgrade(_ request: ReleaseUpgrade) async throws -> ReleaseStatus {
        let command = try await command()
        let output = try await ValuesFile.with(request.values, in: workingDirectory) { valuesFile in
            try await run(command.upgrade(request, valuesFile: valuesFile), deadline: waitDeadline(request.timeout))
        }
        if output.succeeded { return try parse { try HelmOutput.release(from: output.stdout, command: "upgrade") } }
        let failure = classify(output, values: request.values)
        // Helm says the same thing whether another helm really is running or a killed one left the
        // release pending. The daemon runs one operation per release at a time, so a pending state
        // seen from here is a stuck one, and it has its own recovery.
        if failure == .operationInProgress, let current = try? await status(request.target), current.state.isPending {
            throw ReleaseFailure.stuckPending(current.state)
        }
        throw failure
    }

    public func render(_ request: ReleaseUpgrade) async throws -> String {
        let command = try await command()
        let output = try await ValuesFile.with(request.values, in: workingDirectory) { valuesFile in
            try await run(command.template(request, valuesFile: valuesFile), deadline: queryDeadline)
        }
        guard output.succeeded else { throw classify(output, values: request.values) }
        return String(decoding: output.stdout, as: UTF8.self)
    }

    public func rollback(_ target: ReleaseTarget, to revision: Int?, timeout: Duration, wait: Bool) async throws -> ReleaseStatus {
        let command = try await command()
        let output = try await run(
            command.rollback(target, to: revision, timeout: timeout, wait: wait),
            deadline: waitDeadline(timeout)
        )
        guard output.succeeded else { throw classify(output) }
        // `rollback` has no `--output`; the new revision is read back.
        guard let status = try await status(target) else { throw ReleaseFailure.releaseNotFound }
        return status
    }

    public func status(_ target: ReleaseTarget) async throws -> ReleaseStatus? {
        if let stored = try await fromStorage({ storage throws(HelmStorage.ReadFailure) in
            try await storage.status(target)
        }) {
            return stored
        }
        let command = try await command()
        let output = try await run(command.status(target), deadline: queryDeadline)
        guard output.succeeded else {
            let failure = classify(output)
            if failure == .releaseNotFound { return nil }
            throw failure
        }
        var status = try parse { try HelmOutput.release(from: output.stdout, command: "status") }
        // `status --output=json` has no chart; the newest history row names it, and a report
        // without the chart version cannot say what is deployed.
        if status.chart == nil, let row = try await history(target, max: 1).last, row.revision == status.revision {
            status.chart = row.chart.isEmpty ? nil : row.chart
            status.appVersion = row.appVersion.isEmpty ? nil : row.appVersion
        }
        return status
    }

    public func history(_ target: ReleaseTarget) async throws -> [ReleaseRevision] {
        try await history(target, max: 256)
    }

    public func uninstall(_ target: ReleaseTarget, timeout: Duration) async throws {
        let command = try await command()
        let output = try await run(command.uninstall(target, timeout: timeout), deadline: waitDeadline(timeout))
        guard output.succeeded else { throw classify(output) }
    }

    /// Stops the helm processes a killed daemon left running on `target`: found in `/proc` by the
    /// argument vector this engine gives helm (this binary, the release, its namespace, the same
    /// kubeconfig and context), except
    /// those this process started. SIGTERM first, so helm marks its revision failed instead of
    /// leaving it pending; SIGKILL after `abandonedProcessGrace`.
    public func stopAbandonedProcesses(for target: ReleaseTarget) async -> Int {
        await AbandonedHelmProcesses(helmPath: helmPath, release: target.release, namespace: target.namespace,
                                     kubeconfig: kubeconfig, kubeContext: target.kubeContext)
            .stop(grace: abandonedProcessGrace)
    }

    // MARK: - Running helm

    private func history(_ target: ReleaseTarget, max: Int) async throws -> [ReleaseRevision] {
        if let stored = try await fromStorage({ storage throws(HelmStorage.ReadFailure) in
            try await storage.history(target, max: max)
        }) {
            return stored
        }
        let command = try await command()
        let output = try await run(command.history(target, max: max), deadline: queryDeadline)
        guard output.succeeded else {
            let failure = classify(output)
            if failure == .releaseNotFound { return [] }
            throw failure
        }
        return try parse { try HelmOutput.history(from: output.stdout) }
    }

    /// What `read` finds in Helm's records, or `nil` when helm should read them instead (no storage,
    /// or records it cannot read: helm reads them its own way and says what is wrong with them).
    /// - Throws: `ReleaseFailure.clusterUnreachable` when the API server cannot be reached.
    private func fromStorage<Answer>(
        _ read: (HelmStorage) async throws(HelmStorage.ReadFailure) -> Answer
    ) async throws -> Answer? {
        guard let storage else { return nil }
        do {
            return try await read(storage)
        } catch .unreachable(let error) {
            throw ReleaseFailure.clusterUnreachable(detail: error.message)
        } catch {
            return nil
        }
    }

    private func command() async throws -> HelmCommand {
        HelmCommand(version: try await version(), kubeconfig: kubeconfig)
    }

    /// A waiting call may take helm's own timeout plus the time to apply and record the release;
    /// past that, helm itself is stuck and is stopped.
    private func waitDeadline(_ timeout: Duration) -> Duration {
        .seconds(HelmCommand.timeoutSeconds(timeout)) + queryDeadline
    }

    /// helm's whole environment: the allow-listed variables of the daemon's own, helm's cache,
    /// configuration and data folders inside the work folder (so helm never reads a user's
    /// repositories, registry logins or plugins), then the configured settings. Nothing else the
    /// daemon's environment holds reaches helm.
    /// - Parameters:
    ///   - inherited: the daemon's environment.
    ///   - settings: the configured Helm settings (`HELM_DRIVER`); they win.
    ///   - kubeconfig: the configured kubeconfig; without one, the variables that locate a cluster are
    ///     passed as well.
    public static func processEnvironment(
        inherited: [String: String],
        settings: [String: String],
        kubeconfig: String?,
        workingDirectory: String
    ) -> [String: String] {
        var result: [String: String] = [:]
        let names = inheritedVariables + (kubeconfig == nil ? kubeconfigDiscoveryVariables : [])
        for name in names { result[name] = inherited[name] }
        let helmHome = (workingDirectory as NSString).appendingPathComponent("helm")
        result["HELM_CACHE_HOME"] = helmHome + "/cache"
        result["HELM_CONFIG_HOME"] = helmHome + "/config"
        result["HELM_DATA_HOME"] = helmHome + "/data"
        return result.merging(settings) { $1 }
    }

    /// Runs helm and turns the ways a run can end without an exit code of its own into failures.
    private func run(_ arguments: [String], deadline: Duration) async throws -> ProcessOutput {
        let processEnvironment = Self.processEnvironment(
            inherited: ProcessInfo.processInfo.environment,
            settings: environment,
            kubeconfig: kubeconfig,
            workingDirectory: workingDirectory
        )
        let output: ProcessOutput
        do {
            output = try await runner.run(
                executable: helmPath,
                arguments: arguments,
                environment: processEnvironment,
                deadline: deadline
            )
        } catch ProcessRunError.cancelled {
            throw ReleaseFailure.cancelled
        } catch ProcessRunError.launchFailed(let reason) {
            throw ReleaseFailure.unclassified(detail: "could not start helm: \(reason)")
        } catch ProcessRunError.deadlineExceeded {
            let limit = HelmCommand.timeoutSeconds(deadline)
            throw ReleaseFailure.unclassified(
                detail: "helm \(arguments.first ?? "") did not finish within \(limit)s and was stopped"
            )
        }
        // Only the tail is left: not a release, nor manifests anyone could use.
        if output.stdoutDropped > 0 {
            let limit = Self.stdoutLimit >> 20
            throw ReleaseFailure.unclassified(
                detail: "helm \(arguments.first ?? "") printed more than \(limit) MiB; its output was not read"
            )
        }
        return output
    }

    private func classify(_ output: ProcessOutput, values: JSONValue = .object([:])) -> ReleaseFailure {
        if output.signalled, output.stderr.isEmpty {
            return .unclassified(detail: "helm was killed by signal \(output.status)")
        }
        return classifier.classify(stderr: output.stderrText, values: values)
    }

    private func parse<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as HelmOutput.MalformedOutput {
            throw ReleaseFailure.unclassified(detail: error.description)
        }
    }
}
