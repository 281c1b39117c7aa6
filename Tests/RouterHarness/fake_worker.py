#!/usr/bin/env python3
"""A fake vLLM worker for router tests: stdlib only, one process per worker.

    python3 fake_worker.py --name A --model llama-a [--strict] [--port 0] [--port-file FILE]

Answers every request, whatever its path, so a test can see exactly which path the router used:

* ``GET .../health`` -> 200, empty body (like vLLM)
* ``GET .../v1/models`` -> an OpenAI model list with ``--model``
* ``POST`` anything else -> 200, an OpenAI ``text_completion`` whose ``worker`` names this worker,
  ``path`` is the request path as received (query included) and ``requested_model`` is the body's
  ``model``; the choice text says the same. With ``--strict`` a ``model`` other than ``--model``
  gets vLLM's 404 ``NotFoundError`` instead (still carrying ``worker`` and ``path``).
* ``GET /_fake/requests`` -> ``{"worker", "requests": [{"method", "path", "model"}, ...]}``, every
  request so far except the ``/_fake`` ones; ``POST /_fake/reset`` forgets them.

Writes its port to ``--port-file`` (atomically) once it listens. Exits when its stdin closes, so a
crashed test run leaves no worker behind, and unblocks the signals the Swift test runner blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="reported as `worker` in every answer")
    p.add_argument("--model", default="", help="the served model name (for /v1/models and --strict)")
    p.add_argument("--strict", action="store_true", help="404 for a `model` other than --model, as vLLM does")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the port here once listening")
    p.add_argument("--no-lifeline", action="store_true", help="do not exit when stdin closes")
    args = p.parse_args()

    # Children of `swift test` inherit a mask that blocks SIGTERM and friends: undo it.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if not args.no_lifeline:
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()

    lock = threading.Lock()
    log: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without TCP_NODELAY, Nagle plus delayed ACK on the router's keep-alive connections adds ~40 ms.
        disable_nagle_algorithm = True
        server_version = "fake-vllm-worker/1"

        def log_message(self, *_):
            pass

        def reply(self, status: int, body) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            bare = self.path.split("?", 1)[0]
            if bare == "/_fake/requests":
                with lock:
                    self.reply(200, {"worker": args.name, "requests": list(log)})
                return
            if bare == "/_fake/reset":
                with lock:
                    log.clear()
                self.reply(200, {"worker": args.name})
                return
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            model = body.get("model") if isinstance(body, dict) else None
            with lock:
                log.append({"method": self.command, "path": self.path, "model": model})
            if self.command in ("GET", "HEAD"):
                if bare.endswith("/health"):
                    self.reply(200, b"")
                elif bare.endswith("/v1/models"):
                    self.reply(200, {"object": "list", "data": [
                        {"id": args.model, "object": "model", "owned_by": "vllm", "root": args.model}]})
                elif bare.endswith("/get_server_info"):
                    self.reply(200, {"model_id": args.model})
                else:
                    self.reply(404, {"detail": "Not Found", "worker": args.name, "path": self.path})
                return
            if args.strict and model != args.model:
                self.reply(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                           "param": "model", "code": 404},
                                 "worker": args.name, "path": self.path, "requested_model": model})
                return
            self.reply(200, {
                "id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
                "model": model or args.model,
                "choices": [{"index": 0, "text": f"{args.name} got {self.path} for {model}", "logprobs": None,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                "worker": args.name, "path": self.path, "requested_model": model,
            })

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Server((args.host, args.port), Handler)
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.replace(tmp, args.port_file)
    else:
        print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
