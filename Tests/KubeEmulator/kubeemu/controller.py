"""The simulated cluster: GPU nodes, a scheduler, Deployment and ReplicaSet controllers, a kubelet
that runs one fake engine per bound pod (on the pod's own loopback IP, port 8000) and stops it as a
kubelet stops a container (preStop, SIGTERM, SIGKILL after the grace period), an Endpoints
controller and Events.

Everything runs in one thread that wakes on every store write, when something time-based is due (a
pod's ready time, a readiness probe, a preStop hook's end, a grace period's end), when an engine
exits, and at least once a second, and reconciles the whole store. It only writes when something
differs, so a settled cluster makes no writes and no watch events.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import http.client
import json
import math
import re
import threading
import time
import uuid
from typing import Any

from .engine import Behaviour, Engine, parse_engine_args, parse_shutdown_timeout
from .podnet import PodNetwork
from .resources import lookup
from .store import ApiError, Store, now_rfc3339, random_suffix

GPU = "nvidia.com/gpu"
ANN_READY_AFTER = "inferops.dev/simulate-ready-after-seconds"
ANN_FAILURE = "inferops.dev/simulate-failure"
ANN_IMAGE_PULL_ERROR = "inferops.dev/simulate-image-pull-error"
ANN_LATENCY_MS = "inferops.dev/simulate-latency-ms"
ANN_TTFT_MS = "inferops.dev/simulate-ttft-ms"
ANN_MS_PER_TOKEN = "inferops.dev/simulate-ms-per-token"
ANN_UNREADY_AFTER = "inferops.dev/simulate-unready-after-seconds"
ANN_HANG = "inferops.dev/simulate-hang"
ANN_ENGINE_URL = "kubeemu.inferops.dev/engine-url"
ANN_REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
HOST_IP = "127.0.0.1"
ENGINE_BIND_ATTEMPTS = 32  # pod addresses tried when an unrelated process holds one
PROBE_EVENT_AFTER = 1.0  # seconds a loading pod runs before its first failed-probe event
PROBE_PERIOD, PROBE_FAILURE_THRESHOLD = 10.0, 3  # a readinessProbe's defaults
MIN_KILL_GRACE = 2.0  # the kubelet's minimumGracePeriodInSeconds: SIGTERM always gets this long
CRASH_RUN = 0.5  # seconds a restarted crash-looping container runs before it crashes again
MAX_BACKOFF = 300.0  # the kubelet's crash back-off cap (5 minutes)
FINISHED_KEPT = 1000  # removed pods whose last numbers /_emu/pods still reports

R_POD = lookup("", "v1", "pods")
R_NODE = lookup("", "v1", "nodes")
R_EVENT = lookup("", "v1", "events")
R_SVC = lookup("", "v1", "services")
R_EP = lookup("", "v1", "endpoints")
R_NS = lookup("", "v1", "namespaces")
R_RS = lookup("apps", "v1", "replicasets")
R_DEP = lookup("apps", "v1", "deployments")

_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)$")
_SUFFIX = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "E": 1e18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def parse_quantity(q: Any) -> float:
    if q is None:
        return 0.0
    if isinstance(q, (int, float)):
        return float(q)
    m = _QTY.match(str(q).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"invalid quantity {q!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def pod_requests(pod: dict) -> dict[str, float]:
    """Summed container requests; a resource with only a limit requests its limit (API defaulting)."""
    out: dict[str, float] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for name in set(req) | set(lim):
            try:
                out[name] = out.get(name, 0.0) + parse_quantity(req.get(name, lim.get(name)))
            except ValueError:
                pass
    return out


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.endswith("%"):
        pct = float(value[:-1]) * total / 100.0
        return int(math.ceil(pct)) if round_up else int(math.floor(pct))
    return int(value)


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_key(template: dict | None) -> str:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return json.dumps(t, sort_keys=True)


def pod_template_hash(template: dict | None, collision_count: int = 0) -> str:
    h = _fnv32a((template_key(template) + f"#{collision_count}").encode())
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[ord(c) % len(alphabet)] for c in str(h))


def controlled_by(obj: dict, uid: str) -> bool:
    return any(r.get("uid") == uid and r.get("controller") for r in obj["metadata"].get("ownerReferences") or [])


def controller_uid(obj: dict) -> str | None:
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r.get("uid")
    return None


def _annotation(obj: dict, key: str) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(key)


def failure_kind(annotations: dict | None) -> str | None:
    """simulate-failure: "true" (exit 1, reason Error) or "oom" (exit 137, reason OOMKilled); None."""
    value = str((annotations or {}).get(ANN_FAILURE, "")).strip().lower()
    return {"true": "error", "error": "error", "oom": "oom", "oomkilled": "oom"}.get(value)


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (the kubelet's back-off messages): 200ms, 10s, 1m20s, 5m0s."""
    if seconds < 1:
        return f"{round(seconds * 1000):d}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


_SLEEP = re.compile(r"(?<![\w-])sleep\s+([0-9]+(?:\.[0-9]+)?)([smhd]?)(?![\w.])")


def prestop_hook(container: dict) -> tuple[str, Any] | None:
    """The container's lifecycle.preStop as ("sleep", seconds) or ("httpGet", action); None without one.

    ``sleep.seconds`` is a sleep; an ``exec`` command sleeps as long as the ``sleep N`` words in it
    add up to (``["sleep","5"]``, ``["/bin/sh","-c","sleep 5"]``), and does nothing else.
    """
    hook = (container.get("lifecycle") or {}).get("preStop") or {}
    if isinstance(hook.get("sleep"), dict):
        return "sleep", float(hook["sleep"].get("seconds") or 0)
    if isinstance(hook.get("exec"), dict):
        text = " ".join(str(a) for a in hook["exec"].get("command") or [])
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
        return "sleep", sum(float(n) * unit[u] for n, u in _SLEEP.findall(text))
    if isinstance(hook.get("httpGet"), dict):
        return "httpGet", hook["httpGet"]
    return None


def human_join(reasons: dict[str, int]) -> str:
    return ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))


@dataclasses.dataclass
class Termination:
    """The kubelet stopping a pod's container: preStop, SIGTERM, SIGKILL when the grace runs out."""

    since: float  # when the kubelet saw the deletion
    grace: float  # deletionGracePeriodSeconds (a second DELETE may shorten it)
    hook: str | None = None  # "sleep" or "httpGet"
    hook_until: float | None = None  # when a sleep hook ends
    hook_done: bool = True  # an httpGet hook has returned
    hook_failed: bool = False
    hook_reported: bool = False
    prestop_ended: float | None = None
    sigterm_at: float | None = None
    sigkill_at: float | None = None
    exited_at: float | None = None

    def deadline(self) -> float:
        return self.since + self.grace

    def kill_at(self) -> float | None:
        """SIGKILL time: the grace period's end, but never less than 2 s after SIGTERM (a preStop
        that used up the grace leaves the container the kubelet's minimum)."""
        if self.sigterm_at is None:
            return None
        return max(self.deadline(), self.sigterm_at + MIN_KILL_GRACE)

    def stage(self) -> str:
        if self.exited_at is not None:
            return "exited"
        if self.sigkill_at is not None:
            return "killed"
        if self.sigterm_at is not None:
            return "stopping"
        return "preStop"

    def info(self) -> dict:
        return {"stage": self.stage(), "since": self.since, "gracePeriodSeconds": self.grace,
                "deadline": self.deadline(), "preStop": self.hook, "preStopEnded": self.prestop_ended,
                "preStopFailed": self.hook_failed, "sigtermAt": self.sigterm_at, "killAt": self.kill_at(),
                "sigkillAt": self.sigkill_at, "exitedAt": self.exited_at}


@dataclasses.dataclass
class CrashState:
    """Where a crash-looping container is: waiting out back-off ``backoff`` or running again."""

    restarts: int
    running_since: float | None
    backoff: float
    last_started: float
    last_finished: float
    until: float  # when this state ends


@dataclasses.dataclass
class PodRuntime:
    uid: str
    namespace: str
    name: str
    node: str
    bound_at: float
    ready_at: float | None  # None: never ready
    failure: str | None = None  # "error" or "oom": the container crash-loops
    image_pull_error: bool = False
    engine: Engine | None = None
    forced: bool = False
    ip: str = ""
    probe: tuple[float, int] | None = None  # the readinessProbe's (periodSeconds, failureThreshold)
    crash_backoff: float = 10.0
    term: Termination | None = None

    @property
    def failing(self) -> bool:
        return self.failure is not None

    def loading(self, now: float) -> bool:
        return self.ready_at is None or now < self.ready_at

    def health_lost_at(self) -> float | None:
        """When the engine's /health stopped answering 200 while it still runs (simulated
        unreadiness, or a drain after SIGTERM)."""
        if self.engine is None:
            return None
        times = [t for t in (self.engine.unready_at(), self.engine.draining_since) if t is not None]
        return min(times) if times else None

    def failed_probes(self) -> tuple[float, float] | None:
        """(first failed readiness probe, the probe that turns Ready False) once /health fails.

        Probes run every periodSeconds from the ready time; Ready turns False at the
        failureThreshold-th failure in a row. None without a readinessProbe (nothing probes) or
        while /health answers.
        """
        lost = self.health_lost_at()
        if lost is None or self.probe is None or self.ready_at is None:
            return None
        period, threshold = self.probe
        k = max(1, math.ceil((lost - self.ready_at) / period - 1e-9))
        first = self.ready_at + k * period
        return first, first + (threshold - 1) * period

    def is_ready(self, now: float | None = None) -> bool:
        if self.failing or self.image_pull_error or self.ready_at is None:
            return False
        now = time.time() if now is None else now
        if now < self.ready_at:
            return False
        lost = self.health_lost_at()
        if lost is not None and lost <= self.ready_at:
            return False  # /health never answered 200
        probes = self.failed_probes()
        return probes is None or now < probes[1]

    def crash_loop(self, now: float) -> CrashState:
        """The crash loop at ``now``. The container crashed twice at bind time (the kubelet restarts
        the first crash at once), so it starts in back-off 1 with restartCount 1; after back-off k it
        restarts (restartCount k+1), runs CRASH_RUN seconds and crashes into back-off k+1. Back-offs
        start at --crash-backoff and double up to 5 minutes, as the kubelet's do."""
        waiting, started, k = self.bound_at, self.bound_at, 1
        base = max(0.1, self.crash_backoff)
        while True:
            backoff = min(base * 2 ** (k - 1), MAX_BACKOFF)
            restart = waiting + backoff
            if now < restart:
                return CrashState(k, None, backoff, started, waiting, restart)
            crash = restart + CRASH_RUN
            if now < crash:
                return CrashState(k + 1, restart, backoff, started, waiting, crash)
            waiting, started, k = crash, restart, k + 1

    def due(self, now: float) -> list[float]:
        """Times something about this pod changes without a write: the controller wakes for them."""
        out = []
        if self.ready_at is not None and not self.failing:
            out.append(self.ready_at)
        out.append(self.bound_at + PROBE_EVENT_AFTER)
        probes = self.failed_probes()
        if probes:
            out.extend(probes)
        if self.failing:
            out.append(self.crash_loop(now).until)
        if self.term is not None:
            out.append(self.term.deadline())
            if self.term.hook_until is not None:
                out.append(self.term.hook_until)
            if self.term.kill_at() is not None:
                out.append(self.term.kill_at())
        return [t for t in out if t > now]


@dataclasses.dataclass
class ClusterConfig:
    gpu_nodes: int = 2
    gpus_per_node: int = 4
    cpu_nodes: int = 1
    ready_after: float = 2.0
    engine_latency: float = 0.0
    ttft: float = 0.0  # seconds to the first token (--ttft-ms)
    per_token: float = 0.0  # seconds per further token (--ms-per-token)
    crash_backoff: float = 10.0  # the first crash-loop back-off (--crash-backoff)
    engine_port: int = 8000


class Controller:
    def __init__(self, store: Store, config: ClusterConfig) -> None:
        self.store = store
        self.cfg = config
        self.runtime: dict[str, PodRuntime] = {}
        self.sched_msgs: dict[str, str] = {}  # pod uid -> last FailedScheduling message
        self.progress: dict[str, tuple[str, float]] = {}  # deployment uid -> (progress key, since)
        self.warned: set[tuple[str, str]] = set()  # (pod uid, reason) events already recorded
        self.rr: dict[tuple[str, str], int] = {}
        self.finished: collections.deque[dict] = collections.deque(maxlen=FINISHED_KEPT)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.ticks = 0
        self.podnet = PodNetwork(config.engine_port)

    # -----------------------------------------------------------------------------------------
    # lifecycle

    def bootstrap(self) -> None:
        s = self.store
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            s.create(R_NS, "", {"metadata": {"name": ns}}, internal=True)
        s.create(R_SVC, "default", {"metadata": {"name": "kubernetes", "namespace": "default",
                                                   "labels": {"component": "apiserver", "provider": "kubernetes"}},
                                      "spec": {"clusterIP": "10.96.0.1",
                                               "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}},
                 internal=True)
        for i in range(1, self.cfg.gpu_nodes + 1):
            self.add_node(f"gpu-node-{i}", self.cfg.gpus_per_node)
        for i in range(1, self.cfg.cpu_nodes + 1):
            self.add_node(f"cpu-node-{i}", 0)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="kubeemu-controller", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.store.changed.set()  # wake the loop now
        if self.thread:
            self.thread.join(timeout=2)
        for rt in list(self.runtime.values()):
            if rt.engine:
                rt.engine.stop()
        self.podnet.close()

    def _run(self) -> None:
        last = 0.0
        while not self.stop_event.is_set():
            self.store.changed.wait(timeout=self._next_wakeup())
            self.store.changed.clear()
            # At most ~50 reconciles a second, however busy the API is.
            gap = time.monotonic() - last
            if gap < 0.02:
                time.sleep(0.02 - gap)
            last = time.monotonic()
            try:
                self.tick()
            except Exception:  # keep the cluster running; a bug shows up in stderr
                import traceback

                traceback.print_exc()

    def _next_wakeup(self) -> float:
        """Seconds until something time-based is due (see PodRuntime.due); at most one second, which
        is also how often progress deadlines are checked. Writes and engine exits wake the loop at
        once."""
        now = time.time()
        due = [t - now for rt in list(self.runtime.values()) for t in rt.due(now)]
        if not due:
            return 1.0
        return min(1.0, max(0.005, min(due) + 0.001))

    # -----------------------------------------------------------------------------------------
    # nodes

    def node_object(self, name: str, gpus: int, labels: dict | None = None) -> dict:
        is_gpu = gpus > 0
        cap = {"cpu": "32" if is_gpu else "8", "memory": "263921504Ki" if is_gpu else "32865308Ki",
               "pods": "110", "ephemeral-storage": "1055762868Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
        node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                       "node.kubernetes.io/instance-type": "p4d.24xlarge" if is_gpu else "m6i.2xlarge"}
        taints = []
        if is_gpu:
            cap[GPU] = str(gpus)
            node_labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": str(gpus),
                                "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})
            taints.append({"key": GPU, "value": "present", "effect": "NoSchedule"})
        node_labels.update(labels or {})
        t = now_rfc3339()
        obj = {
            "metadata": {"name": name, "labels": node_labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
            "status": {
                "capacity": dict(cap), "allocatable": dict(cap),
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                     "message": "kubelet has sufficient memory available", "lastHeartbeatTime": t,
                     "lastTransitionTime": t},
                    {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                     "message": "kubelet has no disk pressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
                    {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                     "message": "kubelet has sufficient PID available", "lastHeartbeatTime": t,
                     "lastTransitionTime": t},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                             "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                             "bootID": str(uuid.uuid4()), "kernelVersion": "6.1.0-emu",
                             "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "containerRuntimeVersion": "containerd://1.7.24", "kubeletVersion": "v1.34.0",
                             "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
            },
        }
        if taints:
            obj["spec"]["taints"] = taints
        return obj

    def add_node(self, name: str, gpus: int, labels: dict | None = None) -> dict:
        return self.store.create(R_NODE, "", self.node_object(name, gpus, labels), internal=True)

    def set_node(self, name: str, gpus: int | None = None, ready: bool | None = None,
                 unschedulable: bool | None = None, labels: dict | None = None) -> dict:
        with self.store.lock:
            node = copy.deepcopy(self.store.get(R_NODE, "", name))
            if labels:
                node["metadata"].setdefault("labels", {}).update(labels)
            if unschedulable is not None:
                if unschedulable:
                    node["spec"]["unschedulable"] = True
                else:
                    node["spec"].pop("unschedulable", None)
            if ready is not None:
                taints = [t for t in node["spec"].get("taints") or [] if t["key"] != "node.kubernetes.io/not-ready"]
                if not ready:
                    taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule",
                                   "timeAdded": now_rfc3339()})
                if taints:
                    node["spec"]["taints"] = taints
                else:
                    node["spec"].pop("taints", None)
            node = self.store.update(R_NODE, "", name, node, check_rv=False)
            st = copy.deepcopy(node)
            if gpus is not None:
                for k in ("capacity", "allocatable"):
                    if gpus > 0:
                        st["status"][k][GPU] = str(gpus)
                    else:
                        st["status"][k].pop(GPU, None)
            if ready is not None:
                for c in st["status"]["conditions"]:
                    if c["type"] == "Ready":
                        want = "True" if ready else "False"
                        if c["status"] != want:
                            c["status"] = want
                            c["reason"] = "KubeletReady" if ready else "KubeletNotReady"
                            c["message"] = ("kubelet is posting ready status" if ready
                                            else "container runtime is down (simulated)")
                            c["lastTransitionTime"] = now_rfc3339()
            return self.store.update(R_NODE, "", name, st, subresource="status", check_rv=False)

    def remove_node(self, name: str) -> None:
        with self.store.lock:
            self.store.delete(R_NODE, "", name)
            for pod in self.store.list_raw(R_POD):
                if pod["spec"].get("nodeName") == name:
                    self._delete_pod(pod, grace_period=0)  # the pod garbage collector force-deletes

    # -----------------------------------------------------------------------------------------
    # test hooks

    def force_ready(self, ns: str, name: str, ready: bool = True) -> dict:
        with self.store.lock:
            pod = self.store.get(R_POD, ns, name)
            rt = self.runtime.get(pod["metadata"]["uid"])
            if rt is None:
                raise ApiError(409, "Conflict", f'pod "{name}" is not scheduled to a node yet')
            rt.forced = True
            rt.failure = None
            rt.image_pull_error = False
            rt.ready_at = time.time() if ready else None
            if rt.engine:
                rt.engine.ready_at = rt.ready_at
            self.store.changed.set()
            return {"namespace": ns, "name": name, "ready": ready}

    def engines(self) -> list[dict]:
        with self.store.lock:
            out = []
            for rt in sorted(self.runtime.values(), key=lambda r: (r.namespace, r.name)):
                if rt.engine:
                    info = rt.engine.info()
                    info["node"] = rt.node
                    info["podIP"] = rt.ip
                    info["podReady"] = rt.is_ready()
                    info["terminating"] = rt.term is not None
                    out.append(info)
            return out

    def pods(self) -> dict:
        """What /_emu/pods reports: every pod as its kubelet sees it, and the last numbers of the
        pods that are gone (oldest first)."""
        with self.store.lock:
            now = time.time()
            out = []
            for pod in self.store.list_raw(R_POD):
                meta, st = pod["metadata"], pod.get("status") or {}
                rt = self.runtime.get(meta["uid"])
                ready = next((c.get("status") == "True" for c in st.get("conditions") or []
                              if c.get("type") == "Ready"), False)
                out.append({"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                            "node": pod["spec"].get("nodeName"), "podIP": st.get("podIP"),
                            "phase": st.get("phase"), "ready": ready,
                            "deletionTimestamp": meta.get("deletionTimestamp"),
                            "deletionGracePeriodSeconds": meta.get("deletionGracePeriodSeconds"),
                            "healthLostAt": rt.health_lost_at() if rt else None,
                            "readyLostAt": (rt.failed_probes() or (None, None))[1] if rt else None,
                            "termination": rt.term.info() if rt and rt.term else None,
                            "engine": self._engine_info(rt) if rt and rt.engine else None})
            return {"time": now, "pods": out, "gone": list(self.finished)}

    @staticmethod
    def _engine_info(rt: PodRuntime) -> dict:
        info = rt.engine.info()
        for k in ("namespace", "pod", "host", "port"):
            info.pop(k, None)
        return info

    def reset_counters(self) -> None:
        with self.store.lock:
            for rt in self.runtime.values():
                if rt.engine:
                    rt.engine.reset_counters()
            self.finished.clear()

    def pick_service_engine(self, ns: str, svc_name: str) -> Engine | None:
        """A ready pod's engine behind a Service's selector, round-robin."""
        with self.store.lock:
            svc = self.store.get(R_SVC, ns, svc_name)
            selector = (svc.get("spec") or {}).get("selector")
            if not selector:
                return None
            engines = []
            for pod in self.store.select(R_POD, ns, {"matchLabels": selector}):
                rt = self.runtime.get(pod["metadata"]["uid"])
                if rt and rt.engine and rt.is_ready() and not pod["metadata"].get("deletionTimestamp"):
                    engines.append(rt.engine)
            if not engines:
                return None
            i = self.rr.get((ns, svc_name), 0)
            self.rr[(ns, svc_name)] = i + 1
            return engines[i % len(engines)]

    def pod_address(self, ns: str, name: str) -> tuple[str, int]:
        """The pod's IP (empty before it is scheduled) and the engine port."""
        with self.store.lock:
            pod = self.store.get(R_POD, ns, name)
            rt = self.runtime.get(pod["metadata"]["uid"])
            return (rt.ip if rt else ""), self.cfg.engine_port

    def pod_engine(self, ns: str, name: str) -> Engine | None:
        with self.store.lock:
            pod = self.store.get(R_POD, ns, name)
            rt = self.runtime.get(pod["metadata"]["uid"])
            return rt.engine if rt else None

    # -----------------------------------------------------------------------------------------
    # reconcile

    def tick(self) -> None:
        with self.store.lock:
            self.ticks += 1
            self._cleanup_runtime()
            for dep in self.store.list_raw(R_DEP):
                self._sync_deployment(dep)
            for rs in self.store.list_raw(R_RS):
                self._sync_replicaset(rs)
            self._schedule()
            self._update_pods()
            for rs in self.store.list_raw(R_RS):
                self._replicaset_status(rs)
            for dep in self.store.list_raw(R_DEP):
                self._deployment_status(dep)
            self._endpoints()

    # --- runtime ---------------------------------------------------------------------------------

    def _cleanup_runtime(self) -> None:
        """Pods removed without their kubelet (force-deleted, their namespace or node deleted): the
        container dies with them."""
        live = {p["metadata"]["uid"] for p in self.store.list_raw(R_POD)}
        for uid in [u for u in self.runtime if u not in live]:
            rt = self.runtime.pop(uid)
            if rt.engine:
                rt.engine.stop()
                self._finished(rt, time.time())
        for uid in [u for u in self.sched_msgs if u not in live]:
            del self.sched_msgs[uid]
        self.warned = {w for w in self.warned if w[0] in live}

    def _delete_pod(self, pod: dict, grace_period: int | None = None) -> None:
        """DELETE as a controller sends it: graceful (the pod's own grace period) unless told 0."""
        try:
            self.store.delete(R_POD, pod["metadata"]["namespace"], pod["metadata"]["name"],
                              grace_period=grace_period)
        except ApiError:
            pass
        if self.store.try_get(R_POD, pod["metadata"]["namespace"], pod["metadata"]["name"]) is None:
            rt = self.runtime.pop(pod["metadata"]["uid"], None)
            if rt and rt.engine:
                rt.engine.stop()
                self._finished(rt, time.time())

    def _finished(self, rt: PodRuntime, now: float) -> None:
        """Keep a removed pod's last numbers for /_emu/pods."""
        engine = self._engine_info(rt) if rt.engine else None
        self.finished.append({"namespace": rt.namespace, "name": rt.name, "uid": rt.uid, "node": rt.node,
                              "podIP": rt.ip, "removedAt": now,
                              "termination": rt.term.info() if rt.term else None, "engine": engine})

    def _event(self, obj: dict, kind: str, api_version: str, etype: str, reason: str, message: str,
               component: str) -> None:
        ns = obj["metadata"].get("namespace") or "default"
        if not self.store.namespace_exists(ns):
            return
        t = now_rfc3339()
        ev = {
            "metadata": {"name": f"{obj['metadata']['name']}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {"kind": kind, "namespace": ns, "name": obj["metadata"]["name"],
                               "uid": obj["metadata"].get("uid", ""), "apiVersion": api_version,
                               "resourceVersion": obj["metadata"].get("resourceVersion", "")},
            "reason": reason, "message": message, "source": {"component": component},
            "firstTimestamp": t, "lastTimestamp": t, "count": 1, "type": etype, "eventTime": None,
            "reportingComponent": component, "reportingInstance": "",
        }
        try:
            self.store.create(R_EVENT, ns, ev, internal=True)
        except ApiError:
            pass

    # --- deployments -------------------------------------------------------------------------------

    def _owned(self, res, ns: str, uid: str) -> list[dict]:
        return [o for o in self.store.list_raw(res, ns) if controlled_by(o, uid)]

    def _pod_counts(self, rs: dict) -> tuple[int, int, int]:
        """(pods, ready, available) of a ReplicaSet, from its live pods; a terminating pod no longer
        counts (the ReplicaSet controller has already replaced it)."""
        pods = [p for p in self._owned(R_POD, rs["metadata"]["namespace"], rs["metadata"]["uid"])
                if not p["metadata"].get("deletionTimestamp")]
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        now = time.time()
        ready = available = 0
        for p in pods:
            rt = self.runtime.get(p["metadata"]["uid"])
            if rt and rt.is_ready(now):
                ready += 1
                if rt.ready_at is not None and now >= rt.ready_at + min_ready:
                    available += 1
        return len(pods), ready, available

    def _scale_rs(self, dep: dict, rs: dict, replicas: int) -> dict:
        old = rs["spec"].get("replicas", 1)
        if old == replicas:
            return rs
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = replicas
        ann = new["metadata"].setdefault("annotations", {})
        ann["deployment.kubernetes.io/desired-replicas"] = str(dep["spec"].get("replicas", 1))
        new = self.store.update(R_RS, rs["metadata"]["namespace"], rs["metadata"]["name"], new, check_rv=False)
        verb = "up" if replicas > old else "down"
        self._event(dep, "Deployment", "apps/v1", "Normal", "ScalingReplicaSet",
                    f"Scaled {verb} replica set {rs['metadata']['name']} from {old} to {replicas}",
                    "deployment-controller")
        return new

    def _sync_deployment(self, dep: dict) -> None:
        ns, name, uid = dep["metadata"]["namespace"], dep["metadata"]["name"], dep["metadata"]["uid"]
        spec = dep.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        rss = self._owned(R_RS, ns, uid)
        key = template_key(template)
        new_rs = next((rs for rs in rss if template_key(rs["spec"].get("template")) == key), None)
        max_rev = max((int(_annotation(rs, ANN_REVISION) or 0) for rs in rss), default=0)
        if new_rs is None:
            new_rs = self._create_rs(dep, max_rev + 1, rss)
            if new_rs is None:
                return
            rss.append(new_rs)
        elif int(_annotation(new_rs, ANN_REVISION) or 0) < max_rev:
            # A rollback to an older template: the old ReplicaSet becomes the newest revision.
            upd = copy.deepcopy(new_rs)
            upd["metadata"].setdefault("annotations", {})[ANN_REVISION] = str(max_rev + 1)
            new_rs = self.store.update(R_RS, ns, new_rs["metadata"]["name"], upd, check_rv=False)
            rss = [new_rs if r["metadata"]["uid"] == new_rs["metadata"]["uid"] else r for r in rss]
        rev = _annotation(new_rs, ANN_REVISION)
        if _annotation(dep, ANN_REVISION) != rev:
            upd = copy.deepcopy(dep)
            upd["metadata"].setdefault("annotations", {})[ANN_REVISION] = rev
            dep = self.store.update(R_DEP, ns, name, upd, check_rv=False)
        if spec.get("paused"):
            return
        old_rss = sorted((rs for rs in rss if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]),
                         key=lambda r: (r["metadata"].get("creationTimestamp", ""), r["metadata"]["name"]))
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            active_old = [rs for rs in old_rss if rs["spec"].get("replicas", 1) > 0]
            for rs in active_old:
                self._scale_rs(dep, rs, 0)
            # Recreate waits until the old pods are gone, terminating ones included.
            if active_old or any(self._owned(R_POD, ns, rs["metadata"]["uid"]) for rs in old_rss):
                return
            self._scale_rs(dep, new_rs, replicas)
        else:
            ru = strategy.get("rollingUpdate") or {}
            surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), replicas, True)
            unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False)
            if surge == 0 and unavailable == 0:
                unavailable = 1
            if not any(rs["spec"].get("replicas", 1) > 0 for rs in old_rss):
                new_rs = self._scale_rs(dep, new_rs, replicas)
            else:
                total = sum(rs["spec"].get("replicas", 1) for rs in rss)
                cur = new_rs["spec"].get("replicas", 1)
                if cur < replicas:
                    up = min(replicas + surge - total, replicas - cur)
                    if up > 0:
                        new_rs = self._scale_rs(dep, new_rs, cur + up)
                elif cur > replicas:
                    new_rs = self._scale_rs(dep, new_rs, replicas)
                old_rss = [self.store.try_get(R_RS, ns, rs["metadata"]["name"]) or rs for rs in old_rss]
                total = new_rs["spec"].get("replicas", 1) + sum(rs["spec"].get("replicas", 1) for rs in old_rss)
                min_available = replicas - unavailable
                _, _, new_avail = self._pod_counts(new_rs)
                new_unavailable = max(0, new_rs["spec"].get("replicas", 1) - new_avail)
                max_down = total - min_available - new_unavailable
                if max_down > 0:
                    # First old pods that are not available anyway, then healthy ones down to minAvailable.
                    for i, rs in enumerate(old_rss):
                        if max_down <= 0:
                            break
                        want = rs["spec"].get("replicas", 1)
                        _, _, avail = self._pod_counts(rs)
                        unhealthy = max(0, want - avail)
                        d = min(unhealthy, max_down)
                        if d > 0:
                            old_rss[i] = self._scale_rs(dep, rs, want - d)
                            max_down -= d
                    total_avail = new_avail + sum(self._pod_counts(rs)[2] for rs in old_rss)
                    can = total_avail - min_available
                    for i, rs in enumerate(old_rss):
                        if can <= 0:
                            break
                        want = rs["spec"].get("replicas", 1)
                        d = min(want, can)
                        if d > 0:
                            old_rss[i] = self._scale_rs(dep, rs, want - d)
                            can -= d
        self._cleanup_history(dep, new_rs)

    def _create_rs(self, dep: dict, revision: int, existing: list[dict]) -> dict | None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        spec = dep["spec"]
        collisions = 0
        while True:
            h = pod_template_hash(spec.get("template"), collisions)
            rs_name = f"{name}-{h}"
            if self.store.try_get(R_RS, ns, rs_name) is None:
                break
            collisions += 1
            if collisions > 10:
                return None
        template = copy.deepcopy(spec.get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta.setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        replicas = int(spec.get("replicas", 1))
        initial = replicas
        active_old = [rs for rs in existing if rs["spec"].get("replicas", 1) > 0]
        if active_old and (spec.get("strategy") or {}).get("type") != "Recreate":
            ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
            surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), replicas, True)
            total = sum(rs["spec"].get("replicas", 1) for rs in existing)
            initial = max(0, min(replicas, replicas + surge - total))
        elif active_old:
            initial = 0
        rs = {
            "metadata": {
                "name": rs_name, "namespace": ns,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {ANN_REVISION: str(revision),
                                "deployment.kubernetes.io/desired-replicas": str(replicas),
                                "deployment.kubernetes.io/max-replicas": str(replicas + 1)},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                     "uid": dep["metadata"]["uid"], "controller": True,
                                     "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": initial, "minReadySeconds": spec.get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        if not spec.get("minReadySeconds"):
            rs["spec"].pop("minReadySeconds")
        created = self.store.create(R_RS, ns, rs, internal=True)
        if initial:
            self._event(dep, "Deployment", "apps/v1", "Normal", "ScalingReplicaSet",
                        f"Scaled up replica set {rs_name} from 0 to {initial}", "deployment-controller")
        return created

    def _cleanup_history(self, dep: dict, new_rs: dict) -> None:
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        ns = dep["metadata"]["namespace"]
        old = [rs for rs in self._owned(R_RS, ns, dep["metadata"]["uid"])
               if rs["metadata"]["uid"] != new_rs["metadata"]["uid"] and rs["spec"].get("replicas", 1) == 0
               and self._pod_counts(rs)[0] == 0]
        old.sort(key=lambda r: int(_annotation(r, ANN_REVISION) or 0))
        for rs in old[: max(0, len(old) - limit)]:
            self.store.delete(R_RS, ns, rs["metadata"]["name"])

    # --- replicasets -------------------------------------------------------------------------------

    def _sync_replicaset(self, rs: dict) -> None:
        ns, uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
        want = int(rs["spec"].get("replicas", 1))
        pods = [p for p in self._owned(R_POD, ns, uid) if not p["metadata"].get("deletionTimestamp")]
        if len(pods) < want:
            for _ in range(want - len(pods)):
                self._create_pod(rs)
        elif len(pods) > want:
            def rank(p: dict) -> tuple:
                rt = self.runtime.get(p["metadata"]["uid"])
                return (0 if not p["spec"].get("nodeName") else 1, 1 if rt and rt.is_ready() else 0,
                        p["metadata"].get("creationTimestamp", ""))

            pods.sort(key=rank)
            # Unscheduled first, then not ready, then the newest.
            unscheduled_or_unready = [p for p in pods if rank(p)[:2] != (1, 1)]
            ready = [p for p in pods if rank(p)[:2] == (1, 1)]
            ready.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
            victims = (unscheduled_or_unready + ready)[: len(pods) - want]
            for p in victims:
                self._delete_pod(p)
                self._event(rs, "ReplicaSet", "apps/v1", "Normal", "SuccessfulDelete",
                            f"Deleted pod: {p['metadata']['name']}", "replicaset-controller")

    def _create_pod(self, rs: dict) -> None:
        ns = rs["metadata"]["namespace"]
        template = copy.deepcopy(rs["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        for _ in range(10):
            name = f"{rs['metadata']['name']}-{random_suffix(5)}"
            if self.store.try_get(R_POD, ns, name) is None:
                break
        pod = {
            "metadata": {
                "name": name, "namespace": ns, "labels": dict(tmeta.get("labels") or {}),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs["metadata"]["name"],
                                     "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": template.get("spec") or {},
        }
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        pod["status"] = {"phase": "Pending", "qosClass": self._qos(pod)}
        self.store.create(R_POD, ns, pod, internal=True)
        self._event(rs, "ReplicaSet", "apps/v1", "Normal", "SuccessfulCreate", f"Created pod: {name}",
                    "replicaset-controller")

    @staticmethod
    def _qos(pod: dict) -> str:
        any_set = False
        guaranteed = True
        for c in pod["spec"].get("containers") or []:
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            if req or lim:
                any_set = True
            for r in ("cpu", "memory"):
                if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                    guaranteed = False
        if not any_set:
            return "BestEffort"
        return "Guaranteed" if guaranteed else "Burstable"

    # --- scheduler ---------------------------------------------------------------------------------

    @staticmethod
    def _tolerates(pod: dict, taint: dict) -> bool:
        for tol in pod["spec"].get("tolerations") or []:
            if tol.get("effect") and tol["effect"] != taint.get("effect"):
                continue
            op = tol.get("operator") or "Equal"
            if op == "Exists":
                if not tol.get("key") or tol["key"] == taint.get("key"):
                    return True
            elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
                return True
        return False

    @staticmethod
    def _affinity_matches(pod: dict, node: dict) -> bool:
        labels = node["metadata"].get("labels") or {}
        for k, v in (pod["spec"].get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return False
        required = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
        terms = required.get("nodeSelectorTerms")
        if not terms:
            return True

        def expr_ok(e: dict, value: str | None) -> bool:
            op, vals = e.get("operator"), e.get("values") or []
            if op == "In":
                return value in vals
            if op == "NotIn":
                return value not in vals
            if op == "Exists":
                return value is not None
            if op == "DoesNotExist":
                return value is None
            try:
                if op == "Gt":
                    return value is not None and int(value) > int(vals[0])
                if op == "Lt":
                    return value is not None and int(value) < int(vals[0])
            except (ValueError, IndexError):
                return False
            return False

        for term in terms:
            ok = all(expr_ok(e, labels.get(e.get("key"))) for e in term.get("matchExpressions") or [])
            ok = ok and all(expr_ok(e, node["metadata"]["name"] if e.get("key") == "metadata.name" else None)
                            for e in term.get("matchFields") or [])
            if ok and (term.get("matchExpressions") or term.get("matchFields")):
                return True
        return False

    def _node_usage(self) -> dict[str, dict[str, float]]:
        """What the pods bound to each node request; a terminating pod holds its GPUs until it is gone."""
        used: dict[str, dict[str, float]] = {}
        for p in self.store.list_raw(R_POD):
            node = p["spec"].get("nodeName")
            if not node:
                continue
            if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            u = used.setdefault(node, {"pods": 0.0})
            u["pods"] += 1
            for r, q in pod_requests(p).items():
                u[r] = u.get(r, 0.0) + q
        return used

    def _filter(self, pod: dict, node: dict, used: dict[str, float]) -> list[str]:
        """Reasons a node does not fit, in the scheduler's plugin order (first failing plugin wins)."""
        if node["spec"].get("unschedulable"):
            return ["node(s) were unschedulable"]
        for t in node["spec"].get("taints") or []:
            if t.get("effect") in ("NoSchedule", "NoExecute") and not self._tolerates(pod, t):
                return [f"node(s) had untolerated taint {{{t.get('key')}: {t.get('value', '')}}}"]
        if not self._affinity_matches(pod, node):
            return ["node(s) didn't match Pod's node affinity/selector"]
        alloc = node.get("status", {}).get("allocatable") or {}
        reasons = []
        if used.get("pods", 0) + 1 > parse_quantity(alloc.get("pods", "110")):
            reasons.append("Too many pods")
        for r, q in pod_requests(pod).items():
            if q <= 0:
                continue
            have = parse_quantity(alloc.get(r, 0))
            if used.get(r, 0.0) + q > have + 1e-9:
                reasons.append(f"Insufficient {r}")
        return reasons

    def _schedule(self) -> None:
        pending = [p for p in self.store.list_raw(R_POD)
                   if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
                   and (p.get("status") or {}).get("phase", "Pending") == "Pending"]
        if not pending:
            return
        pending.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        nodes = self.store.list_raw(R_NODE)
        usage = self._node_usage()
        for pod in pending:
            reasons: dict[str, int] = {}
            preempt: dict[str, int] = {}
            feasible = []
            for node in nodes:
                nname = node["metadata"]["name"]
                rs = self._filter(pod, node, usage.get(nname, {}))
                if not rs:
                    feasible.append(node)
                    continue
                for r in rs:
                    reasons[r] = reasons.get(r, 0) + 1
                resource_only = all(r.startswith("Insufficient") or r == "Too many pods" for r in rs)
                pr = "No preemption victims found for incoming pod" if resource_only else \
                    "Preemption is not helpful for scheduling"
                preempt[pr] = preempt.get(pr, 0) + 1
            if feasible:
                req = pod_requests(pod)

                def free(node: dict) -> tuple:
                    alloc = node["status"].get("allocatable") or {}
                    u = usage.get(node["metadata"]["name"], {})
                    gpu_free = parse_quantity(alloc.get(GPU, 0)) - u.get(GPU, 0.0)
                    cpu_free = parse_quantity(alloc.get("cpu", 0)) - u.get("cpu", 0.0)
                    # Least allocated first; GPU pods prefer GPU nodes with the most free GPUs.
                    return (-(gpu_free if req.get(GPU) else -gpu_free), -cpu_free, node["metadata"]["name"])

                node = sorted(feasible, key=free)[0]
                self._bind(pod, node["metadata"]["name"])
                u = usage.setdefault(node["metadata"]["name"], {"pods": 0.0})
                u["pods"] = u.get("pods", 0.0) + 1
                for r, q in req.items():
                    u[r] = u.get(r, 0.0) + q
                continue
            msg = f"0/{len(nodes)} nodes are available: {human_join(reasons)}." if nodes else \
                "no nodes available to schedule pods"
            if nodes:
                msg += f" preemption: 0/{len(nodes)} nodes are available: {human_join(preempt)}."
            self._mark_unschedulable(pod, msg)

    def _mark_unschedulable(self, pod: dict, msg: str) -> None:
        uid = pod["metadata"]["uid"]
        st = copy.deepcopy(pod.get("status") or {})
        conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
        old = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        cond = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                "lastTransitionTime": (old or {}).get("lastTransitionTime") or now_rfc3339(),
                "reason": "Unschedulable", "message": msg}
        if old != cond:
            st["phase"] = "Pending"
            st["conditions"] = conds + [cond]
            new = copy.deepcopy(pod)
            new["status"] = st
            self.store.update(R_POD, pod["metadata"]["namespace"], pod["metadata"]["name"], new,
                              subresource="status", check_rv=False)
        if self.sched_msgs.get(uid) != msg:
            self.sched_msgs[uid] = msg
            self._event(pod, "Pod", "v1", "Warning", "FailedScheduling", msg, "default-scheduler")

    def _bind(self, pod: dict, node: str) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        pod = self.store.update(R_POD, ns, name, new, check_rv=False)
        self.sched_msgs.pop(pod["metadata"]["uid"], None)
        self._runtime_for(pod)
        self._event(pod, "Pod", "v1", "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}",
                    "default-scheduler")

    # --- kubelet -------------------------------------------------------------------------------------

    def _runtime_for(self, pod: dict) -> PodRuntime:
        uid = pod["metadata"]["uid"]
        rt = self.runtime.get(uid)
        if rt is not None:
            return rt
        now = time.time()
        ann = pod["metadata"].get("annotations") or {}
        failure = failure_kind(ann)
        pull_error = str(ann.get(ANN_IMAGE_PULL_ERROR, "")).lower() == "true"
        raw = ann.get(ANN_READY_AFTER)
        delay: float | None = self.cfg.ready_after
        if raw is not None:
            text = str(raw).strip().lower()
            if text in ("never", "-1", "inf", "infinity"):
                delay = None
            else:
                try:
                    delay = float(text)
                    if delay < 0:
                        delay = None
                except ValueError:
                    delay = self.cfg.ready_after
        rt = PodRuntime(uid=uid, namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"],
                        node=pod["spec"]["nodeName"], bound_at=now,
                        ready_at=None if (delay is None or failure) else now + delay,
                        failure=failure, image_pull_error=pull_error, ip=self.podnet.next_ip(),
                        probe=self._readiness_probe(pod), crash_backoff=self.cfg.crash_backoff)
        self.runtime[uid] = rt
        return rt

    @staticmethod
    def _engine_container(pod: dict) -> dict | None:
        """The container the fake engine stands for: the one named vllm, else the first."""
        containers = pod["spec"].get("containers") or []
        return next((c for c in containers if c.get("name") == "vllm"), containers[0] if containers else None)

    def _readiness_probe(self, pod: dict) -> tuple[float, int] | None:
        """(periodSeconds, failureThreshold) of the engine container's readinessProbe, whatever its
        handler (the emulator answers every probe from the engine's /health)."""
        probe = (self._engine_container(pod) or {}).get("readinessProbe")
        if not isinstance(probe, dict):
            return None
        return (float(probe.get("periodSeconds") or PROBE_PERIOD),
                int(probe.get("failureThreshold") or PROBE_FAILURE_THRESHOLD))

    def _behaviour(self, pod: dict, container: dict) -> Behaviour:
        ann = pod["metadata"].get("annotations") or {}

        def millis(key: str, default: float) -> float:
            try:
                return float(ann[key]) / 1000.0 if ann.get(key) is not None else default
            except ValueError:
                return default

        unready_after = None
        try:
            if ann.get(ANN_UNREADY_AFTER) is not None:
                unready_after = max(0.0, float(ann[ANN_UNREADY_AFTER]))
        except ValueError:
            pass
        return Behaviour(latency=millis(ANN_LATENCY_MS, self.cfg.engine_latency),
                         ttft=millis(ANN_TTFT_MS, self.cfg.ttft),
                         per_token=millis(ANN_MS_PER_TOKEN, self.cfg.per_token),
                         shutdown_timeout=parse_shutdown_timeout(container), unready_after=unready_after,
                         hang=str(ann.get(ANN_HANG, "")).strip().lower() == "true")

    def _start_engine(self, pod: dict, rt: PodRuntime) -> None:
        container = self._engine_container(pod)
        if container is None:
            return
        served, model, max_len = parse_engine_args(container)
        behaviour = self._behaviour(pod, container)
        for attempt in range(ENGINE_BIND_ATTEMPTS):
            try:
                rt.engine = Engine(rt.namespace, rt.name, served, model, rt.ready_at, max_model_len=max_len or 4096,
                                   host=rt.ip, port=self.cfg.engine_port, behaviour=behaviour,
                                   on_exit=self.store.changed.set)
                return
            except OSError:
                # Someone else listens on this address and port: the pod moves to the next address.
                if attempt == ENGINE_BIND_ATTEMPTS - 1:
                    raise
                rt.ip = self.podnet.next_ip()

    def _update_pods(self) -> None:
        now = time.time()
        for pod in self.store.list_raw(R_POD):
            node = pod["spec"].get("nodeName")
            if not node:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self._stop_pod(pod, now)
                continue
            rt = self._runtime_for(pod)
            if rt.engine is None and not rt.failing and not rt.image_pull_error:
                self._start_engine(pod, rt)
            if rt.engine is not None and rt.engine.ready_at != rt.ready_at:
                rt.engine.ready_at = rt.ready_at
            ann = pod["metadata"].get("annotations") or {}
            if rt.engine is not None and ann.get(ANN_ENGINE_URL) != rt.engine.url:
                new = copy.deepcopy(pod)
                new["metadata"].setdefault("annotations", {})[ANN_ENGINE_URL] = rt.engine.url
                pod = self.store.update(R_POD, rt.namespace, rt.name, new, check_rv=False)
            pod = self._write_status(pod, rt, now)
            self._probe_events(pod, rt, now)
            if rt.failing and (rt.uid, "BackOff") not in self.warned:
                self.warned.add((rt.uid, "BackOff"))
                self._event(pod, "Pod", "v1", "Warning", "BackOff",
                            f"Back-off restarting failed container {self._main_container(pod)} in pod "
                            f"{rt.name}_{rt.namespace}({rt.uid})", "kubelet")
            if rt.image_pull_error and (rt.uid, "BackOff") not in self.warned:
                self.warned.add((rt.uid, "BackOff"))
                image = self._main_image(pod)
                self._event(pod, "Pod", "v1", "Warning", "Failed",
                            f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull '
                            f'and unpack image "{image}": not found (simulated)', "kubelet")
                self._event(pod, "Pod", "v1", "Normal", "BackOff", f'Back-off pulling image "{image}"', "kubelet")

    def _write_status(self, pod: dict, rt: PodRuntime, now: float, exit_code: int | None = None) -> dict:
        status = self._pod_status(pod, rt, now, exit_code)
        if status == pod.get("status"):
            return pod
        new = copy.deepcopy(pod)
        new["status"] = status
        return self.store.update(R_POD, rt.namespace, rt.name, new, subresource="status", check_rv=False)

    def _probe_events(self, pod: dict, rt: PodRuntime, now: float) -> None:
        """Unhealthy events: once while the engine loads (after 1 s), once when readiness starts
        failing after the pod was ready (its first failed readiness probe)."""
        probe = self._loading_probe(pod)
        if (probe and not rt.failing and not rt.image_pull_error and rt.loading(now) and rt.term is None
                and now - rt.bound_at >= PROBE_EVENT_AFTER and (rt.uid, "Unhealthy") not in self.warned):
            # What the kubelet reports while the engine loads its weights and /health answers 503.
            self.warned.add((rt.uid, "Unhealthy"))
            self._event(pod, "Pod", "v1", "Warning", "Unhealthy",
                        f"{probe} probe failed: HTTP probe failed with statuscode: 503", "kubelet")
        probes = rt.failed_probes()
        if probes and now >= probes[0] and (rt.uid, "ReadinessFailed") not in self.warned:
            self.warned.add((rt.uid, "ReadinessFailed"))
            self._event(pod, "Pod", "v1", "Warning", "Unhealthy",
                        "Readiness probe failed: HTTP probe failed with statuscode: 503", "kubelet")

    def _stop_pod(self, pod: dict, now: float) -> None:
        """The kubelet's side of a graceful deletion, one step per tick: a Killing event; the preStop
        hook (the engine serves normally meanwhile), cut short when the grace period ends; SIGTERM;
        SIGKILL when the grace period is over (at least 2 s after SIGTERM); once the engine has
        exited, a last status (container terminated) and the DELETE with period 0 that removes the
        pod object and frees its GPUs. A pod with no running engine goes at once."""
        rt = self.runtime.get(pod["metadata"]["uid"])
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        if rt is None or rt.engine is None:
            self._remove_pod(pod, rt, now, None)
            return
        engine, term = rt.engine, rt.term
        if term is None:
            term = rt.term = Termination(since=now, grace=grace)
            self._event(pod, "Pod", "v1", "Normal", "Killing", f"Stopping container {self._main_container(pod)}",
                        "kubelet")
            self._run_prestop(pod, rt, now)
        term.grace = min(term.grace, grace)
        if term.hook_failed and not term.hook_reported:
            term.hook_reported = True
            self._event(pod, "Pod", "v1", "Warning", "FailedPreStopHook", "PreStopHook failed", "kubelet")
        if term.sigterm_at is None:
            hook_over = term.hook_done and (term.hook_until is None or now >= term.hook_until)
            if hook_over or now >= term.deadline():
                if term.hook:
                    term.prestop_ended = now
                term.sigterm_at = now
                engine.sigterm()
        kill_at = term.kill_at()
        if kill_at is not None and term.sigkill_at is None and not engine.exited.is_set() and now >= kill_at:
            term.sigkill_at = now
            engine.sigkill()
        if engine.exited.is_set():
            term.exited_at = engine.exited_at
            self._remove_pod(pod, rt, now, engine.exit_code)
            return
        pod = self._write_status(pod, rt, now)
        self._probe_events(pod, rt, now)

    def _run_prestop(self, pod: dict, rt: PodRuntime, now: float) -> None:
        hook = prestop_hook(self._engine_container(pod) or {})
        if hook is None:
            return
        term = rt.term
        term.hook = hook[0]
        if hook[0] == "sleep":
            term.hook_until = now + hook[1]
            return
        term.hook_done = False
        threading.Thread(target=self._http_hook, args=(rt.engine, term, hook[1]), name=f"prestop-{rt.name}",
                         daemon=True).start()

    def _http_hook(self, engine: Engine, term: Termination, action: dict) -> None:
        """An httpGet preStop hook: a GET to the pod's engine (whatever port it names). As the
        kubelet does, only a failed connection fails the hook, not the status code."""
        path = str(action.get("path") or "/")
        headers = {h["name"]: str(h.get("value", "")) for h in action.get("httpHeaders") or [] if h.get("name")}
        try:
            conn = http.client.HTTPConnection(engine.host, engine.port,
                                              timeout=max(0.1, term.deadline() - time.time()))
            try:
                conn.request("GET", path if path.startswith("/") else "/" + path, headers=headers)
                conn.getresponse().read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            term.hook_failed = True
        finally:
            term.hook_done = True
            self.store.changed.set()

    def _remove_pod(self, pod: dict, rt: PodRuntime | None, now: float, exit_code: int | None) -> None:
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
        if rt is not None and exit_code is not None:
            self._write_status(pod, rt, now, exit_code)
        try:
            self.store.delete(R_POD, ns, name, grace_period=0, preconditions={"uid": uid})
        except ApiError:
            pass
        rt = self.runtime.pop(uid, None)
        if rt is not None:
            if rt.engine is not None:
                rt.engine.stop()  # already exited, unless the pod had none running
            self._finished(rt, now)

    @staticmethod
    def _loading_probe(pod: dict) -> str | None:
        """"Startup" or "Readiness" when the main container has such an HTTP probe."""
        c = (pod["spec"].get("containers") or [{}])[0]
        if (c.get("startupProbe") or {}).get("httpGet"):
            return "Startup"
        if (c.get("readinessProbe") or {}).get("httpGet"):
            return "Readiness"
        return None

    @staticmethod
    def _main_container(pod: dict) -> str:
        cs = pod["spec"].get("containers") or [{}]
        return cs[0].get("name", "")

    @staticmethod
    def _main_image(pod: dict) -> str:
        cs = pod["spec"].get("containers") or [{}]
        return cs[0].get("image", "")

    def _pod_status(self, pod: dict, rt: PodRuntime, now: float, exit_code: int | None = None) -> dict:
        """The status the kubelet reports. exit_code: the engine has exited (the last status before
        the pod object goes: container terminated, phase Succeeded or Failed)."""
        old = pod.get("status") or {}
        done = exit_code is not None
        ready = not done and rt.is_ready(now)
        bound = now_rfc3339(rt.bound_at)
        stamp = now_rfc3339(now)
        ready_t = now_rfc3339(rt.ready_at) if ready and rt.ready_at else None

        def cond(ctype: str, ok: bool, since: str | None, reason: str | None = None,
                 message: str | None = None) -> dict:
            prev = next((c for c in old.get("conditions") or [] if c.get("type") == ctype), None)
            status = "True" if ok else "False"
            t = since or (bound if prev is None else stamp)
            if prev and prev.get("status") == status:
                t = prev.get("lastTransitionTime", t)
            c = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": t}
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        statuses = []
        containers = pod["spec"].get("containers") or []
        not_ready = [c.get("name") for c in containers] if not ready else []
        for c in containers:
            cid = "containerd://" + hashlib.sha256(f"{rt.uid}/{c.get('name')}".encode()).hexdigest()
            st: dict[str, Any] = {"name": c.get("name"), "image": c.get("image", ""),
                                  "imageID": "", "ready": ready, "restartCount": 0, "started": False}
            if rt.image_pull_error:
                st["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                           "message": f'Back-off pulling image "{c.get("image", "")}"'}}
            elif rt.failing:
                st.update(self._crash_loop_status(rt, c, cid, now))
            elif done:
                st.update({"containerID": cid, "imageID": f"docker.io/{c.get('image', '')}",
                           "state": {"terminated": {"exitCode": exit_code,
                                                    "reason": "Completed" if exit_code == 0 else "Error",
                                                    "startedAt": bound, "finishedAt": stamp, "containerID": cid}}})
            else:
                st.update({"containerID": cid, "started": True, "imageID": f"docker.io/{c.get('image', '')}",
                           "state": {"running": {"startedAt": bound}}})
            statuses.append(st)
        if done:
            reason, msg = "PodCompleted", None
        else:
            reason = None if ready else "ContainersNotReady"
            msg = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else None
        conditions = [
            cond("PodReadyToStartContainers", not done, bound),
            cond("Initialized", True, bound),
            cond("Ready", ready, ready_t, reason, msg),
            cond("ContainersReady", ready, ready_t, reason, msg),
            cond("PodScheduled", True, bound),
        ]
        if rt.image_pull_error:
            phase = "Pending"
        elif done:
            phase = "Succeeded" if exit_code == 0 else "Failed"
        else:
            phase = "Running"
        status = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": rt.ip, "podIPs": [{"ip": rt.ip}],
            "startTime": bound,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass") or self._qos(pod),
        }
        return status

    @staticmethod
    def _crash_loop_status(rt: PodRuntime, c: dict, cid: str, now: float) -> dict:
        state = rt.crash_loop(now)
        code, reason = (137, "OOMKilled") if rt.failure == "oom" else (1, "Error")
        last = {"terminated": {"exitCode": code, "reason": reason, "startedAt": now_rfc3339(state.last_started),
                               "finishedAt": now_rfc3339(state.last_finished), "containerID": cid}}
        if state.running_since is not None:
            current = {"running": {"startedAt": now_rfc3339(state.running_since)}}
        else:
            current = {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": f"back-off {go_duration(state.backoff)} restarting failed container="
                                              f"{c.get('name')} pod={rt.name}_{rt.namespace}({rt.uid})"}}
        return {"containerID": cid, "restartCount": state.restarts, "state": current, "lastState": last}

    # --- status --------------------------------------------------------------------------------------

    def _replicaset_status(self, rs: dict) -> None:
        pods, ready, available = self._pod_counts(rs)
        st = {"replicas": pods, "observedGeneration": rs["metadata"].get("generation", 1)}
        if pods:
            st["fullyLabeledReplicas"] = pods
        if ready:
            st["readyReplicas"] = ready
        if available:
            st["availableReplicas"] = available
        if st != rs.get("status"):
            new = copy.deepcopy(rs)
            new["status"] = st
            self.store.update(R_RS, rs["metadata"]["namespace"], rs["metadata"]["name"], new,
                              subresource="status", check_rv=False)

    def _deployment_status(self, dep: dict) -> None:
        ns, uid = dep["metadata"]["namespace"], dep["metadata"]["uid"]
        spec = dep.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        rss = self._owned(R_RS, ns, uid)
        key = template_key(spec.get("template"))
        new_rs = next((rs for rs in rss if template_key(rs["spec"].get("template")) == key), None)
        total = ready = available = updated = 0
        for rs in rss:
            p, r, a = self._pod_counts(rs)
            total += p
            ready += r
            available += a
            if new_rs is not None and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                updated = p
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False) \
            if (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate" else 0
        old = dep.get("status") or {}
        now = now_rfc3339()

        def cond(ctype: str, status: str, reason: str, message: str) -> dict:
            prev = next((c for c in old.get("conditions") or [] if c.get("type") == ctype), None)
            c = {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
                 "reason": reason, "message": message}
            if prev:
                if prev.get("status") == status:
                    c["lastTransitionTime"] = prev.get("lastTransitionTime", now)
                if (prev.get("status"), prev.get("reason"), prev.get("message")) == (status, reason, message):
                    c["lastUpdateTime"] = prev.get("lastUpdateTime", now)
            return c

        if available >= replicas - max_unavailable:
            avail_c = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail_c = cond("Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else dep["metadata"]["name"]
        complete = new_rs is not None and updated == replicas and available >= replicas and total == replicas
        failing = new_rs is not None and failure_kind(
            ((new_rs["spec"].get("template") or {}).get("metadata") or {}).get("annotations")) is not None
        # Progress deadline: measured from the last change in the rollout's counts.
        progress_key = f"{rs_name}/{updated}/{ready}/{available}/{total}"
        mark = self.progress.get(uid)
        if mark is None or mark[0] != progress_key:
            mark = (progress_key, time.time())
            self.progress[uid] = mark
        deadline = spec.get("progressDeadlineSeconds", 600)
        prev_prog = next((c for c in old.get("conditions") or [] if c.get("type") == "Progressing"), None)
        prev_exceeded = prev_prog is not None and prev_prog.get("reason") == "ProgressDeadlineExceeded" \
            and rs_name in (prev_prog.get("message") or "")
        if complete:
            prog_c = cond("Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif failing or prev_exceeded or (deadline is not None and time.time() - mark[1] > float(deadline)):
            prog_c = cond("Progressing", "False", "ProgressDeadlineExceeded",
                          f'ReplicaSet "{rs_name}" has timed out progressing.')
        else:
            prog_c = cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        st: dict[str, Any] = {"observedGeneration": dep["metadata"].get("generation", 1), "replicas": total,
                              "updatedReplicas": updated}
        if ready:
            st["readyReplicas"] = ready
        if available:
            st["availableReplicas"] = available
        if replicas - available > 0:
            st["unavailableReplicas"] = replicas - available
        st["conditions"] = [avail_c, prog_c]
        if st != old:
            new = copy.deepcopy(dep)
            new["status"] = st
            self.store.update(R_DEP, ns, dep["metadata"]["name"], new, subresource="status", check_rv=False)

    # --- endpoints -----------------------------------------------------------------------------------

    def _endpoints(self) -> None:
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in self.store.list_raw(R_SVC)}
        for ep in self.store.list_raw(R_EP):
            k = (ep["metadata"]["namespace"], ep["metadata"]["name"])
            if k not in services and (ep["metadata"].get("labels") or {}).get(
                    "endpoints.kubernetes.io/managed-by") == "endpoint-controller":
                self.store.delete(R_EP, *k)
        for (ns, name), svc in services.items():
            selector = (svc.get("spec") or {}).get("selector")
            if not selector:
                continue
            ready_addrs, not_ready_addrs = [], []
            port_numbers: dict[str, int] = {}
            for pod in self.store.select(R_POD, ns, {"matchLabels": selector}):
                if not pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                    continue
                rt = self.runtime.get(pod["metadata"]["uid"])
                if rt is None:
                    continue
                addr = {"ip": rt.ip, "nodeName": pod["spec"]["nodeName"],
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"],
                                      "uid": pod["metadata"]["uid"]}}
                (ready_addrs if rt.is_ready() else not_ready_addrs).append(addr)
                for c in pod["spec"].get("containers") or []:
                    for p in c.get("ports") or []:
                        if p.get("name"):
                            port_numbers[p["name"]] = p.get("containerPort")
            ports = []
            for p in (svc["spec"].get("ports") or []):
                tp = p.get("targetPort", p.get("port"))
                if isinstance(tp, str):
                    tp = port_numbers.get(tp, p.get("port"))
                entry = {"port": tp, "protocol": p.get("protocol", "TCP")}
                if p.get("name"):
                    entry["name"] = p["name"]
                ports.append(entry)
            subset: dict[str, Any] = {}
            if ready_addrs:
                subset["addresses"] = ready_addrs
            if not_ready_addrs:
                subset["notReadyAddresses"] = not_ready_addrs
            want = {"metadata": {"name": name, "namespace": ns,
                                 "labels": {**(svc["metadata"].get("labels") or {}),
                                            "endpoints.kubernetes.io/managed-by": "endpoint-controller"}},
                    "subsets": [dict(subset, ports=ports)] if subset else []}
            if not want["subsets"]:
                del want["subsets"]
            cur = self.store.try_get(R_EP, ns, name)
            if cur is None:
                try:
                    self.store.create(R_EP, ns, want, internal=True)
                except ApiError:
                    pass
            elif cur.get("subsets") != want.get("subsets") or cur["metadata"].get("labels") != want["metadata"][
                    "labels"]:
                new = copy.deepcopy(cur)
                new["metadata"]["labels"] = want["metadata"]["labels"]
                if "subsets" in want:
                    new["subsets"] = want["subsets"]
                else:
                    new.pop("subsets", None)
                self.store.update(R_EP, ns, name, new, check_rv=False)

