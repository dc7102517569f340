"""What tests and benchmarks read from a warm-server directory (``KODEV_SERVER_DIR``): the
servers' logs, the calls they served (one ``call PID: exit N`` line each), and when one
serves (its socket exists: it binds before it logs ``serving``)."""

from __future__ import annotations

import time
from pathlib import Path


def server_log(directory: Path) -> str:
    return "".join(p.read_text() for p in sorted(directory.glob("*.log")))


def served_calls(directory: Path) -> int:
    return server_log(directory).count(": call ")


def wait_for_server(directory: Path, timeout: float = 60.0) -> None:
    """Until a server in ``directory`` listens (the first call starts one in the
    background)."""
    deadline = time.monotonic() + timeout
    while not list(directory.glob("*.sock")):
        if time.monotonic() > deadline:
            raise AssertionError(f"no warm server started in {directory}:\n"
                                 f"{server_log(directory)}")
        time.sleep(0.05)
