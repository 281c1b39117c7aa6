"""A fixed-rate load of OpenAI completions through a router, every request classified as a client
sees it (scripts/bench-rollout).

Request k is sent at `start + k / rate`, whatever happened to the ones before (a late send does not
shift the rest; how late sends were is kept). Each goes to the target and phase set when it is sent,
alternates between `/v1/completions` and `/v1/chat/completions`, asks for a number of tokens drawn
from a range, and streams for a fixed share of requests (request k streams when the running share
crosses a whole number, so the share is exact and spread evenly). Each runs in a thread of its own
on a fresh connection, with a deadline for the whole answer.

What counts as complete: a 2xx whose JSON body has `choices`, or, for a stream, a 2xx whose events
reach `data: [DONE]`. Everything else is a failure of one kind: `status` (not 2xx; the body's error
message is kept), `connection` (refused, reset or closed before a status line), `timeout` (no
complete answer within the deadline), `truncated` (a 2xx stream that ended before `data: [DONE]`, or
a 2xx body cut short or not the JSON it should be).
"""

import http.client
import json
import random
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

ENDPOINTS = ("/v1/completions", "/v1/chat/completions")


class Result:
    """One request: what was sent, when, to which target and in which phase, and what came back.
    Times are `time.monotonic()`; `wall` is `time.time()` at the send."""

    __slots__ = ("number", "phase", "target", "endpoint", "stream", "max_tokens", "scheduled", "sent", "wall",
                 "first_byte", "finished", "outcome", "kind", "status", "error", "events")

    def __init__(self, number, phase, target, endpoint, stream, max_tokens, scheduled):
        self.number = number
        self.phase = phase
        self.target = target
        self.endpoint = endpoint
        self.stream = stream
        self.max_tokens = max_tokens
        self.scheduled = scheduled
        self.sent = None
        self.wall = None
        self.first_byte = None  # the status line (non-streaming) or the first event (streaming)
        self.finished = None
        self.outcome = None  # "complete" or "failed"
        self.kind = None  # for failures: status, connection, timeout, truncated
        self.status = None
        self.error = ""
        self.events = 0

    @property
    def latency(self):
        return None if self.finished is None or self.sent is None else self.finished - self.sent

    def fail(self, kind, error):
        self.outcome = "failed"
        self.kind = kind
        self.error = error[:300]


class Load:
    """The generator. `target` (name, base URL) and `phase` are read at each send; change them
    between phases. `start()` begins at once; `stop()` stops sending and waits for the answers."""

    def __init__(self, model, rate, streaming_share, tokens, timeout, seed=1):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.model = model
        self.rate = rate
        self.streaming_share = streaming_share
        self.tokens = tokens  # (low, high), inclusive
        self.timeout = timeout
        self.random = random.Random(seed)
        self.target = None
        self.phase = None
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Enough threads for every request that may be in flight at once (each ends by its deadline).
        self.pool = ThreadPoolExecutor(max_workers=int(rate * (timeout + 2)) + 16, thread_name_prefix="load")
        self.scheduler = threading.Thread(target=self.schedule, name="load-scheduler", daemon=True)
        self.started = None

    def start(self):
        self.started = time.monotonic()
        self.scheduler.start()

    def stop(self):
        self.stopping.set()
        if self.started is not None:
            self.scheduler.join()
        self.pool.shutdown(wait=True)

    def set(self, target=None, phase=None):
        with self.lock:
            if target is not None:
                self.target = target
            if phase is not None:
                self.phase = phase

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def schedule(self):
        number = 0
        while not self.stopping.is_set():
            due = self.started + number / self.rate
            delay = due - time.monotonic()
            if delay > 0 and self.stopping.wait(delay):
                break
            stream = int((number + 1) * self.streaming_share) > int(number * self.streaming_share)
            with self.lock:
                result = Result(number, self.phase, self.target[0], ENDPOINTS[number % len(ENDPOINTS)], stream,
                                self.random.randint(*self.tokens), due)
                url = self.target[1]
                self.results.append(result)
            self.pool.submit(self.send, result, url)
            number += 1

    def send(self, result, base_url):
        parsed = urllib.parse.urlsplit(base_url)
        body = {"model": self.model, "max_tokens": result.max_tokens, "stream": result.stream}
        if result.endpoint == "/v1/completions":
            body["prompt"] = f"Rollout benchmark request {result.number}."
        else:
            body["messages"] = [{"role": "user", "content": f"Rollout benchmark request {result.number}."}]
        data = json.dumps(body).encode()
        result.sent = time.monotonic()
        result.wall = time.time()
        deadline = result.sent + self.timeout
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=self.timeout)
        try:
            try:
                connection.request("POST", result.endpoint, body=data,
                                   headers={"Content-Type": "application/json", "Connection": "close"})
                response = connection.getresponse()
            except (socket.timeout, TimeoutError):
                result.fail("timeout", f"no status line within {self.timeout:g} s")
                return
            except (OSError, http.client.HTTPException) as error:
                result.fail("connection", describe(error))
                return
            result.status = response.status
            if not 200 <= response.status < 300:
                result.first_byte = time.monotonic()
                try:
                    text = response.read(4096).decode(errors="replace")
                except (OSError, http.client.HTTPException):
                    text = ""
                result.fail("status", error_message(text))
                return
            if result.stream:
                self.read_stream(result, response, deadline)
            else:
                self.read_whole(result, response, deadline)
        except Exception as error:  # whatever else breaks a request is still a failure the client saw
            result.fail("connection", describe(error))
        finally:
            result.finished = time.monotonic()
            connection.close()

    def read_whole(self, result, response, deadline):
        try:
            raw = response.read()
        except (socket.timeout, TimeoutError):
            result.fail("timeout", f"the body did not arrive within {self.timeout:g} s")
            return
        except (OSError, http.client.HTTPException) as error:
            result.fail("truncated", f"the body was cut off: {describe(error)}")
            return
        result.first_byte = time.monotonic()
        if result.first_byte > deadline:
            result.fail("timeout", f"answered after {result.first_byte - result.sent:.1f} s")
            return
        try:
            choices = json.loads(raw).get("choices")
        except (ValueError, AttributeError):
            result.fail("truncated", f"a 2xx body that is not the JSON of a completion ({len(raw)} bytes)")
            return
        if not choices:
            result.fail("truncated", "a 2xx body without choices")
            return
        result.outcome = "complete"

    def read_stream(self, result, response, deadline):
        done = False
        try:
            while True:
                if time.monotonic() > deadline:
                    result.fail("timeout", f"the stream had not ended after {self.timeout:g} s "
                                           f"({result.events} events)")
                    return
                line = response.readline()
                if not line:
                    break
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                if result.first_byte is None:
                    result.first_byte = time.monotonic()
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    break
                result.events += 1
        except (socket.timeout, TimeoutError):
            result.fail("timeout", f"the stream stalled for {self.timeout:g} s after {result.events} events")
            return
        except (OSError, http.client.HTTPException) as error:
            result.fail("truncated", f"the stream broke after {result.events} events: {describe(error)}")
            return
        if done:
            result.outcome = "complete"
        else:
            result.fail("truncated", f"the stream ended after {result.events} events without data: [DONE]")


def describe(error):
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def error_message(text):
    """The message of an OpenAI-style error body, else the body's first line."""
    try:
        body = json.loads(text)
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return (text.strip().splitlines() or [""])[0]
