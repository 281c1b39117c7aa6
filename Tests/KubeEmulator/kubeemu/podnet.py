"""Pod addresses: each emulator owns a loopback /16 and gives every pod its own IP in it.

On a real cluster each pod has its own IP and vLLM listens on port 8000 of it, so something outside
the API server (an LLM router) reaches replica i at ``http://<podIP>:8000``. The emulator does the
same on loopback: Linux routes all of 127.0.0.0/8 to ``lo``, so any 127.X.Y.Z can be bound without
configuration.

An emulator picks 127.X.0.0/16 with X random in 2..254 and *claims* it by listening on
127.X.0.1:8000 (whatever its engine port) for its whole life. A second emulator that draws the same X
cannot bind that address and draws again, so two emulators on one host never share a range. Pods get 127.X.0.2,
127.X.0.3, ... in order, never reused while the emulator runs (last octets 0 and 255 are skipped),
and an engine whose address is taken by some unrelated process moves on to the next one.
"""

from __future__ import annotations

import errno
import random
import socket
import threading

FIRST_X, LAST_X = 2, 254
CLAIM_ATTEMPTS = 64
CLAIM_PORT = 8000  # the same for every emulator, so ranges are exclusive whatever --engine-port says


class PodNetworkError(RuntimeError):
    pass


class PodNetwork:
    """The emulator's pod range and its next free address. Thread-safe."""

    def __init__(self, engine_port: int = 8000, rng: random.Random | None = None,
                 claim_port: int = CLAIM_PORT) -> None:
        self.engine_port = engine_port
        self.claim_port = claim_port
        self._lock = threading.Lock()
        self._claim, self.octet = self._claim_range(rng or random.Random())
        self._next = 2  # host number inside the /16; 1 is the claim

    @property
    def cidr(self) -> str:
        return f"127.{self.octet}.0.0/16"

    def _claim_range(self, rng: random.Random) -> tuple[socket.socket, int]:
        tried: list[int] = []
        last: OSError | None = None
        candidates = list(range(FIRST_X, LAST_X + 1))
        rng.shuffle(candidates)
        for x in candidates[:CLAIM_ATTEMPTS]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                # No SO_REUSEADDR, and listening: no other socket can bind this address and port.
                sock.bind((f"127.{x}.0.1", self.claim_port))
                sock.listen(1)
                return sock, x
            except OSError as e:
                sock.close()
                tried.append(x)
                last = e
                if e.errno == errno.EADDRNOTAVAIL:
                    raise PodNetworkError(
                        f"cannot bind 127.{x}.0.1: this system does not route all of 127.0.0.0/8 to loopback "
                        "(Linux does; elsewhere add loopback aliases)") from e
        raise PodNetworkError(f"no free loopback /16 for pod IPs after trying 127.X.0.1:{self.claim_port} "
                              f"for {len(tried)} values of X: {last}")

    def next_ip(self) -> str:
        """The next unused pod address."""
        with self._lock:
            while True:
                n = self._next
                self._next += 1
                if n >= 256 * 256 - 1:
                    raise PodNetworkError(f"the pod range {self.cidr} is exhausted")
                if n % 256 in (0, 255):
                    continue
                return f"127.{self.octet}.{n // 256}.{n % 256}"

    def close(self) -> None:
        self._claim.close()
