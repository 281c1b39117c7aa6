"""The real helm binaries (Helm 3.19.0 and Helm 4.1.4) against the emulator, with the vllm-engine chart.

Every scenario runs once per helm version. The binaries come from scripts/install-tools.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import unittest

from tests.support import CHART, VALUES, Emulator, run, tool, wait_until

MODEL = ["--set", "model.id=meta-llama/Meta-Llama-3-8B-Instruct", "--set", "model.servedName=llama-3-8b",
         "--set", "labels.model=llama-3-8b"]
READY_FAST = ["--set", "podAnnotations.inferops\\.dev/simulate-ready-after-seconds=0.3"]
NEVER_READY = ["--set", "podAnnotations.inferops\\.dev/simulate-ready-after-seconds=never"]


def live(pods: list[dict]) -> list[dict]:
    """The pods not being deleted (a terminating pod stays until its kubelet has stopped it)."""
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


class HelmScenarios:
    HELM = ""
    MAJOR = 0

    emu: Emulator
    helm: str

    @classmethod
    def setUpClass(cls):
        cls.helm = tool(cls.HELM)
        cls.kubectl = tool("kubectl")
        cls.emu = Emulator(ready_after=0.3)
        home = os.path.join(cls.emu.dir, "helm-home")
        cls.env = {"HELM_CACHE_HOME": f"{home}/cache", "HELM_CONFIG_HOME": f"{home}/config",
                   "HELM_DATA_HOME": f"{home}/data"}

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    # ------------------------------------------------------------------------------------------

    def h(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run([self.helm, "--kubeconfig", self.emu.kubeconfig, "--kube-context", "emulator", *args],
                   timeout=timeout, env=self.env)

    def ok(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        r = self.h(*args, timeout=timeout)
        self.assertEqual(r.returncode, 0, f"helm {' '.join(args)} failed:\n{r.stderr}")
        return r

    def deploy_args(self, release: str, ns: str, *extra: str, timeout: str = "60s") -> list[str]:
        return ["upgrade", "--install", release, str(CHART), "-n", ns, "--create-namespace",
                "-f", str(VALUES / "staging.yaml"), *MODEL, *extra, "--wait", "--timeout", timeout]

    def status(self, release: str, ns: str) -> dict:
        return json.loads(self.ok("status", release, "-n", ns, "-o", "json").stdout)

    def history(self, release: str, ns: str) -> list[tuple[int, str, str]]:
        entries = json.loads(self.ok("history", release, "-n", ns, "-o", "json").stdout)
        return [(e["revision"], e["status"], e["description"]) for e in entries]

    def proxy_models(self, release: str, ns: str) -> tuple[int, object]:
        return self.emu.call("GET", f"/api/v1/namespaces/{ns}/services/{release}:8000/proxy/v1/models")

    def assert_engine_answers(self, release: str, ns: str) -> None:
        status, models = self.proxy_models(release, ns)
        self.assertEqual(status, 200, models)
        self.assertEqual(models["data"][0]["id"], "llama-3-8b")
        self.assertEqual(models["data"][0]["root"], "meta-llama/Meta-Llama-3-8B-Instruct")
        status, chat = self.emu.call("POST", f"/api/v1/namespaces/{ns}/services/{release}:8000/proxy/v1/chat/"
                                             "completions",
                                     {"model": "llama-3-8b", "messages": [{"role": "user", "content": "ping"}]})
        self.assertEqual(status, 200, chat)
        self.assertEqual(chat["choices"][0]["message"]["role"], "assistant")

    def assert_timeout_error(self, stderr: str, prefix: str) -> None:
        """The documented timeout text: Helm 3 one line, Helm 4 per-resource lines then the context error."""
        error = stderr[stderr.index("Error: "):].strip()
        self.assertTrue(error.startswith("Error: " + prefix), stderr)
        self.assertEqual(error.splitlines()[-1].split(": ")[-1], "context deadline exceeded", stderr)
        if self.MAJOR == 3:
            self.assertEqual(error, f"Error: {prefix}context deadline exceeded")
        else:
            self.assertIn(" not ready. status: InProgress, message: ", error)

    # ------------------------------------------------------------------------------------------

    def test_lint_with_each_values_file(self):
        for values in [None, "staging.yaml", "production.yaml", "sandbox.yaml"]:
            with self.subTest(values=values):
                args = ["lint", str(CHART)] + (["-f", str(VALUES / values)] if values else [])
                r = self.ok(*args)
                self.assertIn("1 chart(s) linted, 0 chart(s) failed", r.stdout)

    def test_install_upgrade_timeout_rollback(self):
        ns, rel = "staging", "llama-3-8b-staging"
        started = time.monotonic()
        self.ok(*self.deploy_args(rel, ns, *READY_FAST))
        self.assertLess(time.monotonic() - started, 30)
        # helm --wait returned: the engine answers through the service proxy at once.
        self.assert_engine_answers(rel, ns)
        st = self.status(rel, ns)
        self.assertEqual((st["version"], st["info"]["status"], st["namespace"]), (1, "deployed", ns))
        dep = self.emu.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{rel}")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertEqual((labels["inferops.dev/model"], labels["inferops.dev/environment"]), ("llama-3-8b", "staging"))
        # Release records are written as protobuf Secrets (the wire format the emulator must decode).
        self.assertTrue(any(e["method"] == "POST" and e["path"] == f"/api/v1/namespaces/{ns}/secrets"
                            and e["contentType"] == "application/vnd.kubernetes.protobuf"
                            and e["userAgent"].startswith(f"Helm/{self.MAJOR}.") for e in self.emu.log_entries()))
        # kubectl sees the pod.
        r = run([self.kubectl, "--kubeconfig", self.emu.kubeconfig, "get", "pods", "-n", ns])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rf"{rel}-[a-z0-9]+-[a-z0-9]+\s+1/1\s+Running")

        # An upgrade whose pods never become ready times out with the documented error.
        r = self.h(*self.deploy_args(rel, ns, *NEVER_READY, timeout="3s"))
        self.assertEqual(r.returncode, 1)
        self.assert_timeout_error(r.stderr, "UPGRADE FAILED: ")
        st = self.status(rel, ns)
        self.assertEqual((st["version"], st["info"]["status"]), (2, "failed"))
        self.assertTrue(st["info"]["description"].startswith(f'Upgrade "{rel}" failed: '))
        self.assertTrue(st["info"]["description"].endswith("context deadline exceeded"))
        # The old replica keeps serving during the failed rollout.
        self.assertEqual(self.proxy_models(rel, ns)[0], 200)

        self.ok("rollback", rel, "-n", ns, "--wait", "--timeout", "60s")
        self.assertEqual([(rev, status) for rev, status, _ in self.history(rel, ns)],
                         [(1, "superseded"), (2, "failed"), (3, "deployed")])
        self.assertEqual(self.history(rel, ns)[-1][2], "Rollback to 1")
        st = self.status(rel, ns)
        self.assertEqual((st["version"], st["info"]["status"]), (3, "deployed"))
        if self.MAJOR == 4:
            pods = st["info"]["resources"]["v1/Pod(related)"]
            self.assertTrue(pods, st["info"]["resources"])
        self.assert_engine_answers(rel, ns)
        # The rolled-back Deployment has no never-ready pods left; the one it had is terminating (or
        # gone: how long it takes depends on the chart's preStop hook).
        wait_until(lambda: len(live(self.emu.pods(ns))) == 1, message="one live pod after the rollback")

    def test_new_release_that_never_becomes_ready(self):
        ns, rel = "never", "never-staging"
        r = self.h(*self.deploy_args(rel, ns, *NEVER_READY, timeout="2s"))
        self.assertEqual(r.returncode, 1)
        self.assert_timeout_error(r.stderr, "")
        if self.MAJOR == 4:
            self.assertIn(f"resource Deployment/{ns}/{rel} not ready. status: InProgress, message: Available: 0/1",
                          r.stderr)
        st = self.status(rel, ns)
        self.assertEqual(st["info"]["status"], "failed")
        self.assertTrue(st["info"]["description"].startswith(f'Release "{rel}" failed: '))
        self.assertEqual(self.proxy_models(rel, ns)[0], 503, "no ready endpoints behind the service")

    def test_simulated_failure(self):
        ns, rel = "broken", "broken-staging"
        started = time.monotonic()
        # Helm 4 stops as soon as kstatus sees ProgressDeadlineExceeded; Helm 3 waits out its timeout.
        r = self.h(*self.deploy_args(rel, ns, "--set", "podAnnotations.inferops\\.dev/simulate-failure=true",
                                     timeout="20s" if self.MAJOR == 4 else "2s"))
        self.assertEqual(r.returncode, 1)
        if self.MAJOR == 4:
            self.assertIn(f"Error: resource Deployment/{ns}/{rel} not ready. status: Failed, message: Progress "
                          "deadline exceeded", r.stderr)
            self.assertLess(time.monotonic() - started, 15)
        else:
            self.assertIn("Error: context deadline exceeded", r.stderr)

    def test_kill9_leaves_pending_upgrade_and_rollback_recovers(self):
        ns, rel = "crash", "crash-staging"
        self.ok(*self.deploy_args(rel, ns, *READY_FAST))
        proc = subprocess.Popen(
            [self.helm, "--kubeconfig", self.emu.kubeconfig, "--kube-context", "emulator",
             *self.deploy_args(rel, ns, *NEVER_READY, timeout="60s")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, **self.env))
        try:
            # helm is waiting once its revision-2 record says pending-upgrade.
            wait_until(lambda: self.emu.get(f"/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm,"
                                            f"name%3D{rel},status%3Dpending-upgrade")["items"],
                       timeout=30, message="the pending-upgrade release record")
            wait_until(lambda: len(self.emu.pods(ns)) == 2, message="the new (never ready) pod")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        st = self.status(rel, ns)
        self.assertEqual((st["version"], st["info"]["status"]), (2, "pending-upgrade"))
        r = self.h(*self.deploy_args(rel, ns, *READY_FAST))
        self.assertEqual(r.returncode, 1)
        self.assertIn("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress", r.stderr)
        self.ok("rollback", rel, "-n", ns, "--wait", "--timeout", "60s")
        self.assertEqual([(rev, status) for rev, status, _ in self.history(rel, ns)],
                         [(1, "superseded"), (2, "pending-upgrade"), (3, "deployed")])
        self.assert_engine_answers(rel, ns)
        # The next deploy goes through again.
        self.ok(*self.deploy_args(rel, ns, *READY_FAST, "--set", "replicaCount=2"))
        self.assertEqual(self.status(rel, ns)["version"], 4)
        listed = json.loads(self.ok("list", "-n", ns, "-o", "json").stdout)
        self.assertEqual([(x["name"], x["revision"], x["status"]) for x in listed], [(rel, "4", "deployed")])
        self.ok("uninstall", rel, "-n", ns, "--wait")
        wait_until(lambda: not live(self.emu.pods(ns)) and not self.emu.get(f"/api/v1/namespaces/{ns}/secrets")[
            "items"], message="nothing left after uninstall but terminating pods")


class Helm3Tests(HelmScenarios, unittest.TestCase):
    HELM = "helm3"
    MAJOR = 3


class Helm4Tests(HelmScenarios, unittest.TestCase):
    HELM = "helm4"
    MAJOR = 4



if __name__ == "__main__":
    unittest.main()
