"""What ``kodev up`` learns from the cluster before building: the platforms of its nodes
and the local registry it advertises (KEP-1755), so a laptop cluster just works."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kodev.errors import UsageError
from kodev.kube.client import Cluster, api_errors, is_not_found

LOCAL_REGISTRY_CONFIGMAP = ("kube-public", "local-registry-hosting")
LOCAL_REGISTRY_KEY = "localRegistryHosting.v1"


@dataclass(frozen=True)
class LocalRegistry:
    """KEP-1755 ``localRegistryHosting.v1``: push to ``host``; the nodes' container runtime
    pulls from ``host_from_container_runtime`` (when the two differ, e.g. kind)."""

    host: str
    host_from_container_runtime: str | None = None
    help: str | None = None

    def runtime_reference(self, reference: str) -> str:
        """``reference`` as the container runtime must spell it."""
        runtime = self.host_from_container_runtime
        if runtime and runtime != self.host and reference.startswith(self.host + "/"):
            return runtime + reference[len(self.host):]
        return reference


def parse_local_registry(text: str) -> LocalRegistry | None:
    """The ConfigMap's YAML value; None when it names no ``host``."""
    from kodev.yamlsub import load_yaml

    try:
        data = load_yaml(text, "ConfigMap kube-public/local-registry-hosting")
    except UsageError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("host"), str) or not data["host"]:
        return None
    runtime = data.get("hostFromContainerRuntime")
    return LocalRegistry(
        host=data["host"],
        host_from_container_runtime=runtime if isinstance(runtime, str) and runtime else None,
        help=data.get("help") if isinstance(data.get("help"), str) else None,
    )


def local_registry(cluster: Cluster) -> LocalRegistry | None:
    """The registry the cluster advertises, or None (no ConfigMap, or no host in it)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace, name = LOCAL_REGISTRY_CONFIGMAP
    core: Any = client.CoreV1Api(cluster.api)
    with api_errors(cluster, f"read ConfigMap {namespace}/{name}"):
        try:
            configmap = core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if is_not_found(exc) or exc.status == 403:
                return None
            raise
    text = (configmap.data or {}).get(LOCAL_REGISTRY_KEY)
    return parse_local_registry(text) if text else None


def node_platforms(cluster: Cluster) -> list[str]:
    """``os/arch`` of every node (from ``status.nodeInfo``), sorted, without repeats."""
    from kubernetes import client

    core: Any = client.CoreV1Api(cluster.api)
    with api_errors(cluster, "list nodes"):
        nodes = core.list_node().items
    found = set()
    for node in nodes:
        info = node.status.node_info if node.status else None
        if info and info.architecture:
            found.add(f"{info.operating_system or 'linux'}/{info.architecture}")
    return sorted(found)
