"""The full-screen view of ``kodev up`` (rich ``Live``): one row per workload (its state,
Pods, last build, save -> running time and the history of it as a sparkline), the
error first (the compiler's output in full until a save fixes it, a stuck rollout's
Pod reason), then the logs and the recent events.

Keys (the footer lists them): ``tab``/arrows select a workload (the log pane then shows
only its lines), ``enter`` shows the selected row's error in full, ``r`` rebuilds the
selected image now, ``l`` shows or hides the logs, ``esc`` back to everything, ``q``
quits (as does Ctrl-C).

The screen is drawn only when something changed (an event, a key, a resize), at most
``MAX_FPS`` times a second: idle, it costs next to nothing, and a burst of log lines is
one frame per tenth of a second, each written over the last (no clear, no flicker).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rich import box
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from kodev.dev.dashboard import (
    BUILDING,
    FAILED,
    LIVE,
    PUSHING,
    READY,
    ROLLING,
    WATCHING,
    Dashboard,
    Snapshot,
    UpEvent,
    WorkloadRow,
)
from kodev.kube.logs import colour_of

MAX_FPS = 10
LOGS_MIN_HEIGHT = 28  # below this many rows the log pane starts hidden (``l`` shows it)
POLL_SECONDS = 0.25  # how often an idle screen checks the terminal's size

_STATE_STYLE = {WATCHING: "dim", BUILDING: "cyan", PUSHING: "blue", ROLLING: "yellow",
                LIVE: "bold green", READY: "green", FAILED: "bold red"}
_EVENT_STYLE = {"ready": "green", "live": "bold green", "unchanged": "green",
                "live-fallback": "yellow", "compile-error": "red", "failed": "red",
                "error": "red", "retry": "yellow", "deleted": "yellow", "patched": "blue",
                "built": "cyan", "change": "magenta", "recovered": "green",
                "rebuild": "cyan", "forward-error": "red"}
_BARS = "▁▂▃▄▅▆▇█"
_LOCATION = re.compile(r"^(\S+?\.\w+):(\d+)(?::(\d+))?:")  # file.go:12:5: message
_CONTROL = {c: None for c in (*range(0, 9), *range(10, 32), 127)}  # no escapes reach the screen

KEY_TAB, KEY_BACKTAB, KEY_UP, KEY_DOWN = b"\t", b"\x1b[Z", b"\x1b[A", b"\x1b[B"
KEY_ENTER, KEY_ESC = (b"\r", b"\n"), b"\x1b"


class DashboardView:
    """A rich renderable over a :class:`Dashboard` and the screen's own state (selection,
    log pane, an error shown in full); sized to the terminal at every frame."""

    def __init__(self, dashboard: Dashboard, title: str, more_keys: str = "") -> None:
        self.dashboard = dashboard
        self.title = title
        self.more_keys = more_keys
        self.selected: str | None = None  # a row's name; None: every workload
        self.logs: bool | None = None  # None: on when the terminal is tall enough
        self.expanded = False  # enter: the selected row's (or the compile) error in full
        self.height = 0  # the screen's height at the last frame

    # ---------------------------------------------------------------- the screen's state

    def logs_shown(self, height: int) -> bool:
        return self.logs if self.logs is not None else height >= LOGS_MIN_HEIGHT

    def toggle_logs(self) -> None:
        self.logs = not self.logs_shown(self.height)

    def move(self, step: int) -> None:
        """Select the next (or previous) row; past either end, every workload again."""
        names: list[str | None] = [None, *(r.name for r in self.dashboard.snapshot().workloads)]
        index = names.index(self.selected) if self.selected in names else 0
        self.selected = names[(index + step) % len(names)]
        self.expanded = False

    def has_error(self) -> bool:
        """Whether enter has an error to show: the selected row's, or the compile error."""
        snapshot = self.dashboard.snapshot()
        selected = self.selected_row(snapshot)
        return bool((selected is not None and selected.error) or snapshot.error)

    def selected_row(self, snapshot: Snapshot) -> WorkloadRow | None:
        return next((r for r in snapshot.workloads if r.name == self.selected), None)

    # ---------------------------------------------------------------- rendering

    def __rich_console__(self, console: Console, options: ConsoleOptions
                         ) -> Iterator[RenderableType]:
        snapshot = self.dashboard.snapshot()
        height = self.height = options.height or console.size.height
        width = options.max_width
        footer = self._footer(height)
        room = height - 1
        table = _lines(console, options,
                       self._table(snapshot, max_rows=max(1, room - 3 - 5)))  # 5: events
        room -= len(table)
        parts: list[RenderableType] = [table]
        selected = self.selected_row(snapshot)
        if self.expanded and ((selected is not None and selected.error) or snapshot.error):
            text = _error_text(selected.error if selected is not None and selected.error
                               else snapshot.error or "")
            title = f"{selected.name}: error" if selected is not None and selected.error \
                else "compile error"
            parts.append(_panel(text, title, "red", max(3, room)))
            yield from parts
            yield footer
            return
        errors = self._errors(snapshot, console, width, max(3, room // 2))
        if errors is not None:
            rendered = _lines(console, options, errors)
            parts.append(rendered)
            room -= len(rendered)
        if room >= 3 and self.logs_shown(height):
            logs_height = max(3, room * 3 // 5) if room >= 8 else room
            parts.append(self._logs(snapshot, logs_height, selected))
            room -= logs_height
        if room >= 3:
            parts.append(_panel(_event_lines(snapshot.events, room - 2), "events", "dim",
                                room))
        yield from parts
        yield footer

    def _footer(self, height: int) -> Text:
        logs = "on" if self.logs_shown(height) else "off"
        keys = [("q", "quit"), ("l", f"logs {logs}"), ("tab/↑↓", "select"),
                ("enter", "full error"), ("r", "rebuild"), ("esc", "all")]
        text = Text(no_wrap=True, overflow="ellipsis")
        for key, what in keys:
            text.append(f" {key}", style="bold")
            text.append(f" {what}  ", style="dim")
        if self.more_keys:
            text.append(self.more_keys, style="dim")
        return text

    def _table(self, snapshot: Snapshot, max_rows: int) -> Table:
        rows = snapshot.workloads
        forwarding = any(r.urls for r in rows)
        table = Table(title=self._title(snapshot), title_justify="left", expand=True,
                      box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1),
                      pad_edge=False)
        # the workload column as wide as its names; state and URLs share what is left
        table.add_column("workload", no_wrap=True, overflow="ellipsis", max_width=48)
        table.add_column("state", no_wrap=True, overflow="ellipsis", ratio=2, width=12)
        table.add_column("pods", no_wrap=True, min_width=4)
        table.add_column("build", no_wrap=True, min_width=6)
        table.add_column("save→running", no_wrap=True, min_width=12)
        table.add_column("history", no_wrap=True, min_width=7)
        table.add_column("last error", no_wrap=True, min_width=10)
        if forwarding:
            table.add_column("port-forward", no_wrap=True, overflow="ellipsis", ratio=1)
        for row in _window(rows, self.selected, max_rows):
            chosen = row.name == self.selected
            state = Text(row.state, style=_STATE_STYLE.get(row.state, ""))
            if row.message:
                state.append(f" {_one_line(row.message)}", style="dim")
            cells: list[RenderableType] = [
                Text(("> " if chosen else "  ") + row.name, style="bold" if chosen else ""),
                state, _pods(row), _seconds(row.build_seconds),
                _seconds(row.latency_seconds), sparkline(row.history),
                Text(_clock(row.error_at), style="red" if row.state == FAILED else "dim")]
            if forwarding:
                cells.append(Text(" ".join(row.urls), style="blue"))
            table.add_row(*cells, style="reverse" if chosen else None)
        return table

    def _title(self, snapshot: Snapshot) -> Text:
        rows = snapshot.workloads
        failed = sum(r.state == FAILED for r in rows)
        title = Text(self.title, style="bold")
        title.append(f"   {len(rows)} workload(s)", style="dim")
        if failed:
            title.append(f"   {failed} failed", style="bold red")
        if self.selected:
            title.append(f"   selected: {self.selected}", style="dim")
        return title

    def _errors(self, snapshot: Snapshot, console: Console, width: int, lines: int
                ) -> Panel | None:
        """Errors first: the compile error (until a build succeeds), else each failed
        row's error (a stuck rollout's Pod reason and message)."""
        if snapshot.error:
            text = _error_text(snapshot.error)
            return _panel(_first_lines(text, lines - 2, console, width - 4),
                          "compile error: fix it and save (enter: in full)", "red")
        failed = [r for r in snapshot.workloads if r.state == FAILED and r.error]
        if not failed:
            return None
        text = Text()
        for row in failed:
            if text:
                text.append("\n")
            text.append(row.name, style="bold red")
            text.append(f" {_clock(row.error_at)} ", style="dim")
            text.append(_one_line(row.error))
        return _panel(_first_lines(text, lines - 2, console, width - 4), "failed", "red")

    def _logs(self, snapshot: Snapshot, height: int, selected: WorkloadRow | None) -> Panel:
        logs = snapshot.logs
        title = "logs"
        if selected is not None:
            logs = [e for e in logs if e.data.get("workload") == selected.name]
            title = f"logs: {selected.name}"
        text = Text(no_wrap=True, overflow="ellipsis")
        for event in logs[-max(1, height - 2):]:
            if text:
                text.append("\n")
            text.append_text(_log_line(event))
        return _panel(text, title, "dim", height)


def sparkline(values: Sequence[float]) -> Text:
    """The last save -> running times as bars (0 to the longest); the newest brightest."""
    if not values:
        return Text("")
    top = max(values) or 1.0
    bars = "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))]
                   for v in values)
    text = Text(bars[:-1], style="cyan")
    text.append(bars[-1], style="bold cyan")
    return text


def _window(rows: Sequence[WorkloadRow], selected: str | None, size: int
            ) -> Sequence[WorkloadRow]:
    """At most ``size`` rows, the selected one among them."""
    if len(rows) <= size:
        return rows
    index = next((i for i, r in enumerate(rows) if r.name == selected), 0)
    start = max(0, min(index - size // 2, len(rows) - size))
    return rows[start:start + size]


class _Lines(list[list[Segment]]):
    """Lines rendered once (to know their height), drawn as they are."""

    def __rich_console__(self, console: Console, options: ConsoleOptions
                         ) -> Iterator[Segment]:
        for line in self:
            yield from line
            yield Segment.line()


def _lines(console: Console, options: ConsoleOptions, renderable: RenderableType) -> _Lines:
    return _Lines(console.render_lines(renderable, options.reset_height(), pad=False))


def _panel(text: Text, title: str, style: str, height: int | None = None) -> Panel:
    return Panel(text, title=title, title_align="left", border_style=style, height=height,
                 padding=(0, 1))


def _first_lines(text: Text, lines: int, console: Console | None = None, width: int = 0
                 ) -> Text:
    """At most ``lines`` lines of ``text`` (wrapped at ``width``), saying how many more."""
    split = list(text.split("\n", allow_blank=True))
    if console is not None and width > 0:
        split = [piece for line in split for piece in line.wrap(console, width)]
    lines = max(1, lines)
    if len(split) <= lines:
        return text
    kept = Text("\n").join(split[: lines - 1])
    kept.append(f"\n… {len(split) - lines + 1} more line(s): enter shows it all",
                style="dim")
    return kept


def _error_text(output: str) -> Text:
    """Compiler output, ``file:line:col:`` in colour."""
    text = Text()
    for number, raw in enumerate(output.splitlines()):
        line = _clean(raw)
        if number:
            text.append("\n")
        match = _LOCATION.match(line)
        if match is None:
            text.append(line, style="bold" if line.startswith("#") else "red")
            continue
        text.append(match.group(1), style="bold magenta")
        text.append(f":{match.group(2)}", style="bold yellow")
        if match.group(3):
            text.append(f":{match.group(3)}", style="yellow")
        text.append(":")
        text.append(line[match.end():], style="red")
    return text


def _event_lines(events: Sequence[UpEvent], lines: int) -> Text:
    """The newest ``lines`` events, one line each (a multi-line message shows its first
    line), newest last: the panel never has more lines than it can show."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for event in events[-max(1, lines):]:
        if text:
            text.append("\n")
        text.append(time.strftime("%H:%M:%S ", time.localtime(event.at)), style="dim")
        text.append(f"{event.kind:<13}", style=_EVENT_STYLE.get(event.kind, ""))
        text.append(f" {_one_line(event.message)}")
    return text


def _log_line(event: UpEvent) -> Text:
    """``pod/container line``, the prefix in the container's colour (as ``kodev logs``)."""
    data = event.data
    pod, container = str(data.get("pod", "")), str(data.get("container", ""))
    if not pod:
        return Text(_one_line(event.message))
    code = colour_of(str(data.get("namespace", "")), pod, container)
    colour = Color.from_ansi(code - 30 if code < 90 else code - 90 + 8)
    text = Text(f"{pod}/{container}", style=Style(color=colour))
    text.append(f" {_one_line(str(data.get('line', '')))}")
    return text


def _pods(row: WorkloadRow) -> Text:
    if not row.desired and not row.ready:
        return Text("")
    style = "green" if row.ready >= row.desired > 0 else "yellow"
    return Text(f"{row.ready}/{row.desired}", style=style)


def _one_line(text: str) -> str:
    return _clean(text.split("\n", 1)[0])


def _clean(text: str) -> str:
    return text.replace("\t", "    ").translate(_CONTROL)


def _clock(at: float | None) -> str:
    return "" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


class Tui:
    """Runs the live screen, its refresher and the key reader around ``body`` (the loop)."""

    def __init__(self, dashboard: Dashboard, title: str, on_quit: Callable[[], None],
                 keys: Mapping[bytes, tuple[str, Callable[[], None]]] | None = None) -> None:
        self.dashboard = dashboard
        self.title = title
        self.on_quit = on_quit
        self.keys = dict(keys or {})  # more keys: key -> (footer text, action)
        self.view = DashboardView(dashboard, title,
                                  "".join(f"   {text}" for text, _ in self.keys.values()))
        self._done = threading.Event()
        self._saved: list[Any] | None = None  # the terminal's mode before the screen
        self._screen_up = False

    def run(self, body: Callable[[], int]) -> int:
        console = Console()
        saved = self._saved = _cbreak(sys.stdin)
        self._screen_up = True
        keys = threading.Thread(target=self._read_keys, name="keys", daemon=True)
        try:
            with Live(self.view, console=console, screen=True, auto_refresh=False,
                      redirect_stdout=False, redirect_stderr=False) as live:
                drawer = threading.Thread(target=self._draw, args=(live, console),
                                          name="screen", daemon=True)
                drawer.start()
                keys.start()
                try:
                    return body()
                finally:
                    self._done.set()
                    self.dashboard.poke()
                    drawer.join(timeout=2)
        finally:
            self._done.set()
            if self._screen_up:  # not already done by restore_terminal()
                self._screen_up = False
                _restore(sys.stdin, saved)

    def _draw(self, live: Live, console: Console) -> None:
        """Draw when the dashboard changed or the terminal was resized, at most MAX_FPS."""
        size = console.size
        drawn = -1
        while not self._done.is_set():
            version = self.dashboard.wait_changed(drawn, POLL_SECONDS)
            now = console.size
            if (version == drawn and now == size) or self._done.is_set():
                continue
            size, drawn = now, version
            try:
                live.refresh()
            except Exception:  # a frame that fails must not end the screen
                continue
            time.sleep(1 / MAX_FPS)

    def restore_terminal(self) -> None:
        """For a forced exit from another thread while the screen is up: leave the
        alternate screen, show the cursor and restore the terminal's mode, without rich
        (whose lock the main thread may hold)."""
        if not self._screen_up:
            return
        self._screen_up = False
        saved = self._saved
        self._done.set()
        with contextlib.suppress(OSError, ValueError):
            os.write(sys.stdout.fileno(), b"\x1b[?1049l\x1b[?25h")
        if saved is not None:
            with contextlib.suppress(OSError, termios.error):
                _restore(sys.stdin, saved)

    def _read_keys(self) -> None:
        fd = sys.stdin.fileno()
        while not self._done.is_set():
            readable, _, _ = select.select([fd], [], [], 0.2)
            if not readable:
                continue
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                return
            for key in _split_keys(data):
                if not self.press(key):
                    return

    def press(self, key: bytes) -> bool:
        """Act on one key; False once it quits."""
        view = self.view
        if key in (b"q", b"Q"):
            self.on_quit()
            return False
        if key in (b"l", b"L"):
            view.toggle_logs()
        elif key in (KEY_TAB, KEY_DOWN):
            view.move(1)
        elif key in (KEY_BACKTAB, KEY_UP):
            view.move(-1)
        elif key in KEY_ENTER:
            view.expanded = not view.expanded and view.has_error()
        elif key == KEY_ESC:
            view.selected, view.expanded = None, False
        elif key in (b"r", b"R"):
            self._rebuild()
        elif key.lower() in self.keys:
            self.keys[key.lower()][1]()
        self.dashboard.poke()
        return True

    def _rebuild(self) -> None:
        snapshot = self.dashboard.snapshot()
        row = self.view.selected_row(snapshot)
        rows = [row] if row is not None else snapshot.workloads
        images = sorted({i for r in rows for i in r.images})
        if images and self.dashboard.rebuild_handler is not None:
            what = row.name if row is not None else "every image"
            self.dashboard.emit("rebuild", f"rebuild requested: {what}", images=images)
            self.dashboard.request_rebuild(images)


def _split_keys(data: bytes) -> list[bytes]:
    """One read's bytes as keys: an escape sequence (arrows, shift-tab) is one key."""
    keys = []
    while data:
        size = 3 if data.startswith(b"\x1b[") and len(data) >= 3 else 1
        keys.append(data[:size])
        data = data[size:]
    return keys


def _cbreak(stream: Any) -> list[Any] | None:
    if not stream.isatty():
        return None
    saved = termios.tcgetattr(stream.fileno())
    tty.setcbreak(stream.fileno())
    return saved


def _restore(stream: Any, saved: list[Any] | None) -> None:
    if saved is not None:
        termios.tcsetattr(stream.fileno(), termios.TCSADRAIN, saved)
