"""Shared test helpers: start the emulator as a subprocess, talk HTTP to it, poll with deadlines."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

EMU_DIR = Path(__file__).resolve().parent.parent  # Tests/KubeEmulator
REPO = EMU_DIR.parent.parent
TOOLS = REPO / ".tools" / "bin"
CHART = REPO / "deploy" / "charts" / "vllm-engine"
VALUES = REPO / "deploy" / "values"

if str(EMU_DIR) not in sys.path:
    sys.path.insert(0, str(EMU_DIR))


def tool(name: str) -> str:
    """Path of a binary installed by scripts/install-tools; fails the test clearly if it is missing."""
    path = TOOLS / name
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing: run scripts/install-tools first "
                             f"(it installs helm3, helm4 and kubectl into .tools/bin)")
    return str(path)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; fail with the last value after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
        time.sleep(interval)


class Emulator:
    """The emulator in a subprocess on a free port, with a kubeconfig and a request log."""

    def __init__(self, *args: str, ready_after: float = 0.5) -> None:
        self.dir = tempfile.mkdtemp(prefix="kubeemu-test-")
        self.port_file = os.path.join(self.dir, "port")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.log = os.path.join(self.dir, "requests.jsonl")
        self.stderr_path = os.path.join(self.dir, "stderr")
        env = dict(os.environ, PYTHONPATH=str(EMU_DIR), PYTHONDONTWRITEBYTECODE="1")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubeemu", "--port", "0", "--port-file", self.port_file,
             "--kubeconfig-out", self.kubeconfig, "--log", self.log, "--ready-after", str(ready_after), *args],
            cwd=str(EMU_DIR), env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)
        try:
            self.port = int(wait_until(self._read_port, timeout=20, message="the emulator's port file"))
        except AssertionError:
            self.stop()
            raise AssertionError("the emulator did not start:\n" + self.stderr())
        self.url = f"http://127.0.0.1:{self.port}"

    def _read_port(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the emulator exited with {self.proc.returncode}:\n{self.stderr()}")
        try:
            with open(self.port_file) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def stderr(self) -> str:
        try:
            with open(self.stderr_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

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
