"""A TCP balancer standing in for a Kubernetes Service in front of several router processes (a
router StatefulSet's pods), for scripts that restart one router while clients keep calling.

What it does is what kube-proxy and the endpoints controller do together, in miniature:
  - new connections go round robin to the backends that are ready and not being deleted; a
    connection, once made, stays with its backend until either side closes it;
  - ready means the backend's readiness probe passes: `GET <probe path>` answers 200, polled every
    `period` seconds (vllm-router in IGW mode answers `/v1/models` with 503 while its registry is
    empty, so a restarted router takes no traffic until it has been filled);
  - `drain(name)` takes a backend out of rotation at once (a pod whose deletion began leaves the
    endpoints while its preStop hook runs); its open connections go on;
  - there are no retries: a connection to a backend that refuses it is the client's failure.
"""

import socket
import threading
import time

from stack import http_status


class Balancer:
    def __init__(self, backends, probe_path="/v1/models", period=0.25, host="127.0.0.1"):
        """`backends`: name → (host, port)."""
        self.backends = dict(backends)
        self.probe_path = probe_path
        self.period = period
        self.ready = {name: False for name in self.backends}
        self.rounds = 0  # probe rounds done
        self.draining = set()
        self.lock = threading.Lock()
        self.turn = 0
        self.stopping = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.connections = {name: 0 for name in self.backends}  # made, per backend
        self.refused = 0  # connections with no backend to go to
        self.threads = [threading.Thread(target=self.accept, daemon=True),
                        threading.Thread(target=self.probe, daemon=True)]
        for thread in self.threads:
            thread.start()

    # ---------------------------------------------------------------------------------------------
    # endpoints

    def drain(self, name):
        with self.lock:
            self.draining.add(name)

    def undrain(self, name):
        with self.lock:
            self.draining.discard(name)

    def is_ready(self, name):
        with self.lock:
            return self.ready[name]

    def eligible(self):
        with self.lock:
            return [name for name in self.backends if self.ready[name] and name not in self.draining]

    def probe(self):
        while not self.stopping.is_set():
            for name, (host, port) in self.backends.items():
                ready = http_status(f"http://{host}:{port}{self.probe_path}") == 200
                with self.lock:
                    self.ready[name] = ready
            with self.lock:
                self.rounds += 1
            self.stopping.wait(self.period)

    def wait_probed(self, name, ready, timeout):
        """Waits until a probe round that began after this call finds `name` ready (or not)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            after = self.rounds + 1  # the round running now may have begun before
        while time.monotonic() < deadline:
            with self.lock:
                if self.rounds > after and self.ready[name] == ready:
                    return True
            time.sleep(0.02)
        return False

    # ---------------------------------------------------------------------------------------------
    # connections

    def pick(self):
        with self.lock:
            names = [name for name in self.backends if self.ready[name] and name not in self.draining]
            if not names:
                return None
            self.turn += 1
            name = names[self.turn % len(names)]
            self.connections[name] += 1
            return name

    def accept(self):
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        name = self.pick()
        if name is None:
            with self.lock:
                self.refused += 1
            client.close()
            return
        try:
            backend = socket.create_connection(self.backends[name], timeout=5)
            backend.settimeout(None)
        except OSError:
            client.close()
            return
        upstream = threading.Thread(target=pipe, args=(client, backend), daemon=True)
        upstream.start()
        pipe(backend, client)
        upstream.join()
        for end in (client, backend):
            try:
                end.close()
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass


def pipe(source, sink):
    """Copies until `source` ends, then ends `sink`'s sending side."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass

