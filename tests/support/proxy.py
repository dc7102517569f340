"""A loopback TCP proxy whose connections a test can cut, to simulate an API server restart.

TLS passes through untouched (the client still verifies the API server's certificate,
which covers 127.0.0.1), so kodev sees exactly what a restart looks like: every open
connection dies at once, and new ones are refused until the "server" is back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

import yaml


class CuttableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self._down = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def cut(self) -> None:
        """Kill every open connection and refuse new ones until restore()."""
        self._down.set()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            kill_socket(sock)

    def restore(self) -> None:
        self._down.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self.listener.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._down.is_set():
                kill_socket(client)  # the "server" is down: reset at once
                continue
            upstream = dial(self.upstream, client)
            if upstream is None:
                continue
            with self._lock:
                self.accepted += 1
                self._sockets.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        kill_socket(source)
        kill_socket(target)


def dial(address: tuple[str, int], client: socket.socket) -> socket.socket | None:
    """Connect to the upstream for ``client`` (blocking afterwards); on failure reset the
    client, as a server that cannot reach its backend would, and return None."""
    try:
        upstream = socket.create_connection(address, timeout=5)
    except OSError:
        kill_socket(client)
        return None
    upstream.settimeout(None)
    return upstream


def kill_socket(sock: socket.socket) -> None:
    """Shut a socket down both ways and close it, ignoring errors (a peer may be gone)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def proxied_api_server(kube_env: Any, kubeconfig: Path) -> CuttableProxy:
    """A proxy in front of the test environment's API server, and a copy of its
    kubeconfig at ``kubeconfig`` that goes through it."""
    host, port = kube_env.apiserver.removeprefix("https://").rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    config = yaml.safe_load(kube_env.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig.write_text(yaml.safe_dump(config))
    return proxy
