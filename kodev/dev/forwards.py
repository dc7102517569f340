"""``kodev up --port-forward``: every container port the deployed workloads declare,
on 127.0.0.1, following rollouts.

Which ports (pure: :func:`declared_ports`) is decided from the applied objects; where a
connection goes is decided when it is made, from the loop's :class:`WorkloadWatch`: the
newest Ready Pod that is not terminating. So a connection after a rollout reaches the
new code, and one made while no Pod is ready waits for one (bounded), then fails with a
message instead of hanging.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kodev.dev.dashboard import Dashboard
from kodev.kube.client import Cluster
from kodev.kube.portforward import LocalForward
from kodev.kube.rollout import WorkloadRef, WorkloadWatch
from kodev.kube.workloads import WorkloadKind, get_path


@dataclass(frozen=True)
class PortSpec:
    """A TCP port a container of a workload declares."""

    workload: WorkloadRef
    container: str
    port: int

    def __str__(self) -> str:
        return f"{self.workload}:{self.port}"


def declared_ports(workload: WorkloadRef, data: Mapping[str, Any], kind: WorkloadKind
                   ) -> list[PortSpec]:
    """The TCP ``containerPort`` of every container (not init containers) of the workload."""
    found: list[PortSpec] = []
    for container in kind.containers_of(data):
        for port in (get_path(data, container.path) or {}).get("ports") or [] \
                if not container.init else []:
            number = port.get("containerPort")
            if isinstance(number, int) and str(port.get("protocol", "TCP")).upper() == "TCP":
                found.append(PortSpec(workload, container.name, number))
    return found


class PortForwards:
    """One :class:`LocalForward` per declared port, kept for the life of ``kodev up``."""

    def __init__(self, cluster: Cluster, watch: WorkloadWatch, dashboard: Dashboard) -> None:
        self.cluster = cluster
        self.watch = watch
        self.dashboard = dashboard
        self.forwards: dict[PortSpec, LocalForward] = {}
        self._changed = threading.Condition()

    def ensure(self, specs: Iterable[PortSpec]) -> None:
        """Start forwarding the ports not forwarded yet (new workloads, re-applied files)."""
        for spec in specs:
            if spec in self.forwards:
                continue
            forward = LocalForward(self.cluster, spec.workload.namespace, spec.port,
                                   pick=functools.partial(self._pick, spec.workload),
                                   notify=functools.partial(self._failed, spec),
                                   local_port=spec.port)
            forward.start()
            self.forwards[spec] = forward
            url = f"http://127.0.0.1:{forward.local_port}"
            self.dashboard.set_forward(str(spec), url)
            self.dashboard.emit("forward", f"{spec} -> {url}", workload=str(spec.workload),
                      namespace=spec.workload.namespace, container=spec.container,
                      port=spec.port, local_port=forward.local_port, url=url)

    def pods_changed(self) -> None:
        """The watch saw Pods or workloads change: wake connections waiting for a Pod."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        for forward in self.forwards.values():
            forward.close()
        self.pods_changed()

    def _failed(self, spec: PortSpec, message: str) -> None:
        self.dashboard.emit("forward-error", f"{spec}: {message}", forward=str(spec))

    def _pick(self, workload: WorkloadRef, timeout: float) -> str | None:
        with self._changed:
            self._changed.wait_for(lambda: bool(self.watch.ready_pods(workload)), timeout)
        pods = self.watch.ready_pods(workload)
        return pods[0] if pods else None
