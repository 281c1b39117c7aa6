import InferOpsCore
import Testing

@testable import InferOpsHelm

@Suite("Building helm's argv")
struct HelmCommandTests {
    let target = ReleaseTarget(release: "llama-staging", namespace: "models", kubeContext: "gpu-east")

    func request(_ target: ReleaseTarget? = nil) -> ReleaseUpgrade {
        ReleaseUpgrade(
            target: target ?? self.target,
            chart: "deploy/charts/vllm-engine",
            chartVersion: "0.3.1",
            valuesFiles: ["env/staging.yaml", "models/llama.yaml"],
            values: .object([
                "engine": .object([
                    "env": .array([.object(["name": .string("HF_TOKEN"), "value": .string("hf_sekrit")])])
                ])
            ]),
            timeout: .seconds(90)
        )
    }

    @Test("upgrade --install, Helm 3")
    func upgradeV3() {
        let command = HelmCommand(version: .v3, kubeconfig: "/etc/inferops/kubeconfig")
        #expect(
            command.upgrade(request(), valuesFile: "/run/inferops/values-1.json") == [
                "upgrade", "--install",
                "--kubeconfig=/etc/inferops/kubeconfig", "--kube-context=gpu-east", "--namespace=models",
                "--create-namespace", "--version=0.3.1",
                "--values=env/staging.yaml", "--values=models/llama.yaml", "--values=/run/inferops/values-1.json",
                "--wait", "--timeout=90s", "--output=json",
                "--", "llama-staging", "deploy/charts/vllm-engine",
            ]
        )
    }

    @Test("upgrade --install, Helm 4: the same, with colour off; bare --wait means the watcher")
    func upgradeV4() {
        let command = HelmCommand(version: .v4)
        var plain = request(ReleaseTarget(release: "llama-staging", namespace: "models"))
        plain.chartVersion = nil
        plain.valuesFiles = []
        plain.createNamespace = false
        #expect(
            command.upgrade(plain, valuesFile: "/tmp/v.json") == [
                "upgrade", "--install", "--color=never", "--namespace=models",
                "--values=/tmp/v.json", "--wait", "--timeout=90s", "--output=json",
                "--", "llama-staging", "deploy/charts/vllm-engine",
            ]
        )
    }

    @Test("template renders offline: no cluster flags", arguments: HelmVersion.allCases)
    func template(_ version: HelmVersion) {
        let argv = HelmCommand(version: version, kubeconfig: "/k").template(request(), valuesFile: "/tmp/v.json")
        let colour = version == .v4 ? ["--color=never"] : []
        #expect(
            argv == ["template"] + colour + [
                "--namespace=models", "--version=0.3.1",
                "--values=env/staging.yaml", "--values=models/llama.yaml", "--values=/tmp/v.json",
                "--", "llama-staging", "deploy/charts/vllm-engine",
            ]
        )
    }

    @Test("rollback, status, history, uninstall", arguments: HelmVersion.allCases)
    func otherCommands(_ version: HelmVersion) {
        let command = HelmCommand(version: version)
        let cluster = (version == .v4 ? ["--color=never"] : []) + ["--kube-context=gpu-east", "--namespace=models"]
        #expect(
            command.rollback(target, to: 3, timeout: .seconds(300))
                == ["rollback"] + cluster + ["--wait", "--timeout=300s", "--", "llama-staging", "3"]
        )
        #expect(
            command.rollback(target, to: nil, timeout: .seconds(300))
                == ["rollback"] + cluster + ["--wait", "--timeout=300s", "--", "llama-staging"]
        )
        #expect(command.status(target) == ["status"] + cluster + ["--output=json", "--", "llama-staging"])
        #expect(
            command.history(target) == ["history"] + cluster + ["--max=256", "--output=json", "--", "llama-staging"]
        )
        #expect(
            command.uninstall(target, timeout: .seconds(60))
                == ["uninstall"] + cluster + ["--wait", "--timeout=60s", "--", "llama-staging"]
        )
    }

    @Test("version query needs no cluster")
    func versionQuery() {
        #expect(HelmCommand.versionQuery == ["version", "--template={{.Version}}"])
    }

    @Test(
        "timeouts are whole seconds, rounded up, at least one",
        arguments: [
            (Duration.seconds(90), "--timeout=90s"), (.milliseconds(1500), "--timeout=2s"), (.zero, "--timeout=1s"),
            (.milliseconds(1), "--timeout=1s"), (.seconds(-5), "--timeout=1s"), (.seconds(600), "--timeout=600s"),
        ]
    )
    func timeouts(_ timeout: Duration, _ flag: String) {
        #expect(HelmCommand.timeoutFlag(timeout) == flag)
    }

    @Test("values never reach argv, and there is no --set of any kind", arguments: HelmVersion.allCases)
    func valuesStayOutOfArgv(_ version: HelmVersion) {
        let command = HelmCommand(version: version)
        for argv in [
            command.upgrade(request(), valuesFile: "/tmp/v.json"),
            command.template(request(), valuesFile: "/tmp/v.json"),
        ] {
            #expect(!argv.contains { $0.contains("hf_sekrit") || $0.contains("HF_TOKEN") })
            #expect(!argv.contains { $0.hasPrefix("--set") })
        }
    }

    @Test(
        "hostile names stay one positional element after --",
        arguments: ["llama; rm -rf /", "$(reboot)", "--kubeconfig=/etc/shadow", "-n", "a b\nc", "`id`"]
    )
    func injection(_ hostile: String) {
        for version in HelmVersion.allCases {
            let command = HelmCommand(version: version)
            let target = ReleaseTarget(release: hostile, namespace: "models")
            let upgrade = ReleaseUpgrade(target: target, chart: hostile, timeout: .seconds(5))
            let all = [
                command.upgrade(upgrade, valuesFile: "/tmp/v.json"),
                command.template(upgrade, valuesFile: "/tmp/v.json"),
                command.rollback(target, to: nil, timeout: .seconds(5)), command.status(target),
                command.history(target), command.uninstall(target, timeout: .seconds(5)),
            ]
            for argv in all {
                let separator = argv.firstIndex(of: "--")
                #expect(separator != nil)
                #expect(argv[(separator! + 1)...].first == hostile)
                #expect(!argv[..<separator!].contains(hostile))
            }
        }
    }

    @Test("a hostile namespace or context stays inside its own --flag=value element")
    func hostileFlagValues() {
        let target = ReleaseTarget(release: "r", namespace: "-n kube-system", kubeContext: "--kubeconfig=/x")
        let argv = HelmCommand(version: .v3).status(target)
        #expect(
            argv == [
                "status", "--kube-context=--kubeconfig=/x", "--namespace=-n kube-system", "--output=json", "--", "r",
            ]
        )
    }

    @Test(
        "version strings from --template and --short",
        arguments: [
            ("v3.19.0", HelmVersion.v3), ("v4.1.4+g05fa379", .v4), ("3.17.1\n", .v3), ("v4.3.1", .v4),
        ]
    )
    func versions(_ text: String, _ expected: HelmVersion) {
        #expect(HelmVersion(versionString: text) == expected)
    }

    @Test("unknown versions are refused", arguments: ["v2.17.0", "v5.0.0", "", "garbage"])
    func unknownVersions(_ text: String) {
        #expect(HelmVersion(versionString: text) == nil)
    }
}
