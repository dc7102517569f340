"""Runs a command: turns KodevError into one line on stderr and an exit code, never a
traceback; and ends it within :data:`GRACE_S` of Ctrl-C or SIGTERM, whatever it waits on.

How an interrupt ends a command (one mechanism for every command, installed by
``kodev.cli.main``):

1. SIGINT raises ``KeyboardInterrupt`` in the main thread, SIGTERM raises
   :class:`Terminated` (a ``KeyboardInterrupt``), so every ``finally`` and
   ``except KeyboardInterrupt`` treats both alike: the main thread unwinds, and cleanup
   (temporary files, a ``kodev run`` Pod, ``kodev up --cleanup``) runs first. Cleanup that
   talks to a server gives its requests a short timeout of its own.
2. A watcher thread learns of every signal through ``signal.set_wakeup_fd``, even one
   the kernel delivered to another thread. While the main thread is still unwinding,
   it re-interrupts it every :data:`NUDGE_EVERY_S` if it waits on other threads (a
   thread join, a lock, a queue: ``with ThreadPoolExecutor()`` joins workers blocked on
   a socket), so the unwinding goes on; a main thread not interrupted yet is nudged
   wherever it waits. Cleanup's own requests (which have short timeouts) are left alone.
3. When the main thread is done, or at the latest :data:`GRACE_S` after the signal, the
   process ends with ``os._exit``: the ``atexit`` functions run (temporary files removed;
   each step bounded in time), output flushed, child processes (``go build``)
   terminated, and no waiting for threads still blocked on a socket (concurrent.futures'
   exit hook would join them). A second signal ends it at once.

Exit codes: 130 after SIGINT, 143 after SIGTERM (128 + the signal), with one line on
stderr (``kodev: interrupted`` / ``kodev: terminated``). A command may end itself normally
on an interrupt instead (``kodev up``: Ctrl-C is how the dev loop stops, exit 0); if its
shutdown outlasts the grace period, it is still cut off with 130/143.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from kodev.errors import BuildError, KodevError

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
GRACE_S = 1.4  # from the signal to the forced exit
NUDGE_AFTER_S = 0.3  # a main thread still waiting this long after the signal is nudged,
NUDGE_EVERY_S = 0.3  # and again at this interval until it is done
FLUSH_S = 0.2  # how long the final flush of stdout/stderr may take
EXIT_FUNCS_S = 0.2  # how long the atexit functions may take on the way out

# Where a main thread waiting on other threads has its innermost Python frame:
# re-interrupting it there only cuts a wait short (never cleanup work of its own).
_WAITING_ON_THREADS = ("/threading.py", "/queue.py", "/concurrent/futures/")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    if getattr(args, "chdir", None):
        try:
            os.chdir(args.chdir)
        except OSError as exc:
            return report(KodevError(f"cannot change to directory {args.chdir}: {exc.strerror}"))
    try:
        return func(args)
    except KeyboardInterrupt as exc:
        return interrupts.interrupted(exc)
    except KodevError as exc:
        if interrupts.signum is not None:  # a failure caused by the interrupt's unwinding
            return interrupts.interrupted()
        return report(exc)
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only with -v
        if interrupts.signum is not None:
            return interrupts.interrupted()
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"kodev: internal error: {type(exc).__name__}: {exc} "
              "(run with -v for the traceback and please report it)", file=sys.stderr)
        return 1


def report(exc: KodevError) -> int:
    if isinstance(exc, BuildError) and exc.output:
        print(exc.output, file=sys.stderr)
    line = f"kodev: error: {exc.message}"
    if exc.hint:
        line += f" ({exc.hint})"
    print(line, file=sys.stderr)
    return exc.exit_code


def exit_code_for(signum: int | None) -> int:
    return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


class Interrupts:
    """The process-wide interrupt state; see the module docstring. One instance,
    :data:`interrupts`; :meth:`install` is for ``kodev.cli.main`` only (in-process callers
    of :func:`run_command` keep Python's own signal handling)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first SIGINT/SIGTERM received
        self.since: float | None = None  # time.monotonic() of that signal
        self.signals = 0  # signals received (nudges not counted)
        self.installed = False
        self._finishing = False  # the command returned: later signals raise nothing
        self._raised = False  # the main thread got its KeyboardInterrupt/Terminated
        self._announced = False
        self._nudges = 0  # SIGINTs sent to the main thread by the watcher, not yet seen
        self._lock = threading.RLock()  # RLock: the signal handler may run inside a holder
        self._exit_lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self._main_ident = threading.main_thread().ident
        self._wakeup: socket.socket | None = None

    # ---------------------------------------------------------------- setup

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only; idempotent)."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        self._main_ident = threading.get_ident()
        read, write = socket.socketpair()
        write.setblocking(False)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        self._wakeup = write  # kept open for the process's life
        threading.Thread(target=self._watch, args=(read,), name="kodev-interrupts",
                         daemon=True).start()
        self.installed = True

    def at_forced_exit(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Run ``hook`` (quick, no I/O that can block: restore a terminal) if the process
        is cut off before the main thread finished; returns a function that removes it."""
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._hooks.remove(hook)
        return remove

    # ---------------------------------------------------------------- the main thread

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            self._record(signum)
            if self._finishing:
                return
            self._raised = True
        raise Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def _record(self, signum: int) -> None:
        if self.signum is None:
            self.signum, self.since = signum, time.monotonic()

    def interrupted(self, exc: BaseException | None = None) -> int:
        """The command ended by an interrupt: say so (once) and return its exit code."""
        with self._lock:
            if self.signum is None and isinstance(exc, KeyboardInterrupt):
                self._record(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        self.announce()
        return exit_code_for(self.signum)

    def _line(self) -> str:
        return "kodev: terminated" if self.signum == signal.SIGTERM else "kodev: interrupted"

    def _first_announcement(self) -> bool:
        with self._lock:
            first, self._announced = not self._announced, True
        return first

    def announce(self) -> None:
        """Say once, on stderr, that the command was interrupted."""
        if not self._first_announcement():
            return
        line = self._line()
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError, RuntimeError):
            with contextlib.suppress(OSError):
                os.write(2, f"{line}\n".encode())

    def finish(self, code: int) -> int:
        """The command returned ``code``. After a signal, end the process now (threads may
        still be blocked); otherwise return ``code`` for a normal exit."""
        with self._lock:
            self._finishing = True
            signalled = self.signum is not None
        if signalled and self.installed:
            self._exit(code)
        return code

    # ---------------------------------------------------------------- the watcher thread

    def _watch(self, read: socket.socket) -> None:
        next_nudge = 0.0
        while True:
            timeout = None
            if self.since is not None:
                now = time.monotonic()
                if not next_nudge:
                    next_nudge = self.since + NUDGE_AFTER_S
                if now - self.since >= GRACE_S:
                    self._exit(exit_code_for(self.signum), forced=True)
                if now >= next_nudge and now - self.since >= NUDGE_AFTER_S:
                    self._nudge_if_waiting()
                    next_nudge = now + NUDGE_EVERY_S
                timeout = max(0.01, min(self.since + GRACE_S, next_nudge) - now)
            read.settimeout(timeout)
            try:
                data = read.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue
                with self._lock:
                    if signum == signal.SIGINT and self._nudges:
                        self._nudges -= 1
                        continue
                    self.signals += 1
                    self._record(signum)
                    second = self.signals > 1
                if second:
                    self._exit(exit_code_for(self.signum), forced=True)

    def _nudge_if_waiting(self) -> None:
        """Interrupt the main thread (again) if it waits on other threads, or if it has
        not seen the interrupt yet (the kernel gave the signal to another thread)."""
        with self._lock:
            if self._finishing:
                return
            raised = self._raised
        frame = sys._current_frames().get(self._main_ident or 0)
        if frame is None or (raised and not _waits_on_threads(frame.f_code.co_filename)):
            return
        with self._lock:
            self._nudges += 1
        try:
            signal.pthread_kill(self._main_ident or 0, signal.SIGINT)
        except (OSError, ValueError):
            with self._lock:
                self._nudges -= 1

    # ---------------------------------------------------------------- the end

    def _exit(self, code: int, forced: bool = False) -> None:
        if not self._exit_lock.acquire(blocking=False):
            while True:  # another thread is ending the process
                time.sleep(60)
        if forced:
            with self._lock:
                hooks = list(reversed(self._hooks))
            for hook in hooks:
                with contextlib.suppress(Exception):
                    hook()
            self.announce_safely()
        _bounded(_run_exit_functions, EXIT_FUNCS_S)  # what a normal exit runs, threads aside
        _terminate_children()
        _flush(FLUSH_S)
        os._exit(code)

    def announce_safely(self) -> None:
        """announce() from a thread other than main: never block on stderr's lock."""
        if not self._first_announcement():
            return
        _flush(FLUSH_S)
        with contextlib.suppress(OSError):
            os.write(2, f"{self._line()}\n".encode())


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` as the interpreter's own exit would (atexit functions,
    output flushed), but without tearing down every module: with a build's imports loaded
    that teardown alone costs ~50-80 ms. For entry points only (never in-process callers).
    A thread that is not a daemon still running means a normal exit, which waits for it."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        raise SystemExit(code)
    _run_exit_functions()
    _flush(FLUSH_S)
    os._exit(code)


def _waits_on_threads(filename: str) -> bool:
    name = filename.replace(os.sep, "/")
    return any(part in name for part in _WAITING_ON_THREADS)


def _flush(timeout: float) -> None:
    """Flush stdout and stderr, giving up after ``timeout`` (a full pipe, a held lock)."""
    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    _bounded(flush, timeout)


def _run_exit_functions() -> None:
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()


def _bounded(work: Callable[[], None], timeout: float) -> None:
    """Run ``work`` in a daemon thread, waiting at most ``timeout`` for it to end."""
    thread = threading.Thread(target=work, name="kodev-exit", daemon=True)
    thread.start()
    thread.join(timeout)


def _terminate_children() -> None:
    """SIGTERM the processes kodev started that still run (a ``go build`` a worker thread
    waits for): they would outlive an os._exit. Linux only (/proc); best effort."""
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me).encode():
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGTERM)


interrupts = Interrupts()
