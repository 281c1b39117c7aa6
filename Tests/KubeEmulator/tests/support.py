"""Shared test helpers: start the emulator as a subprocess, talk HTTP to it, poll with deadlines."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

EMU_DIR = Path(__file__).resolve().parent.parent  # Tests/KubeEmulator
REPO = EMU_DIR.parent.parent
TOOLS = REPO / ".tools" / "bin"
CHART = REPO / "deploy" / "charts" / "vllm-engine"
VALUES = REPO / "deploy" / "values"

for folder in (EMU_DIR, REPO / "Tests" / "PythonSupport"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from emulator_process import EmulatorProcess, wait_until  # noqa: E402,F401  (wait_until: used by the tests)


def tool(name: str) -> str:
    """Path of a binary installed by scripts/install-tools; fails the test clearly if it is missing."""
    path = TOOLS / name
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing: run scripts/install-tools first "
                             f"(it installs helm3, helm4 and kubectl into .tools/bin)")
    return str(path)


class Emulator(EmulatorProcess):
    """The emulator in a subprocess on a free port, with a kubeconfig and a request log."""

    def __init__(self, *args: str, ready_after: float = 0.5) -> None:
        super().__init__("kubeemu-test-")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.log = os.path.join(self.dir, "requests.jsonl")
        env = dict(os.environ, PYTHONPATH=str(EMU_DIR), PYTHONDONTWRITEBYTECODE="1")
        self.launch(
            [sys.executable, "-m", "kubeemu", "--port", "0", "--port-file", self.port_file,
             "--kubeconfig-out", self.kubeconfig, "--log", self.log, "--ready-after", str(ready_after), *args],
            cwd=str(EMU_DIR), env=env)

    # -----------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        hdrs = {"Accept": "application/json"}
        if data is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None, **kw) -> tuple[int, Any]:
        status, _, raw = self.request(method, path, body, **kw)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, obj = self.call("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path} -> {status}: {obj}")
        return obj

    def ok(self, method: str, path: str, body: Any = None, **kw) -> Any:
        status, obj = self.call(method, path, body, **kw)
        if status not in (200, 201):
            raise AssertionError(f"{method} {path} -> {status}: {obj}")
        return obj

    def pods(self, ns: str, selector: str = "") -> list[dict]:
        q = f"?labelSelector={selector}" if selector else ""
        return self.get(f"/api/v1/namespaces/{ns}/pods{q}")["items"]

    def engines(self) -> list[dict]:
        return self.get("/_emu/engines")["engines"]

    def log_entries(self) -> list[dict]:
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]


class Watch:
    """A watch on a collection from now on, read on a thread of its own: every event with the time it
    arrived, and waiting (with a deadline) for the first that matches."""

    def __init__(self, emu: Emulator, path: str) -> None:
        rv = emu.get(path)["metadata"]["resourceVersion"]
        sep = "&" if "?" in path else "?"
        self.conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=120)
        self.conn.request("GET", f"{path}{sep}watch=true&timeoutSeconds=120&resourceVersion={rv}")
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, dict]] = []  # (monotonic arrival, type, object)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.resp:
                if line.strip():
                    ev = json.loads(line)
                    with self.lock:
                        self.events.append((time.monotonic(), ev["type"], ev["object"]))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed (AttributeError: http.client's response after close)

    def of(self, name: str) -> list[tuple[float, str, dict]]:
        """The events of the object called name so far."""
        with self.lock:
            return [e for e in self.events if e[2]["metadata"]["name"] == name]

    def wait_for(self, name: str, predicate: Callable[[str, dict], bool], timeout: float = 10,
                 message: str = "a watch event") -> tuple[float, str, dict]:
        return wait_until(lambda: next((e for e in self.of(name) if predicate(e[1], e[2])), None),
                          timeout=timeout, message=message)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader, which holds the response's lock
        except OSError:
            pass
        self.conn.close()


def deployment(name: str, *, replicas: int = 1, gpus: int = 1, annotations: dict | None = None,
               args: list[str] | None = None, toleration: bool = True, node_selector: bool = True,
               labels: dict | None = None) -> dict:
    """A vLLM-like Deployment manifest, the shape the chart renders."""
    pod_labels = {"app": name, **(labels or {})}
    container = {
        "name": "vllm", "image": "vllm/vllm-openai:v0.6.3",
        "args": args if args is not None else ["--model", f"org/{name}-model", "--served-model-name", name,
                                               "--port", "8000"],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
    }
    if gpus:
        container["resources"]["limits"]["nvidia.com/gpu"] = str(gpus)
        container["resources"]["requests"]["nvidia.com/gpu"] = str(gpus)
    spec: dict = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    if toleration:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    template: dict = {"metadata": {"labels": pod_labels}, "spec": spec}
    if annotations:
        template["metadata"]["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}}


def service(name: str, selector: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector or {"app": name},
                     "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}}


def run(argv: list[str], timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
