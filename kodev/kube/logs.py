"""Follow the logs of workloads' Pods across rollouts, restarts and dropped connections.

The engine of ``kodev logs`` and of the log pane of ``kodev up``. What it does, and why:

* **Watch, not list.** Pods and workloads (every kind in the workload table,
  :mod:`kodev.kube.workloads`, that the cluster serves) are listed once and then watched
  (:class:`~kodev.kube.state.ClusterState`), so a rollout's new Pods start streaming as
  soon as a container runs, and a deleted Pod's streams end (kubetail lists Pods once and
  misses them). Pods belong to a workload as its kind says (its ``spec.selector``, a
  Job's own Pods, a CronJob's Jobs' Pods, ...): kodev labels workloads
  (``app.kubernetes.io/managed-by=kodev``), not their pod templates.
* **One stream per container**, ``GET pods/log?follow=true&timestamps=true``. Timestamps
  are always requested so that a dropped stream resumes with ``sinceTime``. ``sinceTime``
  has second precision (the API truncates fractions), so kodev asks from the start of the
  second of the last line it showed and drops the replayed lines: older timestamps, and
  at the same timestamp as many lines with the same text as were shown. No line is shown
  twice and none is lost. The request is sent through ``ApiClient.call_api`` because
  kubernetes-client 37 has no ``since_time`` argument on ``read_namespaced_pod_log``.
* **Streams end when the Pod goes**, not when the HTTP stream ends: a kubelet may keep a
  follow stream open while the Pod is torn down. A clean end of a stream whose container still
  runs is a dropped connection and is resumed.
* **Restarts**: when a container's ``restartCount`` grows, its stream is closed, the lines
  of the previous instance not yet shown are fetched (``previous=true``, deduplicated) and
  the new instance is followed from its first line.
* ``--since``/``--tail`` apply to containers running when following starts; containers
  that start later are shown from their first line (all their lines are new).
* **Bounded.** At most :data:`kodev.kube.tail.MAX_LINE_BYTES` of a line is kept (the
  rest is counted and named in the line), read in linear time however long the line; a
  401 or 403, for a watch or a log, ends following with that error instead of retrying
  forever.
* **Split as stern is**: the watched state (:mod:`kodev.kube.state`) -> the targets
  (:class:`LogFollower`: which containers of which Pods) -> one tail per container
  (:mod:`kodev.kube.tail`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from kodev.errors import KubeError, UsageError
from kodev.kube.apply import MANAGED_BY_LABEL
from kodev.kube.client import Cluster, api_errors, is_not_found
from kodev.kube.selector import parse_selector
from kodev.kube.state import ClusterState, served_kinds
from kodev.kube.tail import (
    ContainerTail,
    LogEvent,
    LogLine,
    LogNotice,
    LogOptions,
    Sink,
    StreamKey,
)
from kodev.kube.watch import (
    ApiHttp,
    ListWatch,
    describe,
)
from kodev.kube.workloads import BUILTIN, BUILTIN_TABLE, WorkloadKind, WorkloadTable

_PALETTE = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
# stop() waits this long in all for its threads (they are daemons, their sockets shut
# down; one stuck connecting to an unresponsive API server must not delay an exit).
STOP_WAIT_S = 0.5
OutputMode = Literal["default", "raw", "json"]


# --------------------------------------------------------------------------- pure helpers


def parse_workload_ref(text: str, table: WorkloadTable = BUILTIN_TABLE) -> tuple[str, str]:
    """``NAME`` or ``KIND/NAME`` -> (the kind's table key or "" for any kind, name)."""
    kind_text, slash, name = text.rpartition("/")
    if not name or (slash and not kind_text):
        raise UsageError(f"invalid workload {text!r}", hint="use NAME or KIND/NAME")
    if not slash:
        return "", name
    kind = table.named(kind_text)
    if kind is None:
        raise UsageError(f"{kind_text!r} in {text!r} is not a workload kind",
                         hint=f"use KIND/NAME with a kind of: {table.names()} (or declare "
                              "a custom one with --workload-kind)")
    return kind.key, name


def colour_of(namespace: str, pod: str, container: str) -> int:
    """A stable ANSI colour for one container: the same on every run and machine."""
    return _PALETTE[zlib.crc32(f"{namespace}/{pod}/{container}".encode()) % len(_PALETTE)]


def _paint(text: str, code: int, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def format_line(line: LogLine, mode: OutputMode = "default", color: bool = False,
                timestamps: bool = False, *, namespace: bool = False) -> str:
    """One output line: ``pod/container [timestamp] message``, the message alone (raw) or
    a JSON object (timestamp, namespace, pod, container, message; always with timestamp).
    ``namespace`` prefixes the namespace too (for all-namespace output)."""
    if mode == "json":
        return json.dumps({"timestamp": line.timestamp, "namespace": line.namespace,
                           "pod": line.pod, "container": line.container,
                           "message": line.message}, ensure_ascii=False)
    text = f"{line.timestamp} {line.message}" if timestamps and line.timestamp else line.message
    if mode == "raw":
        return text
    prefix = f"{line.namespace}/{line.pod}/{line.container}" if namespace \
        else f"{line.pod}/{line.container}"
    return f"{_paint(prefix, colour_of(line.namespace, line.pod, line.container), color)} {text}"


def format_notice(notice: LogNotice, color: bool = False) -> str:
    """A notice for a human: ``+ pod/container``, ``- pod/container``, ``~ ...``."""
    mark = {"added": "+", "removed": "-"}.get(notice.kind, "~")
    where = f"{notice.pod}/{notice.container}" if notice.container else notice.pod
    code = colour_of(notice.namespace, notice.pod, notice.container) if notice.container \
        else 90
    parts = [mark, _paint(where, code, color) if where else "", notice.message]
    return " ".join(p for p in parts if p)


def started_containers(pod: Mapping[str, Any], pattern: re.Pattern[str] | None
                       ) -> list[tuple[str, int, bool]]:
    """(name, restartCount, running) of the Pod's containers that have started.

    Init containers come first. A container still waiting has no log to read yet.
    """
    status = pod.get("status") or {}
    found = []
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for entry in status.get(key) or []:
            name = str(entry.get("name", ""))
            if pattern is not None and not pattern.search(name):
                continue
            state = entry.get("state") or {}
            if "running" in state or "terminated" in state:
                found.append((name, int(entry.get("restartCount") or 0), "running" in state))
    return found


# --------------------------------------------------------------------------- watches


class LogFollower:
    """Follows the logs of the Pods of some workloads; see the module docstring.

    ``namespace`` None means all namespaces. ``workloads`` are (kind key, name) pairs,
    kind "" meaning any kind of the table; None means every workload labelled
    ``app.kubernetes.io/managed-by=kodev``, including ones applied later.
    ``selector`` further filters the Pods by their labels. ``sink`` gets every LogLine
    and LogNotice, one call at a time, from background threads. ``state``: follow the
    Pods of a :class:`ClusterState` that is already watched (``kodev up``'s), instead
    of watching on its own.
    """

    def __init__(self, cluster: Cluster, namespace: str | None,
                 workloads: Sequence[tuple[str, str]] | None, selector: str | None,
                 options: LogOptions, sink: Sink,
                 table: WorkloadTable = BUILTIN_TABLE,
                 state: ClusterState | None = None) -> None:
        self.cluster = cluster
        self.table = table
        self.shared = state is not None
        self.namespace = namespace
        self.named = None if workloads is None else [(k, n) for k, n in workloads]
        self.selector = selector or None
        self.options = options
        self.sink = sink
        self.pattern = _compile_container_pattern(options.container)
        if self.selector:
            parse_selector(self.selector)  # a bad selector is a UsageError here
        self.http = ApiHttp(cluster)
        self._lock = threading.Lock()
        self._sink_lock = threading.Lock()
        self._stopped = threading.Event()
        self._failure: BaseException | None = None
        self.state: ClusterState | None = state
        self._streams: dict[StreamKey, ContainerTail] = {}
        self._watches: list[ListWatch] = []
        self._watch_threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        self._api_lost = False
        self._initial = True

    # ---- public API

    def start(self) -> None:
        """Check the namespace and names, list once (KubeError on failure), then follow
        in background threads and return."""
        if self._started:
            return
        self._started = True
        if self.state is not None and self.shared:
            self.state.subscribe(lambda what, ref: self._reconcile())
            self._reconcile()
        else:
            self._check_namespace()
            self._watches = self._make_watches()
        for watch in list(self._watches):
            with api_errors(self.cluster, f"list {watch.path}"):
                try:
                    watch.list()
                except Exception as exc:  # a kind this user may not list is left out
                    pods = BUILTIN["Pod"].collection_path(self.namespace)
                    if not (_forbidden(exc) and watch.path != pods):
                        raise
                    self._watches.remove(watch)
                    self.notice("skipped", None, f"not following {describe(watch.path)}: "
                                                 "forbidden (RBAC)")
        self._initial = False
        if not self._streams:
            self._notice_nothing_yet()
        if self.options.follow:
            for watch in self._watches:
                thread = threading.Thread(target=watch.run, daemon=True,
                                          name=f"watch {watch.path}")
                self._watch_threads.append(thread)
                thread.start()

    def run(self) -> None:
        """Follow until stop() or Ctrl-C; with follow off, until every stream ended."""
        self.start()
        try:
            while not self._stopped.wait(0.2):
                if not self.options.follow and self._all_finished():
                    break
        finally:
            self.stop()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """End every stream and watch; returns within about STOP_WAIT_S seconds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopped.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.stop()
        for watch in self._watches:
            watch.close()
        deadline = time.monotonic() + STOP_WAIT_S
        for thread in [*self._watch_threads, *(s.thread for s in streams)]:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self.http.close()

    # ---- used by the streams

    def emit(self, event: LogEvent) -> None:
        """Give ``event`` to the sink, one at a time; a failing sink (say, a closed
        stdout) stops the follower and run() raises its exception."""
        with self._sink_lock:
            if self._stopped.is_set():
                return
            try:
                self.sink(event)
            except Exception as exc:  # handed to run()
                self.fail(exc)

    def notice(self, kind: str, key: StreamKey | None, message: str) -> None:
        if key is None:
            self.emit(LogNotice(kind, self.namespace or "", "", "", message))
        else:
            self.emit(LogNotice(kind, key.namespace, key.pod, key.container, message))

    def fail(self, exc: BaseException) -> None:
        """A sink or programming failure in a thread: stop everything, run() re-raises."""
        if self._failure is None:
            self._failure = exc
        self._stopped.set()

    def still_running(self, key: StreamKey, restarts: int) -> bool:
        assert self.state is not None
        with self.state.lock:
            pod = self.state.pods.get((key.namespace, key.pod))
        if pod is None or (pod.get("metadata") or {}).get("uid") != key.uid:
            return False
        return any(name == key.container and count == restarts and running
                   for name, count, running in started_containers(pod, self.pattern))

    # ---- start-up checks

    def _check_namespace(self) -> None:
        if self.namespace is None:
            return
        from kubernetes.client.exceptions import ApiException

        path = f"/api/v1/namespaces/{urllib.parse.quote(self.namespace)}"
        with api_errors(self.cluster, f"get namespace {self.namespace}"):
            try:
                self.http.get(path)
            except ApiException as exc:
                if is_not_found(exc):
                    raise KubeError(f"namespace {self.namespace!r} not found on "
                                    f"{self.cluster.host}",
                                    hint="check -n and --context; kubectl get namespaces "
                                         "lists them") from exc
                if exc.status != 403:  # without the right to read namespaces: go on
                    raise

    def _make_watches(self) -> list[ListWatch]:
        """Pods plus the workload kinds to watch, after checking named workloads exist."""
        with api_errors(self.cluster, "discover the workload kinds"):
            kinds = served_kinds(self.http, self.table)
        if self.named is not None:
            kinds = self._check_named(kinds)
        named = None if self.named is None else set(self.named)
        self.state = ClusterState(
            self.http, kinds, lambda what, ref: self._reconcile(),
            workload_labels=f"{MANAGED_BY_LABEL}=kodev" if named is None else None,
            pod_labels=self.selector,
            include=None if named is None else lambda ref: (ref.kind, ref.name) in named)
        return self.state.watches(self.namespace, on_fatal=self.fail,
                                  on_connection=lambda ok: self._api_state(lost=not ok))

    def _check_named(self, kinds: list[WorkloadKind]) -> list[WorkloadKind]:
        """The kinds the named workloads have; KubeError for a name that does not exist."""
        assert self.named is not None
        found_kinds: set[str] = set()
        resolved: list[tuple[str, str]] = []
        for key, name in self.named:
            found = [k for k in kinds if (not key or k.key == key) and self._exists(k, name)]
            if not found:
                raise self._not_found(key, name)
            found_kinds.update(k.key for k in found)
            resolved.extend((k.key, name) for k in found)
        self.named = resolved
        return [k for k in kinds if k.key in found_kinds]

    def _exists(self, kind: WorkloadKind, name: str) -> bool:
        """Whether a workload of this kind has the name (a kind this user may not list
        has none that kodev could follow)."""
        with api_errors(self.cluster, f"list {kind.plural}"):
            try:
                found = self.http.get(kind.collection_path(self.namespace),
                                      [("fieldSelector", f"metadata.name={name}")])
            except Exception as exc:
                if _forbidden(exc):
                    return False
                raise
        return bool(found.get("items"))

    def _not_found(self, kind: str, name: str) -> KubeError:
        where = f"namespace {self.namespace!r}" if self.namespace else "any namespace"
        what = f"{kind} {name!r}" if kind else f"no workload {name!r}"
        message = f"{what} not found in {where}" if kind else f"{what} in {where}"
        return KubeError(message, hint=f"check the name and -n; kodev follows {self.table.names()}")

    def _notice_nothing_yet(self) -> None:
        where = f"namespace {self.namespace}" if self.namespace else "any namespace"
        what = "the named workloads" if self.named is not None else \
            "workloads deployed by kodev"
        if self.options.follow:
            self.notice("waiting", None, f"no running containers of {what} in {where} yet; "
                                         "waiting")
        else:
            self.notice("none", None, f"no running containers of {what} in {where}")

    # ---- list + watch

    def _api_state(self, *, lost: bool) -> None:
        """One notice when the API is lost and one when it is back, for all watches."""
        with self._lock:
            changed, self._api_lost = self._api_lost != lost, lost
        if changed and not self._stopped.is_set():
            self.notice("retrying" if lost else "reconnected", None,
                        f"lost the connection to the API at {self.cluster.host}; retrying"
                        if lost else f"reconnected to the API at {self.cluster.host}")

    # ---- streams

    def _reconcile(self) -> None:
        """Start streams for newly started containers, stop those of Pods that are gone."""
        notices: list[tuple[str, StreamKey, str]] = []
        fresh: list[ContainerTail] = []
        with self._lock:
            if self._stopped.is_set():
                return
            wanted = self._wanted_streams()
            for key, stream in list(self._streams.items()):
                if key not in wanted:
                    stream.stop()
                    del self._streams[key]
                    notices.append(("removed", key, ""))
                elif wanted[key] > stream.restarts:
                    stream.stop()
                    self._streams[key] = self._new_stream(key, wanted[key], previous=stream)
                    fresh.append(self._streams[key])
                    notices.append(("restarted", key, f"restarted ({wanted[key]})"))
            for key, restarts in wanted.items():
                if key not in self._streams:
                    self._streams[key] = self._new_stream(key, restarts, previous=None)
                    fresh.append(self._streams[key])
                    notices.append(("added", key, ""))
        for kind, key, message in notices:
            self.notice(kind, key, message)
        for stream in fresh:
            stream.start()

    def _wanted_streams(self) -> dict[StreamKey, int]:
        wanted: dict[StreamKey, int] = {}
        if self.state is None:
            return wanted
        for pod, _workloads in self.state.selected_pods():
            meta = pod.get("metadata") or {}
            for container, restarts, _running in started_containers(pod, self.pattern):
                wanted[StreamKey(str(meta.get("namespace")), str(meta.get("name")),
                                  str(meta.get("uid")), container)] = restarts
        return wanted

    def _new_stream(self, key: StreamKey, restarts: int,
                    previous: ContainerTail | None) -> ContainerTail:
        first: list[tuple[str, str]] = []
        if self._initial and previous is None:
            if self.options.tail is not None:
                first.append(("tailLines", str(self.options.tail)))
            if self.options.since is not None:
                first.append(("sinceSeconds", str(max(1, int(self.options.since)))))
        return ContainerTail(self, key, restarts, first=first, previous=previous)

    def _all_finished(self) -> bool:
        with self._lock:
            return all(s.finished for s in self._streams.values())


def _forbidden(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 403


def _compile_container_pattern(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"-c {text!r} is not a valid regular expression: {exc}") from exc
