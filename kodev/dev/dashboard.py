"""The dev loop's state, shared by the loop (writer) and the views (readers).

Threads (the file watcher, the cluster watches, the log followers, the loop itself)
report here; the TUI renders snapshots of it, the plain and JSON views print each event
as it arrives. All access goes through one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

# Image states, in the order a change moves through them.
WATCHING = "watching"
BUILDING = "building"
PUSHING = "pushing"
ROLLING = "rolling out"
READY = "ready"
FAILED = "failed"


@dataclass(frozen=True)
class ImageRow:
    import_path: str
    state: str = WATCHING
    digest: str = ""
    ready: int = 0
    desired: int = 0
    build_seconds: float | None = None  # the last go build + assembly
    latency_seconds: float | None = None  # the last save-to-Ready
    message: str = ""

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class UpEvent:
    kind: str
    message: str
    import_path: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"time": round(self.at, 3), "event": self.kind,
                                  "message": self.message}
        if self.import_path:
            record["importpath"] = self.import_path
        record.update(self.data)
        return record


Listener = Callable[[UpEvent], None]


class Dashboard:
    def __init__(self, *, keep_events: int = 200, keep_logs: int = 500) -> None:
        self._lock = threading.RLock()
        self._rows: dict[str, ImageRow] = {}
        self._events: deque[UpEvent] = deque(maxlen=keep_events)
        self._logs: deque[str] = deque(maxlen=keep_logs)
        self._error: str | None = None
        self._forwards: dict[str, str] = {}  # "deployment/web:8080" -> local URL
        self._listeners: list[Listener] = []
        self._closed = False
        self.show_logs = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, kind: str, message: str, import_path: str | None = None, /,
             **data: Any) -> UpEvent:
        event = UpEvent(kind, message, import_path, data)
        with self._lock:
            if self._closed:
                return event
            if kind == "log":
                self._logs.append(message)
            else:
                self._events.append(event)
            for listener in self._listeners:
                listener(event)
        return event

    def close(self) -> None:
        """No more events reach the views: background threads (watches, log streams) may
        still report while the process exits, and must not write to a closing stdout."""
        with self._lock:
            self._closed = True

    def add_image(self, import_path: str) -> None:
        with self._lock:
            self._rows.setdefault(import_path, ImageRow(import_path))

    def update(self, import_path: str, **changes: Any) -> ImageRow:
        with self._lock:
            row = replace(self._rows.get(import_path, ImageRow(import_path)), **changes)
            self._rows[import_path] = row
            return row

    def row(self, import_path: str) -> ImageRow:
        with self._lock:
            return self._rows.get(import_path, ImageRow(import_path))

    def set_error(self, text: str | None) -> None:
        with self._lock:
            self._error = text

    def set_forward(self, name: str, url: str) -> None:
        with self._lock:
            self._forwards[name] = url

    def forwards(self) -> dict[str, str]:
        with self._lock:
            return dict(sorted(self._forwards.items()))

    def snapshot(self) -> tuple[list[ImageRow], list[UpEvent], list[str], str | None]:
        with self._lock:
            return (sorted(self._rows.values(), key=lambda r: r.import_path),
                    list(self._events), list(self._logs), self._error)
