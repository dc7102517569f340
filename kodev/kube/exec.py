"""Run a command in a container through the API server's ``pods/exec`` subresource, with
bytes on its stdin: what ``kubectl exec -i`` does, authorised by the same RBAC (``create``
on ``pods/exec``).

A WebSocket to the API server speaking ``v5.channel.k8s.io`` (or ``v4``): every frame is
one channel byte plus payload; 0 is stdin, 1 stdout, 2 stderr, 3 the final status (a
``metav1.Status`` in JSON, with the exit code of a failed command).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from kodev.errors import KubeError
from kodev.kube.client import Cluster, WebSocketForbidden, open_websocket

PROTOCOLS = "v5.channel.k8s.io,v4.channel.k8s.io"
CHUNK = 256 * 1024


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    message: str = ""  # the API's message when the command failed or could not start


class ExecForbidden(KubeError):
    """RBAC does not allow ``create`` on ``pods/exec``."""


class ExecSession:
    """A command started in a container (the connection is opened at once), to which
    stdin is sent later: the handshake can happen while the data is still being made."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, container: str,
                 command: Sequence[str], timeout: float = 60.0) -> None:
        query = urlencode([("container", container), ("stdin", "true"), ("stdout", "true"),
                           ("stderr", "true"), *(("command", c) for c in command)])
        self.where = f"exec in pod {namespace}/{pod} container {container}"
        try:
            self.ws: Any = open_websocket(
                cluster, f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/exec?{query}",
                PROTOCOLS, self.where, timeout)
        except WebSocketForbidden as exc:
            raise ExecForbidden(f"{exc.message} (RBAC allows no create on pods/exec)",
                                hint="allow create on pods/exec for kodev's user") from exc

    def send(self, data: bytes) -> None:
        """Bytes to the command's stdin."""
        from websocket import ABNF, WebSocketException

        try:
            for start in range(0, len(data), CHUNK):
                self.ws.send(b"\x00" + data[start:start + CHUNK], opcode=ABNF.OPCODE_BINARY)
        except (WebSocketException, OSError) as exc:
            self.close()
            raise KubeError(f"{self.where}: the stream broke: {exc}") from exc

    def finish(self) -> ExecResult:
        """Wait for the command to exit; its output and exit code."""
        from websocket import ABNF, WebSocketException

        out: dict[int, bytearray] = {1: bytearray(), 2: bytearray(), 3: bytearray()}
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == ABNF.OPCODE_CLOSE:
                    break
                if opcode == ABNF.OPCODE_BINARY and data and data[0] in out:
                    out[data[0]].extend(data[1:])
        except (WebSocketException, OSError) as exc:
            if not out[3]:
                raise KubeError(f"{self.where}: the stream broke: {exc}") from exc
        finally:
            self.close()
        return _result(out)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=0.5)


def _result(out: dict[int, bytearray]) -> ExecResult:
    stdout, stderr = out[1].decode(errors="replace"), out[2].decode(errors="replace")
    try:
        status = json.loads(out[3] or b"{}")
    except ValueError:
        status = {}
    if status.get("status") == "Success":
        return ExecResult(0, stdout, stderr)
    code = -1
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(ValueError):
                code = int(cause.get("message", ""))
    return ExecResult(code, stdout, stderr, str(status.get("message") or "no exit status"))
