"""Stopping the subprocesses tests start (servers, controllers, kodev itself)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM ``process``, SIGKILL it if it has not exited within ``timeout`` seconds;
    its exit status (negative: the signal that ended it)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
