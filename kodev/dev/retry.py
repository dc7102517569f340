"""When ``kodev up`` tries again after a registry, API or file-system failure.

Pure state, no I/O: what is owed a retry (images to build and push, manifest files to
apply), when, and the back-off (0.5 s doubling to :data:`MAX_BACKOFF_SECONDS`; the next
failure after a success starts again from 0.5 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_BACKOFF_SECONDS = 8.0
FIRST_BACKOFF_SECONDS = 0.5


@dataclass
class RetryScheduler:
    clock: Callable[[], float] = time.monotonic
    images: set[str] = field(default_factory=set)
    files: set[Path] = field(default_factory=set)
    at: float | None = None
    backoff: float = FIRST_BACKOFF_SECONDS

    def schedule(self, images: Iterable[str], files: Iterable[Path]) -> float:
        """Owe these a retry; returns the delay chosen (the next one doubles)."""
        delay = self.backoff
        self.images |= set(images)
        self.files |= set(files)
        self.at = self.clock() + delay
        self.backoff = min(self.backoff * 2, MAX_BACKOFF_SECONDS)
        return delay

    def due(self) -> bool:
        return self.at is not None and self.clock() >= self.at

    def until(self) -> float | None:
        """Seconds until the retry is due (None: nothing owed), for the queue's wait."""
        return None if self.at is None else max(0.0, self.at - self.clock())

    def take(self) -> tuple[set[str], set[Path]]:
        """What is owed, now being retried."""
        owed = (self.images, self.files)
        self.images, self.files, self.at = set(), set(), None
        return owed

    def succeeded(self) -> None:
        """Everything went through: forget what was owed and start the back-off afresh."""
        self.images, self.files, self.at = set(), set(), None
        self.backoff = FIRST_BACKOFF_SECONDS

    def settled(self) -> None:
        """An iteration with nothing failing: the next failure starts at 0.5 s."""
        if self.at is None:
            self.backoff = FIRST_BACKOFF_SECONDS
