"""What the emulators' test suites share: an emulator as a subprocess that writes its port to a file
(started, waited for, its stderr kept, stopped), and polling with a deadline (no fixed sleeps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; fail with the last value after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
        time.sleep(interval)


class EmulatorProcess:
    """An emulator in a subprocess on a free port, in a temporary folder of its own (its port file,
    its stderr and whatever the subclass puts there), removed on stop."""

    def __init__(self, prefix: str) -> None:
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.port_file = os.path.join(self.dir, "port")
        self.stderr_path = os.path.join(self.dir, "stderr")

    def launch(self, argv: list[str], cwd: str | None = None, env: dict | None = None) -> None:
        """Starts `argv` (which must write its port to `self.port_file`) and waits until it listens."""
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)
        try:
            self.port = int(wait_until(self._read_port, timeout=20, message="the emulator's port file"))
        except AssertionError:
            self.stop()
            raise AssertionError("the emulator did not start:\n" + self.stderr())
        self.url = f"http://127.0.0.1:{self.port}"

    def _read_port(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the emulator exited with {self.proc.returncode}:\n{self.stderr()}")
        try:
            with open(self.port_file) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def stderr(self) -> str:
        try:
            with open(self.stderr_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
