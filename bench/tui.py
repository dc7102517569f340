"""What ``kodev up``'s full-screen TUI costs: CPU of the whole ``kodev up`` process while
it sits watching (the demo's worker prints a line every 5 s), and while a workload prints
10 log lines a second; bytes written to the terminal; whether it ever clears the screen
(a full clear between frames is what flickers).

Runs ``kodev up`` on the demo app in a pseudo-terminal against the test environment
(started if needed), like examples/tui_screenshot.py. Usage:
    python bench/tui.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, as make bench runs this file directly
from tests.support.terminal import Terminal, cpu_seconds  # noqa: E402
from tests.support.testenv import demo_in_namespace, testenv_environ  # noqa: E402

ROWS, COLUMNS = 40, 140
CLEAR = (b"\x1b[2J", b"\x1b[H\x1b[J", b"\x1b[0J")


class Counting(Terminal):
    """A terminal that also counts what the program wrote."""

    written = 0
    clears = 0

    def pump(self, seconds: float) -> None:
        feed = self.stream.feed

        def counted(data: bytes) -> None:
            self.written += len(data)
            self.clears += sum(data.count(c) for c in CLEAR)
            feed(data)

        self.stream.feed = counted  # type: ignore[method-assign]
        try:
            super().pump(seconds)
        finally:
            self.stream.feed = feed  # type: ignore[method-assign]


def measure(terminal: Counting, pid: int, seconds: float) -> tuple[float, float, int]:
    """(% of one core, bytes written per second, screen clears) over ``seconds``."""
    terminal.pump(1.0)
    written, clears = terminal.written, terminal.clears
    began, cpu = time.monotonic(), cpu_seconds(pid)
    terminal.pump(seconds)
    elapsed = time.monotonic() - began
    return ((cpu_seconds(pid) - cpu) / elapsed * 100, (terminal.written - written) / elapsed,
            terminal.clears - clears)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    env = {**testenv_environ(), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    with demo_in_namespace(env, "kodev-tui-bench") as (module, name):
        terminal = Counting(ROWS, COLUMNS)
        try:
            process = terminal.start([sys.executable, "-m", "kodev", "up", "-f", "config",
                                      "-n", name], module, env)
            terminal.wait_for(lambda t: t.count("1/1") >= 2, 180, "both Deployments ready")
            if "logs off" in terminal.text():  # too short a terminal for the log pane
                terminal.send(b"l")
            terminal.wait_for(lambda t: "tick 1" in t, 60, "a worker tick in the log pane")
            idle = measure(terminal, process.pid, args.seconds)
            worker = module / "cmd/worker/main.go"
            worker.write_text(worker.read_text().replace("5 * time.Second",
                                                         "100 * time.Millisecond"))
            terminal.wait_for(lambda t: "tick 30" in t, 120, "the fast worker's ticks")
            busy = measure(terminal, process.pid, args.seconds)
            terminal.send(b"q")
            terminal.wait_exit(30)
        finally:
            terminal.close()
    print(f"kodev up TUI, {ROWS}x{COLUMNS}, {args.seconds:.0f} s each")
    for label, (cpu, rate, clears) in (("idle (a log line every 5 s)", idle),
                                       ("10 log lines a second", busy)):
        print(f"{label:<30} CPU {cpu:5.2f} % of one core   {rate / 1024:7.1f} KiB/s to the "
              f"terminal   screen clears: {clears}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
