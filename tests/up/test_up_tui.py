"""The full-screen TUI, driven in a pseudo-terminal and read back with pyte (a VT100
emulator): what a developer sees, and that ``q`` quits cleanly."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyte
import pytest

from tests.apply.test_apply_kube import eventually
from tests.fixtures.up import (
    crashing_gamma_main,
    deployment_images,
    edit,
    pods_of,
    up_env,
)

pytestmark = pytest.mark.kube

ROWS, COLUMNS = 40, 150


class Terminal:
    def __init__(self) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                self.stream.feed(data)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, predicate: Any, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.3)
            if predicate(self.text()):
                return self.text()
        raise AssertionError(f"screen never matched:\n{self.text()}")


@pytest.fixture
def tui(up_module: Path, kube_env: Any, kube_namespace: str, tmp_path: Path
        ) -> Iterator[Callable[..., tuple[Terminal, subprocess.Popen[bytes]]]]:
    """Start ``kodev up`` full screen in a pseudo-terminal; killed and closed afterwards."""
    started: list[tuple[Terminal, subprocess.Popen[bytes]]] = []

    def start(*extra: str) -> tuple[Terminal, subprocess.Popen[bytes]]:
        terminal = Terminal()
        env = {**up_env(kube_env, tmp_path / "kocache", kube_env.registry),
               "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
        env.pop("NO_COLOR", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "kodev", "up", "-f", "config", "-n", kube_namespace, *extra],
            cwd=up_module, env=env, stdin=terminal.slave, stdout=terminal.slave,
            stderr=terminal.slave, start_new_session=True)
        started.append((terminal, process))
        return terminal, process

    yield start
    for terminal, process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(terminal.slave)
        os.close(terminal.master)


def test_tui_shows_images_states_and_quits_on_q(
        up_module: Path, kube_api: Any, kube_namespace: str, tui: Any) -> None:
    terminal, process = tui()

    def row(screen: str, name: str) -> str:
        return next((line for line in screen.splitlines()
                     if f"example.com/uptest/cmd/{name}" in line), "")

    screen = terminal.wait_for(lambda t: "watching" in t and all(
        " ready" in row(t, n) and "1/1" in row(t, n) for n in ("alpha", "beta", "gamma")))
    assert "save→ready" in screen and "q quit" in screen and "l logs off" in screen

    os.write(terminal.master, b"l")  # the log pane: what beta's process printed
    terminal.wait_for(lambda t: "l logs on" in t)
    (pod,) = pods_of(kube_api, kube_namespace, "beta")
    terminal.wait_for(lambda t: f"{pod}/beta hello beta" in t)

    (up_module / "cmd/gamma/main.go").write_text(
        'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(undefinedName) }\n')
    screen = terminal.wait_for(lambda t: "compile error" in t and "undefinedName" in t)
    assert "main.go:5" in screen
    gamma = next(line for line in screen.splitlines() if "cmd/gamma" in line)
    assert "failed" in gamma

    # It compiles again, but exits at start: the kubelet's reason, on gamma's row.
    (up_module / "cmd/gamma/main.go").write_text(crashing_gamma_main())
    screen = terminal.wait_for(lambda t: "compile error" not in t and any(
        "cmd/gamma" in line and "CrashLoopBackOff" in line for line in t.splitlines()))
    assert "failed" in next(line for line in screen.splitlines() if "cmd/gamma" in line)

    os.write(terminal.master, b"q")
    assert process.wait(timeout=30) == 0


def test_live_rows_and_the_converge_key(
        up_module: Path, kube_api: Any, kube_namespace: str, tui: Any) -> None:
    """With --live: the row says live after a save, the footer offers c, and c rolls the
    running binary out as a normal rollout (the Deployment then names it)."""
    terminal, process = tui("--live")
    terminal.wait_for(lambda t: "c roll out live changes" in t and t.count("1/1") >= 3)
    before = deployment_images(kube_api, kube_namespace)["gamma"]
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma live"')
    terminal.wait_for(lambda t: any(  # the row (events name it cmd/gamma)
        "example.com/uptest/cmd/gamma" in line and " live" in line for line in t.splitlines()))
    assert deployment_images(kube_api, kube_namespace)["gamma"] == before
    os.write(terminal.master, b"c")
    terminal.wait_for(lambda t: "rolling out the running digest" in t)
    eventually("the Deployment to name the live digest",
               lambda: deployment_images(kube_api, kube_namespace)["gamma"] != before)
    os.write(terminal.master, b"q")
    assert process.wait(timeout=30) == 0
