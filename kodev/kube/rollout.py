"""Hot-swap images in running workloads of every kind and follow their rollouts.

A swap sets exactly the ``image`` of the named containers and nothing else, as the
workload table (:mod:`kodev.kube.workloads`) says for the kind: a strategic-merge patch
for built-in kinds, a JSON patch for custom resources; a ReplicaSet's Pods are then
recreated, a Job (whose pod template is immutable) is deleted and created again, a
CronJob keeps its schedule (its next run uses the new image; ``run_now`` starts one at
once, as ``kubectl create job --from=cronjob/NAME`` does). Manifests are not re-applied.
:class:`WorkloadWatch` keeps the latest state of every workload kodev manages and of
their Pods (:class:`~kodev.kube.state.ClusterState`, from ``watch`` streams, no polling)
and tells its listener when something changed; each kind's status rule decides whether
a rollout is complete, still going, or stuck (and why).
"""

from __future__ import annotations

import copy
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kodev.kube.client import Cluster, api_errors, is_not_found, request
from kodev.kube.state import ClusterState, Listener, WorkloadRef, served_kinds
from kodev.kube.watch import ApiHttp, ListWatch
from kodev.kube.workloads import (
    BUILTIN,
    BUILTIN_TABLE,
    RolloutStatus,
    Update,
    WorkloadKind,
    WorkloadTable,
    pod_problem,
)

__all__ = ["ContainerSlot", "ProblemReport", "RolloutStatus", "Swapped",
           "WorkloadRef", "WorkloadWatch", "pod_problem", "problem_key", "run_now",
           "swap_images"]
REPLACE_WAIT_S = 30.0  # how long a replaced Job may take to go before it is created again


@dataclass(frozen=True)
class ContainerSlot:
    """A container of a workload that runs an image kodev builds."""

    workload: WorkloadRef
    container: str
    init: bool = False


@dataclass(frozen=True)
class Swapped:
    """A swap that went through: the generation (and uid: a replaced Job is a new
    object) whose rollout is then followed."""

    generation: int
    uid: str
    update: Update


# --------------------------------------------------------------------------- patching


def object_path(kind: WorkloadKind, workload: WorkloadRef) -> str:
    return f"{kind.collection_path(workload.namespace)}/{urllib.parse.quote(workload.name)}"


def swap_images(cluster: Cluster, workload: WorkloadRef, images: Mapping[ContainerSlot, str],
                kind: WorkloadKind | None = None) -> Swapped | None:
    """Put the images into ``workload`` as its kind says (see the module docstring);
    None when the workload does not exist (deleted by hand)."""
    from kubernetes.client.exceptions import ApiException

    kind = kind or BUILTIN_TABLE.get(workload.kind)
    path = object_path(kind, workload)
    wanted = {(s.container, s.init): image for s, image in images.items()}
    verb = "replace" if kind.update is Update.REPLACE else "patch"
    with api_errors(cluster, f"{verb} {workload} in namespace {workload.namespace}"):
        try:
            if kind.update is Update.REPLACE:
                result = _replace(cluster, kind, path, wanted)
            else:
                current = {} if kind.strategic else request(cluster, "GET", path)
                content_type, body = kind.image_patch(current, wanted)
                result = request(cluster, "PATCH", path, body=body, content_type=content_type,
                                 params=[("fieldManager", "kodev")])
                if kind.update is Update.RECREATE_PODS:
                    _delete_pods(cluster, kind, result)
        except ApiException as exc:
            if is_not_found(exc):
                return None
            raise
    meta = result.get("metadata") or {}
    return Swapped(int(meta.get("generation") or 0), str(meta.get("uid") or ""), kind.update)


def _replace(cluster: Cluster, kind: WorkloadKind, path: str,
             images: Mapping[tuple[str, bool], str]) -> dict[str, Any]:
    """Delete the object and create it again with the new images (a Job's pod template
    cannot change). The copy drops what the API server filled in for the old one."""
    from kubernetes.client.exceptions import ApiException

    current = request(cluster, "GET", path)
    fresh = copy.deepcopy(current)
    for container in kind.containers_of(fresh):
        image = images.get((container.name, container.init))
        if image is not None:
            parent: Any = fresh
            for key in container.path:
                parent = parent[key]
            parent["image"] = image
    fresh.pop("status", None)
    meta = fresh["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(key, None)
    _drop_generated_selector(fresh)
    request(cluster, "DELETE", path, body={"propagationPolicy": "Background"})
    deadline = time.monotonic() + REPLACE_WAIT_S
    while True:
        try:
            return dict(request(cluster, "POST", path.rpartition("/")[0], body=fresh,
                                params=[("fieldManager", "kodev")]))
        except ApiException as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the old object is still being deleted


def _drop_generated_selector(job: dict[str, Any]) -> None:
    """A Job's selector and its template's controller-uid labels are generated from the
    old Job's uid: the new Job must get its own (unless the user chose a manual one)."""
    spec = job.get("spec") or {}
    if spec.get("manualSelector"):
        return
    spec.pop("selector", None)
    labels = (((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                "batch.kubernetes.io/job-name"):
        labels.pop(key, None)


def _delete_pods(cluster: Cluster, kind: WorkloadKind, workload: Mapping[str, Any]) -> None:
    """A ReplicaSet does not replace its Pods when its template changes: delete those
    running other images so that it creates them again from the new template."""
    namespace = str(workload["metadata"]["namespace"])
    pods = request(cluster, "GET", f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods")
    wanted = {c.name: c.image for c in kind.containers_of(workload)}
    for pod in pods.get("items") or []:
        if not kind.selects(workload, pod, {}):
            continue
        images = {c.get("name"): c.get("image")
                  for c in (pod.get("spec") or {}).get("containers") or []}
        if any(images.get(name) != image for name, image in wanted.items()):
            request(cluster, "DELETE", f"/api/v1/namespaces/{urllib.parse.quote(namespace)}"
                                       f"/pods/{urllib.parse.quote(pod['metadata']['name'])}")


def run_now(cluster: Cluster, workload: WorkloadRef) -> str:
    """Start a CronJob's Job now, from its template (``kubectl create job --from``):
    returns the Job's name."""
    kind = BUILTIN["CronJob"]
    path = object_path(kind, workload)
    with api_errors(cluster, f"run {workload} now in namespace {workload.namespace}"):
        cronjob = request(cluster, "GET", path)
        template = cronjob["spec"]["jobTemplate"]
        name = f"{workload.name[:42]}-kodev-{int(time.time())}"
        meta = cronjob["metadata"]
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": workload.namespace,
                            "labels": (template.get("metadata") or {}).get("labels") or {},
                            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                            "ownerReferences": [{
                                "apiVersion": "batch/v1", "kind": "CronJob",
                                "name": meta["name"], "uid": meta["uid"],
                                "controller": True, "blockOwnerDeletion": True}]},
               "spec": template["spec"]}
        request(cluster, "POST", BUILTIN["Job"].collection_path(workload.namespace), body=job,
                params=[("fieldManager", "kodev")])
    return name


# --------------------------------------------------------------------------- status


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


# --------------------------------------------------------------------------- watching


class WorkloadWatch:
    """Latest state of the workloads and Pods in some namespaces (a
    :class:`~kodev.kube.state.ClusterState`), each collection kept by a list+watch in a
    thread of its own, so state converges again after an outage. ``stop()`` ends the
    watches at once. Only ``kinds`` (table keys; None: all) that the cluster serves are
    watched, so a user whose RBAC covers what they deploy needs nothing more;
    :meth:`add_kinds` adds one later (a new kind in a file, a CRD just applied)."""

    def __init__(self, cluster: Cluster, namespaces: Iterable[str], listener: Listener,
                 *, label_selector: str | None = None, table: WorkloadTable = BUILTIN_TABLE,
                 kinds: Iterable[str] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.cluster = cluster
        self.table = table
        self.on_error = on_error  # a watch that cannot go on (not an outage: a bug)
        self.namespaces: list[str] = []
        self._initial_namespaces = sorted(set(namespaces))
        self.listener = listener
        self.label_selector = label_selector
        self._wanted = None if kinds is None else set(kinds)
        self.state: ClusterState | None = None
        self._http: ApiHttp | None = None
        self._watches: list[ListWatch] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._http = ApiHttp(self.cluster)
        with api_errors(self.cluster, "discover the workload kinds"):
            kinds = [k for k in served_kinds(self._http, self.table)
                     if self._wanted is None or k.key in self._wanted]
        self.state = ClusterState(self._http, kinds, self.listener,
                                  workload_labels=self.label_selector)
        self.add_namespaces(self._initial_namespaces)

    def stop(self) -> None:
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.close()
        if self._http is not None:
            self._http.close()

    def add_namespaces(self, namespaces: Iterable[str]) -> None:
        assert self.state is not None, "start() first"
        with self._lock:
            new = sorted(set(namespaces) - set(self.namespaces))
            self.namespaces.extend(new)
        for namespace in new:
            self._run(self.state.watches(namespace, on_fatal=self.on_error))

    def add_kinds(self, keys: Iterable[str]) -> None:
        """Watch these kinds too (in every namespace so far), if the cluster serves them
        now: a CRD applied by kodev up makes its kind served."""
        assert self.state is not None and self._http is not None, "start() first"
        missing = [k for k in keys if k not in self.state.kinds and k in self.table.kinds]
        if not missing:
            return
        with api_errors(self.cluster, "discover the workload kinds"):
            served = [k for k in served_kinds(self._http, self.table) if k.key in missing]
        with self._lock:
            namespaces = list(self.namespaces)
        for namespace in namespaces:
            self._run(self.state.watches(namespace, served, pods=False, on_fatal=self.on_error))

    def _run(self, watches: list[ListWatch]) -> None:
        with self._lock:
            self._watches.extend(watches)
        for watch in watches:
            threading.Thread(target=watch.run, name=f"watch {watch.path}", daemon=True).start()

    def _state(self) -> ClusterState:
        assert self.state is not None, "start() first"
        return self.state

    def kind_of(self, workload: WorkloadRef) -> WorkloadKind:
        return self._state().kind_of(workload) or self.table.get(workload.kind)

    def status(self, workload: WorkloadRef) -> RolloutStatus | None:
        return self._state().status(workload)

    def workload_pods(self, workload: WorkloadRef) -> list[dict[str, Any]]:
        """The workload's Pods as last seen."""
        return self._state().pods_of(workload)

    def pod_problem(self, workload: WorkloadRef) -> str | None:
        """Why one of the workload's Pods cannot run, rollout or not (a crash after the
        rollout counted it available, a Pod evicted and not rescheduled)."""
        return self._state().pod_problem(workload)

    def ready_pods(self, workload: WorkloadRef) -> list[str]:
        """Names of the workload's Ready Pods that are not terminating, newest first (the
        first one runs the latest rollout's code as soon as it is Ready)."""
        return self._state().ready_pods(workload)

    def generation(self, workload: WorkloadRef) -> int:
        return self._state().generation(workload)

    def uid(self, workload: WorkloadRef) -> str | None:
        return self._state().uid(workload)

