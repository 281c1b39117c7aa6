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

Requests are counted per endpoint for tests (see ``/_emu/engines`` on the API server).
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def _tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


def _prompt_text(prompt) -> str:
    if isinstance(prompt, list):
        return " ".join(str(p) for p in prompt)
    return str(prompt or "")


def completion_text(served_name: str, prompt: str, max_tokens: int) -> str:
    """Deterministic text: the same model, prompt and max_tokens always give the same answer."""
    digest = hashlib.sha256(f"{served_name}\0{prompt}".encode()).hexdigest()[:8]
    words = (f"This is a simulated completion from {served_name} for prompt {digest}. "
             "The quick brown fox jumps over the lazy dog and keeps on running through the field "
             "until the tokens run out.").split()
    n = max(1, min(max_tokens, len(words)))
    return " " + " ".join(words[:n])


class Engine:
    """One fake engine. Thread-safe; ``ready_at`` may be changed while it runs."""

    def __init__(self, namespace: str, pod: str, served_name: str, model_id: str,
                 ready_at: float | None, latency: float = 0.0, max_model_len: int = 4096,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.namespace = namespace
        self.pod = pod
        self.served_name = served_name
        self.model_id = model_id
        self.ready_at = ready_at  # None: never ready
        self.latency = latency
        self.max_model_len = max_model_len
        self.created = int(time.time())
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.server = _Server((host, port), self._handler_class())  # OSError when the address is taken
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name=f"engine-{namespace}-{pod}", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_ready(self) -> bool:
        return self.ready_at is not None and time.time() >= self.ready_at

    def stop(self) -> None:
        """Stop serving; returns at once (the listener closes in the background)."""

        def _stop() -> None:
            try:
                self.server.shutdown()
            finally:
                self.server.server_close()

        threading.Thread(target=_stop, daemon=True).start()

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1
            self.counts["total"] += 1

    def reset_counters(self) -> None:
        with self.lock:
            self.counts.clear()

    def info(self) -> dict:
        with self.lock:
            counts = dict(self.counts)
        return {"namespace": self.namespace, "pod": self.pod, "host": self.host, "port": self.port,
                "url": self.url, "servedName": self.served_name, "model": self.model_id,
                "ready": self.is_ready(), "requests": counts}

    # -----------------------------------------------------------------------------------------

    def _handler_class(self):
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            server_version = "kubeemu-fake-vllm/0.1"

            def log_message(self, fmt, *args):  # quiet
                pass

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

            def _loading(self) -> bool:
                if engine.is_ready():
                    return False
                self._error(503, "The model is still loading.", "ServiceUnavailableError")
                return True

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/health":
                    engine.count("health")
                    if engine.is_ready():
                        self._send(200, b"", "application/json")
                    else:
                        self._send(503, b"", "application/json")
                    return
                if path == "/metrics":
                    engine.count("metrics")
                    self._send(200, engine._metrics(), "text/plain; version=0.0.4")
                    return
                if path == "/v1/models":
                    engine.count("models")
                    if self._loading():
                        return
                    self._send(200, {"object": "list", "data": [engine._model_card()]})
                    return
                if path == "/get_server_info":
                    engine.count("server_info")
                    if self._loading():
                        return
                    self._send(200, {"model_id": engine.served_name, "model_path": engine.model_id,
                                     "max_model_len": engine.max_model_len, "version": "0.6.3"})
                    return
                if path == "/get_model_info":
                    engine.count("model_info")
                    if self._loading():
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
                key = {"/v1/completions": "completions", "/v1/chat/completions": "chat_completions",
                       "/tokenize": "tokenize"}.get(path)
                if key is None:
                    engine.count("other")
                    self._send(404, {"detail": "Not Found"})
                    return
                engine.count(key)
                if self._loading():
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
                with engine.lock:
                    engine.running += 1
                try:
                    if engine.latency > 0:
                        time.sleep(engine.latency)
                    if key == "completions":
                        self._completion(req)
                    else:
                        self._chat(req)
                finally:
                    with engine.lock:
                        engine.running -= 1

            def _stream(self, chunks: list[dict]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for c in chunks + ["[DONE]"]:
                    payload = ("data: " + (c if isinstance(c, str) else json.dumps(c)) + "\n\n").encode()
                    self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def _completion(self, req: dict) -> None:
                prompt = _prompt_text(req.get("prompt"))
                max_tokens = int(req.get("max_tokens") or 16)
                text = completion_text(engine.served_name, prompt, max_tokens)
                ctoks = _tokens(text)
                ptoks = _tokens(prompt)
                finish = "length" if ctoks >= max_tokens else "stop"
                rid = "cmpl-" + uuid.uuid4().hex
                usage = {"prompt_tokens": ptoks, "total_tokens": ptoks + ctoks, "completion_tokens": ctoks}
                if req.get("stream"):
                    chunks = [{"id": rid, "object": "text_completion", "created": int(time.time()),
                               "model": engine.served_name,
                               "choices": [{"index": 0, "text": " " + w, "logprobs": None,
                                            "finish_reason": None, "stop_reason": None}]}
                              for i, w in enumerate(text.split())]
                    chunks[-1]["choices"][0]["finish_reason"] = finish
                    self._stream(chunks)
                    return
                self._send(200, {"id": rid, "object": "text_completion", "created": int(time.time()),
                                 "model": engine.served_name,
                                 "choices": [{"index": 0, "text": text, "logprobs": None,
                                              "finish_reason": finish, "stop_reason": None}],
                                 "usage": usage})

            def _chat(self, req: dict) -> None:
                messages = req.get("messages") or []
                prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
                max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
                text = completion_text(engine.served_name, prompt, max_tokens).strip()
                ctoks = _tokens(text)
                ptoks = _tokens(prompt) + 3 * len(messages)
                finish = "length" if ctoks >= max_tokens else "stop"
                rid = "chatcmpl-" + uuid.uuid4().hex
                usage = {"prompt_tokens": ptoks, "total_tokens": ptoks + ctoks, "completion_tokens": ctoks}
                if req.get("stream"):
                    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": engine.served_name}
                    chunks = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                   "logprobs": None, "finish_reason": None}])]
                    for i, w in enumerate(text.split()):
                        chunks.append(dict(base, choices=[{"index": 0, "delta": {"content": (" " if i else "") + w},
                                                           "logprobs": None, "finish_reason": None}]))
                    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                                       "finish_reason": finish}]))
                    self._stream(chunks)
                    return
                self._send(200, {"id": rid, "object": "chat.completion", "created": int(time.time()),
                                 "model": engine.served_name,
                                 "choices": [{"index": 0,
                                              "message": {"role": "assistant", "content": text, "tool_calls": []},
                                              "logprobs": None, "finish_reason": finish, "stop_reason": None}],
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
            counts = dict(self.counts)
            running = self.running
        label = f'model_name="{self.served_name}"'
        done = counts.get("completions", 0) + counts.get("chat_completions", 0)
        return (
            "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{label}}} {running}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{label}}} 0\n"
            "# HELP vllm:request_success_total Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_total counter\n"
            f"vllm:request_success_total{{{label}}} {done}\n"
        )


def parse_engine_args(container: dict) -> tuple[str, str, int | None]:
    """(served name, model id, max_model_len) from a vLLM container's command and args.

    Accepts ``--flag value`` and ``--flag=value``; the served name defaults to the model id.
    """
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    values: dict[str, str] = {}
    i = 0
    positional = []
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
