"""``kodev server status|stop``: the warm command servers of this user (see
:mod:`kodev.warm`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

from kodev.errors import KodevError
from kodev.warm import protocol

STOP_WAIT_S = 5.0  # a server finishes the calls it runs, then exits


def run(args: argparse.Namespace) -> int:
    directory = protocol.server_dir(os.environ)
    if directory is None:
        raise KodevError("no usable directory for warm servers",
                         hint=f"set {protocol.ENV_DIR} to a directory only you can write")
    servers = protocol.running_servers(directory)
    if args.server_command == "stop":
        stop(servers)
    if args.json:
        print(json.dumps({"directory": directory, "enabled": protocol.enabled(os.environ),
                          "servers": [{"pid": s.pid, "socket": s.socket} for s in servers],
                          "stopped": args.server_command == "stop"}))
        return 0
    verb = "stopped" if args.server_command == "stop" else "running"
    for server in servers:
        print(f"{verb}: pid {server.pid}  {server.socket}")
    if not servers:
        print(f"no warm server runs (directory {directory})")
    if not protocol.enabled(os.environ):
        print(f"{protocol.ENV_MODE}=off: commands run without a server")
    return 0


def stop(servers: list[protocol.Server]) -> None:
    for server in servers:
        try:
            os.kill(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_WAIT_S
    for server in servers:
        while time.monotonic() < deadline and protocol.alive(server.pid):
            time.sleep(0.02)
        if protocol.alive(server.pid):
            raise KodevError(f"warm server {server.pid} did not stop within {STOP_WAIT_S:g} s",
                             hint=f"it finishes running builds first; kill {server.pid}")

