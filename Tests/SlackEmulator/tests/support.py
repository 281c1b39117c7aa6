"""Shared test helpers: the emulator as a subprocess, HTTP to it, a raw stdlib WebSocket client,
and polling with deadlines (no fixed sleeps)."""

from __future__ import annotations

import base64
import select
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

EMU_DIR = Path(__file__).resolve().parent.parent  # Tests/SlackEmulator
REPO = EMU_DIR.parent.parent
SLACK_VENV_PY = REPO / ".tools" / "slack" / "bin" / "python"
BOT = "xoxb-1-emu-bot"
APP = "xapp-1-A0EMU0001-1-emu"

for folder in (EMU_DIR, REPO / "Tests" / "PythonSupport"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import emulator_process  # noqa: E402
from emulator_process import EmulatorProcess  # noqa: E402

from slackemu.websocket import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, encode_frame, read_frame  # noqa: E402


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    return emulator_process.wait_until(predicate, timeout=timeout, interval=interval, message=message)


class Emulator(EmulatorProcess):
    """slackemu in a subprocess on a free port (started as `python3 Tests/SlackEmulator/slackemu`)."""

    def __init__(self, *args: str) -> None:
        super().__init__("slackemu-test-")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.launch([sys.executable, str(EMU_DIR / "slackemu"), "--port", "0", "--port-file", self.port_file, *args],
                    env=env)

    # ------------------------------------------------------------------ HTTP

    def request(self, verb: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(verb, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def api(self, method: str, args: dict | None = None, *, encoding: str = "json", token: str | None = BOT,
            query: dict | None = None, verb: str = "POST") -> tuple[int, dict, Any]:
        """Call /api/<method>; encoding 'json' | 'form' | 'query' | 'none'."""
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = None
        q = dict(query or {})
        if encoding == "json":
            body = json.dumps(args or {}).encode()
            headers["Content-Type"] = "application/json;charset=utf-8"
        elif encoding == "form":
            body = urllib.parse.urlencode(args or {}).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif encoding == "query":
            q.update(args or {})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = b""
        path = f"/api/{method}" + (f"?{urllib.parse.urlencode(q)}" if q else "")
        status, hdrs, raw = self.request(verb, path, body, headers)
        return status, hdrs, json.loads(raw)

    def ctl(self, path: str, body: dict | None = None) -> Any:
        if body is None:
            status, _, raw = self.request("GET", f"/_emu/{path}")
        else:
            status, _, raw = self.request("POST", f"/_emu/{path}", json.dumps(body).encode(),
                                          {"Content-Type": "application/json"})
        if status != 200:
            raise AssertionError(f"/_emu/{path} -> {status}: {raw!r}")
        return json.loads(raw)

    def envelope(self, eid: str) -> dict:
        return next(e for e in self.ctl("envelopes")["envelopes"] if e["envelope_id"] == eid)

    def connection(self, cid: str) -> dict:
        return next(c for c in self.ctl("connections")["connections"] if c["id"] == cid)

    def ws_url(self) -> str:
        status, _, obj = self.api("apps.connections.open", token=APP, encoding="none")
        assert status == 200 and obj["ok"], obj
        return obj["url"]


class _Reader:
    """Unbuffered-by-the-OS reader with its own buffer, so a select() timeout never loses bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self, n: int) -> bytes:
        if not self.buf:
            data = self.sock.recv(65536)
            if not data:
                return b""
            self.buf = data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        line, sep, rest = self.buf.partition(b"\n")
        self.buf = rest
        return line + sep

    def wait_readable(self, timeout: float) -> bool:
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        return bool(r)


class WSClient:
    """A small RFC 6455 client: masked frames, answers pings (unless told not to), records what it saw."""

    def __init__(self, url: str, *, answer_pings: bool = True, timeout: float = 5.0) -> None:
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.rfile = _Reader(self.sock)
        status = self.rfile.readline().decode()
        self.status = int(status.split()[1])
        self.headers = {}
        while True:
            line = self.rfile.readline().decode().strip()
            if not line:
                break
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.answer_pings = answer_pings
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.close_code: int | None = None
        self.eof = False

    def send(self, obj: Any) -> None:
        self.sock.sendall(encode_frame(OP_TEXT, json.dumps(obj).encode(), mask=True))

    def ping(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(OP_PING, payload, mask=True))

    def recv(self, timeout: float = 5.0) -> dict | None:
        """The next text message as JSON; None on close/EOF; raises socket.timeout after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.rfile.wait_readable(deadline - time.monotonic()):
                raise socket.timeout(f"no frame within {timeout}s")
            try:
                fin, op, data = read_frame(self.rfile, require_mask=False)
            except EOFError:
                self.eof = True
                return None
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                return None
            if op == OP_TEXT:
                return json.loads(data)
            if op == OP_PING:
                self.pings.append(data)
                if self.answer_pings:
                    self.sock.sendall(encode_frame(OP_PONG, data, mask=True))
            elif op == OP_PONG:
                self.pongs.append(data)
            elif op == OP_CLOSE:
                self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                return None

    def recv_type(self, mtype: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"socket closed while waiting for a {mtype!r} message")
            if msg.get("type") == mtype:
                return msg

    def expect_nothing(self, within: float) -> None:
        """Assert no text message arrives within `within` seconds (pings are answered meanwhile)."""
        try:
            msg = self.recv(within)
        except (socket.timeout, TimeoutError):
            return
        raise AssertionError(f"expected no message, got {msg!r}")

    def close(self) -> None:
        try:
            self.sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1000), mask=True))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def connect(emu: Emulator, **kw) -> tuple[WSClient, dict]:
    """Open a Socket Mode connection as an app would; returns the client and its hello."""
    ws = WSClient(emu.ws_url(), **kw)
    assert ws.status == 101, ws.status
    return ws, ws.recv_type("hello")
