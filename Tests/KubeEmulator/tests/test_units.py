"""In-process unit tests: protobuf decoding, selectors, patches and the object store."""

from __future__ import annotations

import base64
import random
import time
import unittest

import tests.support  # noqa: F401  (puts kubeemu on sys.path)

from kubeemu import patch, protobuf, selectors
from kubeemu.engine import Engine
from kubeemu.podnet import PodNetwork
from kubeemu.resources import lookup
from kubeemu.store import ApiError, Store, parse_time

SECRETS = lookup("", "v1", "secrets")
CONFIGMAPS = lookup("", "v1", "configmaps")
NAMESPACES = lookup("", "v1", "namespaces")
DEPLOYMENTS = lookup("apps", "v1", "deployments")
REPLICASETS = lookup("apps", "v1", "replicasets")
PODS = lookup("", "v1", "pods")


class ProtobufTests(unittest.TestCase):
    def test_decodes_a_hand_encoded_secret(self):
        # ObjectMeta{name="s1", namespace="ns", labels{"owner":"helm"}}, data{"release": b"\x00\x01"}, type="helm.sh/release.v1"
        meta = (b"\x0a\x02s1" + b"\x1a\x02ns"
                + b"\x5a\x0d" + b"\x0a\x05owner" + b"\x12\x04helm")
        secret = (b"\x0a" + bytes([len(meta)]) + meta
                  + b"\x12\x0f" + b"\x0a\x07release" + b"\x12\x04\x00\x01\xff\x10"
                  + b"\x1a\x12helm.sh/release.v1")
        type_meta = b"\x0a\x02v1\x12\x06Secret"
        unknown = b"\x0a" + bytes([len(type_meta)]) + type_meta + b"\x12" + bytes([len(secret)]) + secret
        obj = protobuf.decode_object(b"k8s\x00" + unknown)
        self.assertEqual(obj["kind"], "Secret")
        self.assertEqual(obj["apiVersion"], "v1")
        self.assertEqual(obj["metadata"], {"name": "s1", "namespace": "ns", "labels": {"owner": "helm"}})
        self.assertEqual(base64.b64decode(obj["data"]["release"]), b"\x00\x01\xff\x10")
        self.assertEqual(obj["type"], "helm.sh/release.v1")

    def test_round_trip_of_the_kinds_helm_writes(self):
        cases = [
            {"kind": "Secret", "apiVersion": "v1",
             "metadata": {"name": "sh.helm.release.v1.r.v1", "namespace": "default",
                          "labels": {"name": "r", "owner": "helm", "status": "pending-install", "version": "1"},
                          "annotations": {"a": "b"}, "creationTimestamp": "2026-01-02T03:04:05Z",
                          "generation": 3, "finalizers": ["x"],
                          "ownerReferences": [{"kind": "Deployment", "name": "d", "uid": "u-1",
                                               "apiVersion": "apps/v1", "controller": True}]},
             "data": {"release": base64.b64encode(b"H4sI" * 100).decode()}, "type": "helm.sh/release.v1",
             "immutable": False},
            {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm", "namespace": "n"},
             "data": {"MODEL": "llama", "EMPTY": ""}, "binaryData": {"bin": base64.b64encode(b"\x00").decode()}},
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
             "gracePeriodSeconds": -1, "dryRun": ["All"], "preconditions": {"uid": "u"}},
            {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "ns1"},
             "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
        ]
        for obj in cases:
            with self.subTest(kind=obj["kind"]):
                body = protobuf.encode_object(obj)
                self.assertTrue(body.startswith(b"k8s\x00"))
                decoded = protobuf.decode_object(body)
                self.assertEqual(decoded, obj)

    def test_unknown_kind_decodes_metadata_only_and_skips_unknown_fields(self):
        meta = protobuf.encode_message({"name": "p", "namespace": "ns"}, "ObjectMeta")
        raw = b"\x0a" + bytes([len(meta)]) + meta + b"\x12\x03abc" + b"\x18\x07" + b"\x25\x01\x02\x03\x04"
        tm = protobuf.encode_message({"apiVersion": "v1", "kind": "Pod"}, "TypeMeta")
        body = b"k8s\x00" + b"\x0a" + bytes([len(tm)]) + tm + b"\x12" + bytes([len(raw)]) + raw
        self.assertEqual(protobuf.decode_object(body),
                         {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns"}})

    def test_rejects_malformed_bodies(self):
        with self.assertRaises(protobuf.ProtobufError):
            protobuf.decode_object(b'{"kind":"Secret"}')
        with self.assertRaises(protobuf.ProtobufError):
            protobuf.decode_object(b"k8s\x00\x0a\x10\x0a")  # length beyond the end
        with self.assertRaises(protobuf.ProtobufError):
            protobuf.decode_object(b"k8s\x00\x0b")  # wire type 3 (groups)


class SelectorTests(unittest.TestCase):
    def test_label_selector_operators(self):
        labels = {"app": "vllm", "env": "staging", "tier": "gpu"}
        cases = {
            "app=vllm": True, "app==vllm": True, "app!=vllm": False, "app=other": False,
            "env in (staging,production)": True, "env notin (staging)": False, "tier": True, "!tier": False,
            "missing": False, "!missing": True, "app=vllm,env in (production, staging),!missing": True,
            "missing!=x": True, "": True,
        }
        for sel, want in cases.items():
            with self.subTest(sel=sel):
                self.assertIs(selectors.matches_labels(selectors.parse_label_selector(sel), labels), want)

    def test_bad_selector_is_an_error(self):
        with self.assertRaises(selectors.SelectorError):
            selectors.parse_label_selector("a in b")

    def test_field_selectors(self):
        pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "gpu-node-1"},
               "status": {"phase": "Running"}}
        reqs = selectors.parse_field_selector("spec.nodeName=gpu-node-1,status.phase!=Pending")
        self.assertTrue(selectors.matches_fields(reqs, pod))
        self.assertFalse(selectors.matches_fields(selectors.parse_field_selector("metadata.name=q"), pod))

    def test_label_selector_object(self):
        sel = {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "env", "operator": "In",
                                                                   "values": ["x", "y"]}]}
        self.assertTrue(selectors.label_selector_object_matches(sel, {"app": "a", "env": "y"}))
        self.assertFalse(selectors.label_selector_object_matches(sel, {"app": "a", "env": "z"}))
        self.assertEqual(selectors.selector_object_to_string(sel), "app=a,env in (x,y)")


class PatchTests(unittest.TestCase):
    def test_json_merge_patch(self):
        self.assertEqual(patch.json_merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}),
                         {"a": 1, "b": {"d": 3, "e": 4}, "f": [1]})

    def test_json_patch(self):
        doc = {"spec": {"replicas": 1, "args": ["a", "b"]}}
        out = patch.json_patch(doc, [{"op": "replace", "path": "/spec/replicas", "value": 3},
                                     {"op": "add", "path": "/spec/args/-", "value": "c"},
                                     {"op": "remove", "path": "/spec/args/0"},
                                     {"op": "add", "path": "/metadata", "value": {"a~b/c": 1}},
                                     {"op": "test", "path": "/metadata/a~0b~1c", "value": 1}])
        self.assertEqual(out, {"spec": {"replicas": 3, "args": ["b", "c"]}, "metadata": {"a~b/c": 1}})
        self.assertEqual(doc["spec"]["replicas"], 1, "the input is not modified")
        with self.assertRaises(patch.PatchError):
            patch.json_patch(doc, [{"op": "test", "path": "/spec/replicas", "value": 2}])

    def test_strategic_merge_patch_like_helm3_sends(self):
        live = {"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "vllm", "image": "i:1", "args": ["--model", "a"], "ports": [{"containerPort": 8000}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "s:1"}]}}}}
        p = {"spec": {"replicas": 2, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "vllm"}],
            "containers": [{"name": "vllm", "args": ["--model", "b"],
                            "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}]}]}}}}
        out = patch.strategic_merge_patch(live, p)
        containers = out["spec"]["template"]["spec"]["containers"]
        self.assertEqual([c["name"] for c in containers], ["sidecar", "vllm"])
        vllm = containers[1]
        self.assertEqual(vllm["args"], ["--model", "b"], "lists without a merge key are replaced")
        self.assertEqual(vllm["image"], "i:1", "fields not in the patch are kept")
        self.assertEqual(vllm["env"], [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        self.assertEqual(out["spec"]["replicas"], 2)

    def test_strategic_merge_directives(self):
        live = {"metadata": {"annotations": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                "spec": {"selector": {"app": "a", "x": "y"}, "strategy": {"type": "RollingUpdate",
                                                                           "rollingUpdate": {"maxSurge": 1}}}}
        p = {"metadata": {"annotations": {"a": None}, "$deleteFromPrimitiveList/finalizers": ["x"]},
             "spec": {"selector": {"$patch": "replace", "app": "b"},
                      "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
        out = patch.strategic_merge_patch(live, p)
        self.assertEqual(out["metadata"], {"annotations": {"b": "2"}, "finalizers": ["y"]})
        self.assertEqual(out["spec"]["selector"], {"app": "b"})
        self.assertEqual(out["spec"]["strategy"], {"type": "Recreate"})

    def test_apply_removes_what_the_manager_no_longer_sends_and_keeps_the_rest(self):
        first = {"spec": {"replicas": 1, "template": {"metadata": {"annotations": {"knob": "never", "keep": "1"}},
                                                      "spec": {"containers": [{"name": "vllm", "image": "i:1"}]}}}}
        live = patch.apply_patch(None, first, None)
        live["spec"]["progressDeadlineSeconds"] = 600  # a server default
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
        live["status"] = {"replicas": 1}
        second = {"spec": {"replicas": 2, "template": {"metadata": {"annotations": {"keep": "1"}},
                                                       "spec": {"containers": [{"name": "vllm", "image": "i:2"}]}}}}
        out = patch.apply_patch(live, second, first)
        self.assertEqual(out["spec"]["template"]["metadata"]["annotations"], {"keep": "1"})
        self.assertEqual(out["spec"]["replicas"], 2)
        self.assertEqual(out["spec"]["progressDeadlineSeconds"], 600)
        c = out["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c, {"name": "vllm", "image": "i:2", "terminationMessagePath": "/dev/termination-log"})
        self.assertEqual(out["status"], {"replicas": 1})


class StoreTests(unittest.TestCase):
    def setUp(self):
        self.store = Store()
        self.store.create(NAMESPACES, "", {"metadata": {"name": "default"}})

    def cm(self, name, labels=None, ns="default", data=None):
        return self.store.create(CONFIGMAPS, ns, {"metadata": {"name": name, "labels": labels or {}},
                                                  "data": data or {}})

    def test_create_get_list_with_selectors(self):
        self.cm("a", {"app": "x", "env": "staging"})
        self.cm("b", {"app": "x", "env": "production"})
        self.cm("c", {"app": "y"})
        names = lambda items: [o["metadata"]["name"] for o in items]  # noqa: E731
        self.assertEqual(names(self.store.list(CONFIGMAPS, "default", "app=x")[0]), ["a", "b"])
        self.assertEqual(names(self.store.list(CONFIGMAPS, "default", "app=x,env!=staging")[0]), ["b"])
        self.assertEqual(names(self.store.list(CONFIGMAPS, None, None, "metadata.name=c")[0]), ["c"])
        got = self.store.get(CONFIGMAPS, "default", "a")
        self.assertEqual(got["kind"], "ConfigMap")
        self.assertTrue(got["metadata"]["uid"])
        self.assertTrue(got["metadata"]["creationTimestamp"])
        with self.assertRaises(ApiError) as e:
            self.store.get(CONFIGMAPS, "default", "zzz")
        self.assertEqual(e.exception.code, 404)
        self.assertEqual(e.exception.message, 'configmaps "zzz" not found')

    def test_namespaces_are_strict(self):
        with self.assertRaises(ApiError) as e:
            self.cm("a", ns="missing")
        self.assertEqual((e.exception.code, e.exception.message), (404, 'namespaces "missing" not found'))
        self.store.create(NAMESPACES, "", {"metadata": {"name": "missing"}})
        self.cm("a", ns="missing")
        self.store.delete(NAMESPACES, "", "missing")
        self.assertEqual(self.store.list(CONFIGMAPS, "missing")[0], [])

    def test_conflicts_and_resource_versions(self):
        a = self.cm("a", data={"k": "1"})
        with self.assertRaises(ApiError) as e:
            self.cm("a")
        self.assertEqual(e.exception.reason, "AlreadyExists")
        b = dict(a, data={"k": "2"})
        updated = self.store.update(CONFIGMAPS, "default", "a", b)
        self.assertGreater(int(updated["metadata"]["resourceVersion"]), int(a["metadata"]["resourceVersion"]))
        with self.assertRaises(ApiError) as e:
            self.store.update(CONFIGMAPS, "default", "a", dict(a, data={"k": "3"}))  # stale resourceVersion
        self.assertEqual(e.exception.code, 409)
        same = self.store.update(CONFIGMAPS, "default", "a", updated)
        self.assertEqual(same["metadata"]["resourceVersion"], updated["metadata"]["resourceVersion"],
                         "a no-op update keeps the resourceVersion")

    def test_patch_types_and_generation(self):
        dep = {"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                                   "template": {"metadata": {"labels": {"a": "b"}},
                                                                "spec": {"containers": [{"name": "c",
                                                                                         "image": "i"}]}}}}
        created = self.store.create(DEPLOYMENTS, "default", dep)
        self.assertEqual(created["metadata"]["generation"], 1)
        self.assertEqual(created["spec"]["strategy"]["rollingUpdate"], {"maxUnavailable": "25%", "maxSurge": "25%"})
        out, _ = self.store.patch(DEPLOYMENTS, "default", "d", "application/strategic-merge-patch+json",
                                  {"spec": {"replicas": 2}})
        self.assertEqual((out["spec"]["replicas"], out["metadata"]["generation"]), (2, 2))
        out, _ = self.store.patch(DEPLOYMENTS, "default", "d", "application/merge-patch+json",
                                  {"metadata": {"labels": {"x": "y"}}})
        self.assertEqual(out["metadata"]["generation"], 2, "metadata changes do not bump the generation")
        out, _ = self.store.patch(DEPLOYMENTS, "default", "d", "application/json-patch+json",
                                  [{"op": "replace", "path": "/spec/replicas", "value": 3}])
        self.assertEqual(out["metadata"]["generation"], 3)
        out, created_now = self.store.patch(DEPLOYMENTS, "default", "e", "application/apply-patch+yaml",
                                            dict(dep, metadata={"name": "e"}), field_manager="helm")
        self.assertTrue(created_now)
        status, _ = self.store.patch(DEPLOYMENTS, "default", "d", "application/merge-patch+json",
                                     {"status": {"replicas": 5}}, subresource="status")
        self.assertEqual(status["status"], {"replicas": 5})
        self.assertEqual(status["spec"]["replicas"], 3)
        again, _ = self.store.patch(DEPLOYMENTS, "default", "d", "application/merge-patch+json",
                                    {"spec": {"replicas": 4}, "status": {"replicas": 0}})
        self.assertEqual(again["status"], {"replicas": 5}, "the main resource does not write status")

    def test_background_cascade(self):
        dep = self.store.create(DEPLOYMENTS, "default", {"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}})
        owner = lambda o, kind: [{"apiVersion": "apps/v1", "kind": kind, "name": o["metadata"]["name"],  # noqa: E731
                                  "uid": o["metadata"]["uid"], "controller": True}]
        rs = self.store.create(REPLICASETS, "default", {"metadata": {"name": "d-1", "ownerReferences": owner(
            dep, "Deployment")}, "spec": {"selector": {"matchLabels": {"a": "b"}}}})
        self.store.create(PODS, "default", {"metadata": {"name": "d-1-x", "ownerReferences": owner(
            rs, "ReplicaSet")}, "spec": {"containers": [{"name": "c"}]}})
        self.store.delete(DEPLOYMENTS, "default", "d", "Background")
        self.assertEqual(self.store.list(REPLICASETS, "default")[0], [])
        self.assertEqual(self.store.list(PODS, "default")[0], [])

    def pod(self, name, node="gpu-node-1", grace=None, owner=None):
        spec = {"containers": [{"name": "c"}]}
        if node:
            spec["nodeName"] = node
        if grace is not None:
            spec["terminationGracePeriodSeconds"] = grace
        meta = {"name": name}
        if owner:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner["metadata"][
                "name"], "uid": owner["metadata"]["uid"], "controller": True}]
        return self.store.create(PODS, "default", {"metadata": meta, "spec": spec})

    def test_a_pod_on_a_node_is_deleted_gracefully_as_the_api_server_does(self):
        self.pod("p")  # terminationGracePeriodSeconds defaults to 30
        start = self.store.rv
        before = time.time()
        out = self.store.delete(PODS, "default", "p")
        meta = out["metadata"]
        self.assertEqual(meta["deletionGracePeriodSeconds"], 30)
        ends = parse_time(meta["deletionTimestamp"])
        self.assertTrue(before + 29 <= ends <= time.time() + 30, "deletionTimestamp: when the grace period ends")
        self.assertEqual([e.type for e in self.store.events_after(start)], ["MODIFIED"])
        stored = self.store.get(PODS, "default", "p")["metadata"]
        self.assertEqual(stored["deletionTimestamp"], meta["deletionTimestamp"])
        # Deleting again with a longer or no period changes nothing; a shorter one moves the end earlier.
        self.assertEqual(self.store.delete(PODS, "default", "p", grace_period=60)["metadata"], meta)
        self.assertEqual(self.store.delete(PODS, "default", "p")["metadata"], meta)
        shorter = self.store.delete(PODS, "default", "p", grace_period=10)["metadata"]
        self.assertEqual(shorter["deletionGracePeriodSeconds"], 10)
        self.assertAlmostEqual(parse_time(shorter["deletionTimestamp"]), ends - 20, delta=1)
        # An update keeps both fields (clients cannot set or clear them).
        upd = self.store.update(PODS, "default", "p", {"metadata": {"name": "p", "labels": {"x": "y"}},
                                                       "spec": {"containers": [{"name": "c"}]}}, check_rv=False)
        self.assertEqual(upd["metadata"]["deletionGracePeriodSeconds"], 10)
        # Period 0 (the kubelet's last DELETE, or --force --grace-period=0) removes it.
        self.store.delete(PODS, "default", "p", grace_period=0)
        self.assertIsNone(self.store.try_get(PODS, "default", "p"))

    def test_a_pod_goes_at_once_when_unscheduled_finished_or_told_zero(self):
        self.pod("unscheduled", node=None)
        self.pod("zero")
        self.pod("nograce", grace=0)
        done = self.pod("done")
        self.store.update(PODS, "default", "done", dict(done, status={"phase": "Succeeded"}), subresource="status")
        self.store.delete(PODS, "default", "unscheduled")
        self.store.delete(PODS, "default", "zero", grace_period=0)
        self.store.delete(PODS, "default", "nograce")
        self.store.delete(PODS, "default", "done")
        self.assertEqual(self.store.list(PODS, "default")[0], [])
        self.pod("dry")
        out = self.store.delete(PODS, "default", "dry", dry_run=True)
        self.assertIn("deletionTimestamp", out["metadata"])
        self.assertNotIn("deletionTimestamp", self.store.get(PODS, "default", "dry")["metadata"])

    def test_garbage_collection_deletes_pods_gracefully(self):
        rs = self.store.create(REPLICASETS, "default", {"metadata": {"name": "d-1"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}}}})
        self.pod("bound", owner=rs)
        self.pod("pending", node=None, owner=rs)
        self.store.delete(REPLICASETS, "default", "d-1", "Background")
        pods = self.store.list(PODS, "default")[0]
        self.assertEqual([(p["metadata"]["name"], p["metadata"]["deletionGracePeriodSeconds"]) for p in pods],
                         [("bound", 30)])

    def test_watch_history(self):
        start = self.store.rv
        self.cm("a")
        self.store.delete(CONFIGMAPS, "default", "a")
        events = self.store.events_after(start)
        self.assertEqual([e.type for e in events], ["ADDED", "DELETED"])

    def test_secret_string_data_and_service_defaults(self):
        s = self.store.create(SECRETS, "default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
        self.assertEqual(s["data"], {"k": base64.b64encode(b"v").decode()})
        self.assertEqual(s["type"], "Opaque")
        svc = self.store.create(lookup("", "v1", "services"), "default", {
            "metadata": {"name": "svc"}, "spec": {"ports": [{"port": 8000}]}})
        self.assertTrue(svc["spec"]["clusterIP"])
        self.assertEqual(svc["spec"]["ports"][0], {"port": 8000, "protocol": "TCP", "targetPort": 8000})


class FixedDraws(random.Random):
    """Shuffles to the same order every time, so two networks draw the same /16 first."""

    def shuffle(self, x):  # noqa: D401
        x.sort()


class PodNetworkUnitTests(unittest.TestCase):
    def test_a_drawn_range_that_is_claimed_is_skipped(self):
        first = PodNetwork(engine_port=18999, rng=FixedDraws(), claim_port=18999)
        second = PodNetwork(engine_port=18999, rng=FixedDraws(), claim_port=18999)
        try:
            self.assertEqual(first.octet, 2)
            self.assertEqual(second.octet, 3, "the second network cannot bind 127.2.0.1 and draws again")
            self.assertEqual(first.cidr, "127.2.0.0/16")
        finally:
            first.close()
            second.close()

    def test_addresses_are_sequential_and_skip_0_and_255(self):
        net = PodNetwork(engine_port=18998, claim_port=18998)
        try:
            x = net.octet
            ips = [net.next_ip() for _ in range(300)]
            self.assertEqual(ips[:2], [f"127.{x}.0.2", f"127.{x}.0.3"])
            self.assertEqual(len(set(ips)), 300)
            self.assertNotIn(f"127.{x}.0.255", ips)
            self.assertNotIn(f"127.{x}.1.0", ips)
            self.assertIn(f"127.{x}.1.1", ips)
        finally:
            net.close()

    def test_an_engine_binds_its_pod_address(self):
        net = PodNetwork(engine_port=18997, claim_port=18997)
        try:
            ip = net.next_ip()
            engine = Engine("ns", "pod", "m", "org/m", ready_at=0, host=ip, port=18997)
            try:
                self.assertEqual(engine.url, f"http://{ip}:18997")
                with self.assertRaises(OSError):
                    Engine("ns", "pod2", "m", "org/m", ready_at=0, host=ip, port=18997)
            finally:
                engine.stop()
        finally:
            net.close()


if __name__ == "__main__":
    unittest.main()
