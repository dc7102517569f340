"""Work a served call leaves running after it answers (skaffold deps' compile ahead).

The worker is a grandchild of the call: its child exits at once (nobody has to wait for
the worker), it has a session of its own (Ctrl-C at the caller's terminal does not reach
it) and /dev/null for stdin, stdout and stderr: the caller (Skaffold reads a command's
output until every writer is gone) gets its answer as soon as the call ends. The call
returns once the worker says it is ready (e.g. it holds a lock, or knows it will do
nothing), so whatever the worker takes is taken before the caller gets its answer.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable

Ready = Callable[[], None]


def detach(work: Callable[[Ready], None], *, wait_s: float = 2.0) -> None:
    """Run ``work(ready)`` in a detached process; return once it called ``ready()`` (or
    ended, or after ``wait_s``)."""
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
    try:  # the worker closes its end when ready: end of file here
        select.select([read_end], [], [], wait_s)
    finally:
        os.close(read_end)


def _run_detached(work: Callable[[Ready], None], ready_fd: int) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    open_fds = [ready_fd]

    def ready() -> None:
        while open_fds:
            os.close(open_fds.pop())

    try:
        work(ready)
    except BaseException:  # nobody to tell: the real build reports any error itself
        pass
    finally:
        os._exit(0)  # closes the ready pipe too, if work never said so
