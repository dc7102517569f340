"""The workloads kodev follows and their Pods, kept up to date by list+watch.

One :class:`ClusterState` serves ``kodev up`` (rollouts, health, port forwards, the log
pane) and ``kodev logs`` (which containers to follow): stern's split of *watch* (this
module) from *targets* (which containers, decided by the caller from :meth:`pods_of`)
from *tails* (one stream per container, :mod:`kodev.kube.logs`).

Which kinds are watched comes from the workload table (:mod:`kodev.kube.workloads`),
restricted to the kinds the cluster serves (an Argo Rollouts or Knative API that is not
installed is not watched, rather than retried forever). CronJobs' Pods belong to them
through the Jobs they own, so watching CronJobs also watches Jobs (unfiltered: the Jobs
a CronJob creates carry none of its labels).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from kodev.kube.watch import ApiHttp, ListWatch
from kodev.kube.workloads import (
    BUILTIN,
    PodsBy,
    RolloutStatus,
    WorkloadKind,
    WorkloadTable,
    controller_uid,
    is_ready,
    pod_problem,
)


@dataclass(frozen=True)
class WorkloadRef:
    """A workload by table key (``Deployment``, ``Rollout.argoproj.io``), namespace, name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


Listener = Callable[[str, WorkloadRef | None], None]  # ("changed" | "deleted", workload)


def served_kinds(http: ApiHttp, table: WorkloadTable) -> list[WorkloadKind]:
    """The table's kinds that the cluster serves, with their plural filled in from
    discovery where the table does not know it (custom kinds)."""
    from kubernetes.client.exceptions import ApiException

    served: list[WorkloadKind] = []
    resources: dict[str, dict[str, str] | None] = {}
    for kind in table:
        if kind.group in ("", "apps", "batch"):
            served.append(kind)
            continue
        if kind.api_version not in resources:
            try:
                listing = http.get(f"/apis/{kind.api_version}")
                resources[kind.api_version] = {
                    str(r.get("kind")): str(r.get("name"))
                    for r in listing.get("resources") or [] if "/" not in str(r.get("name"))}
            except ApiException as exc:
                if exc.status != 404:
                    raise
                resources[kind.api_version] = None
        plural = (resources[kind.api_version] or {}).get(kind.kind)
        if plural is not None:
            served.append(replace(kind, plural=plural))
    return served


class ClusterState:
    """Latest workloads (of the given kinds) and Pods in some namespaces.

    ``namespace`` None watches all namespaces. ``workload_labels`` filters workloads
    (``app.kubernetes.io/managed-by=kodev``), ``pod_labels`` filters Pods;
    ``include(ref)`` drops workloads the caller does not want (``kodev logs NAME``).
    ``listener`` (and any added with :meth:`subscribe`) hears ("changed", ref or None)
    and ("deleted", ref) after each update.
    :meth:`watches` creates the list+watches for a namespace; the caller lists them
    (to fail early) and runs them in threads.
    """

    def __init__(self, http: ApiHttp, kinds: Sequence[WorkloadKind], listener: Listener, *,
                 workload_labels: str | None = None, pod_labels: str | None = None,
                 include: Callable[[WorkloadRef], bool] | None = None) -> None:
        self.http = http
        self.kinds = {k.key: k for k in kinds}
        self.listeners: list[Listener] = [listener]
        self.workload_labels = workload_labels
        self.pod_labels = pod_labels
        self.include = include or (lambda ref: True)
        self.lock = threading.Lock()
        self.workloads: dict[WorkloadRef, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._job_owner: dict[tuple[str, str], tuple[str, str]] = {}  # -> (uid, owner uid)

    # ---------------------------------------------------------------- watches

    def watches(self, namespace: str | None, kinds: Iterable[WorkloadKind] | None = None,
                *, pods: bool = True, **callbacks: Any) -> list[ListWatch]:
        """New list+watches of ``kinds`` (default: all of this state's) and, with
        ``pods``, of Pods, in ``namespace``. ``callbacks``: ListWatch's ``on_connection``
        and ``on_fatal``."""
        chosen = list(self.kinds.values()) if kinds is None else list(kinds)
        for kind in chosen:
            self.kinds.setdefault(kind.key, kind)
        made = []
        workload_params = (("labelSelector", self.workload_labels),) \
            if self.workload_labels else ()
        for kind in chosen:
            made.append(ListWatch(
                self.http, kind.collection_path(namespace), workload_params,
                on_list=functools.partial(self._replace, kind.key, namespace),
                on_event=functools.partial(self._apply_event, kind.key), **callbacks))
        if any(k.pods is PodsBy.OWNED_JOBS for k in chosen):
            made.append(ListWatch(
                self.http, BUILTIN["Job"].collection_path(namespace), (),
                on_list=functools.partial(self._replace_jobs, namespace),
                on_event=self._job_event, **callbacks))
        if pods:
            pod_params = (("labelSelector", self.pod_labels),) if self.pod_labels else ()
            path = BUILTIN["Pod"].collection_path(namespace)
            made.append(ListWatch(
                self.http, path, pod_params,
                on_list=functools.partial(self._replace_pods, namespace),
                on_event=self._pod_event, **callbacks))
        return made

    def subscribe(self, listener: Listener) -> None:
        """Another listener (kodev up's log pane follows the same state as its rollouts)."""
        self.listeners.append(listener)

    def _tell(self, what: str, ref: WorkloadRef | None) -> None:
        for listener in list(self.listeners):
            listener(what, ref)

    # ---------------------------------------------------------------- queries

    def kind_of(self, ref: WorkloadRef) -> WorkloadKind | None:
        return self.kinds.get(ref.kind)

    def get(self, ref: WorkloadRef) -> dict[str, Any] | None:
        with self.lock:
            return self.workloads.get(ref)

    def pods_of(self, ref: WorkloadRef) -> list[dict[str, Any]]:
        """The workload's Pods as last seen."""
        with self.lock:
            data = self.workloads.get(ref)
            return [] if data is None else self._pods_of(ref, data)

    def status(self, ref: WorkloadRef) -> RolloutStatus | None:
        with self.lock:
            data = self.workloads.get(ref)
            kind = self.kinds.get(ref.kind)
            if data is None or kind is None:
                return None
            return kind.rollout_status(data, self._pods_of(ref, data))

    def pod_problem(self, ref: WorkloadRef) -> str | None:
        """Why one of the workload's Pods cannot run, rollout or not."""
        return pod_problem(self.pods_of(ref))

    def ready_pods(self, ref: WorkloadRef) -> list[str]:
        """Names of the workload's Ready Pods, newest first."""
        ready = [p for p in self.pods_of(ref) if is_ready(p)]
        ready.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
        return [str(p["metadata"]["name"]) for p in ready]

    def generation(self, ref: WorkloadRef) -> int:
        data = self.get(ref) or {}
        return int((data.get("metadata") or {}).get("generation") or 0)

    def uid(self, ref: WorkloadRef) -> str | None:
        data = self.get(ref) or {}
        value = (data.get("metadata") or {}).get("uid")
        return str(value) if value else None

    def selected_pods(self) -> list[tuple[dict[str, Any], list[WorkloadRef]]]:
        """Every Pod with the workloads it belongs to (only Pods of some workload)."""
        with self.lock:
            found: dict[tuple[str, str], list[WorkloadRef]] = {}
            for ref, data in self.workloads.items():
                for pod in self._pods_of(ref, data):
                    found.setdefault(_pod_key(pod), []).append(ref)
            return [(self.pods[key], refs) for key, refs in found.items() if key in self.pods]

    def _pods_of(self, ref: WorkloadRef, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = self.kinds.get(ref.kind)
        if kind is None:
            return []
        if kind.pods is PodsBy.SELF:
            pod = self.pods.get((ref.namespace, ref.name))
            return [pod] if pod is not None and controller_uid(pod) is None else []
        owners = {uid: owner for (ns, _), (uid, owner) in self._job_owner.items()
                  if ns == ref.namespace} if kind.pods is PodsBy.OWNED_JOBS else {}
        return [p for (ns, _), p in self.pods.items()
                if ns == ref.namespace and kind.selects(data, p, owners)]

    # ---------------------------------------------------------------- callbacks

    def _ref(self, key: str, data: Mapping[str, Any]) -> WorkloadRef:
        meta = data.get("metadata") or {}
        return WorkloadRef(key, str(meta.get("namespace", "")), str(meta.get("name", "")))

    def _replace(self, key: str, namespace: str | None, items: list[dict[str, Any]]) -> None:
        fresh = {ref: item for item in items
                 if self.include(ref := self._ref(key, item))}
        with self.lock:
            old = {r for r in self.workloads
                   if r.kind == key and (namespace is None or r.namespace == namespace)}
            deleted = old - set(fresh)
            for ref in deleted:
                del self.workloads[ref]
            self.workloads.update(fresh)
        for ref in sorted(deleted, key=str):
            self._tell("deleted", ref)
        self._tell("changed", None)

    def _apply_event(self, key: str, event_type: str, data: dict[str, Any]) -> None:
        ref = self._ref(key, data)
        if not self.include(ref):
            return
        with self.lock:
            if event_type == "DELETED":
                self.workloads.pop(ref, None)
            else:
                self.workloads[ref] = data
        self._tell("deleted" if event_type == "DELETED" else "changed", ref)

    def _replace_pods(self, namespace: str | None, items: list[dict[str, Any]]) -> None:
        self._relist(self.pods, namespace, {_pod_key(p): p for p in items})

    def _pod_event(self, event_type: str, data: dict[str, Any]) -> None:
        self._update(self.pods, _pod_key(data), None if event_type == "DELETED" else data)

    def _replace_jobs(self, namespace: str | None, items: list[dict[str, Any]]) -> None:
        self._relist(self._job_owner, namespace,
                     {_pod_key(j): owner for j in items if (owner := _job_owner(j))})

    def _job_event(self, event_type: str, data: dict[str, Any]) -> None:
        self._update(self._job_owner, _pod_key(data),
                     None if event_type == "DELETED" else _job_owner(data))

    def _relist(self, store: dict[tuple[str, str], Any], namespace: str | None,
                entries: Mapping[tuple[str, str], Any]) -> None:
        """A (re)list of a namespace (None: all) replaces what ``store`` held for it."""
        with self.lock:
            for key in [k for k in store if namespace is None or k[0] == namespace]:
                del store[key]
            store.update(entries)
        self._tell("changed", None)

    def _update(self, store: dict[tuple[str, str], Any], key: tuple[str, str],
                value: Any) -> None:
        """One watch event: ``value`` None removes the entry."""
        with self.lock:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        self._tell("changed", None)


def _job_owner(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(the Job's uid, its controller's uid), for CronJobs' Pods; None without one."""
    owner = controller_uid(job)
    return None if owner is None else (str(job["metadata"].get("uid")), owner)


def _pod_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))
