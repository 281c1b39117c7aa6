"""A fake OpenAI-compatible inference engine (the parts of vLLM's HTTP API that InferOps uses).

One engine runs per bound pod, inside the emulator's process, listening on the pod's IP (a loopback
address of the emulator's own range, see ``podnet``) and port 8000, as vLLM does in a real pod.
While the pod is "loading" (before its ready time) every endpoint answers 503; afterwards:

* ``GET /health`` -> 200 (empty body, like vLLM)
* ``GET /v1/models`` -> OpenAI model list with the served name, ``root`` = the model id
* ``POST /v1/completions`` and ``POST /v1/chat/completions`` -> OpenAI response shapes with usage,
  deterministic text, optional SSE streaming (``"stream": true``); a wrong ``model`` gives vLLM's
  404 ``NotFoundError``
* ``GET /metrics`` (Prometheus text), ``GET /get_server_info``, ``GET /get_model_info``,
  ``POST /tokenize`` (what vllm-router may call)

Time passes as on a GPU (``Behaviour``): the first token after a TTFT, each further token after a
per-token time, streamed chunks paced the same way, so a request can be in flight when its pod
stops. The engine stops the way vLLM does (``sigterm``): with ``--shutdown-timeout N`` it drains
(new requests and ``/health`` get 503, running requests finish, exit when none is left or N
seconds passed); without it (vLLM's default) it aborts at once: a waiting client's connection is
closed without a response, a stream is cut before ``data: [DONE]``. ``sigkill`` cuts everything.

Requests are counted per endpoint and by outcome for tests (see ``/_emu/engines`` and
``/_emu/pods`` on the API server).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

MAX_COMPLETION_TOKENS = 4096
DEFAULT_MAX_TOKENS = 16  # when a request names none (vLLM would fill the context; tests want short answers)
EXIT_SIGKILL = 137  # 128 + SIGKILL, what the container runtime reports for a killed process


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # Connections the engine cuts on exit fail in their handler threads; that is the point.
        pass


class _Aborted(Exception):
    """The engine died while a request was running."""


def _tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


def _prompt_text(prompt) -> str:
    if isinstance(prompt, list):
        return " ".join(str(p) for p in prompt)
    return str(prompt or "")


def completion_text(served_name: str, prompt: str, max_tokens: int) -> str:
    """Deterministic text of exactly ``max_tokens`` words (one token each; at most 4096): the same
    model, prompt and max_tokens always give the same answer, and the first 30 words never change."""
    digest = hashlib.sha256(f"{served_name}\0{prompt}".encode()).hexdigest()[:8]
    words = (f"This is a simulated completion from {served_name} for prompt {digest}. "
             "The quick brown fox jumps over the lazy dog and keeps on running through the field "
             "until the tokens run out.").split()
    n = max(1, min(max_tokens, MAX_COMPLETION_TOKENS))
    return " " + " ".join(itertools.islice(itertools.cycle(words), n))


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """How an engine spends time and how it stops or fails; the controller reads it from the pod's
    annotations, the emulator's flags and the container's args."""

    latency: float = 0.0  # extra seconds before the first token (--engine-latency, simulate-latency-ms)
    ttft: float = 0.0  # seconds from the request to the first token
    per_token: float = 0.0  # seconds between two tokens
    shutdown_timeout: float = 0.0  # vLLM's --shutdown-timeout: > 0 drains on SIGTERM, 0 aborts
    unready_after: float | None = None  # /health answers 503 from this many seconds after ready
    hang: bool = False  # completions are accepted and never answered

    def token_due(self, i: int) -> float:
        """Seconds from the request until token i (from 0) is produced."""
        return self.latency + self.ttft + i * self.per_token


class Engine:
    """One fake engine. Thread-safe; ``ready_at`` may be changed while it runs.

    ``state`` is ``running``, then ``draining`` (after SIGTERM with a shutdown timeout), then
    ``exited``; ``exited`` (an Event) is set once the listener is closed and every connection cut,
    and ``on_exit`` is called then.
    """

    def __init__(self, namespace: str, pod: str, served_name: str, model_id: str,
                 ready_at: float | None, max_model_len: int = 4096, host: str = "127.0.0.1", port: int = 0,
                 behaviour: Behaviour | None = None, on_exit: Callable[[], None] | None = None) -> None:
        self.namespace = namespace
        self.pod = pod
        self.served_name = served_name
        self.model_id = model_id
        self.ready_at = ready_at  # None: never ready
        self.behaviour = behaviour or Behaviour()
        self.max_model_len = max_model_len
        self.on_exit = on_exit
        self.created = int(time.time())
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified whenever a running request ends
        self.counts: collections.Counter[str] = collections.Counter()  # requests per endpoint
        self.outcomes: collections.Counter[str] = collections.Counter()  # served, aborted, rejected, cancelled
        self.running = 0
        self.state = "running"
        self.draining_since: float | None = None
        self.exit_code: int | None = None
        self.exited_at: float | None = None
        self.exited = threading.Event()
        self.dead = threading.Event()  # set the moment the process "dies": running requests are cut
        self.connections: set[socket.socket] = set()
        self.server = _Server((host, port), self._handler_class())  # OSError when the address is taken
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"engine-{namespace}-{pod}", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_ready(self) -> bool:
        """Loaded: the weights are in (the pod's ready time has come)."""
        return self.ready_at is not None and time.time() >= self.ready_at

    def unready_at(self) -> float | None:
        """When /health starts failing while the engine still runs (simulate-unready-after-seconds)."""
        if self.ready_at is None or self.behaviour.unready_after is None:
            return None
        return self.ready_at + self.behaviour.unready_after

    def healthy(self) -> bool:
        """What GET /health answers: 200 once loaded, 503 while draining or after unready_at."""
        if self.state != "running" or not self.is_ready():
            return False
        lost = self.unready_at()
        return lost is None or time.time() < lost

    # -----------------------------------------------------------------------------------------
    # signals

    def sigterm(self) -> None:
        """vLLM's SIGTERM handling. Returns at once."""
        with self.lock:
            if self.state != "running":
                return
            if self.behaviour.shutdown_timeout > 0:
                self.state = "draining"
                self.draining_since = time.time()
                threading.Thread(target=self._drain, name=f"engine-drain-{self.pod}", daemon=True).start()
                return
        self._exit(0)

    def sigkill(self) -> None:
        """The process dies now. Returns at once."""
        self._exit(EXIT_SIGKILL)

    def stop(self) -> None:
        """Stop serving (the emulator stops, the pod is gone at once); returns at once."""
        self.sigkill()

    def _drain(self) -> None:
        deadline = (self.draining_since or time.time()) + self.behaviour.shutdown_timeout
        with self.lock:
            while self.running and self.state == "draining":
                remaining = deadline - time.time()
                if remaining <= 0:
                    break
                self.idle.wait(remaining)
        self._exit(0)  # what is still running after the timeout is aborted

    def _exit(self, code: int) -> None:
        with self.lock:
            if self.state == "exited":
                return
            self.state = "exited"
            self.exit_code = code
            self.dead.set()
            self.idle.notify_all()
            conns = list(self.connections)
        for conn in conns:
            _cut(conn)

        def close_listener() -> None:
            try:
                self.server.shutdown()
            finally:
                self.server.server_close()
                with self.lock:
                    late = list(self.connections)
                for conn in late:
                    _cut(conn)
                self.exited_at = time.time()
                self.exited.set()
                if self.on_exit:
                    self.on_exit()

        threading.Thread(target=close_listener, name=f"engine-exit-{self.pod}", daemon=True).start()

    def _track(self, conn: socket.socket) -> None:
        with self.lock:
            if self.state == "exited":
                _cut(conn)
            else:
                self.connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self.lock:
            self.connections.discard(conn)

    def wait_until(self, t: float | None) -> None:
        """Sleep until time t (None: forever) as a running request does; raises _Aborted if the
        engine dies first."""
        remaining = None if t is None else t - time.time()
        if remaining is not None and remaining <= 0:
            dead = self.dead.is_set()
        else:
            dead = self.dead.wait(remaining)
        if dead:
            raise _Aborted()

    # -----------------------------------------------------------------------------------------
    # counters

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1
            self.counts["total"] += 1

    def outcome(self, key: str) -> None:
        with self.lock:
            self.outcomes[key] += 1

    def reset_counters(self) -> None:
        with self.lock:
            self.counts.clear()
            self.outcomes.clear()

    def info(self) -> dict:
        with self.lock:
            counts = dict(self.counts)
            outcomes = dict(self.outcomes)
            running = self.running
            state = self.state
        if state == "running" and not self.is_ready():
            state = "loading"
        return {"namespace": self.namespace, "pod": self.pod, "host": self.host, "port": self.port,
                "url": self.url, "servedName": self.served_name, "model": self.model_id,
                "ready": self.is_ready(), "state": state, "exitCode": self.exit_code, "inFlight": running,
                "served": outcomes.get("served", 0), "aborted": outcomes.get("aborted", 0),
                "rejected": outcomes.get("rejected", 0), "cancelled": outcomes.get("cancelled", 0),
                "requests": counts}

    # -----------------------------------------------------------------------------------------

    def _handler_class(self):
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            server_version = "kubeemu-fake-vllm/0.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                engine._track(self.connection)

            def finish(self):
                try:
                    super().finish()
                except OSError:
                    pass
                finally:
                    engine._untrack(self.connection)

            def _gone(self) -> bool:
                """A request reaching a dead engine (on a connection cut a moment ago) gets nothing."""
                if engine.state != "exited":
                    return False
                self.close_connection = True
                return True

            def _send(self, code: int, body, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else (
                    json.dumps(body).encode() if not isinstance(body, str) else body.encode())
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, code: int, message: str, etype: str, param: str | None = None) -> None:
                err = {"message": message, "type": etype, "param": param, "code": code}
                self._send(code, {"error": err})

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _unavailable(self) -> bool:
                """503 while loading or draining (vLLM rejects new requests once shutdown started)."""
                if engine.state == "draining":
                    self._error(503, "The server is shutting down.", "ServiceUnavailableError")
                    return True
                if engine.is_ready():
                    return False
                self._error(503, "The model is still loading.", "ServiceUnavailableError")
                return True

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                if self._gone():
                    return
                path = self.path.split("?", 1)[0]
                if path == "/health":
                    engine.count("health")
                    self._send(200 if engine.healthy() else 503, b"", "application/json")
                    return
                if path == "/metrics":
                    engine.count("metrics")
                    self._send(200, engine._metrics(), "text/plain; version=0.0.4")
                    return
                if path == "/v1/models":
                    engine.count("models")
                    if self._unavailable():
                        return
                    self._send(200, {"object": "list", "data": [engine._model_card()]})
                    return
                if path == "/get_server_info":
                    engine.count("server_info")
                    if self._unavailable():
                        return
                    self._send(200, {"model_id": engine.served_name, "model_path": engine.model_id,
                                     "max_model_len": engine.max_model_len, "version": "0.6.3"})
                    return
                if path == "/get_model_info":
                    engine.count("model_info")
                    if self._unavailable():
                        return
                    self._send(200, {"model_path": engine.model_id, "served_model_name": engine.served_name,
                                     "is_generation": True})
                    return
                if path == "/version":
                    self._send(200, {"version": "0.6.3"})
                    return
                engine.count("other")
                self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                path = self.path.split("?", 1)[0]
                raw = self._body()
                if self._gone():
                    return
                key = {"/v1/completions": "completions", "/v1/chat/completions": "chat_completions",
                       "/tokenize": "tokenize"}.get(path)
                if key is None:
                    engine.count("other")
                    self._send(404, {"detail": "Not Found"})
                    return
                engine.count(key)
                if self._unavailable():
                    if key != "tokenize":
                        engine.outcome("rejected")
                    return
                try:
                    req = json.loads(raw or b"{}")
                    if not isinstance(req, dict):
                        raise ValueError("body is not an object")
                except ValueError as e:
                    self._error(400, f"Invalid request body: {e}", "BadRequestError")
                    return
                model = req.get("model") or engine.served_name
                if model != engine.served_name:
                    self._error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
                    return
                if key == "tokenize":
                    text = _prompt_text(req.get("prompt") or "")
                    toks = list(range(_tokens(text)))
                    self._send(200, {"count": len(toks), "max_model_len": engine.max_model_len, "tokens": toks})
                    return
                started = time.time()
                with engine.lock:
                    engine.running += 1
                try:
                    if engine.behaviour.hang:
                        engine.wait_until(None)
                    if key == "completions":
                        self._completion(req, started)
                    else:
                        self._chat(req, started)
                    engine.outcome("served")
                except (_Aborted, OSError):
                    # The engine died (no response, the connection is cut), or the client left.
                    engine.outcome("aborted" if engine.dead.is_set() else "cancelled")
                    self.close_connection = True
                finally:
                    with engine.lock:
                        engine.running -= 1
                        engine.idle.notify_all()

            def _stream(self, chunks: list[tuple[int, dict]], started: float) -> None:
                """SSE as vLLM sends it: the headers at once, each chunk when its token is produced,
                then ``data: [DONE]``. chunks: (token index, chunk)."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, c in chunks:
                    engine.wait_until(started + engine.behaviour.token_due(i))
                    self._chunk(("data: " + json.dumps(c) + "\n\n").encode())
                engine.wait_until(time.time())
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, payload: bytes) -> None:
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")

            def _whole(self, tokens: int, started: float, body: dict) -> None:
                engine.wait_until(started + engine.behaviour.token_due(max(0, tokens - 1)))
                self._send(200, body)

            def _completion(self, req: dict, started: float) -> None:
                prompt = _prompt_text(req.get("prompt"))
                max_tokens = int(req.get("max_tokens") or DEFAULT_MAX_TOKENS)
                text = completion_text(engine.served_name, prompt, min(max_tokens, engine.max_model_len))
                ctoks = _tokens(text)
                ptoks = _tokens(prompt)
                finish = "length" if ctoks >= max_tokens else "stop"
                rid = "cmpl-" + uuid.uuid4().hex
                usage = {"prompt_tokens": ptoks, "total_tokens": ptoks + ctoks, "completion_tokens": ctoks}
                if req.get("stream"):
                    chunks = [(i, {"id": rid, "object": "text_completion", "created": int(time.time()),
                                   "model": engine.served_name,
                                   "choices": [{"index": 0, "text": " " + w, "logprobs": None,
                                                "finish_reason": None, "stop_reason": None}]})
                              for i, w in enumerate(text.split())]
                    chunks[-1][1]["choices"][0]["finish_reason"] = finish
                    self._stream(chunks, started)
                    return
                self._whole(ctoks, started, {"id": rid, "object": "text_completion", "created": int(time.time()),
                                             "model": engine.served_name,
                                             "choices": [{"index": 0, "text": text, "logprobs": None,
                                                          "finish_reason": finish, "stop_reason": None}],
                                             "usage": usage})

            def _chat(self, req: dict, started: float) -> None:
                messages = req.get("messages") or []
                prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
                max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or DEFAULT_MAX_TOKENS)
                text = completion_text(engine.served_name, prompt, min(max_tokens, engine.max_model_len)).strip()
                ctoks = _tokens(text)
                ptoks = _tokens(prompt) + 3 * len(messages)
                finish = "length" if ctoks >= max_tokens else "stop"
                rid = "chatcmpl-" + uuid.uuid4().hex
                usage = {"prompt_tokens": ptoks, "total_tokens": ptoks + ctoks, "completion_tokens": ctoks}
                if req.get("stream"):
                    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": engine.served_name}
                    chunks = [(0, dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "logprobs": None, "finish_reason": None}]))]
                    for i, w in enumerate(text.split()):
                        chunks.append((i, dict(base, choices=[{"index": 0,
                                                               "delta": {"content": (" " if i else "") + w},
                                                               "logprobs": None, "finish_reason": None}])))
                    chunks.append((ctoks - 1, dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                                                   "finish_reason": finish}])))
                    self._stream(chunks, started)
                    return
                self._whole(ctoks, started, {"id": rid, "object": "chat.completion", "created": int(time.time()),
                                             "model": engine.served_name,
                                             "choices": [{"index": 0,
                                                          "message": {"role": "assistant", "content": text,
                                                                      "tool_calls": []},
                                                          "logprobs": None, "finish_reason": finish,
                                                          "stop_reason": None}],
                                             "usage": usage, "prompt_logprobs": None})

        return Handler

    def _model_card(self) -> dict:
        return {"id": self.served_name, "object": "model", "created": self.created, "owned_by": "vllm",
                "root": self.model_id, "parent": None, "max_model_len": self.max_model_len,
                "permission": [{"id": "modelperm-" + hashlib.md5(self.served_name.encode()).hexdigest(),
                                "object": "model_permission", "created": self.created, "allow_create_engine": False,
                                "allow_sampling": True, "allow_logprobs": True, "allow_search_indices": False,
                                "allow_view": True, "allow_fine_tuning": False, "organization": "*",
                                "group": None, "is_blocking": False}]}

    def _metrics(self) -> str:
        with self.lock:
            served = self.outcomes.get("served", 0)
            running = self.running
        label = f'model_name="{self.served_name}"'
        return (
            "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{label}}} {running}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{label}}} 0\n"
            "# HELP vllm:request_success_total Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_total counter\n"
            f"vllm:request_success_total{{{label}}} {served}\n"
        )


def _cut(conn: socket.socket) -> None:
    """Close a connection the way a dying process does: the peer reads EOF mid-response."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _engine_flags(container: dict) -> tuple[dict[str, str], list[str]]:
    """A vLLM container's ``--flag value`` and ``--flag=value`` options (first wins) and its
    positional words, from its command and args."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    values: dict[str, str] = {}
    positional = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a[2:].split("=", 1)
                values.setdefault(k, v)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                values.setdefault(a[2:], argv[i + 1])
                i += 1
            else:
                values.setdefault(a[2:], "")
        else:
            positional.append(a)
        i += 1
    return values, positional


def parse_engine_args(container: dict) -> tuple[str, str, int | None]:
    """(served name, model id, max_model_len) from a vLLM container's command and args.

    Accepts ``--flag value`` and ``--flag=value``; the served name defaults to the model id.
    """
    values, positional = _engine_flags(container)
    model = values.get("model")
    if not model:
        # `vllm serve MODEL ...`
        if len(positional) >= 2 and positional[0].endswith("vllm") and positional[1] == "serve":
            model = positional[2] if len(positional) > 2 else ""
        elif positional and positional[0] == "serve" and len(positional) > 1:
            model = positional[1]
    model = model or "unknown-model"
    served = (values.get("served-model-name") or model).split(",")[0].strip() or model
    mml = values.get("max-model-len")
    try:
        max_len = int(mml) if mml else None
    except ValueError:
        max_len = None
    return served, model, max_len


def parse_shutdown_timeout(container: dict) -> float:
    """vLLM's ``--shutdown-timeout`` in seconds; 0 (vLLM's default: abort on SIGTERM) when absent or bad."""
    raw = _engine_flags(container)[0].get("shutdown-timeout")
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        return 0.0
