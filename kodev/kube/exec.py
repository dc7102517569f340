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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from kodev.errors import KubeError
from kodev.kube.client import Cluster

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


def exec_in_container(cluster: Cluster, namespace: str, pod: str, container: str,
                      command: Sequence[str], stdin: Iterable[bytes] = (),
                      timeout: float = 60.0) -> ExecResult:
    """Run ``command``; send ``stdin`` (chunks), then collect output until it exits."""
    from kubernetes.stream import ws_client
    from websocket import ABNF, WebSocketBadStatusException, WebSocketException

    stream: Any = ws_client  # the kubernetes client has no type hints
    configuration: Any = cluster.api.configuration
    query = urlencode([("container", container), ("stdin", "true"), ("stdout", "true"),
                       ("stderr", "true"), *(("command", c) for c in command)])
    url = stream.get_websocket_url(f"{configuration.host}/api/v1/namespaces/"
                                   f"{quote(namespace)}/pods/{quote(pod)}/exec?{query}")
    headers = {"sec-websocket-protocol": PROTOCOLS}
    token = configuration.get_api_key_with_prefix("authorization")
    if token:
        headers["authorization"] = token
    where = f"exec in pod {namespace}/{pod} container {container}"
    try:
        ws: Any = stream.create_websocket(configuration, url, headers)
    except WebSocketBadStatusException as exc:
        if exc.status_code == 403:
            raise ExecForbidden(f"{where}: forbidden (RBAC allows no create on pods/exec)",
                                hint="allow create on pods/exec for kodev's user") from exc
        raise KubeError(f"{where}: HTTP {exc.status_code}") from exc
    except (WebSocketException, OSError) as exc:
        raise KubeError(f"{where}: {exc}") from exc
    ws.settimeout(timeout)
    out: dict[int, bytearray] = {1: bytearray(), 2: bytearray(), 3: bytearray()}
    try:
        for chunk in stdin:
            for start in range(0, len(chunk), CHUNK):
                ws.send(b"\x00" + chunk[start:start + CHUNK], opcode=ABNF.OPCODE_BINARY)
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == ABNF.OPCODE_CLOSE:
                break
            if opcode == ABNF.OPCODE_BINARY and data and data[0] in out:
                out[data[0]].extend(data[1:])
    except (WebSocketException, OSError) as exc:
        if not out[3]:
            raise KubeError(f"{where}: the stream broke: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            ws.close(timeout=0.5)
    return _result(out)


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
