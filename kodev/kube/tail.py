"""One tail per container: follow one container instance's log over HTTP, resume after a
dropped connection without losing or repeating a line, catch up after a restart.

The follower (:class:`kodev.kube.logs.LogFollower`) decides which containers to tail
(the targets, from the watched state) and owns the sink; each :class:`ContainerTail`
runs in a thread of its own and reports through the :class:`Follower` protocol. The
line and notice types, the options and the timestamp arithmetic live here because both
sides use them. See :mod:`kodev.kube.logs` for the rules (sinceTime, replay, restarts,
bounded lines).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kodev.errors import KubeError
from kodev.kube.client import Cluster, api_error, is_not_found
from kodev.kube.watch import (
    MAX_BACKOFF_S,
    ApiHttp,
    is_refused,
    is_transient,
    iter_lines,
    shutdown_connection,
)

_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
STOP_JOIN_S = 1.5
# At most this much of one log line is kept and shown; the rest is dropped and counted
# (a process printing megabytes without a newline must not fill kodev's memory).
MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LogLine:
    """One log line; ``timestamp`` is the API's RFC 3339 text ("" if it sent none)."""

    timestamp: str
    namespace: str
    pod: str
    container: str
    message: str


@dataclass(frozen=True)
class LogNotice:
    """Something about the streams, not a log line.

    ``kind``: ``added`` (a container's stream started), ``removed`` (its Pod is gone),
    ``restarted`` (the container restarted; its new instance follows), ``resumed`` (a
    dropped stream continues), ``retrying`` (a request failed and is retried; without
    pod and container: the API connection is lost), ``reconnected`` (the API is back),
    ``skipped`` (a kind of workload this user may not list is not followed),
    ``waiting`` (nothing to follow yet), ``none`` (nothing to show, with follow off).
    """

    kind: str
    namespace: str
    pod: str
    container: str
    message: str


LogEvent = LogLine | LogNotice
Sink = Callable[[LogEvent], None]


@dataclass(frozen=True)
class LogOptions:
    since: float | None = None  # seconds; containers running at start only
    tail: int | None = None  # lines; containers running at start only
    timestamps: bool = False  # display only: the engine always requests them
    container: str | None = None  # regex searched in container names (as stern's -c)
    follow: bool = True


def timestamp_key(timestamp: str) -> tuple[int, int] | None:
    """(epoch seconds, nanoseconds) of an RFC 3339 timestamp, comparable across formats.

    Kubelets print RFC3339Nano with trailing zeros trimmed, so the texts do not sort.
    """
    match = _TIMESTAMP.fullmatch(timestamp)
    if match is None:
        return None
    seconds, fraction, offset = match.groups()
    moment = datetime.fromisoformat(seconds + ("+00:00" if offset == "Z" else offset))
    return int(moment.timestamp()), int((fraction or "0").ljust(9, "0"))


def since_time(key: tuple[int, int]) -> str:
    """The ``sinceTime`` that includes ``key``: the start of its second, in UTC."""
    return datetime.fromtimestamp(key[0], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_timestamp(raw: str) -> tuple[str, str]:
    """``"<timestamp> <message>"`` as the API sends it with timestamps=true."""
    timestamp, space, message = raw.partition(" ")
    if not space or timestamp_key(timestamp) is None:
        return "", raw
    return timestamp, message


def cut_marker(dropped: int) -> str:
    """What replaces the end of a line longer than :data:`MAX_LINE_BYTES`."""
    return (f" [kodev: line cut, {dropped:,} more bytes not shown; at most "
            f"{MAX_LINE_BYTES >> 20} MiB of a line is kept]")


class Replay:
    """What was shown of one container instance, to drop replayed lines after a resume."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None
        self.shown_at_last: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._replaying = False
        # Resumed before any line was shown: lines older than the first request are not
        # new (sinceTime has second precision, so the resume asks from earlier).
        self.floor: tuple[int, int] | None = None

    def resume(self) -> str | None:
        """Start dropping replayed lines; the ``sinceTime`` to request (None: from start)."""
        self._pending = Counter(self.shown_at_last)
        self._replaying = self.last is not None
        return since_time(self.last) if self.last is not None else None

    def accept(self, timestamp: str, message: str) -> bool:
        """True if the line is new (and records it as shown)."""
        key = timestamp_key(timestamp)
        if key is None:
            return True
        if self.floor is not None and self.last is None and key < self.floor:
            return False
        if self._replaying and self.last is not None:
            if key < self.last:
                return False
            if key == self.last and self._pending[message] > 0:
                self._pending[message] -= 1
                return False
            self._replaying = False
        if self.last is None or key > self.last:
            self.last, self.shown_at_last = key, Counter()
        if key == self.last:
            self.shown_at_last[message] += 1
        return True


@dataclass(frozen=True)
class StreamKey:
    namespace: str
    pod: str
    uid: str
    container: str


class ContainerTail:
    """Follows one container instance in a thread; resumes after drops."""

    def __init__(self, follower: Follower, key: StreamKey, restarts: int, *,
                 first: Sequence[tuple[str, str]], previous: ContainerTail | None) -> None:
        self.follower = follower
        self.key = key
        self.restarts = restarts
        self.first = first  # since/tail for the first request only
        self.previous = previous  # the instance before a restart, to catch up from
        self.replay = Replay()
        self.first_sent_at: float | None = None
        self.stopped = threading.Event()
        self._connection: Any = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"logs {key.pod}/{key.container}")

    @property
    def finished(self) -> bool:
        return not self.thread.is_alive()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            if self._connection is not None:
                shutdown_connection(self._connection)

    def _path(self) -> str:
        quote = urllib.parse.quote
        return f"/api/v1/namespaces/{quote(self.key.namespace)}/pods/{quote(self.key.pod)}/log"

    def _run(self) -> None:
        try:
            if self.previous is not None:
                self._catch_up_previous(self.previous)
                self.previous = None  # no chain of every earlier instance
            self._follow()
        except Exception as exc:  # a bug: stop everything and let run() raise it
            self.follower.fail(exc)

    def _catch_up_previous(self, previous: ContainerTail) -> None:
        """Lines of the instance before the restart that its stream had not shown."""
        previous.thread.join(STOP_JOIN_S)
        replay = previous.replay
        since = replay.resume()
        params = [("container", self.key.container), ("timestamps", "true"),
                  ("previous", "true")] + ([("sinceTime", since)] if since else [])
        try:
            response = self._open(params, read_timeout=60.0)
        except Exception as exc:  # best effort: the new instance matters more
            if is_refused(exc):
                raise self._refused(exc) from exc
            if not is_transient(exc):
                raise
            return
        self._read(response, replay)

    def _follow(self) -> None:
        backoff, dropped, reported = 0.25, False, ""
        while not self.stopped.is_set():
            params = self._params()
            follow = self.follower.options.follow
            try:
                response = self._open(params, read_timeout=None if follow else 60.0)
            except Exception as exc:  # classified below
                if is_refused(exc):
                    raise self._refused(exc) from exc
                if not is_transient(exc) or is_not_found(exc):
                    return  # the Pod is gone: its removal notice comes from the watch
                reported = self._report_retry(exc, reported)
                dropped = True
                self.stopped.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if dropped:
                self.follower.notice("resumed", self.key, "stream resumed")
            clean = self._read(response, self.replay)
            backoff, reported = 0.25, ""
            if self.stopped.is_set() or (clean and not follow):
                return
            if clean and not self.follower.still_running(self.key, self.restarts):
                return
            dropped = True
            self.stopped.wait(backoff)

    def _params(self) -> list[tuple[str, str]]:
        params = [("container", self.key.container), ("timestamps", "true")]
        if self.follower.options.follow:
            params.append(("follow", "true"))
        since = self.replay.resume()
        if since is not None:
            return [*params, ("sinceTime", since)]
        if self.first and self.first_sent_at is not None:
            # Resumed before any line was shown: --tail/--since must not be applied
            # again (a new --tail 0 would skip what came during the drop), so ask from
            # when the first request went out (client clock, start of its second).
            start = self.first_sent_at - (self.follower.options.since or 0.0)
            self.replay.floor = (int(start), int(start % 1 * 1e9))
            return [*params, ("sinceTime", since_time((int(start), 0)))]
        if self.first_sent_at is None:
            self.first_sent_at = time.time()
        return [*params, *self.first]

    def _refused(self, exc: BaseException) -> KubeError:
        """A 401/403 for the log: stop following with the API's reason (asking again
        would be refused again)."""
        return api_error(exc, self.follower.cluster,
                         f"get pods/log of pod {self.key.pod} in namespace {self.key.namespace}")

    def _report_retry(self, exc: BaseException, reported: str) -> str:
        """A notice for an HTTP error (once per distinct message); connection errors are
        reported by the watches, once for all streams."""
        from kodev.kube.client import status_message

        if not getattr(exc, "status", 0):
            return reported
        text = status_message(exc)
        if text != reported:
            self.follower.notice("retrying", self.key, f"cannot read the log ({text}); retrying")
        return text

    def _open(self, params: Sequence[tuple[str, str]], read_timeout: float | None) -> Any:
        """Send the request on a connection of its own and wait for the response headers;
        ApiException for a non-2xx status."""
        from kubernetes.client.exceptions import ApiException

        connection, target, headers = self.follower.http.stream_connection(self._path(),
                                                                           params)
        with self._lock:
            self._connection = connection
        try:
            connection.request("GET", target, headers=headers, preload_content=False)
            if self.stopped.is_set():  # stop() came while connecting
                raise ConnectionAbortedError("stopped")
            connection.timeout = read_timeout  # getresponse() applies it to the socket
            response = connection.getresponse()
        except BaseException:
            self._close()
            raise
        if not 200 <= response.status <= 299:
            body = response.read().decode("utf-8", "replace")
            self._close()
            raise ApiException(status=response.status, reason=response.reason, body=body)
        return response

    def _close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _read(self, response: Any, replay: Replay) -> bool:
        """Show the new lines of ``response``; True if it ended cleanly (not dropped)."""
        try:
            for raw, dropped in iter_lines(response, MAX_LINE_BYTES):
                timestamp, message = split_timestamp(raw)
                if dropped:
                    message += cut_marker(dropped)
                if replay.accept(timestamp, message):
                    self.follower.emit(LogLine(timestamp, self.key.namespace, self.key.pod,
                                               self.key.container, message))
            return True
        except Exception as exc:  # a drop is resumed by the caller
            if not is_transient(exc):
                raise
            return False
        finally:
            self._close()


class Follower(Protocol):
    """What a tail needs from whoever follows: where to send lines and notices, the
    options, the API connection, and whether its container still runs."""

    cluster: Cluster
    http: ApiHttp
    options: LogOptions

    def emit(self, event: LogEvent) -> None: ...

    def notice(self, kind: str, key: StreamKey | None, message: str) -> None: ...

    def fail(self, exc: BaseException) -> None: ...

    def still_running(self, key: StreamKey, restarts: int) -> bool: ...
