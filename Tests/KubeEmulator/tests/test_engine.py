"""The fake engine in-process: time per token, streaming pace, and what a client sees when the engine
gets SIGTERM (vLLM's abort by default, its drain with --shutdown-timeout) or SIGKILL, hangs, or stops
passing /health."""

from __future__ import annotations

import http.client
import json
import threading
import time
import unittest

import tests.support  # noqa: F401  (puts kubeemu on sys.path)

from kubeemu.engine import Behaviour, Engine, completion_text, parse_shutdown_timeout

MODEL = "m"


def engine(**behaviour) -> Engine:
    """A loaded engine on a free port of 127.0.0.1."""
    return Engine("ns", "pod", MODEL, "org/m", ready_at=0, behaviour=Behaviour(**behaviour))


def metric(eng: Engine, name: str) -> float:
    status, text = get(eng, "/metrics")
    line = next(x for x in text.splitlines() if x.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def get(eng: Engine, path: str, timeout: float = 5) -> tuple[int, str]:
    conn = http.client.HTTPConnection(eng.host, eng.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class Request:
    """A completion sent on its own thread; what the client saw: status and body, or the error."""

    def __init__(self, eng: Engine, tokens: int, stream: bool = False, timeout: float = 10,
                 conn: http.client.HTTPConnection | None = None) -> None:
        self.eng, self.tokens, self.stream, self.timeout = eng, tokens, stream, timeout
        self.conn = conn or http.client.HTTPConnection(eng.host, eng.port, timeout=timeout)
        self.status: int | None = None
        self.headers_at: float | None = None
        self.events: list[tuple[float, str]] = []  # (arrival, data) of each SSE event
        self.body = b""
        self.error: Exception | None = None
        self.started = time.monotonic()
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.conn.request("POST", "/v1/completions", body=json.dumps(
                {"model": MODEL, "prompt": "p", "max_tokens": self.tokens, "stream": self.stream}),
                headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            self.status, self.headers_at = resp.status, time.monotonic()
            if not self.stream:
                self.body = resp.read()
                return
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    self.events.append((time.monotonic(), line[6:].strip().decode()))
            resp.read()
        except Exception as e:  # noqa: BLE001 - the client's view is the point
            self.error = e
        finally:
            self.done.set()

    def wait(self, timeout: float = 10) -> "Request":
        if not self.done.wait(timeout):
            raise AssertionError(f"the request did not end within {timeout}s")
        return self

    @property
    def tokens_seen(self) -> int:
        return sum(1 for _, d in self.events if d != "[DONE]")

    @property
    def completed(self) -> bool:
        return bool(self.events) and self.events[-1][1] == "[DONE]"


def until(predicate, timeout: float = 5.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.01)


class LatencyTests(unittest.TestCase):
    def test_a_completion_takes_ttft_plus_a_time_per_token_and_counts_as_running(self):
        eng = engine(ttft=0.05, per_token=0.02)
        self.addCleanup(eng.stop)
        req = Request(eng, 20)
        until(lambda: eng.running == 1, message="the request running")
        self.assertEqual((metric(eng, "vllm:num_requests_running"), metric(eng, "vllm:num_requests_waiting")),
                         (1, 0))
        req.wait()
        took = req.headers_at - req.started
        self.assertGreaterEqual(took, 0.05 + 19 * 0.02 - 0.01)
        self.assertLess(took, 2.0)
        body = json.loads(req.body)
        self.assertEqual((req.status, body["usage"]["completion_tokens"]), (200, 20))
        self.assertEqual((metric(eng, "vllm:num_requests_running"), metric(eng, "vllm:request_success_total")),
                         (0, 1))

    def test_a_stream_sends_its_headers_at_once_and_one_chunk_per_token_on_the_model_s_pace(self):
        eng = engine(ttft=0.4, per_token=0.05)
        self.addCleanup(eng.stop)
        req = Request(eng, 10, stream=True).wait()
        self.assertEqual(req.status, 200)
        self.assertLess(req.headers_at - req.started, 0.3, "headers before the first token")
        self.assertTrue(req.completed)
        self.assertEqual(req.tokens_seen, 10)
        first, last = req.events[0][0], req.events[-2][0]
        self.assertGreaterEqual(first - req.started, 0.39)
        self.assertGreaterEqual(last - first, 9 * 0.05 - 0.02, "tokens paced, not sent at once")

    def test_answers_are_max_tokens_long_and_deterministic(self):
        text = completion_text(MODEL, "hello", 50)
        self.assertEqual(len(text.split()), 50)
        self.assertEqual(completion_text(MODEL, "hello", 50), text)
        self.assertTrue(text.startswith(completion_text(MODEL, "hello", 30)), "the first 30 words are stable")
        self.assertEqual(len(completion_text(MODEL, "hello", 10 ** 6).split()), 4096)

    def test_the_shutdown_timeout_flag_is_read_from_the_container_args(self):
        self.assertEqual(parse_shutdown_timeout({"args": ["--model", "m", "--shutdown-timeout", "30"]}), 30)
        self.assertEqual(parse_shutdown_timeout({"args": ["--shutdown-timeout=2.5"]}), 2.5)
        self.assertEqual(parse_shutdown_timeout({"command": ["vllm", "serve", "m"]}), 0)


class ShutdownTests(unittest.TestCase):
    def test_sigterm_without_shutdown_timeout_aborts_what_runs_and_exits_at_once(self):
        eng = engine(ttft=0.05, per_token=0.02)
        idle = http.client.HTTPConnection(eng.host, eng.port, timeout=5)
        idle.request("GET", "/health")
        self.assertEqual(idle.getresponse().read(), b"")  # a kept-alive connection, idle
        whole, stream = Request(eng, 100), Request(eng, 100, stream=True)
        until(lambda: eng.running == 2 and stream.tokens_seen >= 2, message="two requests running")
        eng.sigterm()
        self.assertTrue(eng.exited.wait(2), "the engine exits")
        whole.wait(), stream.wait()
        self.assertIsInstance(whole.error, http.client.RemoteDisconnected, "no response at all")
        self.assertIsNone(whole.status)
        self.assertFalse(stream.completed, "the stream is cut before data: [DONE]")
        self.assertLess(stream.tokens_seen, 100)
        self.assertEqual((eng.exit_code, eng.info()["aborted"], eng.info()["served"]), (0, 2, 0))
        with self.assertRaises(ConnectionRefusedError):
            get(eng, "/health")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            idle.request("GET", "/health")  # the kept-alive connection was closed too
            idle.getresponse()

    def test_sigterm_with_shutdown_timeout_drains_then_exits_when_idle(self):
        eng = engine(ttft=0.05, per_token=0.02, shutdown_timeout=10)
        self.addCleanup(eng.stop)
        whole, stream = Request(eng, 40), Request(eng, 40, stream=True)
        until(lambda: eng.running == 2, message="two requests running")
        eng.sigterm()
        self.assertEqual(eng.info()["state"], "draining")
        self.assertEqual(get(eng, "/health")[0], 503, "/health fails while draining")
        late = Request(eng, 5).wait()
        self.assertEqual((late.status, json.loads(late.body)["error"]["type"]), (503, "ServiceUnavailableError"))
        whole.wait(), stream.wait()
        self.assertEqual((whole.status, json.loads(whole.body)["usage"]["completion_tokens"]), (200, 40))
        self.assertTrue(stream.completed)
        self.assertTrue(eng.exited.wait(2), "the engine exits once idle")
        self.assertLess(eng.exited_at - eng.draining_since, 5, "well before the timeout")
        info = eng.info()
        self.assertEqual((eng.exit_code, info["served"], info["aborted"], info["rejected"]), (0, 2, 0, 1))

    def test_a_drain_that_runs_out_of_time_aborts_the_rest(self):
        eng = engine(ttft=0.05, per_token=0.05, shutdown_timeout=0.3)
        stream = Request(eng, 100, stream=True)
        until(lambda: stream.tokens_seen >= 1, message="the stream started")
        eng.sigterm()
        self.assertTrue(eng.exited.wait(3))
        self.assertGreaterEqual(eng.exited_at - eng.draining_since, 0.29)
        self.assertFalse(stream.wait().completed)
        self.assertEqual((eng.exit_code, eng.info()["aborted"]), (0, 1))

    def test_sigkill_cuts_everything(self):
        eng = engine(ttft=0.05, per_token=0.02, shutdown_timeout=30)
        stream = Request(eng, 100, stream=True)
        until(lambda: stream.tokens_seen >= 1, message="the stream started")
        eng.sigterm()
        eng.sigkill()
        self.assertTrue(eng.exited.wait(2))
        self.assertFalse(stream.wait().completed)
        self.assertEqual(eng.exit_code, 137)


class FailureTests(unittest.TestCase):
    def test_a_hung_engine_passes_health_and_never_answers_a_completion(self):
        eng = engine(hang=True)
        self.addCleanup(eng.stop)
        self.assertEqual(get(eng, "/health")[0], 200)
        req = Request(eng, 5, timeout=0.5).wait()
        self.assertIsInstance(req.error, TimeoutError)
        until(lambda: eng.running == 1, message="the hung request still running")
        self.assertEqual(metric(eng, "vllm:num_requests_running"), 1)

    def test_health_fails_from_the_unready_time_while_completions_still_work(self):
        eng = Engine("ns", "pod", MODEL, "org/m", ready_at=time.time(), behaviour=Behaviour(unready_after=0.3))
        self.addCleanup(eng.stop)
        self.assertEqual(get(eng, "/health")[0], 200)
        until(lambda: get(eng, "/health")[0] == 503, message="/health 503")
        self.assertGreaterEqual(time.time(), eng.unready_at())
        self.assertEqual(Request(eng, 3).wait().status, 200)


if __name__ == "__main__":
    unittest.main()
