"""Work a served call leaves running after it answers (a Skaffold prebuild).

The worker is a grandchild of the call: its child exits at once (nobody has to wait for
the worker), it has a session of its own (Ctrl-C at the caller's terminal does not reach
it) and /dev/null for stdin, stdout and stderr: the caller (Skaffold reads a command's
output until every writer is gone) gets its answer as soon as the call ends. The worker
says through a pipe whether it took the work on (e.g. it got a lock), so the call knows
that before it ends; it reports nothing else.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable

Started = Callable[[bool], None]


def detach(work: Callable[[Started], None], *, wait_s: float = 2.0) -> bool:
    """Run ``work(started)`` in a detached process; True once it called ``started(True)``,
    False if it declined, failed first, or said nothing within ``wait_s``."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the intermediate child: fork the worker, then go
        try:
            os.close(read_end)
            if os.fork() == 0:
                _run_detached(work, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    try:
        ready, _, _ = select.select([read_end], [], [], wait_s)
        return bool(ready) and os.read(read_end, 1) == b"1"
    finally:
        os.close(read_end)


def _run_detached(work: Callable[[Started], None], report_fd: int) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    reported = False

    def started(ok: bool) -> None:
        nonlocal reported
        if not reported:
            reported = True
            os.write(report_fd, b"1" if ok else b"0")
            os.close(report_fd)

    try:
        work(started)
    except BaseException:  # nobody to tell: the real build reports any error itself
        pass
    finally:
        started(False)
        os._exit(0)
