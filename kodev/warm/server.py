"""The warm server: imports kodev once, then forks one child per call (see
:mod:`kodev.warm`). ``python -m kodev.warm.server SOCKET IDLE_SECONDS``; started by
:func:`kodev.warm.client.start_server`, never by hand.

The server is one thread around one ``selectors`` loop (forking a threaded process is
unsafe): the listening socket, each running call's ``pidfd`` (readable when the child
exits: its status goes back to the caller) and each caller's connection (readable when
the caller went away: its child gets SIGTERM, as a cold run would have).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import importlib
import io
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kodev.warm import protocol

# What a cold `kodev build` / `kodev skaffold build|deps` imports (kodev's modules and the
# libraries behind them); the rest of kodev (kube, dev loop, terraform) is not needed.
PRELOAD = (
    "kodev.cli", "kodev.cli.runner", "kodev.cli.build", "kodev.cli.skaffold",
    "kodev.cli.progress", "kodev.config", "kodev.publish", "kodev.publishers.multi",
    "kodev.golang.builder", "kodev.golang.graph", "kodev.golang.fingerprint",
    "kodev.golang.sbom", "kodev.oci.base", "kodev.oci.layers", "kodev.oci.layout",
    "kodev.oci.tarball", "kodev.registry.client", "kodev.registry.push", "kodev.resolve",
    "httpx", "httpcore", "h11", "certifi", "encodings.idna", "yaml",
)
REQUEST_TIMEOUT_S = 2.0  # a caller sends its request at once


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python -m kodev.warm.server SOCKET IDLE_SECONDS", file=sys.stderr)
        return 2
    call = Server(sys.argv[1], float(sys.argv[2])).run()
    if call is None:  # the server itself, at its end
        return 0
    return call.run()  # a forked child: the caller's command, as a cold run runs it


def preload() -> None:
    gc.disable()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.freeze()  # the imports live as long as every child: no collection walks them
    gc.enable()


def source_files() -> dict[str, tuple[int, int, int]]:
    """Every file the server has imported. A change to one makes the server stale; a
    module it has not imported is read from disk by the child, as a cold run reads it."""
    paths = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    state = {}
    for path in paths:
        if path:
            with contextlib.suppress(OSError):
                info = os.stat(path)
                state[path] = (info.st_mtime_ns, info.st_size, info.st_ino)
    return state


@dataclass
class Running:
    """One call in progress: its child and its caller's connection."""

    pid: int
    pidfd: int
    conn: socket.socket
    accepted: float  # time.monotonic() of the accept: the log says how long each part took
    forked: float
    caller_gone: bool = False


@dataclass
class Call:
    """A forked child's work: become the caller's process, then run kodev's CLI."""

    request: protocol.Request
    fds: list[int]
    conn: socket.socket
    inherited: list[int] = field(default_factory=list)  # the server's descriptors

    def run(self) -> int:
        signal.set_wakeup_fd(-1)  # the server's; closed next
        for fd in self.inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(self.fds):
            os.dup2(fd, target)
            os.close(fd)
        os.umask(self.request.umask)
        os.environb.clear()
        os.environb.update(self.request.environ)
        argv = [os.fsdecode(a) for a in self.request.argv]
        sys.argv = ["kodev", *argv]
        reopen_stdio()
        try:
            os.chdir(self.request.cwd)
        except OSError:  # no "pid" sent: the caller runs the call cold, in its own cwd
            os._exit(1)
        with contextlib.suppress(OSError):
            self.conn.sendall(b"pid %d\n" % os.getpid())
        self.conn.close()
        import kodev.warm
        from kodev.cli import main as cli_main
        from kodev.cli.runner import exit_process

        kodev.warm.SERVED_CALL = True

        exit_process(cli_main(argv))


def reopen_stdio() -> None:
    """New ``sys.std*`` over descriptors 0-2 (now the caller's), buffered as Python
    buffers them at start-up: stdout by line on a terminal, stderr always by line."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        binary = open(fd, "rb" if fd == 0 else "wb", closefd=False)  # noqa: SIM115 - sys.std*
        stream = io.TextIOWrapper(
            binary, encoding=old.encoding, errors=old.errors,
            line_buffering=fd == 2 or (fd == 1 and os.isatty(1)),
            write_through=getattr(old, "write_through", False),
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


class Server:
    def __init__(self, path: str, idle_s: float) -> None:
        self.path = path
        self.idle_s = idle_s
        self.pid = os.getpid()
        self.material = protocol.key_material(os.environ)
        self.selector = selectors.DefaultSelector()
        self.running: dict[int, Running] = {}  # by pidfd
        self.last_call = time.monotonic()
        self.stopping = False
        self.lock_fd = -1
        self.listener: socket.socket | None = None
        self.socket_ino = 0
        self.wakeup_r, self.wakeup_w = socket.socketpair()
        self.files: dict[str, tuple[int, int, int]] = {}

    def run(self) -> Call | None:
        if not self._lock():
            return None  # another caller's server got there first
        preload()
        self.files = source_files()
        try:
            self._listen()
            log(f"serving {self.path} (idle exit after {self.idle_s:g} s)")
            return self._loop()
        finally:
            if os.getpid() == self.pid:
                self._close()

    # ------------------------------------------------------------------ set-up, tear-down

    def _lock(self) -> bool:
        """Hold ``<key>.lock`` while serving (one server per key); it holds our pid."""
        self.lock_fd = os.open(protocol.sibling(self.path, ".lock"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.lock_fd)
            return False
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, b"%d\n" % os.getpid(), 0)
        return True

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a dead server's socket; we hold the lock
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        listener.listen(64)
        self.listener = listener
        self.socket_ino = os.stat(self.path).st_ino  # ours to remove at the end
        self.selector.register(listener, selectors.EVENT_READ, self._accept)
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, self._drain_signals)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _stop_listening(self) -> None:
        if self.listener is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.socket_ino:
                os.unlink(self.path)
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None

    def _close(self) -> None:
        self._stop_listening()
        os.close(self.lock_fd)
        log("stopped")

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> Call | None:
        while not (self.stopping and not self.running):
            if self.stopping:
                self._stop_listening()  # calls in progress still get their status
            timeout = None if self.running else max(
                0.0, self.last_call + self.idle_s - time.monotonic())
            if not self.running and timeout == 0.0:
                log("idle")
                return None
            for key, _mask in self.selector.select(timeout):
                handler: Callable[[], Call | None] = key.data  # each descriptor's handler
                call = handler()
                if call is not None:
                    return call  # in a forked child
        return None

    def _drain_signals(self) -> None:
        self.wakeup_r.recv(64)  # _on_signal has set stopping

    def _accept(self) -> Call | None:
        assert self.listener is not None
        accepted = time.monotonic()
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        received = self._receive(conn)
        if received is None:
            conn.close()
            return None
        request, fds = received
        if request.material != self.material or source_files() != self.files:
            # another interpreter or start-up environment, or kodev changed on disk
            with contextlib.suppress(OSError):
                conn.sendall(b"stale\n")
            conn.close()
            for fd in fds:
                os.close(fd)
            if request.material == self.material:
                log("kodev's files changed: stopping")
                self.stopping = True
            else:
                log("refused a call from another interpreter or start-up environment")
            return None
        return self._fork(conn, request, fds, accepted)

    def _receive(self, conn: socket.socket) -> tuple[protocol.Request, list[int]] | None:
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != os.getuid():
                return None
            conn.settimeout(REQUEST_TIMEOUT_S)
            data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
            length = protocol.body_length(data[:8])
            if length is None or len(fds) != 3:
                raise ValueError("not a request")
            data = data[8:]
            while len(data) < length:
                chunk = conn.recv(min(1 << 16, length - len(data)))
                if not chunk:
                    raise ValueError("short request")
                data += chunk
            request = protocol.decode_request(data)
            if request is None:
                raise ValueError("malformed request")
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            return None
        conn.settimeout(None)
        return request, fds

    def _fork(self, conn: socket.socket, request: protocol.Request,
              fds: list[int], accepted: float) -> Call | None:
        self.last_call = time.monotonic()
        inherited = self._own_descriptors()
        pid = os.fork()
        if pid == 0:
            self.selector = selectors.DefaultSelector()  # the server's is closed below
            return Call(request, fds, conn, inherited)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        running = Running(pid, pidfd, conn, accepted, time.monotonic())
        self.running[pidfd] = running
        self.selector.register(pidfd, selectors.EVENT_READ, functools.partial(self._reap, pidfd))
        self.selector.register(conn, selectors.EVENT_READ,
                               functools.partial(self._caller_gone, pidfd))
        return None

    def _own_descriptors(self) -> list[int]:
        fds = [self.lock_fd, self.wakeup_r.fileno(), self.wakeup_w.fileno()]
        if self.listener is not None:
            fds.append(self.listener.fileno())
        if isinstance(self.selector, selectors.EpollSelector):
            fds.append(self.selector.fileno())
        for running in self.running.values():
            fds += [running.pidfd, running.conn.fileno()]
        return fds

    def _reap(self, pidfd: int) -> None:
        running = self.running.pop(pidfd)
        _pid, status = os.waitpid(running.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        log(f"call {running.pid}: exit {code}"
            + (" (caller gone)" if running.caller_gone else "")
            + f"; {1000 * (running.forked - running.accepted):.0f} ms to fork, "
            f"{1000 * (now - running.forked):.0f} ms to run")
        self.selector.unregister(pidfd)
        os.close(pidfd)
        if not running.caller_gone:
            self.selector.unregister(running.conn)
        with contextlib.suppress(OSError):
            running.conn.sendall(b"exit %d\n" % code)
        running.conn.close()
        self.last_call = time.monotonic()

    def _caller_gone(self, pidfd: int) -> None:
        """The caller's connection is readable: it closed (killed, or its pipe broke).
        End its child as a signal to a cold run would have."""
        running = self.running[pidfd]
        running.caller_gone = True
        self.selector.unregister(running.conn)
        with contextlib.suppress(OSError):
            os.kill(running.pid, signal.SIGTERM)


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} kodev warm server {os.getpid()}: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
