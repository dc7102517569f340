"""The dev loop's state, shared by the loop (writer) and the views (readers).

Threads (the file watcher, the cluster watches, the log followers, the loop itself)
report here; the TUI renders snapshots of it, the plain and JSON views print each event
as it arrives. All access goes through one lock.

Two kinds of rows: one per image (what the loop builds; set with :meth:`Dashboard.update`)
and one per workload (what a developer watches). A workload row is derived from the
events that name it or its images, so whatever the TUI shows of a workload came from an
event; and every change of a workload row is itself an event (``workload``, a full copy
of the row), so ``--json`` carries every field the TUI shows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# States, in the order a change moves through them.
WATCHING = "watching"
BUILDING = "building"
PUSHING = "pushing"
ROLLING = "rolling"
LIVE = "live-swapped"
READY = "ready"
FAILED = "failed"

HISTORY = 12  # save -> running times kept per workload (the sparkline)


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
class WorkloadRow:
    """One workload (``deployment/web``) as the TUI shows it."""

    name: str
    namespace: str = ""
    images: tuple[str, ...] = ()
    state: str = ROLLING
    message: str = ""
    ready: int = 0
    desired: int = 0
    build_seconds: float | None = None  # the last build of one of its images
    latency_seconds: float | None = None  # the last save -> running (rolled or live)
    history: tuple[float, ...] = ()  # the last HISTORY save -> running times, oldest first
    error: str = ""  # the current error in full (compiler output, the Pod's reason)
    error_at: float | None = None  # when the last error happened
    failure: str = ""  # what failed: "build", "push" or "rollout"
    urls: tuple[str, ...] = ()  # port-forwards to it
    before_build: tuple[str, str] = (READY, "")  # state and message a no-op build restores

    def json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "workload": self.name, "namespace": self.namespace,
            "importpaths": list(self.images), "state": self.state,
            "pods_ready": self.ready, "pods_desired": self.desired,
            "history_seconds": list(self.history)}
        if self.message:
            record["detail"] = self.message
        if self.build_seconds is not None:
            record["build_seconds"] = round(self.build_seconds, 3)
        if self.latency_seconds is not None:
            record["save_to_running_seconds"] = round(self.latency_seconds, 3)
        if self.error_at is not None:
            record["last_error_time"] = round(self.error_at, 3)
        if self.urls:
            record["urls"] = list(self.urls)
        return record


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


@dataclass(frozen=True)
class Snapshot:
    """What the TUI renders, copied under the lock."""

    workloads: list[WorkloadRow]  # and images no workload runs (as rows of their own)
    events: list[UpEvent]  # neither logs nor workload rows, oldest first
    logs: list[UpEvent]  # oldest first
    error: str | None  # the compile error, until a build succeeds
    version: int


Listener = Callable[[UpEvent], None]


class Dashboard:
    def __init__(self, *, keep_events: int = 200, keep_logs: int = 500) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._rows: dict[str, ImageRow] = {}
        self._workloads: dict[str, WorkloadRow] = {}
        self._events: deque[UpEvent] = deque(maxlen=keep_events)
        self._logs: deque[UpEvent] = deque(maxlen=keep_logs)
        self._error: str | None = None
        self._forwards: dict[str, str] = {}  # "deployment/web:8080" -> local URL
        self._listeners: list[Listener] = []
        self._closed = False
        # set by the loop: rebuild these import paths now (the TUI's ``r``)
        self.rebuild_handler: Callable[[list[str]], None] | None = None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, kind: str, message: str, import_path: str | None = None, /,
             **data: Any) -> UpEvent:
        event = UpEvent(kind, message, import_path, data)
        with self._lock:
            if self._closed:
                return event
            self._publish(event)
            self._publish_rows(self._derive(event))
        return event

    def _publish(self, event: UpEvent) -> None:
        if event.kind == "log":
            self._logs.append(event)
        elif event.kind != "workload":
            self._events.append(event)
        self._touch()
        for listener in self._listeners:
            listener(event)

    def _publish_rows(self, changed: Iterable[WorkloadRow]) -> None:
        for row in changed:
            self._publish(UpEvent("workload", f"{row.name}: {row.state}, "
                                  f"{row.ready}/{row.desired} Pods ready", None, row.json()))

    def _touch(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def poke(self) -> None:
        """Something only a view knows changed (a key, a selection): draw again."""
        with self._lock:
            self._touch()

    def wait_changed(self, version: int, timeout: float) -> int:
        """Block until the state is newer than ``version`` (or ``timeout``); the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            return self._version

    def close(self) -> None:
        """No more events reach the views: background threads (watches, log streams) may
        still report while the process exits, and must not write to a closing stdout."""
        with self._lock:
            self._closed = True
            self._touch()

    # ---------------------------------------------------------------- images

    def add_image(self, import_path: str) -> None:
        with self._lock:
            self._rows.setdefault(import_path, ImageRow(import_path))
            self._touch()

    def update(self, import_path: str, **changes: Any) -> ImageRow:
        with self._lock:
            row = replace(self._rows.get(import_path, ImageRow(import_path)), **changes)
            self._rows[import_path] = row
            self._touch()
            return row

    def row(self, import_path: str) -> ImageRow:
        with self._lock:
            return self._rows.get(import_path, ImageRow(import_path))

    # ---------------------------------------------------------------- workloads

    def add_workload(self, name: str, namespace: str, import_paths: Sequence[str]) -> None:
        """The loop applied ``name`` (``deployment/web``), which runs these images: its
        rollout follows."""
        with self._lock:
            old = self._workloads.get(name)
            row = old or WorkloadRow(name, namespace)
            builds = [self._rows[i].build_seconds for i in import_paths if i in self._rows]
            build = next((b for b in builds if b is not None), row.build_seconds)
            row = replace(row, images=tuple(sorted(import_paths)), build_seconds=build,
                          state=ROLLING if row.state != FAILED else FAILED)
            self._set_rows([row] if row != old else [])

    def set_pods(self, name: str, ready: int, desired: int) -> None:
        with self._lock:
            row = self._workloads.get(name)
            if row is not None and (row.ready, row.desired) != (ready, desired):
                self._set_rows([replace(row, ready=ready, desired=desired)])

    def workload(self, name: str) -> WorkloadRow | None:
        with self._lock:
            return self._workloads.get(name)

    def _set_rows(self, rows: Sequence[WorkloadRow]) -> None:
        for row in rows:
            self._workloads[row.name] = row
        self._publish_rows(rows)

    def _rows_for(self, event: UpEvent) -> list[WorkloadRow]:
        """The workload rows an event is about: the one it names, or those running the
        images it names."""
        name = event.data.get("workload")
        if isinstance(name, str):
            row = self._workloads.get(name)
            return [row] if row is not None else []
        images = set(event.data.get("images") or ())
        if event.import_path:
            images.add(event.import_path)
        return [r for r in self._workloads.values() if images & set(r.images)]

    def _derive(self, event: UpEvent) -> list[WorkloadRow]:
        """The workload rows this event changes, changed (and stored)."""
        change = _DERIVE.get(event.kind)
        if change is None:
            return []
        changed = []
        for row in self._rows_for(event):
            new = change(row, event)
            if new != row:
                self._workloads[row.name] = new
                changed.append(new)
        return changed

    # ---------------------------------------------------------------- the rest

    def set_error(self, text: str | None) -> None:
        with self._lock:
            if text != self._error:
                self._error = text
                self._touch()

    def set_forward(self, name: str, url: str) -> None:
        with self._lock:
            self._forwards[name] = url
            self._touch()

    def forwards(self) -> dict[str, str]:
        with self._lock:
            return dict(sorted(self._forwards.items()))

    def request_rebuild(self, import_paths: list[str]) -> bool:
        handler = self.rebuild_handler
        if handler is None or not import_paths:
            return False
        handler(import_paths)
        return True

    def snapshot(self) -> Snapshot:
        with self._lock:
            rows = sorted(self._workloads.values(), key=lambda r: r.name)
            running = {i for r in rows for i in r.images}
            rows += [_image_as_row(r) for r in sorted(self._rows.values(),
                                                      key=lambda r: r.import_path)
                     if r.import_path not in running]
            return Snapshot(rows, list(self._events), list(self._logs), self._error,
                            self._version)


def _image_as_row(image: ImageRow) -> WorkloadRow:
    """An image no workload runs (yet: before the first apply), as a row."""
    return WorkloadRow(image.import_path, "", (image.import_path,), image.state,
                       image.message, image.ready, image.desired, image.build_seconds,
                       image.latency_seconds)


# ------------------------------------------------------------------ event -> row


def _building(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    keep = row.before_build if row.state in (BUILDING, PUSHING) else (row.state, row.message)
    return replace(row, state=BUILDING, message="", before_build=keep)


def _built(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    return replace(row, state=PUSHING, message="",
                   build_seconds=event.data.get("build_seconds", row.build_seconds))


def _unchanged(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    """A no-op build: back to what it was, unless what it was is the build's failure."""
    state, message = row.before_build
    error, failure = row.error, row.failure
    if failure == "build":
        error, failure = "", ""
        if state == FAILED:
            state, message = READY, ""
    return replace(row, state=state, message=message, error=error, failure=failure,
                   build_seconds=event.data.get("build_seconds", row.build_seconds))


def _failed(row: WorkloadRow, event: UpEvent, failure: str, error: str,
            message: str) -> WorkloadRow:
    return replace(row, state=FAILED, message=message, error=error, error_at=event.at,
                   failure=failure)


def _compile_error(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    output = str(event.data.get("output") or "")
    return _failed(row, event, "build", output or event.message, "build failed")


def _retry(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    return _failed(row, event, "push", event.message, event.message.split(": retrying")[0])


def _rollout_failed(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    reason = str(event.data.get("reason") or event.message)
    short = reason.split(": ", 1)[1] if reason.startswith("pod ") else reason
    return _failed(row, event, "rollout", reason, short)


def _rolling(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    return replace(row, state=ROLLING, message="")


def _running(row: WorkloadRow, event: UpEvent, state: str, seconds: Any) -> WorkloadRow:
    """Running the new code: ``seconds`` after the save, if this followed a save."""
    changes: dict[str, Any] = {"state": state, "message": "", "error": "", "failure": ""}
    if isinstance(seconds, (int, float)):
        changes.update(latency_seconds=float(seconds),
                       history=(*row.history, float(seconds))[-HISTORY:])
    return replace(row, **changes)


def _ready(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    return _running(row, event, READY, event.data.get("save_to_ready_seconds"))


def _live(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    if event.data.get("new_pod"):  # a catch-up: the row already says live
        return row
    return _running(row, event, LIVE, event.data.get("save_to_running_seconds"))


def _recovered(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    return replace(row, state=READY, message="", error="", failure="")


def _deleted(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    return replace(row, state=ROLLING, message="deleted: applying it again")


def _forward(row: WorkloadRow, event: UpEvent) -> WorkloadRow:
    url = str(event.data.get("url") or "")
    return replace(row, urls=tuple(sorted({*row.urls, url}))) if url else row


_DERIVE: dict[str, Callable[[WorkloadRow, UpEvent], WorkloadRow]] = {
    "build": _building, "built": _built, "unchanged": _unchanged,
    "compile-error": _compile_error, "retry": _retry, "failed": _rollout_failed,
    "patched": _rolling, "converged": _rolling, "ready": _ready, "live": _live,
    "recovered": _recovered, "deleted": _deleted, "forward": _forward,
}
