"""Raw requests to the API server, and list+watch of a collection that survives outages.

Both ``kodev logs`` (Pods and workloads, to know which containers to follow) and
``kodev up`` (workload status, to follow rollouts) keep a local copy of some collections
up to date through :class:`ListWatch`: list, then watch from the list's
``resourceVersion``; a 410 Gone lists again; a dropped connection or an API server
restart backs off and carries on; a 401/403 ends it; ``close()`` unblocks a reader at
once. Streamed lines are cut in linear time with a cap (:class:`LineBuffer`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kodev.errors import KubeError
from kodev.kube.client import Cluster, api_client, api_error, request

WATCH_TIMEOUT_S = 300  # the server ends a watch after this; it is then resumed
WATCH_READ_TIMEOUT_S = WATCH_TIMEOUT_S + 30  # a silent (half-open) watch is given up
MAX_BACKOFF_S = 2.0
READ_CHUNK = 64 * 1024  # bytes read from a stream at a time (a chunked response's piece)
# A watch event is one JSON line holding one object; the API server stores objects of at
# most about 1.5 MiB, so a longer line is not an event.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class ApiHttp:
    """Raw GETs through the kubernetes ApiClient (auth, TLS, proxies as configured)."""

    def __init__(self, cluster: Cluster) -> None:
        configuration = copy.deepcopy(cluster.api.configuration)
        # One connection per followed container: a larger pool avoids urllib3's
        # "connection pool is full" warnings.
        configuration.connection_pool_maxsize = 256
        self.cluster = cluster
        self.api: Any = api_client(configuration, cluster.request_timeout)

    def open(self, path: str, params: Sequence[tuple[str, str]], *,
             read_timeout: float | None, accept: str = "application/json") -> Any:
        """The urllib3 response, not read yet; raises ApiException for non-2xx."""
        from kubernetes.client.exceptions import ApiException

        method, url, headers, body, post = self.api.param_serialize(
            "GET", path, query_params=list(params), header_params={"Accept": accept},
            auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, headers, body, post,
                                     _request_timeout=(self.cluster.connect_timeout,
                                                       read_timeout))
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def stream_connection(self, path: str, params: Sequence[tuple[str, str]]
                          ) -> tuple[Any, str, dict[str, str]]:
        """A new connection of its own (not pooled) plus the request target and headers.

        A log stream gets its own connection because the API sends a followed log's
        headers only with its first line: a reader blocked before that can only be
        released by shutting the socket down, which needs the connection in hand.
        """
        _method, url, headers, _body, _post = self.api.param_serialize(
            "GET", path, query_params=list(params), header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"])
        pool = self.api.rest_client.pool_manager.connection_from_url(url)
        connection = pool._new_conn()  # same TLS, proxy and certificates as the pool
        connection.timeout = self.cluster.connect_timeout
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return connection, target, dict(headers)

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        return request(self.cluster, "GET", path, params=params, api=self.api)

    def close(self) -> None:
        self.api.close()


class LineBuffer:
    """Cuts a byte stream into lines in linear time, keeping at most ``limit`` bytes of
    any line: the rest of a longer line is counted, not kept, so a line without a newline
    (a process printing megabytes in one go) costs bounded memory however long it gets.

    Bytes are kept as the pieces they arrived in and joined once per line; each byte is
    searched for a newline once (re-scanning a growing buffer would be quadratic).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._dropped = 0

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """The lines ``chunk`` completes, as (bytes kept, bytes dropped) pairs."""
        lines = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._keep(chunk, start, end)
            lines.append(self._take())
            start = end + 1
        self._keep(chunk, start, len(chunk))
        return lines

    def end(self) -> tuple[bytes, int] | None:
        """The last line when the stream ends without a newline (None if there is none)."""
        return self._take() if self._size or self._dropped else None

    def _keep(self, chunk: bytes, start: int, end: int) -> None:
        room = self.limit - self._size
        if end - start > room:
            self._dropped += end - start - room
            end = start + room
        if end > start:
            self._parts.append(chunk[start:end])
            self._size += end - start

    def _take(self) -> tuple[bytes, int]:
        line = (b"".join(self._parts), self._dropped)
        self._parts, self._size, self._dropped = [], 0, 0
        return line


def iter_lines(response: Any, limit: int) -> Iterator[tuple[str, int]]:
    """Complete lines of a streamed response as they arrive, as (text, bytes dropped):
    at most ``limit`` bytes of a line are kept (see :class:`LineBuffer`). A partial last
    line is yielded only when the stream ends cleanly."""
    buffer = LineBuffer(limit)
    for chunk in response.stream(READ_CHUNK):
        for line, dropped in buffer.feed(chunk):
            yield line.decode("utf-8", "replace"), dropped
    last = buffer.end()
    if last is not None:
        yield last[0].decode("utf-8", "replace"), last[1]


def shutdown_response(response: Any) -> None:
    """Unblock a reader of ``response`` in another thread."""
    with contextlib.suppress(OSError, AttributeError, ValueError, RuntimeError):
        response.shutdown()


def shutdown_connection(connection: Any) -> None:
    """Unblock a reader of ``connection`` in another thread, even before any response."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def is_transient(exc: BaseException) -> bool:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | ApiException | ValueError)


def is_refused(exc: BaseException) -> bool:
    """401 or 403: the credentials or RBAC say no, and asking again will not change that."""
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status in (401, 403)


def describe(path: str) -> str:
    """``/apis/apps/v1/namespaces/x/deployments`` -> ``deployments.apps in namespace x``."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    group = parts[1] if parts[0] == "apis" and len(parts) > 2 else ""
    rest = parts[3:] if group else parts[2:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource = "/".join(rest) + (f".{group}" if group and rest else "")
    if not rest:
        return f"namespace {namespace}" if namespace else path
    return f"{resource} in namespace {namespace}" if namespace \
        else f"{resource} in all namespaces"


class ListWatch:
    """Keeps one collection in sync through callbacks: ``on_list(items)`` after every
    (re)list, ``on_event(type, object)`` for every watch event (bookmarks excluded),
    ``on_connection(ok)`` when requests start failing or work again.

    ``list()`` lists once and raises on failure (start-up checks); ``run()`` then loops
    until ``close()``, backing off 0.25 s doubling to 2 s on transient errors. A
    non-transient error goes to ``on_fatal`` and ends the loop; so does a 401 or 403 (as
    the KubeError the user sees): a revoked token or a Role without ``watch`` would
    only be refused again, forever.
    """

    def __init__(self, http: ApiHttp, path: str, params: Sequence[tuple[str, str]], *,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None],
                 on_connection: Callable[[bool], None] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.http = http
        self.path = path
        self.params = tuple(params)
        self.on_list = on_list
        self.on_event = on_event
        self.on_connection = on_connection or (lambda ok: None)
        self.on_fatal = on_fatal
        self.resource_version: str | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None

    def list(self) -> None:
        listing = self.http.get(self.path, self.params)
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        self.on_list(list(listing.get("items") or []))

    def run(self) -> None:
        backoff = 0.25
        while not self._closed.is_set():
            try:
                if self.resource_version is None:
                    self.list()
                self._watch()
                backoff = 0.25
            except Exception as exc:  # transient ones are retried
                if self._closed.is_set():
                    return
                if is_refused(exc) or not is_transient(exc):
                    fatal = self._refused(exc) if is_refused(exc) else exc
                    if self.on_fatal is None:
                        raise fatal from exc
                    self.on_fatal(fatal)
                    return
                self.on_connection(False)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            response = self._response
        if response is not None:
            shutdown_response(response)

    def _refused(self, exc: BaseException) -> BaseException:
        """A 401/403 as the KubeError the user sees (retrying would only repeat it: a
        revoked token or a Role without ``watch`` does not heal by itself)."""
        verb = "list" if self.resource_version is None else "watch"
        return api_error(exc, self.http.cluster, f"{verb} {describe(self.path)}")

    def _watch(self) -> None:
        """One watch request from the last resourceVersion; a 410 asks for a relist."""
        params = [*self.params, ("watch", "1"), ("allowWatchBookmarks", "true"),
                  ("timeoutSeconds", str(WATCH_TIMEOUT_S)),
                  ("resourceVersion", self.resource_version or "")]
        response = self.http.open(self.path, params, read_timeout=WATCH_READ_TIMEOUT_S)
        self.on_connection(True)
        with self._lock:
            self._response = response
        if self._closed.is_set():
            shutdown_response(response)
        try:
            for raw, dropped in iter_lines(response, MAX_EVENT_BYTES):
                if dropped:
                    raise KubeError(f"watch {describe(self.path)}: an event larger than "
                                    f"{MAX_EVENT_BYTES >> 20} MiB from {self.http.cluster.host}")
                event = json.loads(raw)
                obj = event.get("object") or {}
                kind = str(event.get("type"))
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        self.resource_version = None  # expired: list again
                        return
                    raise ValueError(f"watch error: {obj.get('message')}")
                self.resource_version = (obj.get("metadata") or {}).get(
                    "resourceVersion", self.resource_version)
                if kind != "BOOKMARK":
                    self.on_event(kind, obj)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
