"""Capture the real ``kodev up`` screen on the demo app and save it as examples/tui.svg.

Runs ``kodev up`` in a pseudo-terminal against the test environment, saves a change to
the shared package (both images roll), reads the screen back with pyte (a VT100
emulator) and renders exactly those characters and colours to SVG with rich.
Usage: python examples/tui_screenshot.py   (starts the test environment if needed)
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pyte
from rich.console import Console
from rich.text import Text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script
from tests.support.testenv import namespace, testenv_environ  # noqa: E402

ROWS, COLUMNS = 24, 118


def environment() -> dict[str, str]:
    env = {**testenv_environ(), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    return env


def pump(master: int, stream: pyte.ByteStream, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            stream.feed(os.read(master, 65536))


def wait_for(master: int, stream: pyte.ByteStream, screen: pyte.Screen, text: str,
             count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "\n".join(screen.display).count(text) < count:
        if time.monotonic() > deadline:
            raise SystemExit("the screen never showed " + text + ":\n" + "\n".join(screen.display))
        pump(master, stream, 0.3)


def to_svg(screen: pyte.Screen) -> str:
    console = Console(record=True, width=COLUMNS, force_terminal=True, color_system="truecolor",
                      file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    for row in range(ROWS):
        line = Text()
        for column in range(COLUMNS):
            char = screen.buffer[row][column]
            style = "" if char.fg == "default" else char.fg.replace("brown", "yellow")
            if char.bold:
                style += " bold"
            line.append(char.data, style=style.strip() or None)
        console.print(line, crop=True, no_wrap=True)
    return console.export_svg(title="kodev up")


def main() -> int:
    env = environment()
    with tempfile.TemporaryDirectory(prefix="kodev-shot-") as scratch:
        module = Path(scratch) / "demo"
        shutil.copytree(REPO / "examples/demo", module)
        subprocess.run(["git", "init", "-q", str(module)], check=True)
        env["KOCACHE"] = str(Path(scratch) / "kocache")
        name = f"kodev-shot-{os.getpid()}"
        namespace(env, name, create=True)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        screen = pyte.Screen(COLUMNS, ROWS)
        stream = pyte.ByteStream(screen)
        process = subprocess.Popen([sys.executable, "-m", "kodev", "up", "-f", "config", "-n",
                                    name, "--logs=false"], cwd=module, env=env,
                                   stdin=slave, stdout=slave, stderr=slave,
                                   start_new_session=True)
        try:
            wait_for(master, stream, screen, " ready", 2)
            greeting = module / "internal/greeting/greeting.go"
            greeting.write_text(greeting.read_text().replace("hello from", "hi from"))
            wait_for(master, stream, screen, "rollout complete", 4)
            pump(master, stream, 1.0)
            svg = to_svg(screen)
            os.write(master, b"q")
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            namespace(env, name, create=False)
    (REPO / "examples/tui.svg").write_text(svg)
    print("\n".join(screen.display))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
