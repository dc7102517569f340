"""The full-screen view of ``kodev up`` (rich ``Live``): one row per image, recent events,
the compile error in full until it is fixed, and an optional log pane.

Keys: ``q`` quits (as does Ctrl-C), ``l`` shows or hides the logs.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kodev.dev.dashboard import BUILDING, FAILED, PUSHING, READY, ROLLING, Dashboard, ImageRow

_STATE_STYLE = {BUILDING: "cyan", PUSHING: "blue", ROLLING: "yellow", READY: "green",
                FAILED: "bold red"}
_EVENT_STYLE = {"ready": "green", "live": "bold green", "unchanged": "green",
                "live-fallback": "yellow", "compile-error": "red", "failed": "red",
                "error": "red", "retry": "yellow", "deleted": "yellow", "patched": "blue",
                "built": "cyan", "change": "magenta"}


class DashboardView:
    """A rich renderable over a :class:`Dashboard` (re-read at every refresh)."""

    def __init__(self, dashboard: Dashboard, title: str, more_keys: str = "") -> None:
        self.dashboard = dashboard
        self.title = title
        self.more_keys = more_keys

    def __rich_console__(self, console: Console, options: Any) -> Any:
        rows, events, logs, error = self.dashboard.snapshot()
        height = options.height or console.size.height
        parts: list[RenderableType] = [self._images(rows)]
        used = len(rows) + 5
        forwards = self.dashboard.forwards()
        if forwards:
            line = Text("forwarding ", style="dim")
            for name, url in forwards.items():
                line.append(f"{name} ")
                line.append(f"-> {url}   ", style="bold blue")
            parts.append(line)
            used += 1
        if error:
            lines = error.splitlines()
            parts.append(Panel(Text("\n".join(lines[: max(3, height // 2)]), style="red"),
                               title="compile error", border_style="red"))
            used += min(len(lines), max(3, height // 2)) + 2
        room = max(3, height - used - 3)
        if self.dashboard.show_logs:
            half = max(3, room // 2)
            parts.append(Panel(Text("\n".join(logs[-half:]), no_wrap=True, overflow="ellipsis"),
                               title="logs", border_style="dim"))
            room = max(3, room - half - 2)
        parts.append(Panel(self._events(events[-room:]), title="events", border_style="dim"))
        parts.append(Text(" q quit   l logs " + ("on" if self.dashboard.show_logs else "off")
                          + self.more_keys, style="dim"))
        yield Group(*parts)

    def _images(self, rows: list[ImageRow]) -> Table:
        table = Table(title=self.title, title_justify="left", expand=True)
        table.add_column("image", min_width=24, ratio=2)
        table.add_column("state", no_wrap=True, overflow="ellipsis", ratio=3)
        for column, width in (("digest", 12), ("pods", 5), ("build", 6), ("save→ready", 10)):
            table.add_column(column, no_wrap=True, min_width=width)
        for row in rows:
            state = Text(row.state, style=_STATE_STYLE.get(row.state, ""))
            if row.message:
                state.append(f" {row.message}", style="dim")
            table.add_row(row.import_path, state, row.short_digest,
                          f"{row.ready}/{row.desired}", _seconds(row.build_seconds),
                          _seconds(row.latency_seconds))
        return table

    def _events(self, events: list[Any]) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")  # one line per event, newest last
        for event in events:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            text.append(f"{stamp} ", style="dim")
            text.append(f"{event.kind:<13}", style=_EVENT_STYLE.get(event.kind, ""))
            text.append(f" {event.message}\n")
        text.rstrip()
        return text


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


class Tui:
    """Runs the live screen and the key reader around ``body`` (the loop)."""

    def __init__(self, dashboard: Dashboard, title: str, on_quit: Callable[[], None],
                 keys: Mapping[bytes, tuple[str, Callable[[], None]]] | None = None) -> None:
        self.dashboard = dashboard
        self.title = title
        self.on_quit = on_quit
        self.keys = dict(keys or {})  # more keys: key -> (footer text, action)
        self._done = threading.Event()

    def run(self, body: Callable[[], int]) -> int:
        console = Console()
        view = DashboardView(self.dashboard, self.title,
                             "".join(f"   {text}" for text, _ in self.keys.values()))
        saved = _cbreak(sys.stdin)
        keys = threading.Thread(target=self._read_keys, name="keys", daemon=True)
        try:
            with Live(view, console=console, screen=True, refresh_per_second=8,
                      redirect_stdout=False, redirect_stderr=False):
                keys.start()
                return body()
        finally:
            self._done.set()
            _restore(sys.stdin, saved)

    def _read_keys(self) -> None:
        fd = sys.stdin.fileno()
        while not self._done.is_set():
            readable, _, _ = select.select([fd], [], [], 0.2)
            if not readable:
                continue
            key = os.read(fd, 1)
            if key in (b"q", b"Q"):
                self.on_quit()
                return
            if key in (b"l", b"L"):
                self.dashboard.show_logs = not self.dashboard.show_logs
            elif key.lower() in self.keys:
                self.keys[key.lower()][1]()


def _cbreak(stream: Any) -> list[Any] | None:
    if not stream.isatty():
        return None
    saved = termios.tcgetattr(stream.fileno())
    tty.setcbreak(stream.fileno())
    return saved


def _restore(stream: Any, saved: list[Any] | None) -> None:
    if saved is not None:
        termios.tcsetattr(stream.fileno(), termios.TCSADRAIN, saved)
