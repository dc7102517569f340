"""Port forwarding through the API server's ``pods/portforward`` subresource.

The same channel kubectl port-forward uses, authorised by the same RBAC (``create`` on
``pods/portforward``): a WebSocket to the API server speaking ``v4.channel.k8s.io``, one
per local TCP connection. Each forwarded port has two channels, data (``2*i``) and error
(``2*i+1``); the server opens each with a frame holding the port number (2 bytes, little
endian), after which every frame is one channel byte plus payload.

:class:`LocalForward` listens on 127.0.0.1 and, for each connection, asks its ``pick``
callable which Pod to reach *at that moment*: so after a rollout, the next connection
goes to a new Ready Pod with nothing for the developer to do, and a connection made while
no Pod is ready waits for one (bounded) or is closed with a message, never left hanging.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from kodev.errors import KubeError
from kodev.kube.client import Cluster, open_websocket

PROTOCOL = "v4.channel.k8s.io"
CONNECT_TIMEOUT_S = 10.0
CHUNK = 256 * 1024

# pick(timeout) -> the name of a Ready Pod to connect to, or None when none became ready.
Picker = Callable[[float], str | None]
Notify = Callable[[str], None]


class PodTunnel:
    """One TCP stream to ``port`` of a Pod, carried over one WebSocket."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, port: int,
                 timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.port = port
        self.where = f"port-forward to pod {namespace}/{pod} port {port}"
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/portforward?ports={port}"
        try:
            self.ws: Any = open_websocket(cluster, path, PROTOCOL, self.where, timeout)
        except KubeError as exc:
            raise KubeError(exc.message, hint="kodev needs create on pods/portforward") from exc
        self._opened: set[int] = set()

    def send(self, data: bytes) -> None:
        self.ws.send_binary(b"\x00" + data)

    def recv(self) -> bytes | None:
        """The next bytes from the Pod; None at the end of the stream. A message on the
        error channel ends it as a :class:`KubeError` (e.g. nothing listens on the port)."""
        from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException

        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except WebSocketTimeoutException:
                continue  # idle: the tunnel stays open as long as the connection does
            except (WebSocketConnectionClosedException, OSError):
                return None
            if opcode == ABNF.OPCODE_CLOSE:
                return None
            if opcode != ABNF.OPCODE_BINARY or not data:
                continue
            channel, payload = data[0], data[1:]
            if channel not in self._opened:
                self._opened.add(channel)  # the first frame only names the port
                continue
            if channel == 1 and payload:
                raise KubeError(f"{self.where}: {payload.decode(errors='replace')}")
            if channel == 0 and payload:
                return bytes(payload)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken socket: nothing left to close
            self.ws.close(timeout=0.5)


class LocalForward:
    """127.0.0.1:``local_port`` → ``remote_port`` of whichever Pod ``pick`` names."""

    def __init__(self, cluster: Cluster, namespace: str, remote_port: int, pick: Picker,
                 notify: Notify, *, local_port: int, wait_seconds: float = 30.0) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.remote_port = remote_port
        self.pick = pick
        self.notify = notify
        self.wait_seconds = wait_seconds
        self.listener = bind_local(local_port)
        self.local_port = int(self.listener.getsockname()[1])
        self._closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._accept, name=f"forward :{self.local_port}",
                         daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        pod = self.pick(self.wait_seconds)
        if pod is None:
            self.notify(f"127.0.0.1:{self.local_port}: no Ready Pod within "
                        f"{self.wait_seconds:.0f}s; connection closed")
            client.close()
            return
        try:
            tunnel = PodTunnel(self.cluster, self.namespace, pod, self.remote_port)
        except KubeError as exc:
            self.notify(str(exc))
            client.close()
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=self._to_client, args=(tunnel, client), daemon=True)
        back.start()
        try:
            while data := client.recv(CHUNK):
                tunnel.send(data)
        except Exception:  # the client or the tunnel went away (OSError, websocket errors)
            pass
        finally:
            tunnel.close()
            back.join(timeout=2)
            client.close()

    def _to_client(self, tunnel: PodTunnel, client: socket.socket) -> None:
        try:
            while (data := tunnel.recv()) is not None:
                client.sendall(data)
        except KubeError as exc:
            self.notify(str(exc))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)


def bind_local(port: int, tries: int = 100) -> socket.socket:
    """A listening socket on 127.0.0.1: ``port`` if free, else the next free one."""
    for candidate in range(port, min(port + tries, 65536)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(64)
        return sock
    raise KubeError(f"no free local port in {port}-{port + tries - 1} for port-forwarding",
                    hint="stop what listens there, or forward fewer ports")
