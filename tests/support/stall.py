"""A loopback TCP proxy that can stall: connections are accepted and never answered.

Unlike :class:`tests.support.proxy.CuttableProxy` (connections die at once, as in a
restart), a stall is the hard case for a client: the server (or something in between,
a half-dead load balancer, a network that drops packets) accepts the TCP connection and
then says nothing, so only the client's own timeouts or an interrupt end the wait.

* ``StallingProxy(host, port)`` forwards to the upstream until :meth:`stall`;
  ``StallingProxy(None)`` stalls from the start (a black hole: nothing upstream).
* While stalled, new connections are accepted and left unanswered, and open ones stop
  forwarding in both directions (their bytes are held, not delivered).
* :meth:`wait_stalled` waits for the positive event a test needs before it acts: the
  client really is stuck on the proxy (a connection was accepted, or a request's bytes
  were held, while stalled). A client that only waits for more of a stream (a watch, a
  log) sends nothing: :attr:`open_clients` after :meth:`stall` says it is connected, so
  whatever it waits for can no longer come.

TLS passes through untouched, as with CuttableProxy.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.proxy import dial, kill_socket


class StallingProxy:
    def __init__(self, upstream_host: str | None, upstream_port: int = 0, *,
                 stalled: bool | None = None) -> None:
        self.upstream = None if upstream_host is None else (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0  # every connection accepted
        self.open_clients = 0  # client connections open now
        self.stalled_hits = 0  # connections accepted, or requests held, while stalled
        self._stalled = threading.Event()
        if stalled or (stalled is None and self.upstream is None):
            self._stalled.set()
        self._resumed = threading.Condition()
        self._closed = threading.Event()
        self._changed = threading.Condition()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept_loop, daemon=True, name="stall-accept").start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- control

    def stall(self) -> None:
        """From now on nothing gets through, and new connections hang."""
        with self._changed:
            self._stalled.set()
            self.stalled_hits = 0

    def resume(self) -> None:
        """Forward again (held connections resume; bytes held meanwhile flow on)."""
        self._stalled.clear()
        with self._resumed:
            self._resumed.notify_all()

    def wait_stalled(self, timeout: float = 30.0, hits: int = 1) -> float:
        """Wait until a client got stuck here (``hits`` connections or requests held
        while stalled); returns the time.monotonic() it happened."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.stalled_hits < hits:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no client reached the stalled proxy in {timeout}s "
                                         f"({self.accepted} connection(s) accepted in all)")
                self._changed.wait(left)
            return time.monotonic()

    def close(self) -> None:
        self._closed.set()
        self.resume()
        with self._changed:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            kill_socket(sock)
        self.listener.close()

    # ---------------------------------------------------------------- internals

    def _hit(self) -> None:
        with self._changed:
            self.stalled_hits += 1
            self._changed.notify_all()

    def _track(self, *socks: socket.socket) -> None:
        with self._changed:
            self._sockets.update(socks)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._track(client)
            with self._changed:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._changed:
            self.open_clients += 1
        try:
            self._serve_open(client)
        finally:
            kill_socket(client)
            with self._changed:
                self.open_clients -= 1

    def _serve_open(self, client: socket.socket) -> None:
        if self._stalled.is_set():
            self._hit()  # accepted, and never answered while the stall lasts
            if not self._hold():
                return
        if self.upstream is None:
            self._hold(forever=True)
            return
        upstream = dial(self.upstream, client)
        if upstream is None:
            return
        self._track(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, False),
                         daemon=True).start()
        self._pump(client, upstream, True)

    def _hold(self, forever: bool = False) -> bool:
        """Wait while stalled (or until closed); False when the proxy closed."""
        with self._resumed:
            while (forever or self._stalled.is_set()) and not self._closed.is_set():
                self._resumed.wait(0.5)
        return not self._closed.is_set()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if self._stalled.is_set():
                    if from_client:
                        self._hit()  # a request (or more of one) that never arrives
                    if not self._hold():
                        return
                target.sendall(data)
        except OSError:
            pass
        finally:
            kill_socket(source)
            kill_socket(target)



def stalling_api_server(kube_env: Any, kubeconfig: Path, *, stalled: bool = False
                        ) -> StallingProxy:
    """A stalling proxy in front of the test environment's API server, and a copy of its
    kubeconfig at ``kubeconfig`` that goes through it."""
    host, port = kube_env.apiserver.removeprefix("https://").rsplit(":", 1)
    proxy = StallingProxy(host, int(port), stalled=stalled)
    config = yaml.safe_load(kube_env.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig.write_text(yaml.safe_dump(config))
    return proxy
