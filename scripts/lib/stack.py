"""The parts a scripted run of InferOps stands on, started the same way by every script that needs
them (scripts/crash-test, scripts/bench-intake, scripts/bench-slack): the Kubernetes API emulator with
a simulated GPU pool, the Slack emulator and the real vllm-router, each on a free port, with its log in
the run's folder (scripts/bench-rollout also restarts a router on its own port)."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StartFailure(Exception):
    """A part did not start; the message ends with the tail of its log."""


EMULATOR = f"{ROOT}/Tests/KubeEmulator"


def start_emulator(folder, gpu_nodes, gpus_per_node, ready_after=1, package=EMULATOR, extra_args=()):
    """Starts the emulator and waits (30 s at most) for its kubeconfig. `package` is the folder
    holding the `kubeemu` package (another checkout's, say); `extra_args` go on its command line.
    Returns (process, kubeconfig path)."""
    kubeconfig = f"{folder}/kubeconfig"
    log = f"{folder}/emulator.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "kubeemu", "--port", "0", "--port-file", f"{folder}/port",
         "--kubeconfig-out", kubeconfig, "--gpu-nodes", str(gpu_nodes), "--gpus-per-node", str(gpus_per_node),
         "--ready-after", str(ready_after), *extra_args],
        env={**os.environ, "PYTHONPATH": package},
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 30
    while not (os.path.exists(f"{folder}/port") and os.path.exists(kubeconfig) and os.path.getsize(kubeconfig) > 0):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise StartFailure("the emulator did not start:\n" + tail(log))
        time.sleep(0.05)
    return process, kubeconfig


def emulator_flags(package=EMULATOR):
    """The command-line flags the emulator in `package` knows (from its `--help`), so a script can
    use a flag only where the emulator has it."""
    result = subprocess.run([sys.executable, "-m", "kubeemu", "--help"], env={**os.environ, "PYTHONPATH": package},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout))


def start_slack_emulator(folder, name="slackemu"):
    """Starts the Slack emulator (Tests/SlackEmulator) and waits (30 s at most) for its port.
    Its port file and log are `name`.port and `name`.log in `folder`. Returns (process, its URL)."""
    port_file = f"{folder}/{name}.port"
    log = f"{folder}/{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "slackemu", "--port", "0", "--port-file", port_file],
        env={**os.environ, "PYTHONPATH": f"{ROOT}/Tests/SlackEmulator", "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 30
    while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise StartFailure("the Slack emulator did not start:\n" + tail(log))
        time.sleep(0.05)
    with open(port_file) as f:
        return process, f"http://127.0.0.1:{int(f.read().strip())}"


def start_router(folder, port=None, metrics_port=None, log_name="router.log"):
    """Starts vllm-router and waits (60 s at most) until it is live: on free ports, or on the ones
    given (a restart on the same address), with its log `log_name` in `folder`.
    Returns (process, its URL)."""
    if port is None or metrics_port is None:
        port, metrics_port = free_ports(2)
    url = f"http://127.0.0.1:{port}"
    log = f"{folder}/{log_name}"
    process = subprocess.Popen(
        [f"{ROOT}/.tools/router/bin/vllm-router", "--enable-igw", "--policy", "round_robin",
         "--host", "127.0.0.1", "--port", str(port), "--prometheus-port", str(metrics_port)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while http_status(f"{url}/liveness") != 200:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise StartFailure(f"vllm-router did not start on port {port}:\n" + tail(log))
        time.sleep(0.1)
    return process, url


def http_status(url):
    """The status of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tail(path, lines=20):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
