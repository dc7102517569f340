"""Hot-swap images in running workloads and follow their rollouts with the watch API.

A swap is a strategic-merge patch of exactly the ``image`` of the named containers
(containers and init containers merge by name), so nothing else in the live object moves
and the manifests are not re-applied. :class:`WorkloadWatch` keeps the latest state of
every workload kodev manages and of their Pods, from ``watch`` streams (no polling), and
tells its listener when something changed; :func:`rollout_status` decides from that
state whether a rollout is complete, still going, or stuck (and why).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kodev.kube.client import Cluster, api_errors, is_not_found
from kodev.kube.selector import workload_selector
from kodev.kube.watch import WORKLOAD_APIS, ApiHttp, ListWatch, collection_path, snake_case

ROLLABLE_KINDS = tuple(WORKLOAD_APIS)  # Deployment, StatefulSet, DaemonSet
# Waiting reasons of a container that will not start (or stay up) on its own.
POD_PROBLEMS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                          "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
                          "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class WorkloadRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class ContainerSlot:
    """A container of a workload that runs an image kodev builds."""

    workload: WorkloadRef
    container: str
    init: bool = False


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    ready: int
    desired: int
    problem: str | None = None  # why the rollout cannot finish, when it cannot
    message: str = ""


# --------------------------------------------------------------------------- patching


def image_patch(images: Mapping[ContainerSlot, str]) -> dict[str, Any]:
    """The strategic-merge patch that sets these containers' images and nothing else."""
    spec: dict[str, list[dict[str, str]]] = {}
    for slot, image in images.items():
        key = "initContainers" if slot.init else "containers"
        spec.setdefault(key, []).append({"name": slot.container, "image": image})
    return {"spec": {"template": {"spec": spec}}}


def swap_images(cluster: Cluster, workload: WorkloadRef,
                images: Mapping[ContainerSlot, str]) -> int | None:
    """Patch the images in; returns the workload's new ``metadata.generation``, or None
    when the workload does not exist (deleted by hand)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps: Any = client.AppsV1Api(cluster.api)
    patch = getattr(apps, f"patch_namespaced_{snake_case(workload.kind)}")
    with api_errors(cluster, f"patch {workload} in namespace {workload.namespace}"):
        try:
            result = patch(workload.name, workload.namespace, image_patch(images),
                           field_manager="kodev")
        except ApiException as exc:
            if is_not_found(exc):
                return None
            raise
    return int(result.metadata.generation or 0)


# --------------------------------------------------------------------------- status


def rollout_status(workload: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = ()
                   ) -> RolloutStatus:
    """kubectl rollout status's rules for the three kinds, plus the Pods' reasons."""
    kind = workload.get("kind", "")
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    metadata = workload.get("metadata") or {}
    observed = int(status.get("observedGeneration") or 0) >= int(metadata.get("generation") or 0)
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        ready = int(status.get("numberAvailable") or 0)
        done = observed and updated >= desired and ready >= desired
    else:
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        updated = int(status.get("updatedReplicas") or 0)
        ready = int(status.get("readyReplicas") or 0)
        if kind == "StatefulSet":
            same_revision = status.get("updateRevision") == status.get("currentRevision")
            done = observed and same_revision and ready >= desired and updated >= desired
        else:
            total = int(status.get("replicas") or 0)
            available = int(status.get("availableReplicas") or 0)
            done = observed and updated >= desired and total <= updated \
                and available >= updated
    problem = None if done else _workload_problem(status) or pod_problem(pods)
    return RolloutStatus(done, ready, desired, problem,
                         f"{updated}/{desired} updated, {ready}/{desired} ready")


def _workload_problem(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return f"ProgressDeadlineExceeded: {condition.get('message', '')}".strip()
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return f"{condition.get('reason')}: {condition.get('message', '')}".strip()
    return None


# Reasons that alternate while one problem lasts: a failed pull and its back-off; a crash,
# the stopped container and the crash-loop back-off.
_SAME_PROBLEM = {"ErrImagePull": "ImagePull", "ImagePullBackOff": "ImagePull",
                 "CrashLoopBackOff": "Crash", "Error": "Crash", "Completed": "Crash",
                 "OOMKilled": "Crash", "Terminated": "Crash"}


def problem_key(problem: str) -> str:
    """What stays the same while one problem lasts: the Pod and the kind of reason, not
    the message (a crash loop's back-off grows; a failed pull and its back-off alternate)."""
    parts = problem.split(": ", 2)
    if len(parts) >= 2 and parts[0].startswith("pod "):
        return f"{parts[0]}: {_SAME_PROBLEM.get(parts[1], parts[1])}"
    return parts[0]


class ProblemReport:
    """Decides which problems are news: a new problem, or a reason not yet seen for the
    current one (a crash is reported, then its CrashLoopBackOff, and then nothing more
    however often the two alternate)."""

    def __init__(self) -> None:
        self.key = ""
        self.reasons: set[str] = set()

    def news(self, problem: str) -> bool:
        key, reason = problem_key(problem), _reason(problem)
        if key != self.key:
            self.key, self.reasons = key, {reason}
            return True
        if reason in self.reasons:
            return False
        self.reasons.add(reason)
        return True


def _reason(problem: str) -> str:
    parts = problem.split(": ", 2)
    return parts[1] if len(parts) >= 2 and parts[0].startswith("pod ") else parts[0]


def pod_problem(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The first reason a Pod cannot become ready: a container stuck waiting (crash loop,
    image pull), one that has stopped where it should run (between a crash and the
    kubelet's back-off), or the scheduler's Unschedulable; with the Pod's name and message."""
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue  # on its way out: whatever it suffers is not the workload's problem
        name = metadata.get("name", "?")
        status = pod.get("status") or {}
        always = ((pod.get("spec") or {}).get("restartPolicy") or "Always") == "Always"
        for container, init in [*((c, True) for c in status.get("initContainerStatuses") or []),
                                *((c, False) for c in status.get("containerStatuses") or [])]:
            state = container.get("state") or {}
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in POD_PROBLEMS:
                return f"pod {name}: {waiting['reason']}: {waiting.get('message', '')}".strip()
            stopped = state.get("terminated") or {}
            if stopped and ((not init and always) or (init and stopped.get("exitCode"))):
                return (f"pod {name}: {stopped.get('reason') or 'Terminated'}: container "
                        f"{container.get('name')} exited with code {stopped.get('exitCode')}")
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                    and condition.get("reason") == "Unschedulable":
                return f"pod {name}: Unschedulable: {condition.get('message', '')}".strip()
    return None


# --------------------------------------------------------------------------- watching


Listener = Callable[[str, WorkloadRef | None], None]  # ("changed" | "deleted", workload)


class WorkloadWatch:
    """Latest state of the workloads and Pods in some namespaces, kept by one
    :class:`~kodev.kube.watch.ListWatch` per (kind, namespace) in its own thread, so
    state converges again after an outage. ``stop()`` ends the watches at once."""

    def __init__(self, cluster: Cluster, namespaces: Iterable[str], listener: Listener,
                 *, label_selector: str | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.cluster = cluster
        self.on_error = on_error  # a watch that cannot go on (not an outage: a bug)
        self.namespaces: list[str] = []
        self._initial_namespaces = sorted(set(namespaces))
        self.listener = listener
        self.label_selector = label_selector
        self.workloads: dict[WorkloadRef, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self._http: ApiHttp | None = None
        self._watches: list[ListWatch] = []

    def start(self) -> None:
        self._http = ApiHttp(self.cluster)
        self.add_namespaces(self._initial_namespaces)

    def stop(self) -> None:
        for watch in self._watches:
            watch.close()
        if self._http is not None:
            self._http.close()

    def add_namespaces(self, namespaces: Iterable[str]) -> None:
        assert self._http is not None, "start() first"
        new = sorted(set(namespaces) - set(self.namespaces))
        self.namespaces.extend(new)
        for namespace in new:
            for kind in (*ROLLABLE_KINDS, "Pod"):
                params = (("labelSelector", self.label_selector),) \
                    if self.label_selector and kind != "Pod" else ()
                watch = ListWatch(
                    self._http, collection_path(kind, namespace), params,
                    on_list=functools.partial(self._replace, kind, namespace),
                    on_event=functools.partial(self._apply_event, kind),
                    on_fatal=self.on_error)
                self._watches.append(watch)
                threading.Thread(target=watch.run, name=f"watch {watch.path}",
                                 daemon=True).start()

    def status(self, workload: WorkloadRef) -> RolloutStatus | None:
        with self.lock:
            data = self.workloads.get(workload)
            if data is None:
                return None
            return rollout_status(data, self._pods_of(workload, data))

    def workload_pods(self, workload: WorkloadRef) -> list[dict[str, Any]]:
        """The workload's Pods as last seen (matched by its selector)."""
        with self.lock:
            data = self.workloads.get(workload)
            return [] if data is None else self._pods_of(workload, data)

    def pod_problem(self, workload: WorkloadRef) -> str | None:
        """Why one of the workload's Pods cannot run, rollout or not (a crash after the
        rollout counted it available, a Pod evicted and not rescheduled)."""
        with self.lock:
            data = self.workloads.get(workload)
            return None if data is None else pod_problem(self._pods_of(workload, data))

    def ready_pods(self, workload: WorkloadRef) -> list[str]:
        """Names of the workload's Ready Pods that are not terminating, newest first (the
        first one runs the latest rollout's code as soon as it is Ready)."""
        with self.lock:
            data = self.workloads.get(workload)
            pods = [] if data is None else self._pods_of(workload, data)
        ready = [p for p in pods if _is_ready(p)]
        ready.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
        return [str(p["metadata"]["name"]) for p in ready]

    def _pods_of(self, workload: WorkloadRef, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        selector = workload_selector(data)
        return [p for (ns, _), p in self.pods.items()
                if ns == workload.namespace and selector.requirements
                and selector.matches((p.get("metadata") or {}).get("labels") or {})]

    def generation(self, workload: WorkloadRef) -> int:
        with self.lock:
            data = self.workloads.get(workload) or {}
        return int((data.get("metadata") or {}).get("generation") or 0)

    # ---------------------------------------------------------------- callbacks

    def _key(self, kind: str, data: Mapping[str, Any]) -> Any:
        metadata = data.get("metadata") or {}
        if kind == "Pod":
            return (metadata.get("namespace", ""), metadata.get("name", ""))
        return WorkloadRef(kind, metadata.get("namespace", ""), metadata.get("name", ""))

    def _replace(self, kind: str, namespace: str, items: list[dict[str, Any]]) -> None:
        deleted: list[WorkloadRef] = []
        with self.lock:
            store: dict[Any, dict[str, Any]] = self.pods if kind == "Pod" else self.workloads
            old = {k for k in store if _in(kind, k, namespace)}
            fresh = {self._key(kind, item): {**item, "kind": kind} for item in items}
            for key in old - set(fresh):
                del store[key]
                if kind != "Pod":
                    deleted.append(key)
            store.update(fresh)
        for workload in deleted:
            self.listener("deleted", workload)
        self.listener("changed", None)

    def _apply_event(self, kind: str, event_type: str, data: dict[str, Any]) -> None:
        key = self._key(kind, data)
        with self.lock:
            store: dict[Any, dict[str, Any]] = self.pods if kind == "Pod" else self.workloads
            if event_type == "DELETED":
                store.pop(key, None)
            else:
                store[key] = {**data, "kind": kind}
        if event_type == "DELETED" and kind != "Pod":
            self.listener("deleted", key)
        else:
            self.listener("changed", key if kind != "Pod" else None)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _in(kind: str, key: Any, namespace: str) -> bool:
    if kind == "Pod":
        return bool(key[0] == namespace)
    return bool(key.kind == kind and key.namespace == namespace)
