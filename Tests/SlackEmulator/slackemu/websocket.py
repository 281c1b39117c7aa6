"""A minimal RFC 6455 WebSocket endpoint (server side): handshake, framing, masking, ping/pong, close.

Only what Socket Mode needs: text frames (fragmented messages are reassembled), binary frames are read
and ignored, control frames are handled, no extensions (permessage-deflate is declined by not echoing it).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
from typing import BinaryIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(opcode: int, payload: bytes, *, mask: bool = False, fin: bool = True) -> bytes:
    """One frame. Servers send unmasked frames; clients (the tests' raw client) must mask."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


def _read_exact(f: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(f: BinaryIO, *, require_mask: bool) -> tuple[bool, int, bytes]:
    """(fin, opcode, unmasked payload). Raises EOFError on EOF and ProtocolError on a bad frame."""
    b0, b1 = _read_exact(f, 2)
    fin, rsv, opcode = bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if rsv:
        raise ProtocolError(1002, "reserved bits set (no extension was negotiated)")
    if n == 126:
        (n,) = struct.unpack("!H", _read_exact(f, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _read_exact(f, 8))
    if opcode >= 0x8 and (n > 125 or not fin):
        raise ProtocolError(1002, "bad control frame")
    if require_mask and not masked:
        raise ProtocolError(1002, "client frames must be masked")
    key = _read_exact(f, 4) if masked else b""
    payload = _read_exact(f, n) if n else b""
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload


class ServerSocket:
    """The server end of an accepted WebSocket: thread-safe sends, a blocking message reader."""

    def __init__(self, sock: socket.socket, rfile: BinaryIO) -> None:
        self.sock = sock
        self.rfile = rfile
        self._wlock = threading.Lock()
        self.closed = False           # our side is done (close sent or socket torn down)
        self.close_sent = False

    def send_raw(self, data: bytes) -> bool:
        with self._wlock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def send_text(self, text: str) -> bool:
        return self.send_raw(encode_frame(OP_TEXT, text.encode()))

    def ping(self, payload: bytes) -> bool:
        return self.send_raw(encode_frame(OP_PING, payload[:125]))

    def pong(self, payload: bytes) -> bool:
        return self.send_raw(encode_frame(OP_PONG, payload[:125]))

    def send_close(self, code: int = 1000, reason: str = "") -> bool:
        with self._wlock:
            if self.closed or self.close_sent:
                return False
            self.close_sent = True
            try:
                self.sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120]))
                return True
            except OSError:
                return False

    def teardown(self) -> None:
        """Close the TCP connection now (no close frame unless one was already sent)."""
        with self._wlock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
