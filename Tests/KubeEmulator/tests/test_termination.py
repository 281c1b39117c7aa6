"""Pods stop as a kubelet stops them: a DELETE (an API call, a ReplicaSet scaling down, the garbage
collector after `helm uninstall`) marks the pod, the kubelet runs preStop, sends SIGTERM, SIGKILLs
when the grace period runs out, and only then removes the pod object and frees its GPUs. Clients
see what they would see through a real cluster: the pod leaves the Endpoints at once, keeps Ready
until its readiness probe fails, and its engine aborts or drains what is in flight."""

from __future__ import annotations

import http.client
import json
import threading
import time
import unittest

from tests.support import Emulator, Watch, deployment, run, service, tool, wait_until

NS = "default"
FAST = {"inferops.dev/simulate-ttft-ms": "50", "inferops.dev/simulate-ms-per-token": "20"}


def container(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


def condition(pod: dict, ctype: str) -> str | None:
    return next((c["status"] for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == ctype),
                None)


def terminating(t: str, pod: dict) -> bool:
    return t == "MODIFIED" and bool(pod["metadata"].get("deletionTimestamp"))


class Completion:
    """A completion sent straight to a pod's engine on a thread of its own, as a router sends it."""

    def __init__(self, ip: str, model: str, tokens: int, stream: bool = False, timeout: float = 20) -> None:
        self.ip, self.model, self.tokens, self.stream, self.timeout = ip, model, tokens, stream, timeout
        self.status: int | None = None
        self.body: dict | None = None
        self.chunks: list[str] = []
        self.error: Exception | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.ip, 8000, timeout=self.timeout)
        try:
            conn.request("POST", "/v1/completions", body=json.dumps(
                {"model": self.model, "prompt": "p", "max_tokens": self.tokens, "stream": self.stream}),
                headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.status = resp.status
            if not self.stream:
                self.body = json.loads(resp.read())
                return
            while line := resp.readline():
                if line.startswith(b"data: "):
                    self.chunks.append(line[6:].strip().decode())
        except Exception as e:  # noqa: BLE001 - what the client saw is the point
            self.error = e
        finally:
            conn.close()
            self.done.set()

    def wait(self, timeout: float = 20) -> "Completion":
        if not self.done.wait(timeout):
            raise AssertionError(f"the completion did not end within {timeout}s")
        return self

    @property
    def completed_stream(self) -> bool:
        return bool(self.chunks) and self.chunks[-1] == "[DONE]"


def engine_get(ip: str, path: str) -> int:
    conn = http.client.HTTPConnection(ip, 8000, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Cluster:
    """What each test does with its emulator."""

    emu: Emulator

    def create(self, dep: dict, svc: bool = False) -> None:
        self.emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", dep)
        if svc:
            self.emu.ok("POST", f"/api/v1/namespaces/{NS}/services", service(dep["metadata"]["name"]))

    def ready_pods(self, app: str, n: int = 1) -> list[dict]:
        return wait_until(lambda: (lambda ps: ps if len(ps) == n else None)(
            [p for p in self.emu.pods(NS, f"app%3D{app}")
             if condition(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")]),
            message=f"{n} ready pod(s) of {app}")

    def pod(self, name: str) -> dict | None:
        status, pod = self.emu.call("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
        return pod if status == 200 else None

    def delete(self, name: str, **options) -> dict:
        return self.emu.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}", options or None)

    def gone(self, name: str) -> dict:
        """The kubelet's record of a removed pod (/_emu/pods)."""
        return wait_until(lambda: next((g for g in self.emu.get("/_emu/pods")["gone"] if g["name"] == name), None),
                          message=f"{name} in the removed pods")

    def emu_pod(self, name: str) -> dict | None:
        return next((p for p in self.emu.get("/_emu/pods")["pods"] if p["name"] == name), None)

    def events(self, name: str, reason: str) -> list[dict]:
        return self.emu.get(f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D{name},"
                            f"reason%3D{reason}")["items"]

    def addresses(self, name: str) -> tuple[list[str], list[str]]:
        status, ep = self.emu.call("GET", f"/api/v1/namespaces/{NS}/endpoints/{name}")
        subset = ((ep or {}).get("subsets") or [{}])[0] if status == 200 else {}
        return ([a["targetRef"]["name"] for a in subset.get("addresses") or []],
                [a["targetRef"]["name"] for a in subset.get("notReadyAddresses") or []])


class GracefulDeletionTests(Cluster, unittest.TestCase):
    """GPU-less pods on one emulator: capacity does not matter here."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(ready_after=0.2)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def watch(self, app: str) -> Watch:
        w = Watch(self.emu, f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")
        self.addCleanup(w.close)
        return w

    def test_an_idle_pod_without_prestop_is_marked_then_gone_well_under_a_second(self):
        self.create(deployment("quick", gpus=0))
        [pod] = self.ready_pods("quick")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        watch = self.watch("quick")
        started = time.monotonic()
        out = self.delete(name)
        self.assertEqual(out["metadata"]["deletionGracePeriodSeconds"], 30, "the pod's terminationGracePeriodSeconds")
        self.assertTrue(out["metadata"]["deletionTimestamp"])
        t_gone, _, _ = watch.wait_for(name, lambda t, p: t == "DELETED", message="the pod DELETED")
        self.assertLess(t_gone - started, 1.0)
        kinds = [(t, p["status"]["phase"], condition(p, "Ready")) for _, t, p in watch.of(name)]
        self.assertEqual(kinds[0], ("MODIFIED", "Running", "True"), "marked first, still Running and Ready")
        self.assertEqual(kinds[-2:], [("MODIFIED", "Succeeded", "False"), ("DELETED", "Succeeded", "False")])
        last = watch.of(name)[-1][2]["status"]["containerStatuses"][0]["state"]["terminated"]
        self.assertEqual((last["exitCode"], last["reason"]), (0, "Completed"))
        self.assertEqual([e["message"] for e in self.events(name, "Killing")], ["Stopping container vllm"])
        with self.assertRaises(ConnectionRefusedError):
            engine_get(ip, "/health")
        self.ready_pods("quick")  # the ReplicaSet replaced it
        record = self.gone(name)["termination"]
        self.assertEqual((record["preStop"], record["sigkillAt"]), (None, None))

    def test_grace_period_zero_removes_the_pod_at_once(self):
        self.create(deployment("force", gpus=0))
        [pod] = self.ready_pods("force")
        name = pod["metadata"]["name"]
        watch = self.watch("force")
        self.emu.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}?gracePeriodSeconds=0")
        self.assertIsNone(self.pod(name))
        watch.wait_for(name, lambda t, p: t == "DELETED", message="the pod DELETED")
        self.assertEqual([t for _, t, _ in watch.of(name)], ["DELETED"])

    def test_an_aborting_engine_cuts_the_stream_in_flight(self):
        # vLLM's default (no --shutdown-timeout): SIGTERM aborts what runs.
        self.create(deployment("abort", gpus=0, annotations=FAST))
        [pod] = self.ready_pods("abort")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        stream = Completion(ip, "abort", 200, stream=True)  # about 4 s
        whole = Completion(ip, "abort", 200)
        wait_until(lambda: len(stream.chunks) >= 2, message="the stream under way")
        self.assertEqual(self.emu_pod(name)["engine"]["inFlight"], 2)
        self.delete(name)
        stream.wait(), whole.wait()
        self.assertFalse(stream.completed_stream, "cut before data: [DONE]")
        self.assertLess(len(stream.chunks), 200)
        self.assertIsInstance(whole.error, http.client.RemoteDisconnected, "closed without a response")
        engine = self.gone(name)["engine"]
        self.assertEqual((engine["exitCode"], engine["aborted"], engine["served"]), (0, 2, 0))

    def test_a_draining_engine_finishes_its_requests_while_readiness_fails_on_the_probe_period(self):
        dep = deployment("drain", gpus=0, annotations=FAST,
                         args=["--model", "org/drain", "--served-model-name", "drain", "--shutdown-timeout", "10"])
        container(dep)["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1,
                                            "failureThreshold": 1}
        self.create(dep)
        [pod] = self.ready_pods("drain")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        whole = Completion(ip, "drain", 120)  # about 2.4 s
        wait_until(lambda: (self.emu_pod(name)["engine"] or {}).get("inFlight") == 1, message="the request running")
        watch = self.watch("drain")
        self.delete(name)
        wait_until(lambda: self.emu_pod(name)["engine"]["state"] == "draining", message="the engine draining")
        self.assertEqual(engine_get(ip, "/health"), 503)
        late = Completion(ip, "drain", 5).wait()
        self.assertEqual(late.status, 503, "a new request is refused while draining")
        # Ready stays True until the first probe after the drain began (period 1 s, threshold 1).
        t_unready, _, _ = watch.wait_for(name, lambda t, p: condition(p, "Ready") == "False",
                                         message="Ready False by the readiness probe")
        self.assertEqual(watch.of(name)[0][2]["status"]["phase"], "Running")
        self.assertEqual(condition(watch.of(name)[0][2], "Ready"), "True")
        self.assertFalse(whole.done.is_set(), "Ready turned False while the request still ran")
        self.assertEqual(whole.wait().status, 200)
        self.assertEqual(whole.body["usage"]["completion_tokens"], 120)
        watch.wait_for(name, lambda t, p: t == "DELETED", message="the pod gone once idle")
        ev = self.events(name, "Unhealthy")
        self.assertEqual([e["message"] for e in ev], ["Readiness probe failed: HTTP probe failed with statuscode: 503"])
        engine = self.gone(name)["engine"]
        self.assertEqual((engine["exitCode"], engine["served"], engine["aborted"], engine["rejected"]), (0, 1, 0, 1))

    def test_sigkill_when_the_grace_period_runs_out(self):
        dep = deployment("stuck", gpus=0, annotations={"inferops.dev/simulate-hang": "true"},
                         args=["--model", "org/stuck", "--served-model-name", "stuck", "--shutdown-timeout", "60"])
        self.create(dep)
        [pod] = self.ready_pods("stuck")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        hung = Completion(ip, "stuck", 5)
        wait_until(lambda: self.emu_pod(name)["engine"]["inFlight"] == 1, message="the hung request in flight")
        watch = self.watch("stuck")
        started = time.monotonic()
        out = self.delete(name, gracePeriodSeconds=1)
        self.assertEqual(out["metadata"]["deletionGracePeriodSeconds"], 1)
        t_gone, _, _ = watch.wait_for(name, lambda t, p: t == "DELETED", message="the pod DELETED")
        # SIGTERM at once, SIGKILL at the later of the grace period's end and 2 s after SIGTERM.
        self.assertGreaterEqual(t_gone - started, 1.9)
        self.assertLess(t_gone - started, 4)
        final = watch.of(name)[-1][2]["status"]
        state = final["containerStatuses"][0]["state"]["terminated"]
        self.assertEqual((final["phase"], state["exitCode"], state["reason"]), ("Failed", 137, "Error"))
        self.assertIsInstance(hung.wait().error, http.client.RemoteDisconnected)
        record = self.gone(name)
        self.assertAlmostEqual(record["termination"]["sigkillAt"] - record["termination"]["sigtermAt"], 2, delta=0.5)
        self.assertEqual((record["engine"]["exitCode"], record["engine"]["aborted"]), (137, 1))

    def test_an_http_prestop_hook_reaches_the_engine(self):
        dep = deployment("hook", gpus=0)
        container(dep)["lifecycle"] = {"preStop": {"httpGet": {"path": "/pre-stop", "port": "http"}}}
        self.create(dep)
        [pod] = self.ready_pods("hook")
        name = pod["metadata"]["name"]
        self.delete(name)
        record = self.gone(name)
        self.assertEqual((record["termination"]["preStop"], record["termination"]["preStopFailed"]),
                         ("httpGet", False), "a 404 does not fail an HTTP hook, as with the kubelet")
        self.assertEqual(record["engine"]["requests"].get("other"), 1)

    def test_scale_down_and_deleting_the_deployment_stop_pods_gracefully(self):
        dep = deployment("scale", replicas=2, gpus=0)
        container(dep)["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 1"]}}}
        self.create(dep, svc=True)
        self.ready_pods("scale", 2)
        wait_until(lambda: len(self.addresses("scale")[0]) == 2, message="two addresses")
        self.emu.ok("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/scale", {"spec": {"replicas": 1}},
                    content_type="application/merge-patch+json")
        victim = wait_until(lambda: next((p for p in self.emu.pods(NS, "app%3Dscale")
                                          if p["metadata"].get("deletionTimestamp")), None),
                            message="a pod terminating")["metadata"]["name"]
        # The terminating pod no longer counts nor is routed, though it still runs its preStop.
        status = wait_until(lambda: (lambda st: st if st.get("replicas") == 1 else None)(
            self.emu.get(f"/apis/apps/v1/namespaces/{NS}/deployments/scale")["status"]),
            message="the Deployment counting one replica")
        self.assertEqual(status.get("availableReplicas"), 1)
        wait_until(lambda: self.addresses("scale") == ([p for p in self.live("scale")], []),
                   message="the terminating pod out of the Endpoints")
        self.assertIsNotNone(self.pod(victim), "still there during its preStop")
        self.assertEqual(self.emu_pod(victim)["termination"]["stage"], "preStop")
        # helm uninstall: the Deployment goes, the garbage collector deletes the rest gracefully.
        self.emu.ok("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/scale",
                    {"propagationPolicy": "Background"})
        pods = self.emu.pods(NS, "app%3Dscale")
        self.assertTrue(pods and all(p["metadata"].get("deletionTimestamp") for p in pods), pods)
        wait_until(lambda: not self.emu.pods(NS, "app%3Dscale"), message="every pod gone after its preStop")
        for record in (self.gone(victim), self.gone(pods[-1]["metadata"]["name"])):
            term = record["termination"]
            self.assertGreaterEqual(term["preStopEnded"] - term["since"], 0.95, "the preStop sleep ran")

    def live(self, app: str) -> list[str]:
        return [p["metadata"]["name"] for p in self.emu.pods(NS, f"app%3D{app}")
                if not p["metadata"].get("deletionTimestamp")]

    def test_kubectl_delete_waits_for_the_kubelet(self):
        kubectl = tool("kubectl")
        dep = deployment("kc-term", gpus=0)
        container(dep)["lifecycle"] = {"preStop": {"sleep": {"seconds": 1}}}
        self.create(dep)
        [pod] = self.ready_pods("kc-term")
        name = pod["metadata"]["name"]
        started = time.monotonic()
        r = run([kubectl, "--kubeconfig", self.emu.kubeconfig, "delete", "pod", name])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(time.monotonic() - started, 1.0, "kubectl waited out the preStop")
        self.assertIsNone(self.pod(name))
        [pod] = self.ready_pods("kc-term")
        r = run([kubectl, "--kubeconfig", self.emu.kubeconfig, "delete", "pod", pod["metadata"]["name"], "--force",
                 "--grace-period=0"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(self.pod(pod["metadata"]["name"]))


class GpuHoldTests(Cluster, unittest.TestCase):
    """One node with 4 GPUs: a replacement must wait for the GPUs of the pod it replaces."""

    def setUp(self):
        self.emu = Emulator("--gpu-nodes", "1", "--cpu-nodes", "0", ready_after=0.2)
        self.addCleanup(self.emu.stop)

    def test_a_terminating_pod_serves_through_its_prestop_out_of_the_endpoints_and_holds_its_gpus(self):
        dep = deployment("hold", gpus=4)
        container(dep)["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 1"]}}}
        self.create(dep, svc=True)
        [pod] = self.ready_pods("hold")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        wait_until(lambda: self.addresses("hold")[0] == [name], message="the pod in the Endpoints")
        started = time.monotonic()
        self.delete(name)
        wait_until(lambda: self.addresses("hold") == ([], []), message="the terminating pod out of the Endpoints")
        old = self.pod(name)
        self.assertEqual((old["status"]["phase"], condition(old, "Ready")), ("Running", "True"))
        # Its engine still serves during the preStop, for whoever has not heard yet.
        self.assertEqual(engine_get(ip, "/health"), 200)
        self.assertEqual(Completion(ip, "hold", 4).wait().status, 200)
        # The replacement exists at once but waits for the GPUs the terminating pod still holds.
        replacement = wait_until(lambda: next((p for p in self.emu.pods(NS, "app%3Dhold")
                                               if p["metadata"]["name"] != name
                                               and condition(p, "PodScheduled") == "False"), None),
                                 message="the replacement unschedulable")
        self.assertIn("Insufficient nvidia.com/gpu", replacement["status"]["conditions"][-1]["message"])
        self.assertEqual([n["gpuRequested"] for n in self.emu.get("/_emu/nodes")["nodes"]], [4])
        wait_until(lambda: self.pod(name) is None, message="the old pod gone after its preStop")
        self.assertGreaterEqual(time.monotonic() - started, 1.0)
        bound = wait_until(lambda: (lambda p: p if p and p["spec"].get("nodeName") else None)(
            self.pod(replacement["metadata"]["name"])), message="the replacement scheduled once the GPUs are free")
        self.assertEqual(bound["spec"]["nodeName"], "gpu-node-1")


class FailureStateTests(Cluster, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator("--crash-backoff", "0.2", ready_after=0.2)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def container_status(self, app: str) -> dict | None:
        pods = self.emu.pods(NS, f"app%3D{app}")
        return (pods[0]["status"].get("containerStatuses") or [None])[0] if pods else None

    def test_an_oom_crash_loop_shows_oomkilled_and_a_growing_restart_count(self):
        self.create(deployment("oom", gpus=0, annotations={"inferops.dev/simulate-failure": "oom"}))
        self.create(deployment("crash", gpus=0, annotations={"inferops.dev/simulate-failure": "true"}))
        first = wait_until(lambda: self.container_status("oom"), message="the oom pod's status")
        self.assertEqual(first["restartCount"], 1)
        self.assertEqual(first["state"]["waiting"]["reason"], "CrashLoopBackOff")
        self.assertTrue(first["state"]["waiting"]["message"].startswith("back-off 200ms restarting failed "
                                                                        "container=vllm pod=oom-"))
        self.assertEqual({k: first["lastState"]["terminated"][k] for k in ("reason", "exitCode")},
                         {"reason": "OOMKilled", "exitCode": 137})
        later = wait_until(lambda: (lambda c: c if c["restartCount"] >= 3 and "waiting" in c["state"] else None)(
            self.container_status("oom")), message="restarts counting up")
        self.assertEqual(later["state"]["waiting"]["message"].split()[1], "800ms", "back-offs double")
        crash = wait_until(lambda: self.container_status("crash"), message="the crashing pod's status")
        self.assertEqual({k: crash["lastState"]["terminated"][k] for k in ("reason", "exitCode")},
                         {"reason": "Error", "exitCode": 1})
        dep = self.emu.get(f"/apis/apps/v1/namespaces/{NS}/deployments/oom")
        progressing = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
        self.assertEqual(progressing["reason"], "ProgressDeadlineExceeded")

    def test_readiness_fails_after_the_pod_was_ready(self):
        dep = deployment("unready", gpus=0, annotations={"inferops.dev/simulate-unready-after-seconds": "0.5"})
        container(dep)["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1,
                                            "failureThreshold": 2}
        self.create(dep, svc=True)
        [pod] = self.ready_pods("unready")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        ready_since = time.monotonic()
        wait_until(lambda: self.addresses("unready") == ([name], []), message="the ready pod in the Endpoints")
        wait_until(lambda: engine_get(ip, "/health") == 503, message="/health failing")
        # The first failed probe is 1 s after ready; the second, 2 s after, turns Ready False.
        wait_until(lambda: self.addresses("unready") == ([], [name]), message="the pod moved to notReadyAddresses")
        self.assertGreaterEqual(time.monotonic() - ready_since, 1.5)
        self.assertEqual(condition(self.pod(name), "Ready"), "False")
        self.assertEqual([e["message"] for e in self.events(name, "Unhealthy")],
                         ["Readiness probe failed: HTTP probe failed with statuscode: 503"])
        self.assertEqual(Completion(ip, "unready", 3).wait().status, 200, "only /health fails")
        dep = self.emu.get(f"/apis/apps/v1/namespaces/{NS}/deployments/unready")
        self.assertNotIn("readyReplicas", dep["status"])

    def test_a_hung_engine_is_ready_but_never_answers_a_completion(self):
        self.create(deployment("hang", gpus=0, annotations={"inferops.dev/simulate-hang": "true"}))
        [pod] = self.ready_pods("hang")
        ip = pod["status"]["podIP"]
        self.assertEqual(engine_get(ip, "/health"), 200)
        req = Completion(ip, "hang", 3, timeout=0.5).wait()
        self.assertIsInstance(req.error, TimeoutError)
        self.assertEqual(self.emu_pod(pod["metadata"]["name"])["engine"]["inFlight"], 1)


if __name__ == "__main__":
    unittest.main()
