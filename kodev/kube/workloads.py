"""Every kind of workload kodev deploys images into, in one table.

Everything that depends on a workload's kind reads a :class:`WorkloadKind` from here:

* where its containers are (apply's import-path annotation, ``kodev up``'s container
  slots, live swaps and port forwards);
* how an image is swapped in: a strategic-merge patch of just the ``image`` fields for
  built-in kinds (containers merge by name); a JSON patch for custom resources, which
  reject strategic merge (each ``replace`` guarded by a ``test`` of the container's name);
* what a swap does to what runs (:class:`Update`): a controller rolls the Pods, a
  ReplicaSet's Pods are recreated, a Job is replaced, a CronJob's next run uses the new
  image, a bare Pod's container restarts in place;
* when a rollout is done, or why it is stuck (one status rule per kind);
* which Pods are the workload's (for rollouts, port forwards and ``kodev logs``): its
  ``spec.selector``, its own controller references (Jobs), the Jobs it owns (CronJobs),
  a fixed label (Knative), or its pod template's labels (custom kinds).

Custom kinds (an operator's CRD with a pod template) are declared once, in ``.ko.yaml``
(``kodev: {workloadKinds: [...]}``) or with ``--workload-kind``, as an apiVersion, a kind
and a JSONPath to its containers (Tilt's ``k8s_kind(..., image_json_path=...)`` idea).
Adding a built-in kind is one :class:`WorkloadKind` entry in :data:`BUILTIN` plus its test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kodev.errors import ConfigError, KubeError, UsageError
from kodev.kube.selector import LabelSelector, Requirement, workload_selector

Obj = Mapping[str, Any]
Path = tuple[str | int, ...]


class Update(Enum):
    """What patching a workload's image does to what runs."""

    ROLLS = "rolls"  # its controller replaces the Pods (Deployment, Rollout, ...)
    RECREATE_PODS = "recreate-pods"  # the template changes; kodev deletes the Pods
    REPLACE = "replace"  # the template is immutable: delete and create the object (Job)
    NEXT_RUN = "next-run"  # nothing runs now; the next scheduled run uses it (CronJob)
    IN_PLACE = "in-place"  # the container restarts with the new image (bare Pod)


class PodsBy(Enum):
    """How the Pods of a workload are found."""

    SELECTOR = "selector"  # spec.selector
    SELF = "self"  # the object is the Pod
    OWNER = "owner"  # Pods whose controller is the object (Jobs)
    OWNED_JOBS = "owned-jobs"  # Pods whose controller is a Job the object owns (CronJobs)
    LABEL = "label"  # Pods labelled with the object's name (``pod_label``)
    TEMPLATE_LABELS = "template-labels"  # the labels of its pod template (custom kinds)


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    ready: int
    desired: int
    problem: str | None = None  # why the rollout cannot finish, when it cannot
    message: str = ""


StatusRule = Callable[["WorkloadKind", Obj, Sequence[Obj]], RolloutStatus]


@dataclass(frozen=True)
class WorkloadKind:
    """One row of the table: everything kodev needs to know about a kind of workload."""

    kind: str
    group: str  # "" for the core API
    version: str
    plural: str | None  # None: asked from discovery when first needed (custom kinds)
    status: StatusRule
    aliases: tuple[str, ...] = ()
    template: Path | None = ("spec", "template")  # the PodTemplateSpec; None: a Pod
    containers: tuple[Path, ...] = ()  # custom kinds: JSONPath(s) of container lists
    strategic: bool = True  # strategic-merge patches (built-ins) or JSON patches
    update: Update = Update.ROLLS
    pods: PodsBy = PodsBy.SELECTOR
    pod_label: str = ""  # PodsBy.LABEL: the label whose value is the object's name
    live: bool = False  # kodev up --live can swap binaries into its running containers

    @property
    def key(self) -> str:
        """What names the kind in messages and WorkloadRef: ``Deployment``, or
        ``Rollout.argoproj.io`` outside the core, apps and batch groups (kubectl's form)."""
        return self.kind if self.group in ("", "apps", "batch") else f"{self.kind}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None, plural: str | None = None) -> str:
        """``/apis/apps/v1/namespaces/NS/deployments`` (``namespace`` None: all)."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = "" if namespace is None else f"/namespaces/{_quote(namespace)}"
        name = plural or self.plural
        if not name:  # a custom kind the cluster did not serve when it was looked up
            raise KubeError(f"the cluster serves no {self.key} ({self.api_version})",
                            hint="is its CustomResourceDefinition installed?")
        return f"{prefix}{scope}/{name}"

    def rollout_status(self, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
        return self.status(self, obj, pods)

    # ---------------------------------------------------------------- containers

    def container_lists(self, obj: Obj) -> list[tuple[Path, bool]]:
        """Concrete paths of the container lists in ``obj``, each with "init"."""
        if self.containers:
            return [(path, False) for pattern in self.containers
                    for path, _ in walk(obj, pattern) if isinstance(_, list)]
        spec: Path = ("spec",) if self.template is None else (*self.template, "spec")
        return [((*spec, "initContainers"), True), ((*spec, "containers"), False)]

    def containers_of(self, obj: Obj) -> list[Container]:
        """Every container of ``obj`` that has a name, init containers first."""
        found = []
        for path, init in self.container_lists(obj):
            items = get_path(obj, path)
            for index, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, Mapping) and item.get("name"):
                    found.append(Container(str(item["name"]), str(item.get("image") or ""),
                                           init, (*path, index)))
        return found

    def pod_spec(self, obj: Obj) -> Mapping[str, Any] | None:
        """The PodSpec (None for custom kinds, whose containers may be anywhere)."""
        if self.containers:
            return None
        spec = get_path(obj, ("spec",) if self.template is None else (*self.template, "spec"))
        return spec if isinstance(spec, Mapping) else None

    # ---------------------------------------------------------------- patches

    def image_patch(self, obj: Obj, images: Mapping[tuple[str, bool], str]
                    ) -> tuple[str, Any]:
        """(content type, body) of the patch that sets these containers' images (keyed by
        (container name, init)) and nothing else."""
        if self.strategic:
            lists: dict[str, list[dict[str, str]]] = {}
            for (name, init), image in images.items():
                lists.setdefault("initContainers" if init else "containers", []).append(
                    {"name": name, "image": image})
            spec: Path = ("spec",) if self.template is None else (*self.template, "spec")
            return "application/strategic-merge-patch+json", nest(spec, lists)
        operations: list[dict[str, Any]] = []
        for container in self.containers_of(obj):
            wanted = images.get((container.name, container.init))
            if wanted is not None:
                pointer = json_pointer(container.path)
                operations += [{"op": "test", "path": f"{pointer}/name", "value": container.name},
                               {"op": "replace", "path": f"{pointer}/image", "value": wanted}]
        return "application/json-patch+json", operations

    # ---------------------------------------------------------------- Pods

    def selects(self, obj: Obj, pod: Obj, job_owners: Mapping[str, str]) -> bool:
        """Whether ``pod`` (in ``obj``'s namespace) is one of ``obj``'s. ``job_owners``:
        Job uid -> the uid of its controller (for CronJobs' Pods)."""
        meta = obj.get("metadata") or {}
        pod_meta = pod.get("metadata") or {}
        if self.pods is PodsBy.SELF:
            return bool(pod_meta.get("name") == meta.get("name"))
        if self.pods in (PodsBy.OWNER, PodsBy.OWNED_JOBS):
            owner: str | None = controller_uid(pod)
            if self.pods is PodsBy.OWNED_JOBS and owner is not None:
                owner = job_owners.get(owner)
            return owner is not None and owner == meta.get("uid")
        selector = self.pod_selector(obj)
        return bool(selector.requirements) and selector.matches(pod_meta.get("labels") or {})

    def pod_selector(self, obj: Obj) -> LabelSelector:
        """The labels that select its Pods (nothing for SELF/OWNER/OWNED_JOBS kinds)."""
        if self.pods is PodsBy.SELECTOR:
            return workload_selector(obj)
        if self.pods is PodsBy.LABEL:
            name = str((obj.get("metadata") or {}).get("name"))
            return LabelSelector("", (Requirement(self.pod_label, "=", (name,)),))
        if self.pods is PodsBy.TEMPLATE_LABELS:
            labels = get_path(obj, (*self.template_of(obj), "metadata", "labels"))
            return LabelSelector("", tuple(Requirement(str(k), "=", (str(v),)) for k, v in
                                           sorted((labels or {}).items())))
        return LabelSelector("", ())

    def template_of(self, obj: Obj) -> Path:
        """Where the pod template is: the built-in path, or two up from the containers
        (``.spec.podTemplate.spec.containers`` -> ``.spec.podTemplate``)."""
        if not self.containers:
            return self.template or ()
        for path, _init in self.container_lists(obj):
            if len(path) >= 2 and path[-2] == "spec":
                return path[:-2]
        return ("__none__",)


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    init: bool
    path: Path  # where it is in the object, e.g. ("spec", "template", "spec", "containers", 0)


# --------------------------------------------------------------------------- status rules


def _observed(obj: Obj) -> bool:
    status = obj.get("status") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    try:
        return int(status.get("observedGeneration") or 0) >= generation
    except (TypeError, ValueError):  # Argo Rollouts once kept a hash here
        return False


def _replicas(obj: Obj) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def deployment_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    """kubectl rollout status's rule: all updated, no old Pod left, all available."""
    status = obj.get("status") or {}
    desired = _replicas(obj)
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    done = _observed(obj) and updated >= desired and total <= updated and available >= updated
    return _status(done, ready, desired, updated, status, pods)


def statefulset_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    status = obj.get("status") or {}
    desired = _replicas(obj)
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    same = status.get("updateRevision") == status.get("currentRevision")
    done = _observed(obj) and same and ready >= desired and updated >= desired
    return _status(done, ready, desired, updated, status, pods)


def daemonset_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    status = obj.get("status") or {}
    desired = int(status.get("desiredNumberScheduled") or 0)
    updated = int(status.get("updatedNumberScheduled") or 0)
    ready = int(status.get("numberAvailable") or 0)
    done = _observed(obj) and updated >= desired and ready >= desired
    return _status(done, ready, desired, updated, status, pods)


def template_pods_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj],
                         desired: int | None = None) -> RolloutStatus:
    """Done when ``desired`` Pods (default: every Pod, at least one) run the template's
    images and are Ready, and no Pod with other images is left: for kinds whose
    controller reports no rollout (ReplicaSet, bare Pods, custom kinds)."""
    wanted = {(c.name, c.init): c.image for c in kind.containers_of(obj)}
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    current = [p for p in live if _runs(p, wanted)]
    ready = sum(1 for p in current if is_ready(p))
    goal = max(1, len(live)) if desired is None else desired
    done = ready >= goal and len(current) == len(live)
    problem = None if done else pod_problem(pods)
    return RolloutStatus(done, ready, goal, problem, f"{ready}/{goal} ready with the new image")


def _runs(pod: Obj, wanted: Mapping[tuple[str, bool], str]) -> bool:
    """Whether the Pod's spec names the wanted images and, for containers that started,
    runs them (a bare Pod's patched container runs the old image until it restarts)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    images = {(str(c.get("name")), init): str(c.get("image"))
              for key, init in (("initContainers", True), ("containers", False))
              for c in spec.get(key) or []}
    if any(images.get(k) != v for k, v in wanted.items() if v):
        return False
    for container in status.get("containerStatuses") or []:
        image = wanted.get((str(container.get("name")), False), "")
        digest = image.partition("@")[2]
        if digest and container.get("imageID") and \
                not str(container.get("imageID")).endswith(digest):
            return False
    return True


def replicaset_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    return template_pods_status(kind, obj, pods, _replicas(obj))


def pod_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    return template_pods_status(kind, obj, pods or [obj], 1)


def job_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    """A (replaced) Job is done once it completed or one of its Pods is Ready; it is
    stuck when it failed."""
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []
                  if c.get("status") == "True"}
    desired = int((obj.get("spec") or {}).get("parallelism") or 1)
    ready = int(status.get("ready") or 0)
    if "Failed" in conditions:
        failed = conditions["Failed"]
        return RolloutStatus(False, ready, desired, f"Job failed: {failed.get('reason')}: "
                             f"{failed.get('message', '')}".strip(), "failed")
    complete = "Complete" in conditions
    done = complete or ready >= 1
    message = "completed" if complete else f"{ready}/{desired} ready"
    return RolloutStatus(done, ready, desired, None if done else pod_problem(pods), message)


def is_complete(obj: Obj) -> bool:
    """A Job that ran to completion (a failed one is not: a fix should run)."""
    return any(c.get("type") == "Complete" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def cronjob_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    """Nothing rolls: the next scheduled run uses the new image."""
    return RolloutStatus(True, 0, 0, None, "the next scheduled run uses the new image")


def rollout_status_argo(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    """Argo Rollouts' own phase: Healthy once the controller saw this generation."""
    status = obj.get("status") or {}
    generation = str((obj.get("metadata") or {}).get("generation") or "")
    observed = str(status.get("observedGeneration") or "") == generation
    desired = _replicas(obj)
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    phase = str(status.get("phase") or "")
    done = observed and phase == "Healthy"
    problem = None
    if not done:
        if observed and phase in ("Degraded", "Paused"):
            problem = f"{phase}: {status.get('message', '')}".strip(": ")
        else:
            problem = pod_problem(pods)
    return RolloutStatus(done, ready, desired, problem,
                         f"{phase or 'Pending'}, {updated}/{desired} updated, "
                         f"{ready}/{desired} ready")


def ready_condition_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    """Knative-style: the Ready condition, once the controller saw this generation."""
    ready_condition = next((c for c in (obj.get("status") or {}).get("conditions") or []
                            if c.get("type") == "Ready"), None)
    ready = is_ready_condition(ready_condition) and _observed(obj)
    problem = None
    if not ready and ready_condition and ready_condition.get("status") == "False":
        problem = f"{ready_condition.get('reason')}: {ready_condition.get('message', '')}"
    return RolloutStatus(ready, int(ready), 1, problem or (None if ready else pod_problem(pods)),
                         "Ready" if ready else "not Ready yet")


def custom_status(kind: WorkloadKind, obj: Obj, pods: Sequence[Obj]) -> RolloutStatus:
    """Custom kinds: their Ready condition when they have one, else their Pods."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Ready" for c in conditions):
        return ready_condition_status(kind, obj, pods)
    return template_pods_status(kind, obj, pods)


def _status(done: bool, ready: int, desired: int, updated: int, status: Obj,
            pods: Sequence[Obj]) -> RolloutStatus:
    problem = None if done else workload_problem(status) or pod_problem(pods)
    return RolloutStatus(done, ready, desired, problem,
                         f"{updated}/{desired} updated, {ready}/{desired} ready")


def is_ready_condition(condition: Obj | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def workload_problem(status: Obj) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return f"ProgressDeadlineExceeded: {condition.get('message', '')}".strip()
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return f"{condition.get('reason')}: {condition.get('message', '')}".strip()
    return None


# Waiting reasons of a container that will not start (or stay up) on its own.
POD_PROBLEMS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                          "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
                          "CreateContainerError", "RunContainerError"})


def pod_problem(pods: Iterable[Obj]) -> str | None:
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


def is_ready(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def controller_uid(obj: Obj) -> str | None:
    for owner in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner.get("uid"))
    return None


# --------------------------------------------------------------------------- the table


def _builtin() -> dict[str, WorkloadKind]:
    apps = ("apps", "v1")
    kinds = [
        WorkloadKind("Deployment", *apps, "deployments", deployment_status,
                     ("deploy",), live=True),
        WorkloadKind("StatefulSet", *apps, "statefulsets", statefulset_status, ("sts",),
                     live=True),
        WorkloadKind("DaemonSet", *apps, "daemonsets", daemonset_status, ("ds",), live=True),
        WorkloadKind("ReplicaSet", *apps, "replicasets", replicaset_status, ("rs",),
                     update=Update.RECREATE_PODS),
        WorkloadKind("Job", "batch", "v1", "jobs", job_status, update=Update.REPLACE,
                     pods=PodsBy.OWNER),
        WorkloadKind("CronJob", "batch", "v1", "cronjobs", cronjob_status, ("cj",),
                     template=("spec", "jobTemplate", "spec", "template"),
                     update=Update.NEXT_RUN, pods=PodsBy.OWNED_JOBS),
        WorkloadKind("Pod", "", "v1", "pods", pod_status, ("po",), template=None,
                     update=Update.IN_PLACE, pods=PodsBy.SELF),
        WorkloadKind("Rollout", "argoproj.io", "v1alpha1", "rollouts", rollout_status_argo,
                     ("ro",), strategic=False),
        WorkloadKind("Service", "serving.knative.dev", "v1", "services",
                     ready_condition_status, ("ksvc",), strategic=False,
                     pods=PodsBy.LABEL, pod_label="serving.knative.dev/service"),
    ]
    return {k.key: k for k in kinds}


BUILTIN: dict[str, WorkloadKind] = _builtin()
# Kinds of the core API that are not workloads: their bare names never mean a CRD's kind.
_CORE_NAMES = frozenset({"Service"})


@dataclass
class WorkloadTable:
    """The built-in kinds plus a project's custom ones; looked up by (group, kind), by
    key (``Deployment``, ``Rollout.argoproj.io``) or by kubectl's names and aliases."""

    kinds: dict[str, WorkloadKind] = field(default_factory=lambda: dict(BUILTIN))

    def with_custom(self, custom: Iterable[WorkloadKind]) -> WorkloadTable:
        return WorkloadTable({**self.kinds, **{k.key: k for k in custom}})

    def __iter__(self) -> Iterator[WorkloadKind]:
        return iter(self.kinds.values())

    def get(self, key: str) -> WorkloadKind:
        return self.kinds[key]

    def of(self, api_version: str, kind: str) -> WorkloadKind | None:
        """The kind of an object with this apiVersion and kind (any version of its group)."""
        group = api_version.rpartition("/")[0]
        found = self.kinds.get(kind if group in ("", "apps", "batch") else f"{kind}.{group}")
        return found if found is not None and found.group == group else None

    def of_object(self, obj: Obj) -> WorkloadKind | None:
        return self.of(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))

    def named(self, text: str) -> WorkloadKind | None:
        """kubectl's ways to name a kind: ``deploy``, ``deployments``, ``deployment.apps``,
        ``rollouts.argoproj.io``, ``ksvc``, ``Service.serving.knative.dev``. A bare
        ``service`` is the core Service, not a workload."""
        wanted = text.lower()
        for kind in self.kinds.values():
            names = {kind.kind.lower(), *((kind.plural,) if kind.plural else ())}
            bare = {*(a.lower() for a in kind.aliases),
                    *(names if kind.kind not in _CORE_NAMES or not kind.group else ())}
            qualified = {f"{n}.{kind.group}" for n in names} if kind.group else set()
            if wanted in bare or wanted in qualified or wanted == kind.key.lower():
                return kind
        return None

    def names(self) -> str:
        """For messages: ``Deployment, StatefulSet, ..., Service.serving.knative.dev``."""
        return ", ".join(self.kinds)


BUILTIN_TABLE = WorkloadTable()


# --------------------------------------------------------------------------- custom kinds


_SEGMENT = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\*|\d+)\]")


def parse_json_path(text: str) -> Path:
    """``{.spec.template.spec.containers}`` or ``.spec.workers[*].containers`` -> a path
    whose ``"*"`` elements match every list item. Only field names, ``[N]`` and ``[*]``."""
    inner = text.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    path: list[str | int] = []
    position = 0
    while position < len(inner):
        match = _SEGMENT.match(inner, position)
        if match is None or (position == 0 and not inner.startswith((".", "["))
                             and match.group(1) is None):
            raise UsageError(f"invalid JSONPath {text!r} at {inner[position:]!r}",
                             hint="use field names, [N] and [*], e.g. "
                                  "{.spec.template.spec.containers}")
        name, index = match.groups()
        path.append(name if name is not None else ("*" if index == "*" else int(index)))
        position = match.end()
    if not path:
        raise UsageError(f"invalid JSONPath {text!r}: it is empty",
                         hint="e.g. {.spec.template.spec.containers}")
    return tuple(path)


def custom_kind(api_version: str, kind: str, containers: str, where: str) -> WorkloadKind:
    """A CRD kind declared by the project (see the module docstring)."""
    group, slash, version = api_version.rpartition("/")
    if not slash or not group or not version or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", kind):
        raise ConfigError(f"{where}: {api_version}/{kind} is not a custom kind",
                          hint="give apiVersion GROUP/VERSION (e.g. example.com/v1) and "
                               "kind (e.g. Worker)")
    try:
        path = parse_json_path(containers)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc
    return WorkloadKind(kind, group, version, None, custom_status, containers=(path,),
                        template=None, strategic=False, pods=PodsBy.TEMPLATE_LABELS)


def parse_kind_flag(text: str) -> WorkloadKind:
    """``--workload-kind GROUP/VERSION/KIND=JSONPATH``."""
    spec, equals, path = text.partition("=")
    api_version, slash, kind = spec.rpartition("/")
    if not equals or not slash:
        raise UsageError(f"--workload-kind {text!r}: expected GROUP/VERSION/KIND=JSONPATH",
                         hint="e.g. --workload-kind 'example.com/v1/Worker="
                              "{.spec.template.spec.containers}'")
    return custom_kind(api_version, kind, path, "--workload-kind")


# --------------------------------------------------------------------------- paths


def walk(obj: Any, pattern: Path, prefix: Path = ()) -> list[tuple[Path, Any]]:
    """The (concrete path, value) pairs that ``pattern`` reaches in ``obj``."""
    if not pattern:
        return [(prefix, obj)]
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        if not isinstance(obj, list):
            return []
        return [found for index, item in enumerate(obj)
                for found in walk(item, rest, (*prefix, index))]
    if isinstance(head, int):
        if not isinstance(obj, list) or head >= len(obj):
            return []
        return walk(obj[head], rest, (*prefix, head))
    if not isinstance(obj, Mapping) or head not in obj:
        return []
    return walk(obj[head], rest, (*prefix, head))


def get_path(obj: Any, path: Path) -> Any:
    found = walk(obj, path)
    return found[0][1] if found else None


def nest(path: Path, value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def json_pointer(path: Path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text, safe="")


def project_table(config_kinds: Iterable[tuple[str, str, str, str]],
                  flags: Sequence[str] = ()) -> WorkloadTable:
    """The built-in kinds plus the project's: ``.ko.yaml``'s ``kodev.workloadKinds``
    (as :class:`~kodev.config.KoConfig` carries them) and ``--workload-kind`` flags."""
    custom = [custom_kind(*entry) for entry in config_kinds]
    custom += [parse_kind_flag(text) for text in flags]
    return BUILTIN_TABLE.with_custom(custom) if custom else BUILTIN_TABLE
