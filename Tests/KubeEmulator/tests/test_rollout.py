"""Rollouts honour the Deployment's strategy on a full GPU pool, as kube-controller-manager and
kube-scheduler do: a surge pod that does not fit waits with the scheduler's message; maxSurge 0 stops
an old pod first; maxSurge and maxUnavailable resolve with Kubernetes' rounding."""

from __future__ import annotations

import unittest

from tests.support import Emulator, deployment, wait_until

NS = "default"
FULL_POOL_MSG = ("0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: "
                 "2 No preemption victims found for incoming pod.")


def pod_condition(pod: dict, ctype: str) -> dict | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


class StrategyTests(unittest.TestCase):
    """Two GPU nodes with 4 GPUs each and no CPU node, so the scheduler's message counts 2 nodes."""

    def setUp(self):
        self.emu = Emulator("--cpu-nodes", "0", ready_after=0.2)
        self.addCleanup(self.emu.stop)

    def create(self, dep: dict) -> None:
        self.emu.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", dep)

    def patch(self, name: str, spec: dict) -> None:
        self.emu.ok("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}", {"spec": spec},
                    content_type="application/strategic-merge-patch+json")

    def dep(self, name: str) -> dict:
        return self.emu.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")

    def replica_sets(self, name: str) -> dict[str, dict]:
        items = self.emu.get(f"/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3D{name}")["items"]
        return {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in items}

    def scaling(self, name: str) -> list[str]:
        """The Deployment's ScalingReplicaSet messages, oldest first."""
        items = self.emu.get(f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D{name},"
                             "reason%3DScalingReplicaSet")["items"]
        items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [e["message"] for e in items]

    def ready_pods(self, name: str) -> int:
        return sum(1 for p in self.emu.pods(NS, f"app%3D{name}")
                   if (pod_condition(p, "Ready") or {}).get("status") == "True")

    def complete(self, name: str) -> dict | None:
        d = self.dep(name)
        st, want = d.get("status") or {}, d["spec"]["replicas"]
        ok = (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == want
              and st.get("availableReplicas") == want and st.get("replicas") == want)
        return d if ok else None

    def fill_pool(self, name: str, strategy: dict | None = None) -> str:
        """Two 4-GPU replicas on the two nodes, ready; returns the first ReplicaSet's name."""
        dep = deployment(name, replicas=2, gpus=4)
        if strategy:
            dep["spec"]["strategy"] = strategy
        self.create(dep)
        wait_until(lambda: self.complete(name), message="two ready replicas filling the pool")
        return self.replica_sets(name)["1"]["metadata"]["name"]

    def test_default_strategy_surge_pod_waits_on_a_full_pool_with_the_scheduler_message(self):
        old = self.fill_pool("full")
        self.patch("full", {"template": {"metadata": {"annotations": {"v": "2"}}}})
        new = wait_until(lambda: self.replica_sets("full").get("2"), message="the new ReplicaSet")
        new_name = new["metadata"]["name"]
        pending = wait_until(lambda: [p for p in self.emu.pods(NS, f"pod-template-hash%3D{new_name.split('-')[-1]}")
                                      if pod_condition(p, "PodScheduled")
                                      and pod_condition(p, "PodScheduled")["status"] == "False"],
                             message="the surge pod unschedulable")
        cond = pod_condition(pending[0], "PodScheduled")
        self.assertEqual((cond["reason"], cond["message"]), ("Unschedulable", FULL_POOL_MSG))
        name = pending[0]["metadata"]["name"]
        events = wait_until(lambda: self.emu.get(
            f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D{name},reason%3DFailedScheduling"
        )["items"], message="a FailedScheduling event")
        self.assertEqual((events[0]["type"], events[0]["message"], events[0]["source"]["component"]),
                         ("Warning", FULL_POOL_MSG, "default-scheduler"))
        # 2 replicas at 25%/25%: surge rounds up to 1, unavailable down to 0, so no old pod may stop
        # before the new one is ready, and the new one never fits: the rollout is stuck.
        self.assertEqual(self.scaling("full")[-1], f"Scaled up replica set {new_name} from 0 to 1")
        rss = self.replica_sets("full")
        self.assertEqual((rss["1"]["spec"]["replicas"], rss["2"]["spec"]["replicas"]), (2, 1))
        self.assertEqual(self.ready_pods("full"), 2, "the old pods still serve")
        self.assertFalse(any(m.startswith(f"Scaled down replica set {old}") for m in self.scaling("full")))

    def test_max_surge_zero_stops_an_old_pod_before_starting_a_new_one(self):
        old = self.fill_pool("nosurge")
        self.patch("nosurge", {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                               "template": {"metadata": {"annotations": {"v": "2"}}}})
        wait_until(lambda: self.replica_sets("nosurge").get("2") and self.complete("nosurge"),
                   timeout=20, message="the maxSurge 0 rollout complete")
        new = self.replica_sets("nosurge")["2"]["metadata"]["name"]
        self.assertEqual(self.scaling("nosurge")[1:], [
            f"Scaled down replica set {old} from 2 to 1",
            f"Scaled up replica set {new} from 0 to 1",
            f"Scaled down replica set {old} from 1 to 0",
            f"Scaled up replica set {new} from 1 to 2",
        ])
        # A new pod may wait a moment for the GPUs of the old pod it replaces (a terminating pod holds
        # them until it is gone); no old pod ever waits.
        failed = self.emu.get(f"/api/v1/namespaces/{NS}/events?fieldSelector=reason%3DFailedScheduling")["items"]
        self.assertEqual({e["involvedObject"]["name"].rsplit("-", 1)[0] for e in failed} - {new}, set())

    def test_surge_and_unavailable_resolve_with_kubernetes_rounding(self):
        # 3 one-GPU replicas on 8 GPUs: maxSurge 50% of 3 rounds up to 2, maxUnavailable 50% down to 1.
        dep = deployment("round", replicas=3, gpus=1)
        dep["spec"]["strategy"] = {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}
        self.create(dep)
        wait_until(lambda: self.complete("round"), message="three ready replicas")
        old = self.replica_sets("round")["1"]["metadata"]["name"]
        self.patch("round", {"template": {"metadata": {"annotations": {"inferops.dev/simulate-ready-after-seconds":
                                                                       "never"}}}})
        new = wait_until(lambda: self.replica_sets("round").get("2"), message="the new ReplicaSet")["metadata"]["name"]
        wait_until(lambda: len(self.scaling("round")) >= 3, message="the first scaling steps")
        self.assertEqual(self.scaling("round")[1:3], [f"Scaled up replica set {new} from 0 to 2",
                                                       f"Scaled down replica set {old} from 3 to 2"])
        # The new pods never become ready: the controller fills up to 3 + 2 = 5 pods and keeps
        # 3 - 1 = 2 old ones available.
        wait_until(lambda: len(self.emu.pods(NS, "app%3Dround")) == 5 and self.ready_pods("round") == 2,
                   message="two old pods serving beside three new ones")
        rss = self.replica_sets("round")
        self.assertEqual((rss["1"]["spec"]["replicas"], rss["2"]["spec"]["replicas"]), (2, 3))


if __name__ == "__main__":
    unittest.main()
