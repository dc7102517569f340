"""File watching (watchdog, inotify on Linux) and burst coalescing.

Editors save in several steps (write a temp file, rename, touch a backup), and tools
like ``gofmt`` or ``git checkout`` write many files at once. :class:`ChangeQueue` turns
such a burst into one batch: after the first change it waits until nothing new has
arrived for the quiet period, then hands over every path seen.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORED_DIRS = frozenset({".git", ".hg", ".svn", ".idea", ".vscode", "node_modules",
                          ".testenv", "__pycache__", ".kodev"})


def is_ignored(path: Path) -> bool:
    """Version control internals, editor swap/backup/temporary files, and Go tests."""
    if IGNORED_DIRS.intersection(path.parts):
        return True
    name = path.name
    return (
        name.endswith(("~", ".swp", ".swo", ".swx", ".swpx", ".tmp", ".bak", ".orig"))
        or name.startswith((".#", "#"))
        or name == "4913"  # vim's write-permission probe
        or name.endswith("_test.go")
        or (name.startswith(".") and name.endswith(".go"))  # some editors' temp copies
    )


@dataclass
class Batch:
    """Paths changed in one burst, and when the first of them changed."""

    paths: set[Path] = field(default_factory=set)
    first_seen: float = 0.0  # time.monotonic()
    requests: set[str] = field(default_factory=set)  # non-file work, e.g. "reapply:<file>"

    def __bool__(self) -> bool:
        return bool(self.paths or self.requests)


class ChangeQueue:
    """Thread-safe: watchers ``put`` paths; the loop takes coalesced batches."""

    STOP = "stop"

    def __init__(self, quiet_seconds: float) -> None:
        self.quiet = quiet_seconds
        self._queue: queue.Queue[tuple[float, Path | str]] = queue.Queue()

    def put(self, path: Path) -> None:
        self._queue.put((time.monotonic(), path))

    def request(self, what: str) -> None:
        self._queue.put((time.monotonic(), what))

    def next_batch(self, timeout: float | None) -> Batch:
        """Block until a change arrives (or ``timeout``), then until a quiet period
        passes with no new change; an empty batch means the timeout ran out."""
        batch = Batch()
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return batch
        self._add(batch, first)
        batch.first_seen = first[0]
        while self.STOP not in batch.requests:
            try:
                self._add(batch, self._queue.get(timeout=self.quiet))
            except queue.Empty:
                break
        return batch

    def _add(self, batch: Batch, item: tuple[float, Path | str]) -> None:
        value = item[1]
        if isinstance(value, Path):
            batch.paths.add(value)
        else:
            batch.requests.add(value)


class FileWatcher:
    """watchdog observers on directories; relevant changes go to a :class:`ChangeQueue`."""

    def __init__(self, changes: ChangeQueue) -> None:
        from watchdog.observers import Observer

        self.changes = changes
        self._observer: Any = Observer()
        self._watched: set[Path] = set()
        self._lock = threading.Lock()

    def watch(self, directories: Iterable[Path]) -> None:
        """Watch these directories recursively (those not already covered)."""
        handler = _Handler(self.changes)
        with self._lock:
            for directory in sorted({d.resolve() for d in directories}):
                if not directory.is_dir() or any(directory.is_relative_to(w)
                                                 for w in self._watched):
                    continue
                self._observer.schedule(handler, str(directory), recursive=True)
                self._watched.add(directory)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=2)


class _Handler:
    """A watchdog event handler (duck-typed: watchdog calls ``dispatch``)."""

    def __init__(self, changes: ChangeQueue) -> None:
        self.changes = changes

    def dispatch(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write") or (event.is_directory \
                and event.event_type == "modified"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = Path(raw if isinstance(raw, str) else raw.decode())
                if not is_ignored(path):
                    self.changes.put(path)
