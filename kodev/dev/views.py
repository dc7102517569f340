"""The line views of ``kodev up``: one plain line per event, or one JSON object per event.

Events go to stdout (they are the command's output; editors and scripts read ``--json``).
Colour only on a terminal and without ``NO_COLOR``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from kodev.console import wants_color
from kodev.dev.dashboard import UpEvent

_COLOURS = {
    "ready": "32", "unchanged": "32", "built": "36", "build": "36", "patched": "34",
    "pushed": "34", "compile-error": "31", "failed": "31", "error": "31", "retry": "33",
    "deleted": "33", "warning": "33", "change": "35",
}


class LineView:
    """``kodev up --no-tui``: ``HH:MM:SS kind      message``; compiler output in full.
    The ``workload`` events (a copy of a TUI row, for ``--json``) are not printed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.colour = wants_color("auto", self.stream)
        self._lock = threading.Lock()

    def __call__(self, event: UpEvent) -> None:
        if event.kind == "workload":  # a row's new state: the events before it said it
            return
        if event.kind == "log":
            line = self._log_line(event)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            kind = f"{event.kind:<13}"
            if self.colour:
                kind = f"\033[{_COLOURS.get(event.kind, '0')}m{kind}\033[0m"
            line = f"{stamp} {kind} {event.message}"
            output = event.data.get("output") if event.kind == "compile-error" else None
            if output:
                line += "\n" + "\n".join(f"    {o}" for o in str(output).splitlines())
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _log_line(self, event: UpEvent) -> str:
        """``pod/container message``, the prefix coloured as ``kodev logs`` does."""
        if not self.colour:
            return event.message
        from kodev.kube.logs import format_line
        from kodev.kube.tail import LogLine

        data = event.data
        line = LogLine(str(data.get("timestamp", "")), str(data.get("namespace", "")),
                       str(data.get("pod", "")), str(data.get("container", "")),
                       str(data.get("line", "")))
        return format_line(line, color=True)


class JsonView:
    """``kodev up --json``: one object per line: time, event, message, importpath, data."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: UpEvent) -> None:
        text = json.dumps(event.json(), default=str)
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()
