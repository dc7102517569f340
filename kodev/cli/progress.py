"""Renders pipeline events on stderr: a live status on a terminal, plain lines otherwise.

Colour follows rich's rules (``NO_COLOR``, ``FORCE_COLOR``, ``TERM=dumb``) and is off
when stderr is not a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kodev.console import is_live_terminal

if TYPE_CHECKING:
    from kodev.publish import Event

_STYLES = {
    "build": "cyan",
    "push": "blue",
    "pushed": "green",
    "base": "magenta",
    "error": "red",
    "done": "green",
}


class ProgressPrinter:
    """Context manager: ``with ProgressPrinter() as p: pipeline(on_event=p)``."""

    def __init__(self, *, json_events: bool = False, quiet: bool = False) -> None:
        self.console: Any = None
        if is_live_terminal(sys.stderr) and not json_events and not quiet:
            from rich.console import Console  # only on a terminal: rich costs ~40 ms to import

            self.console = Console(stderr=True, highlight=False)
        self.json_events = json_events
        self.quiet = quiet
        self.started = time.monotonic()
        self._status: Any = None

    def __enter__(self) -> ProgressPrinter:
        if self.console is not None and self.console.is_terminal:
            self._status = self.console.status("starting", spinner="dots")
            self._status.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.__exit__(exc_type, exc, tb)

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        if self.json_events:
            record = {"event": event.kind, "message": event.message, "elapsed": round(elapsed, 3)}
            if event.import_path:
                record["importpath"] = event.import_path
            record.update(event.data)
            sys.stderr.write(json.dumps(record) + "\n")
            return
        if self.console is None:
            sys.stderr.write(f"{elapsed:6.2f}s {event.kind:>7} {event.message}\n")
            return
        style = _STYLES.get(event.kind, "white")
        self.console.print(
            f"[dim]{elapsed:6.2f}s[/] [{style}]{event.kind:>7}[/] {event.message}",
            markup=True,
            soft_wrap=True,
        )
        if self._status is not None:
            self._status.update(event.message)
