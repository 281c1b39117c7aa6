"""The emulator as a process: API behaviour, scheduling, controllers, fake engines and the proxy."""

from __future__ import annotations

import http.client
import json
import unittest

from tests.support import Emulator, deployment, service, tool, run, wait_until

from kubeemu import protobuf

NS = "default"
GPU_MSG = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient nvidia.com/gpu."


def pod_condition(pod: dict, ctype: str) -> dict | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def is_ready(pod: dict) -> bool:
    c = pod_condition(pod, "Ready")
    return bool(c and c["status"] == "True")


class ApiTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def test_version_discovery_and_openapi(self):
        e = self.emu
        self.assertEqual(e.get("/version")["major"], "1")
        self.assertIn("v1", e.get("/api")["versions"])
        groups = {g["name"] for g in e.get("/apis")["groups"]}
        self.assertTrue({"apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io"} <= groups)
        core = {r["name"] for r in e.get("/api/v1")["resources"]}
        self.assertTrue({"pods", "pods/status", "services/proxy", "secrets", "nodes", "events"} <= core)
        root = e.get("/openapi/v3")["paths"]
        doc = e.get(root["apis/apps/v1"]["serverRelativeURL"])
        patch_op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
        self.assertEqual(patch_op["x-kubernetes-group-version-kind"],
                         {"group": "apps", "version": "v1", "kind": "Deployment"})
        self.assertIn("fieldValidation", [p["name"] for p in patch_op["parameters"]])
        status, body = e.call("GET", "/openapi/v2")
        self.assertEqual(status, 404)

    def test_protobuf_secret_body_and_status_errors(self):
        e = self.emu
        secret = {"kind": "Secret", "apiVersion": "v1",
                  "metadata": {"name": "sh.helm.release.v1.pb.v1", "labels": {"owner": "helm", "name": "pb"}},
                  "data": {"release": "SDRzSQ=="}, "type": "helm.sh/release.v1"}
        status, created = e.call("POST", f"/api/v1/namespaces/{NS}/secrets", protobuf.encode_object(secret),
                                 content_type="application/vnd.kubernetes.protobuf")
        self.assertEqual(status, 201, created)
        got = e.get(f"/api/v1/namespaces/{NS}/secrets?labelSelector=owner%3Dhelm,name%3Dpb")["items"]
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0]["data"], {"release": "SDRzSQ=="})
        self.assertEqual(got[0]["type"], "helm.sh/release.v1")
        status, err = e.call("POST", "/api/v1/namespaces/nope/configmaps", {"metadata": {"name": "x"}})
        self.assertEqual((status, err["kind"], err["reason"], err["message"]),
                         (404, "Status", "NotFound", 'namespaces "nope" not found'))
        status, err = e.call("GET", "/apis/apps/v1/namespaces/default/deployments/none")
        self.assertEqual((status, err["message"]), (404, 'deployments.apps "none" not found'))
        status, err = e.call("POST", f"/api/v1/namespaces/{NS}/secrets", protobuf.encode_object(secret),
                             content_type="application/vnd.kubernetes.protobuf")
        self.assertEqual((status, err["reason"]), (409, "AlreadyExists"))

    def test_watch_list_with_initial_events_bookmark(self):
        e = self.emu
        e.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "w1", "labels": {"w": "yes"}}})
        e.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "other"}})
        conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=20)
        conn.request("GET", f"/api/v1/namespaces/{NS}/configmaps?allowWatchBookmarks=true&labelSelector=w%3Dyes"
                            "&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=10&watch=true")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)

        def event():
            return json.loads(resp.readline())

        first = event()
        self.assertEqual((first["type"], first["object"]["metadata"]["name"]), ("ADDED", "w1"))
        bookmark = event()
        self.assertEqual(bookmark["type"], "BOOKMARK")
        self.assertEqual(bookmark["object"]["metadata"]["annotations"], {"k8s.io/initial-events-end": "true"})
        rv = bookmark["object"]["metadata"]["resourceVersion"]
        e.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "w2", "labels": {"w": "yes"}}})
        e.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "ignored"}})
        e.ok("PATCH", f"/api/v1/namespaces/{NS}/configmaps/w1", {"metadata": {"labels": {"w": "no"}}},
             content_type="application/merge-patch+json")
        self.assertEqual([(ev["type"], ev["object"]["metadata"]["name"]) for ev in (event(), event())],
                         [("ADDED", "w2"), ("DELETED", "w1")])  # w1 left the selector
        conn.close()
        # Resume from the bookmark's resourceVersion: the same events again, then the timeout ends the stream.
        conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=20)
        conn.request("GET", f"/api/v1/namespaces/{NS}/configmaps?watch=true&labelSelector=w%3Dyes"
                            f"&resourceVersion={rv}&timeoutSeconds=1")
        resp = conn.getresponse()
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        self.assertEqual([(ev["type"], ev["object"]["metadata"]["name"]) for ev in lines],
                         [("ADDED", "w2"), ("DELETED", "w1")])
        conn.close()

    def test_list_pagination_and_table(self):
        e = self.emu
        for i in range(5):
            e.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": f"page-{i}",
                                                                              "labels": {"page": "1"}}})
        first = e.get(f"/api/v1/namespaces/{NS}/configmaps?labelSelector=page%3D1&limit=3")
        self.assertEqual(len(first["items"]), 3)
        rest = e.get(f"/api/v1/namespaces/{NS}/configmaps?labelSelector=page%3D1&limit=3&continue="
                     f"{first['metadata']['continue']}")
        self.assertEqual([o["metadata"]["name"] for o in first["items"] + rest["items"]],
                         [f"page-{i}" for i in range(5)])
        status, _, raw = e.request("GET", "/api/v1/nodes", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
        table = json.loads(raw)
        self.assertEqual(table["kind"], "Table")
        self.assertEqual([r["cells"][0] for r in table["rows"]], ["cpu-node-1", "gpu-node-1", "gpu-node-2"])

    def test_watch_as_table_for_kubectl_get_w(self):
        e = self.emu
        status, _, raw = e.request("GET", "/api/v1/nodes?watch=true&timeoutSeconds=1", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
        self.assertEqual(status, 200)
        events = [json.loads(line) for line in raw.splitlines() if line.strip()]
        self.assertEqual(len(events), 3)
        self.assertEqual({ev["object"]["kind"] for ev in events}, {"Table"})
        self.assertEqual(events[0]["object"]["rows"][0]["cells"][:2], ["cpu-node-1", "Ready"])

    def test_nodes_are_a_gpu_pool(self):
        nodes = {n["metadata"]["name"]: n for n in self.emu.get("/api/v1/nodes")["items"]}
        gpu = nodes["gpu-node-1"]
        self.assertEqual(gpu["status"]["capacity"]["nvidia.com/gpu"], "4")
        self.assertEqual(gpu["status"]["allocatable"]["nvidia.com/gpu"], "4")
        self.assertEqual(gpu["metadata"]["labels"]["nvidia.com/gpu.present"], "true")
        self.assertEqual(gpu["spec"]["taints"], [{"key": "nvidia.com/gpu", "value": "present",
                                                  "effect": "NoSchedule"}])
        self.assertNotIn("nvidia.com/gpu", nodes["cpu-node-1"]["status"]["allocatable"])
        ready = next(c for c in gpu["status"]["conditions"] if c["type"] == "Ready")
        self.assertEqual(ready["status"], "True")


class SchedulingTests(unittest.TestCase):
    """Capacity is cluster-wide, so each test uses its own emulator."""

    def setUp(self):
        self.emu = Emulator(ready_after=0.2)
        self.addCleanup(self.emu.stop)

    def create(self, dep: dict) -> dict:
        return self.emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", dep)

    def placed(self, app: str) -> tuple[list[dict], list[dict]]:
        pods = self.emu.pods(NS, f"app%3D{app}")
        return [p for p in pods if p["spec"].get("nodeName")], [p for p in pods if not p["spec"].get("nodeName")]

    def test_gpu_pods_fit_then_pending_with_the_scheduler_message_and_an_event(self):
        self.create(deployment("big", replicas=3, gpus=4))
        bound, pending = wait_until(lambda: (lambda b, p: (b, p) if len(b) == 2 and len(p) == 1 and
                                             pod_condition(p[0], "PodScheduled") else None)(*self.placed("big")),
                                    message="two pods bound and one pending")
        self.assertEqual(sorted(p["spec"]["nodeName"] for p in bound), ["gpu-node-1", "gpu-node-2"])
        cond = pod_condition(pending[0], "PodScheduled")
        self.assertEqual((cond["status"], cond["reason"]), ("False", "Unschedulable"))
        self.assertTrue(cond["message"].startswith(GPU_MSG), cond["message"])
        self.assertEqual(pending[0]["status"]["phase"], "Pending")
        name = pending[0]["metadata"]["name"]
        events = wait_until(lambda: self.emu.get(
            f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D{name},reason%3DFailedScheduling"
        )["items"], message="a FailedScheduling event")
        self.assertEqual(events[0]["type"], "Warning")
        self.assertEqual(events[0]["involvedObject"]["kind"], "Pod")
        self.assertTrue(events[0]["message"].startswith(GPU_MSG))
        # Capacity arrives: the pending pod is scheduled on the new node.
        self.emu.ok("POST", "/_emu/nodes", {"add": {"name": "gpu-node-3", "gpus": 4}})
        pod = wait_until(lambda: next((p for p in self.emu.pods(NS, "app%3Dbig")
                                       if p["metadata"]["name"] == name and p["spec"].get("nodeName")), None),
                         message="the pending pod scheduled on gpu-node-3")
        self.assertEqual(pod["spec"]["nodeName"], "gpu-node-3")
        dep = wait_until(lambda: (lambda d: d if d["status"].get("readyReplicas") == 3 else None)(
            self.emu.get(f"/apis/apps/v1/namespaces/{NS}/deployments/big")), message="3 ready replicas")
        self.assertEqual(dep["status"]["availableReplicas"], 3)

    def test_freed_gpus_reschedule_pending_pods(self):
        self.create(deployment("hog", replicas=2, gpus=4))
        wait_until(lambda: len(self.placed("hog")[0]) == 2, message="hog bound")
        self.create(deployment("waiter", gpus=2))
        wait_until(lambda: (lambda p: p and pod_condition(p[0], "PodScheduled"))(self.placed("waiter")[1]),
                   message="waiter pending")
        # Less capacity on one node does not help; deleting the hog does.
        self.emu.ok("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/hog",
                    {"propagationPolicy": "Background"})
        bound = wait_until(lambda: self.placed("waiter")[0], message="waiter scheduled after hog deleted")
        self.assertIn(bound[0]["spec"]["nodeName"], ("gpu-node-1", "gpu-node-2"))
        self.assertEqual(self.placed("hog"), ([], []), "cascading delete removed hog's pods")

    def test_taints_selectors_and_node_changes(self):
        self.create(deployment("notol", toleration=False))
        pending = wait_until(lambda: (lambda p: p if p and pod_condition(p[0], "PodScheduled") else None)(
            self.placed("notol")[1]), message="notol pending")
        msg = pod_condition(pending[0], "PodScheduled")["message"]
        self.assertTrue(msg.startswith("0/3 nodes are available: 1 node(s) didn't match Pod's node "
                                       "affinity/selector, 2 node(s) had untolerated taint "
                                       "{nvidia.com/gpu: present}."), msg)
        # A CPU-only pod runs on the CPU node.
        self.create(deployment("cpu", gpus=0, toleration=False, node_selector=False))
        bound = wait_until(lambda: self.placed("cpu")[0], message="cpu pod bound")
        self.assertEqual(bound[0]["spec"]["nodeName"], "cpu-node-1")
        # Shrinking allocatable GPUs makes a too-large pod unschedulable; removing a node evicts.
        self.emu.ok("POST", "/_emu/nodes", {"set": {"name": "gpu-node-1", "gpus": 1}})
        self.emu.ok("POST", "/_emu/nodes", {"remove": "gpu-node-2"})
        self.create(deployment("two", gpus=2))
        pending = wait_until(lambda: (lambda p: p if p and pod_condition(p[0], "PodScheduled") else None)(
            self.placed("two")[1]), message="two pending")
        self.assertIn("Insufficient nvidia.com/gpu", pod_condition(pending[0], "PodScheduled")["message"])
        nodes = {n["name"]: n for n in self.emu.get("/_emu/nodes")["nodes"]}
        self.assertEqual(set(nodes), {"cpu-node-1", "gpu-node-1"})
        self.assertEqual(nodes["gpu-node-1"]["gpuAllocatable"], 1)


class RolloutTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(ready_after=0.2)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def dep(self, name):
        return self.emu.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")

    def rs_list(self, name):
        return self.emu.get(f"/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3D{name}")["items"]

    def complete(self, name):
        d = self.dep(name)
        st = d["status"]
        conds = {c["type"]: c for c in st.get("conditions", [])}
        want = d["spec"]["replicas"]
        ok = (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("replicas") == want
              and st.get("updatedReplicas") == want and st.get("readyReplicas") == want
              and st.get("availableReplicas") == want and conds.get("Available", {}).get("status") == "True"
              and conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable")
        return d if ok else None

    def test_rollout_and_rollback_reuse_replicasets(self):
        e = self.emu
        e.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("roll"))
        d1 = wait_until(lambda: self.complete("roll"), message="first rollout complete")
        [rs1] = self.rs_list("roll")
        h1 = rs1["metadata"]["labels"]["pod-template-hash"]
        self.assertEqual(rs1["metadata"]["name"], f"roll-{h1}")
        self.assertEqual(rs1["metadata"]["ownerReferences"][0]["uid"], d1["metadata"]["uid"])
        self.assertEqual(rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1")
        pod = e.pods(NS, "app%3Droll")[0]
        self.assertEqual(pod["metadata"]["labels"]["pod-template-hash"], h1)
        self.assertEqual(pod["metadata"]["ownerReferences"][0]["name"], rs1["metadata"]["name"])
        # A new template: a second ReplicaSet takes over, the first is scaled to zero.
        e.ok("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/roll",
             {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}},
             content_type="application/strategic-merge-patch+json")
        wait_until(lambda: self.complete("roll") and len(self.emu.pods(NS, "app%3Droll")) == 1,
                   message="second rollout complete")
        by_rev = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in self.rs_list("roll")}
        self.assertEqual(set(by_rev), {"1", "2"})
        self.assertEqual(by_rev["1"]["spec"]["replicas"], 0)
        self.assertEqual(by_rev["2"]["spec"]["replicas"], 1)
        # Back to the first template: the first ReplicaSet is reused and becomes revision 3.
        e.ok("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/roll",
             [{"op": "remove", "path": "/spec/template/metadata/annotations"}],
             content_type="application/json-patch+json")
        wait_until(lambda: self.complete("roll") and len(self.emu.pods(NS, "app%3Droll")) == 1,
                   message="rollback complete")
        rss = {r["metadata"]["name"]: r for r in self.rs_list("roll")}
        self.assertEqual(len(rss), 2)
        self.assertEqual(rss[f"roll-{h1}"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3")
        self.assertEqual(rss[f"roll-{h1}"]["spec"]["replicas"], 1)
        self.assertEqual(self.dep("roll")["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3")

    def test_never_ready_and_failing_templates(self):
        e = self.emu
        e.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
             deployment("never", annotations={"inferops.dev/simulate-ready-after-seconds": "never"}))
        e.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
             deployment("broken", annotations={"inferops.dev/simulate-failure": "true"}))
        failed = wait_until(lambda: (lambda d: d if any(c["reason"] == "ProgressDeadlineExceeded" for c in
                                                        d["status"].get("conditions", [])) else None)(
            self.dep("broken")), message="ProgressDeadlineExceeded")
        prog = next(c for c in failed["status"]["conditions"] if c["type"] == "Progressing")
        self.assertEqual(prog["status"], "False")
        pod = wait_until(lambda: (lambda p: p[0] if p and p[0]["status"].get("containerStatuses") else None)(
            e.pods(NS, "app%3Dbroken")), message="broken pod status")
        self.assertEqual(pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff")
        never = wait_until(lambda: (lambda d: d if d["status"].get("replicas") == 1 else None)(self.dep("never")),
                           message="never has a pod")
        self.assertNotIn("readyReplicas", never["status"])
        pod = e.pods(NS, "app%3Dnever")[0]
        self.assertEqual(pod["status"]["phase"], "Running")
        self.assertFalse(is_ready(pod))
        pod_name = pod["metadata"]["name"]
        ev = wait_until(lambda: e.get(f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D"
                                      f"{pod_name},reason%3DUnhealthy")["items"], message="an Unhealthy event")
        self.assertEqual(ev[0]["message"], "Readiness probe failed: HTTP probe failed with statuscode: 503")
        # Forcing readiness through the control API completes the rollout.
        e.ok("POST", f"/_emu/pods/{NS}/{pod['metadata']['name']}/ready")
        wait_until(lambda: self.complete("never"), message="never completes after forced readiness")


class EngineAndProxyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(ready_after=0.2)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def engine_call(self, engine: dict, method: str, path: str, body=None) -> tuple[int, object]:
        conn = http.client.HTTPConnection(engine["host"], engine["port"], timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw.decode()
        finally:
            conn.close()

    def engine_of(self, app: str) -> dict:
        return wait_until(lambda: next((x for x in self.emu.engines() if x["pod"].startswith(app + "-")), None),
                          message=f"an engine for {app}")

    def test_engine_loads_then_serves_openai_api(self):
        e = self.emu
        e.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(
            "eng", annotations={"inferops.dev/simulate-ready-after-seconds": "never"},
            args=["--model=meta-llama/Meta-Llama-3-8B-Instruct", "--served-model-name", "llama-3-8b",
                  "--max-model-len=8192", "--port", "8000"]))
        eng = self.engine_of("eng")
        self.assertEqual(self.engine_call(eng, "GET", "/health")[0], 503)
        self.assertEqual(self.engine_call(eng, "GET", "/v1/models")[0], 503)
        e.ok("POST", f"/_emu/pods/{NS}/{eng['pod']}/ready")
        self.assertEqual(self.engine_call(eng, "GET", "/health")[0], 200)
        status, models = self.engine_call(eng, "GET", "/v1/models")
        self.assertEqual(status, 200)
        self.assertEqual(models["object"], "list")
        card = models["data"][0]
        self.assertEqual((card["id"], card["object"], card["owned_by"], card["root"], card["max_model_len"]),
                         ("llama-3-8b", "model", "vllm", "meta-llama/Meta-Llama-3-8B-Instruct", 8192))
        status, comp = self.engine_call(eng, "POST", "/v1/completions",
                                        {"model": "llama-3-8b", "prompt": "Hello", "max_tokens": 5})
        self.assertEqual(status, 200)
        self.assertEqual((comp["object"], comp["model"]), ("text_completion", "llama-3-8b"))
        self.assertEqual(comp["usage"]["completion_tokens"], 5)
        self.assertEqual(comp["usage"]["total_tokens"], comp["usage"]["prompt_tokens"] + 5)
        again = self.engine_call(eng, "POST", "/v1/completions",
                                 {"model": "llama-3-8b", "prompt": "Hello", "max_tokens": 5})[1]
        self.assertEqual(comp["choices"][0]["text"], again["choices"][0]["text"], "deterministic text")
        status, chat = self.engine_call(eng, "POST", "/v1/chat/completions",
                                        {"model": "llama-3-8b", "messages": [{"role": "user", "content": "Hi"}]})
        self.assertEqual(status, 200)
        self.assertEqual(chat["object"], "chat.completion")
        self.assertEqual(chat["choices"][0]["message"]["role"], "assistant")
        self.assertTrue(chat["choices"][0]["message"]["content"])
        self.assertIn("usage", chat)
        status, err = self.engine_call(eng, "POST", "/v1/chat/completions",
                                       {"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}]})
        self.assertEqual(status, 404)
        self.assertEqual(err["error"]["message"], "The model `gpt-4` does not exist.")
        self.assertEqual((err["error"]["type"], err["error"]["code"]), ("NotFoundError", 404))
        counts = next(x for x in e.engines() if x["pod"] == eng["pod"])["requests"]
        self.assertEqual((counts["completions"], counts["chat_completions"], counts["health"]), (2, 2, 2))
        e.ok("POST", "/_emu/reset-counters")
        self.assertEqual(next(x for x in e.engines() if x["pod"] == eng["pod"])["requests"], {})

    def test_readiness_follows_the_annotation_delay(self):
        self.emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(
            "delay", annotations={"inferops.dev/simulate-ready-after-seconds": "0.3"}))
        eng = self.engine_of("delay")
        wait_until(lambda: self.engine_call(eng, "GET", "/health")[0] == 200, message="health 200")
        pod = wait_until(lambda: (lambda p: p if is_ready(p) else None)(self.emu.pods(NS, "app%3Ddelay")[0]),
                         message="pod Ready")
        self.assertEqual(pod["metadata"]["annotations"]["kubeemu.inferops.dev/engine-url"], eng["url"])
        self.assertEqual(eng["url"], f"http://{pod['status']['podIP']}:8000")

    def test_streaming_completion(self):
        self.emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("stream"))
        eng = self.engine_of("stream")
        wait_until(lambda: self.engine_call(eng, "GET", "/health")[0] == 200, message="ready")
        conn = http.client.HTTPConnection(eng["host"], eng["port"], timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(
            {"model": "stream", "stream": True, "messages": [{"role": "user", "content": "x"}]}))
        resp = conn.getresponse()
        self.assertTrue(resp.getheader("Content-Type").startswith("text/event-stream"))
        data = [line[6:] for line in resp.read().decode().splitlines() if line.startswith("data: ")]
        conn.close()
        self.assertEqual(data[-1], "[DONE]")
        chunks = [json.loads(d) for d in data[:-1]]
        self.assertEqual(chunks[0]["object"], "chat.completion.chunk")
        self.assertTrue(chunks[-1]["choices"][0]["finish_reason"])

    def test_service_proxy_round_robin_and_errors(self):
        e = self.emu
        e.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("svc-model", replicas=2))
        e.ok("POST", f"/api/v1/namespaces/{NS}/services", service("svc-model"))
        wait_until(lambda: len([x for x in e.engines() if x["pod"].startswith("svc-model-") and x["podReady"]]) == 2,
                   message="two ready engines")
        e.ok("POST", "/_emu/reset-counters")
        base = f"/api/v1/namespaces/{NS}/services/svc-model:8000/proxy"
        for _ in range(4):
            status, models = e.call("GET", base + "/v1/models")
            self.assertEqual(status, 200)
            self.assertEqual(models["data"][0]["id"], "svc-model")
        counts = [x["requests"].get("models", 0) for x in e.engines() if x["pod"].startswith("svc-model-")]
        self.assertEqual(counts, [2, 2], "round-robin over the ready pods")
        status, comp = e.call("POST", base + "/v1/completions", {"model": "svc-model", "prompt": "p"})
        self.assertEqual((status, comp["object"]), (200, "text_completion"))
        status, err = e.call("POST", f"/api/v1/namespaces/{NS}/services/http:svc-model:http/proxy/v1/completions",
                             {"model": "nope", "prompt": "p"})
        self.assertEqual((status, err["error"]["type"]), (404, "NotFoundError"), "engine errors pass through")
        status, health = e.call("GET", f"/api/v1/namespaces/{NS}/services/svc-model/proxy/health")
        self.assertEqual(status, 200)
        # Endpoints list the ready pods.
        ep = wait_until(lambda: (lambda x: x if len((x.get("subsets") or [{}])[0].get("addresses", [])) == 2
                                 else None)(e.get(f"/api/v1/namespaces/{NS}/endpoints/svc-model")),
                        message="two ready addresses in the Endpoints")
        self.assertEqual(ep["subsets"][0]["ports"], [{"port": 8000, "protocol": "TCP", "name": "http"}])
        self.assertEqual(sorted(a["ip"] for a in ep["subsets"][0]["addresses"]),
                         sorted(p["status"]["podIP"] for p in e.pods(NS, "app%3Dsvc-model")))
        # Pod proxy.
        pod = e.pods(NS, "app%3Dsvc-model")[0]["metadata"]["name"]
        status, models = e.call("GET", f"/api/v1/namespaces/{NS}/pods/{pod}:8000/proxy/v1/models")
        self.assertEqual((status, models["data"][0]["id"]), (200, "svc-model"))
        # No ready endpoints -> 503 Status; unknown service -> 404.
        e.ok("POST", f"/api/v1/namespaces/{NS}/services", service("empty", {"app": "nothing"}))
        status, err = e.call("GET", f"/api/v1/namespaces/{NS}/services/empty:8000/proxy/v1/models")
        self.assertEqual((status, err["kind"], err["message"]),
                         (503, "Status", 'no endpoints available for service "empty"'))
        status, err = e.call("GET", f"/api/v1/namespaces/{NS}/services/ghost:8000/proxy/v1/models")
        self.assertEqual((status, err["message"]), (404, 'services "ghost" not found'))

    def test_each_pod_has_its_own_ip_with_the_engine_on_port_8000(self):
        e = self.emu
        # No GPUs: the tests of this class share one emulator's 8.
        e.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("podip", replicas=3, gpus=0))
        engines = wait_until(lambda: (lambda xs: xs if len(xs) == 3 and all(x["podReady"] for x in xs) else None)(
            [x for x in e.engines() if x["pod"].startswith("podip-")]), message="three ready engines")
        pods = {p["metadata"]["name"]: p for p in e.pods(NS, "app%3Dpodip")}
        ips = set()
        for eng in engines:
            pod = pods[eng["pod"]]
            ip = pod["status"]["podIP"]
            ips.add(ip)
            self.assertRegex(ip, r"^127\.(\d+)\.\d+\.\d+$")
            self.assertNotEqual(ip, "127.0.0.1")
            self.assertEqual(pod["status"]["podIPs"], [{"ip": ip}])
            self.assertEqual((eng["host"], eng["port"], eng["podIP"], eng["url"]), (ip, 8000, ip, f"http://{ip}:8000"))
            self.assertEqual(pod["metadata"]["annotations"]["kubeemu.inferops.dev/engine-url"], f"http://{ip}:8000")
            status, models = self.engine_call(eng, "GET", "/v1/models")
            self.assertEqual((status, models["data"][0]["id"]), (200, "podip"))
        self.assertEqual(len(ips), 3, "distinct pod IPs")
        self.assertEqual(len({ip.split(".")[1] for ip in ips}), 1, "one /16 per emulator")
        # A replaced pod gets a new address; the old one is not reused.
        victim = engines[0]["pod"]
        e.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/{victim}")
        fresh = wait_until(lambda: [p for p in e.pods(NS, "app%3Dpodip") if p["metadata"]["name"] not in pods
                                    and p.get("status", {}).get("podIP")], message="a replacement pod with an IP")
        self.assertNotIn(fresh[0]["status"]["podIP"], ips)

    def test_kubectl_get(self):
        kubectl = tool("kubectl")
        self.emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("kc"))
        wait_until(lambda: any(x["pod"].startswith("kc-") and x["podReady"] for x in self.emu.engines()),
                   message="kc ready")
        r = run([kubectl, "--kubeconfig", self.emu.kubeconfig, "get", "nodes,pods,deploy", "-A"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("node/gpu-node-1", r.stdout)
        self.assertRegex(r.stdout, r"pod/kc-[a-z0-9]+-[a-z0-9]+\s+1/1\s+Running")
        self.assertRegex(r.stdout, r"deployment.apps/kc\s+1/1\s+1\s+1")
        r = run([kubectl, "--kubeconfig", self.emu.kubeconfig, "get", "events"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Scheduled", r.stdout)


class PodNetworkTests(unittest.TestCase):
    def test_two_emulators_get_different_ranges_and_the_engine_port_flag_works(self):
        first = Emulator(ready_after=0.1)
        second = Emulator("--engine-port", "8001", ready_after=0.1)
        try:
            for emu in (first, second):
                emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("twin"))
            a, b = (wait_until(lambda emu=emu: next((x for x in emu.engines() if x["podReady"]), None),
                               message="a ready engine") for emu in (first, second))
            self.assertNotEqual(a["host"].split(".")[1], b["host"].split(".")[1], "each emulator has its own /16")
            self.assertEqual((a["port"], b["port"]), (8000, 8001))
            for eng in (a, b):
                conn = http.client.HTTPConnection(eng["host"], eng["port"], timeout=10)
                conn.request("GET", "/health")
                self.assertEqual(conn.getresponse().status, 200)
                conn.close()
            self.assertIn("pods in 127.", first.stderr())
        finally:
            first.stop()
            second.stop()


if __name__ == "__main__":
    unittest.main()
