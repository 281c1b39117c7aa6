"""python3 -m kubeemu: run the Kubernetes API emulator with a simulated GPU cluster."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .controller import ClusterConfig, Controller
from .podnet import PodNetworkError
from .server import RequestLog, make_server
from .store import Store


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def kubeconfig(server: str) -> str:
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: emulator\n"
        "  cluster:\n"
        f"    server: {server}\n"
        "contexts:\n"
        "- name: emulator\n"
        "  context:\n"
        "    cluster: emulator\n"
        "    user: emulator\n"
        "    namespace: default\n"
        "current-context: emulator\n"
        "users:\n"
        "- name: emulator\n"
        "  user:\n"
        "    token: kubeemu-token\n"
        "preferences: {}\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m kubeemu",
                                description="Kubernetes API emulator with a simulated GPU node pool, "
                                            "for testing with the real helm and kubectl binaries.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default 0)")
    p.add_argument("--port-file", help="write the bound port here once listening (written atomically)")
    p.add_argument("--kubeconfig-out", help="write a kubeconfig (cluster/context/user 'emulator') here")
    p.add_argument("--gpu-nodes", type=int, default=2, help="GPU nodes gpu-node-1..N (default 2)")
    p.add_argument("--gpus-per-node", type=int, default=4, help="nvidia.com/gpu per GPU node (default 4)")
    p.add_argument("--cpu-nodes", type=int, default=1, help="CPU-only nodes cpu-node-1..N (default 1)")
    p.add_argument("--ready-after", type=float, default=2.0,
                   help="seconds from scheduling until a pod is Ready, unless its template says otherwise "
                        "(default 2)")
    p.add_argument("--engine-latency", type=float, default=0.0,
                   help="extra seconds before each fake completion's first token (default 0; per pod: "
                        "inferops.dev/simulate-latency-ms)")
    p.add_argument("--ttft-ms", type=float, default=0.0,
                   help="milliseconds to a completion's first token (default 0; per pod: "
                        "inferops.dev/simulate-ttft-ms)")
    p.add_argument("--ms-per-token", type=float, default=0.0,
                   help="milliseconds per further token (default 0; per pod: inferops.dev/simulate-ms-per-token)")
    p.add_argument("--crash-backoff", type=float, default=10.0,
                   help="seconds of a crash-looping container's first back-off, doubling up to 300 "
                        "(default 10, as the kubelet; at least 0.1)")
    p.add_argument("--engine-port", type=int, default=8000,
                   help="port each fake engine listens on, on its pod's own IP (default 8000, as vLLM)")
    p.add_argument("--log", help="append a JSON line per API request to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = Store()
    try:
        controller = Controller(store, ClusterConfig(gpu_nodes=args.gpu_nodes, gpus_per_node=args.gpus_per_node,
                                                     cpu_nodes=args.cpu_nodes, ready_after=args.ready_after,
                                                     engine_latency=args.engine_latency,
                                                     ttft=args.ttft_ms / 1000.0,
                                                     per_token=args.ms_per_token / 1000.0,
                                                     crash_backoff=args.crash_backoff,
                                                     engine_port=args.engine_port))
    except PodNetworkError as e:
        print(f"kubeemu: {e}", file=sys.stderr, flush=True)
        return 1
    controller.bootstrap()
    server = make_server(args.host, args.port, store, controller, RequestLog(args.log))
    port = server.server_address[1]
    url = f"http://{args.host}:{port}"
    controller.start()
    serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="kubeemu-http",
                             daemon=True)
    serve.start()
    if args.kubeconfig_out:
        _write_atomic(args.kubeconfig_out, kubeconfig(url))
    if args.port_file:
        _write_atomic(args.port_file, f"{port}\n")
    print(f"kubeemu: listening on {url} ({args.gpu_nodes} GPU nodes x {args.gpus_per_node} GPUs, "
          f"{args.cpu_nodes} CPU nodes, ready after {args.ready_after:g}s; pods in {controller.podnet.cidr}, "
          f"engines on port {args.engine_port})", file=sys.stderr, flush=True)

    done = threading.Event()

    def stop(signum, frame):  # noqa: ARG001
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stopping.set()
        server.shutdown()
        controller.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
