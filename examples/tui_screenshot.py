"""Capture the real ``kodev up`` screen on the demo app and save it as examples/tui.svg.

Runs ``kodev up`` in a pseudo-terminal (tests/support/terminal.py) against the test
environment, saves two changes to the shared package (both workloads roll twice: their
rows show the build and save→running times and a two-bar history), waits for the new
code's lines in the log pane, reads the screen back with pyte (a VT100 emulator) and
renders exactly those characters and colours to SVG with rich.
Usage: python examples/tui_screenshot.py   (starts the test environment if needed)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyte
from rich.console import Console
from rich.text import Text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script
from tests.support.terminal import Terminal  # noqa: E402
from tests.support.testenv import demo_in_namespace, testenv_environ  # noqa: E402

ROWS, COLUMNS = 32, 118  # tall enough for the log pane (on by default from 28 rows)
BARS = "▁▂▃▄▅▆▇█"


def environment() -> dict[str, str]:
    env = {**testenv_environ(), "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    return env


def history(screen: str, workload: str) -> int:
    """How many bars the workload's history shows (0 before its first save)."""
    line = next((x for x in screen.splitlines() if x.lstrip("> ").startswith(workload)), "")
    return sum(line.count(bar) for bar in BARS)


def colour(name: str) -> str | None:
    """A pyte colour as rich spells it."""
    if name == "default":
        return None
    if len(name) == 6 and all(c in "0123456789abcdef" for c in name.lower()):
        return f"#{name}"
    name = name.replace("brown", "yellow")
    return f"bright_{name[6:]}" if name.startswith("bright") else name


def to_svg(screen: pyte.Screen) -> str:
    console = Console(record=True, width=COLUMNS, force_terminal=True, color_system="truecolor",
                      file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    for row in range(ROWS):
        line = Text()
        run, run_style = "", ""
        for column in range(COLUMNS):
            char = screen.buffer[row][column]
            fg, bg = colour(char.fg), colour(char.bg)
            style = " ".join(part for part in (fg or "", f"on {bg}" if bg else "",
                                               "bold" if char.bold else "",
                                               "reverse" if char.reverse else "") if part)
            if style != run_style:  # one span per run of equally styled characters
                line.append(run, style=run_style or None)
                run, run_style = "", style
            run += char.data
        line.append(run, style=run_style or None)
        console.print(line, crop=True, no_wrap=True)
    return console.export_svg(title="kodev up")


def main() -> int:
    env = environment()
    with demo_in_namespace(env, "kodev-shot") as (module, name):
        terminal = Terminal(ROWS, COLUMNS)
        try:
            terminal.start([sys.executable, "-m", "kodev", "up", "-f", "config", "-n", name],
                           module, env)
            terminal.wait_for(lambda t: t.count("1/1") >= 2 and t.count(" ready") >= 2, 180,
                              "both workloads ready")
            greeting = module / "internal/greeting/greeting.go"
            for saves, (old, new) in enumerate((("hello from", "hi from"),
                                                ("hi from", "hey from")), start=1):
                greeting.write_text(greeting.read_text().replace(old, new))
                terminal.wait_for(lambda t, n=saves: all(
                    history(t, w) >= n for w in ("deployment/web", "deployment/worker"))
                    and t.count(" ready") >= 2, 180, f"both rolled {saves} time(s)")
            terminal.wait_for(lambda t: "hey from" in t, 60, "the new code in the log pane")
            terminal.pump(1.0)
            svg = to_svg(terminal.screen)
            text = terminal.text()
            terminal.send(b"q")
            terminal.wait_exit(30)
        finally:
            terminal.close()
    (REPO / "examples/tui.svg").write_text(svg)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
