"""Connecting to a cluster the way kubectl does, and turning API failures into KubeError.

Which cluster, user and namespace: ``--kubeconfig`` (one file), else ``$KUBECONFIG``
(several files joined by ``:``, merged as kubectl merges them), else ``~/.kube/config``;
``--context`` or the current context; ``-n`` or the context's namespace or ``default``.

Every request has a timeout, set here once for every client kodev makes
(:func:`api_client`): ``KODEV_REQUEST_TIMEOUT`` seconds (default
:data:`REQUEST_TIMEOUT_S`) for the answer, and as long but at most
:data:`CONNECT_TIMEOUT_S` to connect (TLS handshake included), so a stalled or
half-open connection becomes an error instead of a hang. Calls that need another limit
(watches, followed logs) pass their own; TCP keepalive finds a peer that has gone away
under a long-lived stream. A GET that times out is retried once on a new connection;
other methods are not retried.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kodev.errors import KodevError, KubeError, UsageError

DEFAULT_KUBECONFIG = "~/.kube/config"
CONNECT_TIMEOUT_S = 10.0
# A little longer than the API server's own limit for a request (60s), so that its
# answer (a 504 naming the cause) comes first when the server is merely slow.
REQUEST_TIMEOUT_S = 70.0
REQUEST_TIMEOUT_ENV = "KODEV_REQUEST_TIMEOUT"


@dataclass(frozen=True)
class KubeOptions:
    """The kubectl-style flags: ``--kubeconfig``, ``--context``, ``-n/--namespace``."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass
class Cluster:
    """An API client plus where it points and the namespace objects default to."""

    api: Any  # kubernetes.client.ApiClient
    host: str
    context: str
    namespace: str
    namespace_explicit: bool  # given with -n: objects naming another namespace are an error
    request_timeout: float = REQUEST_TIMEOUT_S  # seconds to wait for an answer

    @property
    def connect_timeout(self) -> float:
        return min(CONNECT_TIMEOUT_S, self.request_timeout)

    def close(self) -> None:
        self.api.close()


def kubeconfig_paths(options: KubeOptions, environ: Mapping[str, str]) -> str:
    """``--kubeconfig``, else ``$KUBECONFIG`` (``:``-joined), else ``~/.kube/config``."""
    if options.kubeconfig:
        return str(Path(options.kubeconfig).expanduser())
    joined = environ.get("KUBECONFIG", "")
    paths = [str(Path(p).expanduser()) for p in joined.split(os.pathsep) if p]
    existing = [p for p in paths if Path(p).exists()]
    if paths and not existing:
        raise UsageError(f"KUBECONFIG={joined}: no such file",
                         hint="point KUBECONFIG or --kubeconfig at a kubeconfig file")
    return os.pathsep.join(existing) if paths else str(Path(DEFAULT_KUBECONFIG).expanduser())


def connect(options: KubeOptions, environ: Mapping[str, str] | None = None) -> Cluster:
    """Load the kubeconfig and make an ApiClient; no request is sent yet."""
    from kubernetes import client
    from kubernetes import config as untyped_config
    from kubernetes.config.config_exception import ConfigException

    config: Any = untyped_config  # the kubernetes client has no type hints

    env = os.environ if environ is None else environ
    paths = kubeconfig_paths(options, env)
    if options.kubeconfig and not Path(paths).exists():
        raise UsageError(f"--kubeconfig {options.kubeconfig}: no such file")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=paths)
        chosen = _choose_context(contexts, current, options.context, paths)
        configuration = client.Configuration()
        config.load_kube_config(config_file=paths, context=chosen["name"],
                                client_configuration=configuration, persist_config=False)
    except ConfigException as exc:
        raise UsageError(f"kubeconfig {paths}: {exc}",
                         hint="check --kubeconfig / KUBECONFIG and --context") from exc
    except OSError as exc:
        raise UsageError(f"kubeconfig {paths}: {exc.strerror or exc}") from exc
    namespace = options.namespace or chosen.get("context", {}).get("namespace") or "default"
    timeout = request_timeout(env)
    return Cluster(api_client(configuration, timeout), configuration.host, chosen["name"],
                   namespace, namespace_explicit=bool(options.namespace),
                   request_timeout=timeout)


def request_timeout(environ: Mapping[str, str]) -> float:
    """``KODEV_REQUEST_TIMEOUT`` (seconds), else :data:`REQUEST_TIMEOUT_S`."""
    text = environ.get(REQUEST_TIMEOUT_ENV, "").strip()
    if not text:
        return REQUEST_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise UsageError(f"{REQUEST_TIMEOUT_ENV}={text}: expected a number of seconds above 0")
    return value


def api_client(configuration: Any, timeout: float) -> Any:
    """An ApiClient whose requests time out: every call that names no timeout of its own
    gets (connect, read) = (min(:data:`CONNECT_TIMEOUT_S`, ``timeout``), ``timeout``).
    The one place kodev makes ApiClients."""
    import urllib3
    from kubernetes import client

    # urllib3's default retries three times on any error: a silent server would cost
    # four timeouts. Connection errors and timed out GETs are retried once.
    configuration.retries = urllib3.Retry(total=3, connect=1, read=1)
    configuration.keep_alive = True  # TCP keepalive, as client-go dials
    api: Any = client.ApiClient(configuration)
    request = api.rest_client.request
    default = (min(CONNECT_TIMEOUT_S, timeout), timeout)

    def request_with_timeout(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or default, **kwargs)

    api.rest_client.request = request_with_timeout
    return api


def _choose_context(contexts: list[dict[str, Any]] | None, current: dict[str, Any] | None,
                    wanted: str | None, paths: str) -> dict[str, Any]:
    wanted = wanted or first_current_context(paths)
    if wanted is None:
        if not current:
            raise UsageError(f"kubeconfig {paths} has no current context",
                             hint="pass --context NAME")
        return current
    for context in contexts or []:
        if context.get("name") == wanted:
            return context
    names = ", ".join(sorted(str(c.get("name")) for c in contexts or [])) or "none"
    raise UsageError(f"context {wanted!r} is not in kubeconfig {paths} (contexts: {names})")


def first_current_context(paths: str) -> str | None:
    """kubectl's rule for merged kubeconfigs: the first file that sets current-context wins.

    (The Python client's merger lets the last file win; kodev follows kubectl.)
    """
    from kodev.yamlsub import load_yaml, read_yaml_file

    for path in paths.split(os.pathsep):
        try:
            data = load_yaml(read_yaml_file(path), path)
        except UsageError:  # unreadable: the client's own loader reports it
            continue
        if isinstance(data, dict) and data.get("current-context"):
            return str(data["current-context"])
    return None


def dynamic_client(cluster: Cluster, cache_dir: Path) -> Any:
    """A ``DynamicClient`` whose discovery cache lives in kodev's cache, one file per server.

    The library's default is a shared file in /tmp; a lookup that misses the cache
    refreshes it, so a stale file costs one extra round of discovery, never a wrong answer
    about a kind that exists.
    """
    from kubernetes import dynamic

    untyped: Any = dynamic

    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(cluster.host.encode()).hexdigest()[:16]
    cache_file = cache_dir / f"discovery-{key}.json"
    with api_errors(cluster, "discover the API"):
        return untyped.DynamicClient(cluster.api, cache_file=str(cache_file))


@contextmanager
def api_errors(cluster: Cluster, action: str) -> Iterator[None]:
    """Turn client exceptions inside the block into one-line KubeErrors.

    ``action`` says what was attempted ("patch deployments.apps web in namespace x"), for
    the message. NotFound is not translated here: callers that expect it catch it first.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except KodevError:
        raise
    except ApiException as exc:
        raise api_error(exc, cluster, action) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise unreachable(exc, cluster, action) from exc


def unreachable(exc: BaseException, cluster: Cluster, action: str | None = None) -> KubeError:
    import urllib3

    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    what = f"cannot {action}: " if action else ""
    # NewConnectionError (refused, no route) subclasses ConnectTimeoutError in urllib3.
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError) and not refused:
        return KubeError(f"{what}no connection to the Kubernetes API at {cluster.host} "
                         f"within {cluster.connect_timeout:g}s",
                         hint=f"is the cluster of context {cluster.context!r} running and "
                              "reachable?")
    if isinstance(reason, TimeoutError | urllib3.exceptions.TimeoutError) and not refused:
        return KubeError(f"{what}the Kubernetes API at {cluster.host} did not answer within "
                         f"{cluster.request_timeout:g}s",
                         hint=f"is the API server of context {cluster.context!r} overloaded "
                              f"or the connection stalled? {REQUEST_TIMEOUT_ENV} sets the "
                              "limit in seconds")
    if "SSL" in type(reason).__name__ or "CERTIFICATE" in text.upper():
        return KubeError(f"TLS handshake with the Kubernetes API at {cluster.host} failed: "
                         f"{_last_clause(text)}",
                         hint=f"check the certificate data of context {cluster.context}")
    return KubeError(f"cannot reach the Kubernetes API at {cluster.host}",
                     hint=f"is the cluster of context {cluster.context!r} running? "
                          f"({_last_clause(text)})")


def api_error(exc: Any, cluster: Cluster, action: str) -> KubeError:
    status = getattr(exc, "status", None)
    message = status_message(exc)
    if status == 401:
        return KubeError(f"unauthorized: cannot {action}: the API at {cluster.host} rejected "
                         f"the credentials of context {cluster.context!r} ({message})",
                         hint="renew them (a token may have expired or been revoked) or "
                              "choose another context")
    if status == 403:
        return KubeError(f"forbidden: cannot {action}: {message}",
                         hint=f"the user of context {cluster.context!r} needs RBAC permission")
    return KubeError(f"cannot {action}: {message} (HTTP {status})")


def status_message(exc: Any) -> str:
    """The ``message`` of the API's Status body, else the HTTP reason."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return str(message)
    return str(getattr(exc, "reason", None) or exc)


def is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 404


def _last_clause(text: str) -> str:
    return text.rsplit(": ", 1)[-1].strip(" '\")(") or text


def open_websocket(cluster: Cluster, path: str, protocols: str, where: str,
                   timeout: float) -> Any:
    """A WebSocket to the API server (``pods/exec``, ``pods/portforward``) with the
    kubeconfig's TLS and credentials: the one place kodev opens one. A 403 raises
    :class:`WebSocketForbidden`; any other failure a :class:`KubeError` naming ``where``."""
    import websocket
    from kubernetes.stream import ws_client
    from websocket import WebSocketBadStatusException, WebSocketException

    stream: Any = ws_client  # the kubernetes client has no type hints
    configuration: Any = cluster.api.configuration
    url = stream.get_websocket_url(f"{configuration.host}{path}")
    headers = {"sec-websocket-protocol": protocols}
    token = configuration.get_api_key_with_prefix("authorization")
    if token:
        headers["authorization"] = token
    try:
        # The client's create_websocket takes no timeout: the library's default (the same
        # in every thread) bounds the connection and the handshake.
        websocket.setdefaulttimeout(cluster.request_timeout)
        ws = stream.create_websocket(configuration, url, headers)
    except WebSocketBadStatusException as exc:
        if exc.status_code == 403:
            raise WebSocketForbidden(f"{where}: forbidden") from exc
        raise KubeError(f"{where}: HTTP {exc.status_code}") from exc
    except (WebSocketException, OSError) as exc:
        raise KubeError(f"{where}: {exc}") from exc
    ws.settimeout(timeout)
    return ws


class WebSocketForbidden(KubeError):
    """RBAC does not allow the subresource (``create`` on ``pods/exec`` and the like)."""


def request(cluster: Cluster, method: str, path: str, *, body: Any = None,
            content_type: str = "application/json",
            params: Sequence[tuple[str, str]] = (), api: Any = None) -> Any:
    """One API request of any verb through the cluster's ApiClient (auth, TLS, timeout),
    with the content type the caller chooses (the typed clients guess it from the body:
    a JSON patch and a strategic-merge patch need to say which they are). Returns the
    decoded JSON body; raises ApiException for a non-2xx answer. ``api``: another
    ApiClient of the cluster's (kodev.kube.watch.ApiHttp's, with its larger pool)."""
    import json

    from kubernetes.client.exceptions import ApiException

    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    api = api or cluster.api
    method, url, header_params, serialized, post = api.param_serialize(
        method, path, query_params=list(params), header_params=headers, body=body,
        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params, serialized, post)
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return json.loads(data) if data else {}
