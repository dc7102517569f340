"""The ``kodev`` entry point: hand the call to a warm server, or run it here (cold).

Only the standard library's cheap modules load before the hand-over: a delegated call
costs the interpreter's start-up plus a socket round trip. Everything else (no server,
a stale one, ``KODEV_SERVER=off``, a command no server runs) runs ``kodev.cli.main`` in
this process, exactly as before; a delegated call that found no server also starts one
in the background for the next call.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import signal
import sys
import time

from kodev.warm import protocol

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
CONNECT_TIMEOUT_S = 2.0  # a server accepts at once; one that does not is not used


def main() -> int:
    argv = sys.argv[1:]
    if protocol.enabled(os.environ) and protocol.delegated(argv):
        directory = protocol.server_dir(os.environ)
        if directory is not None:
            material = protocol.key_material(os.environ)
            path = protocol.socket_path(directory, material)
            code = hand_over(path, material, argv)
            if code is not None:
                return code
            start_server(path)
    return run_cold(argv)


def run_cold(argv: list[str]) -> int:
    from kodev.cli import main as cli_main
    from kodev.cli.runner import exit_process

    exit_process(cli_main(argv))


def hand_over(path: str, material: bytes, argv: list[str]) -> int | None:
    """Run the call on the server at ``path``; its exit code, or None to run it cold
    (no server, or one that refuses it or ends before it started the call).

    ``_socket`` rather than ``socket``: the latter's import (enums, selectors) costs more
    than the rest of the hand-over."""
    try:
        cwd = os.getcwdb()
    except OSError:  # the working directory is gone: let the cold run say so
        return None
    umask = os.umask(0o022)
    os.umask(umask)
    request = protocol.Request(material, cwd, umask, [os.fsencode(a) for a in argv],
                               dict(os.environb))
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(path)
        sock.settimeout(None)  # from here on the server owns the call
        sock.sendmsg([protocol.encode_request(request)],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        buffer = bytearray()
        first = read_line(sock, buffer)
    except OSError:
        sock.close()
        return None
    if not first.startswith(b"pid "):  # "stale", or a server that went away
        sock.close()
        return None
    return follow(int(first.split()[1]), sock, buffer)


def read_line(sock: _socket.socket, buffer: bytearray) -> bytes:
    """The next line (with its newline), or b"" at the end of the stream."""
    while b"\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line + b"\n"


def follow(pid: int, sock: _socket.socket, buffer: bytearray) -> int:
    """Forward signals to the child ``pid`` until the server reports its exit."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):  # the child has just ended
            os.kill(pid, signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    try:
        line = read_line(sock, buffer)  # a signal's handler runs, then recv goes on
    except OSError:
        line = b""
    sock.close()
    if line.startswith(b"exit "):
        return exit_like(int(line.split()[1]))
    return lost_server(pid)


def exit_like(code: int) -> int:
    """A child killed by a signal: end this process by the same signal (a shell or
    Skaffold then sees what a cold run would have shown)."""
    if code >= 0:
        return code
    signum = -code
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


def lost_server(pid: int) -> int:
    """The server went away before reporting: wait for the child, exit status unknown."""
    while protocol.alive(pid):
        time.sleep(0.05)
    print("kodev: error: the warm server stopped before reporting this command's exit "
          "status (run it again; KODEV_SERVER=off runs commands without a server)",
          file=sys.stderr)
    return 1


def start_server(path: str) -> None:
    """Start a server for ``path`` in its own session, detached from this call; several
    callers may race here: the server's lock lets one of them through."""
    import subprocess

    idle = str(protocol.idle_seconds(os.environ))
    log = protocol.sibling(path, ".log")
    try:
        with open(log, "ab") as out:
            subprocess.Popen(
                [sys.executable, *interpreter_flags(), "-m", "kodev.warm.server", path, idle],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, close_fds=True,
            )
    except OSError:
        pass


def interpreter_flags() -> list[str]:
    """Options that give the server this interpreter's ``sys.flags`` (part of the key).
    UTF-8 mode must be explicit: Python turns it on for a C locale and then changes the
    locale variables it passes on, so a server started from those would turn it off."""
    flags = sys.flags
    args = ["-X", f"utf8={flags.utf8_mode}"]
    args += ["-O"] * flags.optimize + ["-b"] * flags.bytes_warning + ["-v"] * flags.verbose
    for option, on in (("-B", flags.dont_write_bytecode), ("-s", flags.no_user_site),
                       ("-S", flags.no_site), ("-E", flags.ignore_environment),
                       ("-I", flags.isolated), ("-P", flags.safe_path), ("-q", flags.quiet)):
        if on:
            args.append(option)
    if flags.dev_mode:
        args += ["-X", "dev"]
    if flags.warn_default_encoding:
        args += ["-X", "warn_default_encoding"]
    if flags.int_max_str_digits >= 0:
        args += ["-X", f"int_max_str_digits={flags.int_max_str_digits}"]
    return args
