import InferOpsCore

/// Builds helm's argument vectors (without the executable) as pure functions, so the exact argv of
/// every call can be unit-tested for both Helm versions without running anything.
///
/// Three rules keep user-controlled text from changing a command's meaning, since argv goes straight
/// to `execve` (never through a shell):
/// - valued flags are written as one element, `--flag=value`, so a value that starts with `-` can
///   never be read as another flag;
/// - positional arguments (release, chart, revision) come after `--`, so a release named
///   `--kubeconfig=/x` is a (rejected) release name, not a flag;
/// - Helm values are never put on the command line (`--set`): the caller passes the path of a
///   values file, because argv is visible to every user of the machine through `/proc`.
public struct HelmCommand: Sendable, Hashable {
    public var version: HelmVersion
    /// `--kubeconfig`; `nil` lets helm use `$KUBECONFIG` or `~/.kube/config`.
    public var kubeconfig: String?

    public init(version: HelmVersion, kubeconfig: String? = nil) {
        self.version = version
        self.kubeconfig = kubeconfig
    }

    /// `helm version --template={{.Version}}`: prints just `v3.19.0`, in both versions, and needs
    /// no cluster.
    public static let versionQuery: [String] = ["version", "--template={{.Version}}"]

    /// `upgrade --install … --wait --timeout=Ns --output=json -- RELEASE CHART`.
    ///
    /// A bare `--wait` is the one spelling both versions accept: Helm 3 reads it as a boolean and
    /// Helm 4 as `--wait=watcher` (Helm 4's default, `hookOnly`, does not wait for resources at all,
    /// and Helm 3 rejects `--wait=watcher`). `--output=json` returns the release just written, so no
    /// second `status` call is needed after a success.
    /// - Parameters:
    ///   - valuesFile: the temporary file holding `request.values`; it comes after
    ///     `request.valuesFiles` so that the plan's values win.
    public func upgrade(_ request: ReleaseUpgrade, valuesFile: String) -> [String] {
        var argv = ["upgrade", "--install"]
        argv += cluster(request.target)
        if request.createNamespace { argv.append("--create-namespace") }
        argv += chartSource(request, valuesFile: valuesFile)
        argv += ["--wait", Self.timeoutFlag(request.timeout), "--output=json"]
        argv += ["--", request.target.release, request.chart]
        return argv
    }

    /// `template`: renders offline (no cluster flags), with the same chart, version and values as
    /// `upgrade`, so the rendered manifests are the ones an upgrade would apply.
    public func template(_ request: ReleaseUpgrade, valuesFile: String) -> [String] {
        var argv = ["template"] + globalFlags
        argv.append("--namespace=\(request.target.namespace)")
        argv += chartSource(request, valuesFile: valuesFile)
        argv += ["--", request.target.release, request.chart]
        return argv
    }

    /// `rollback … -- RELEASE [N]`; without a revision helm rolls back to the previous one, which
    /// is also the documented way out of `pending-upgrade`.
    public func rollback(_ target: ReleaseTarget, to revision: Int?, timeout: Duration, wait: Bool = true) -> [String] {
        var argv = ["rollback"] + cluster(target) + (wait ? ["--wait"] : []) + [Self.timeoutFlag(timeout), "--", target.release]
        if let revision { argv.append(String(revision)) }
        return argv
    }

    /// `status --output=json`. Helm exits 0 for failed and pending releases as well, so the state is
    /// read from the JSON, never from the exit code.
    public func status(_ target: ReleaseTarget) -> [String] {
        ["status"] + cluster(target) + ["--output=json", "--", target.release]
    }

    /// `history --output=json`, capped at `max` revisions (helm's own default is 256).
    public func history(_ target: ReleaseTarget, max: Int = 256) -> [String] {
        ["history"] + cluster(target) + ["--max=\(max)", "--output=json", "--", target.release]
    }

    /// `uninstall --wait`: returns once the objects are gone, so a following install of the same
    /// name does not race their deletion.
    public func uninstall(_ target: ReleaseTarget, timeout: Duration) -> [String] {
        ["uninstall"] + cluster(target) + ["--wait", Self.timeoutFlag(timeout), "--", target.release]
    }

    /// `--timeout=Ns` in whole seconds, rounded up and at least 1 s: a budget is never shortened,
    /// and a zero timeout would make `--wait` fail at once.
    public static func timeoutFlag(_ timeout: Duration) -> String {
        "--timeout=\(timeoutSeconds(timeout))s"
    }

    static func timeoutSeconds(_ timeout: Duration) -> Int64 {
        let (seconds, attoseconds) = timeout.components
        let rounded = attoseconds > 0 ? seconds + 1 : seconds
        return max(1, rounded)
    }

    /// Flags every call carries. Helm 4 colours its output when it decides it may (`--color=auto`);
    /// turning that off keeps escape codes out of the stderr the classifier parses. Helm 3 has no
    /// such flag and would reject it.
    var globalFlags: [String] {
        switch version {
        case .v3: []
        case .v4: ["--color=never"]
        }
    }

    /// The flags that choose the cluster and the namespace, in a fixed order.
    func cluster(_ target: ReleaseTarget) -> [String] {
        var argv = globalFlags
        if let kubeconfig { argv.append("--kubeconfig=\(kubeconfig)") }
        if let context = target.kubeContext { argv.append("--kube-context=\(context)") }
        argv.append("--namespace=\(target.namespace)")
        return argv
    }

    /// `--version` and the values files, shared by `upgrade` and `template`.
    func chartSource(_ request: ReleaseUpgrade, valuesFile: String) -> [String] {
        var argv: [String] = []
        if let chartVersion = request.chartVersion { argv.append("--version=\(chartVersion)") }
        argv += request.valuesFiles.map { "--values=\($0)" }
        argv.append("--values=\(valuesFile)")
        return argv
    }
}
