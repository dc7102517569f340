"""A pseudo-terminal read back with pyte (a VT100 emulator): how the TUI tests, the README
screenshot (examples/tui_screenshot.py) and bench/tui.py see ``kodev up``'s full screen."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyte


class Terminal:
    """A pty of ``rows`` x ``columns``; ``start`` runs a program on it (in its own session:
    Ctrl-C in the test's terminal does not reach it). kodev up notices a resize by the
    terminal's size (it checks it several times a second), no SIGWINCH needed."""

    def __init__(self, rows: int, columns: int) -> None:
        self.rows, self.columns = rows, columns
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.master, self.slave = os.openpty()
        self._set_size()
        self.process: subprocess.Popen[bytes] | None = None

    def _set_size(self) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", self.rows, self.columns, 0, 0))

    def start(self, argv: Sequence[str], cwd: Path, env: dict[str, str]
              ) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=self.slave, stdout=self.slave,
            stderr=self.slave, start_new_session=True)
        return self.process

    def resize(self, rows: int, columns: int) -> None:
        """As a terminal window does: the emulator's size, then the pty's."""
        self.pump(0.2)
        self.rows, self.columns = rows, columns
        self.screen.resize(rows, columns)
        self._set_size()

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                self.stream.feed(data)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def lines(self) -> list[str]:
        return list(self.screen.display)

    def line_with(self, needle: str) -> str:
        return next((line for line in self.screen.display if needle in line), "")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 90.0,
                 what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.2)
            if predicate(self.text()):
                return self.text()
            if self.process is not None and self.process.poll() is not None:
                self.pump(0.2)
                raise AssertionError(f"kodev up exited ({self.process.returncode}) "
                                     f"waiting for {what}:\n{self.text()}")
        raise AssertionError(f"the screen never showed {what or 'what was expected'}:\n"
                             f"{self.text()}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the program to exit, reading what it writes meanwhile (its last
        frames: a pty whose reader stops reading blocks the writer)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running {timeout:.0f} s later:\n{self.text()}")
            self.pump(0.1)
        return self.process.returncode

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.slave)
        os.close(self.master)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
