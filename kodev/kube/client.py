"""Connecting to a cluster the way kubectl does, and turning API failures into KubeError.

Which cluster, user and namespace: ``--kubeconfig`` (one file), else ``$KUBECONFIG``
(several files joined by ``:``, merged as kubectl merges them), else ``~/.kube/config``;
``--context`` or the current context; ``-n`` or the context's namespace or ``default``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kodev.errors import KodevError, KubeError, UsageError

DEFAULT_KUBECONFIG = "~/.kube/config"


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
    return Cluster(client.ApiClient(configuration), configuration.host, chosen["name"],
                   namespace, namespace_explicit=bool(options.namespace))


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
    import yaml

    for path in paths.split(os.pathsep):
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
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
        raise unreachable(exc, cluster) from exc


def unreachable(exc: BaseException, cluster: Cluster) -> KubeError:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
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
        return KubeError(f"unauthorized: the API at {cluster.host} rejected the credentials "
                         f"of context {cluster.context!r}", hint=message)
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
