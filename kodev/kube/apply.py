"""Server-side apply and delete of resolved manifests, without kubectl.

Apply, in order: every object's kind is looked up in discovery (or in a
CustomResourceDefinition of the same input) before anything is sent; objects that can
be validated now are applied with ``dryRun=All`` first, so a rejected object stops the
run before any change; then Namespaces, then CustomResourceDefinitions (waiting until
they are Established, then refreshing discovery), then everything else in input order.

kodev marks what it applies, so ``kodev up`` and ``kodev logs`` can find it later:

* label ``app.kubernetes.io/managed-by: kodev`` in every object's metadata;
* on workloads (every kind of the workload table, :mod:`kodev.kube.workloads`),
  annotation ``kodev.dev/importpaths``: the import paths of the containers whose images
  kodev built (comma-separated, in container order).

Pod templates are left alone: a label there would change the pods' identity and roll
them on the first apply.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kodev.errors import KubeError, UsageError
from kodev.kube.client import Cluster, api_errors, is_not_found, status_message
from kodev.kube.workloads import BUILTIN_TABLE, Update, WorkloadTable
from kodev.resolve import ResolvedDocument

FIELD_MANAGER = "kodev"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kodev"
IMPORTPATHS_ANNOTATION = "kodev.dev/importpaths"
CRD_KIND = "CustomResourceDefinition"
POLL_SECONDS = 0.2


@dataclass
class KubeObject:
    """One object from the input, with where it came from (for messages)."""

    source: str
    data: dict[str, Any]
    resource: Any = None  # the discovery entry (kubernetes.dynamic.Resource), once known

    @property
    def api_version(self) -> str:
        return str(self.data["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def name(self) -> str:
        return str(self.data["metadata"]["name"])

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def namespace(self) -> str | None:
        value = self.data["metadata"].get("namespace")
        return str(value) if value else None

    @property
    def display(self) -> str:
        """kubectl's ``kind.group/name`` (``deployment.apps/web``, ``service/web``)."""
        group = f".{self.group}" if self.group else ""
        return f"{self.kind.lower()}{group}/{self.name}"


@dataclass(frozen=True)
class Outcome:
    """What happened to one object: created, configured, unchanged, deleted, not found."""

    obj: KubeObject
    action: str

    def line(self) -> str:
        if self.action in ("deleted", "not found"):
            kind, _, name = self.obj.display.partition("/")
            return f'{kind} "{name}" {self.action}'
        return f"{self.obj.display} {self.action}"

    def json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "apiVersion": self.obj.api_version, "kind": self.obj.kind, "name": self.obj.name,
            "namespace": self.obj.namespace, "action": self.action,
        }
        annotations = self.obj.data["metadata"].get("annotations") or {}
        if IMPORTPATHS_ANNOTATION in annotations:
            record["importpaths"] = annotations[IMPORTPATHS_ANNOTATION].split(",")
        return record


Report = Callable[[Outcome], None]


# --------------------------------------------------------------------------- objects


def objects_from_documents(documents: Iterable[ResolvedDocument]) -> list[KubeObject]:
    """The objects in the documents (``List`` items expanded); each needs kind and name."""
    objects = []
    for document in documents:
        where = f"{document.source}:{document.line}"
        data = document.data()
        if data is None:
            continue
        _check_object(data, where)
        if data["kind"].endswith("List") and isinstance(data.get("items"), list):
            for number, item in enumerate(data["items"], 1):
                _check_object(item, f"{where} (item {number})")
                objects.append(KubeObject(f"{where} (item {number})", item))
        else:
            objects.append(KubeObject(where, data))
    return objects


def _check_object(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise UsageError(f"{where}: not a Kubernetes object (a mapping with apiVersion and kind)")
    for key in ("apiVersion", "kind"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise UsageError(f"{where}: the object has no {key}")
    if data["kind"].endswith("List") and isinstance(data.get("items"), list):
        return
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) \
            or not metadata["name"]:
        raise UsageError(f"{where}: {data['kind']} has no metadata.name",
                         hint="server-side apply needs a name (generateName is not enough)")


def mark(obj: KubeObject, import_path_of: Mapping[str, str],
         table: WorkloadTable = BUILTIN_TABLE) -> None:
    """Add kodev's label (and, on workloads, the import paths annotation) to ``obj``."""
    data = copy.deepcopy(obj.data)
    metadata = data["metadata"]
    metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    paths = container_import_paths(data, import_path_of, table)
    if paths:
        metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                   IMPORTPATHS_ANNOTATION: ",".join(paths)}
    obj.data = data


def container_import_paths(data: Mapping[str, Any], import_path_of: Mapping[str, str],
                           table: WorkloadTable = BUILTIN_TABLE) -> list[str]:
    """Import paths of the workload's containers whose image is a reference kodev
    published (none for objects that are not workloads)."""
    kind = table.of_object(data)
    paths: list[str] = []
    for container in kind.containers_of(data) if kind is not None else []:
        path = import_path_of.get(container.image)
        if path and path not in paths:
            paths.append(path)
    return paths


def pod_spec(data: Mapping[str, Any], table: WorkloadTable = BUILTIN_TABLE
             ) -> Mapping[str, Any] | None:
    """The PodSpec of a built-in workload (None for anything else)."""
    kind = table.of_object(data)
    return kind.pod_spec(data) if kind is not None else None


def apply_order(objects: Sequence[KubeObject]) -> list[KubeObject]:
    """Namespaces, then CRDs, then the rest, each group in input order."""
    def rank(obj: KubeObject) -> int:
        if obj.kind == "Namespace" and obj.group == "":
            return 0
        return 1 if _is_crd(obj) else 2
    return sorted(objects, key=rank)


def _is_crd(obj: KubeObject) -> bool:
    return obj.kind == CRD_KIND and obj.group == "apiextensions.k8s.io"


def kinds_declared_by_crds(objects: Iterable[KubeObject]) -> dict[tuple[str, str], bool]:
    """(apiVersion, kind) pairs that CRDs in the input define -> whether namespaced.

    Such kinds are valid input although discovery does not know them before the CRD is
    applied."""
    declared = {}
    for obj in objects:
        if not _is_crd(obj):
            continue
        spec = obj.data.get("spec") or {}
        kind = str((spec.get("names") or {}).get("kind"))
        for version in spec.get("versions") or []:
            declared[(f"{spec.get('group')}/{version.get('name')}", kind)] = \
                spec.get("scope") != "Cluster"
    return declared


# --------------------------------------------------------------------------- the cluster


@dataclass
class Kube:
    """Discovery and per-object requests against one cluster (through a DynamicClient)."""

    cluster: Cluster
    dynamic: Any
    timeout: float = 120.0
    _declared: dict[tuple[str, str], bool] = field(default_factory=dict)

    # ---------------------------------------------------------------- discovery

    def lookup(self, obj: KubeObject) -> Any:
        """The discovery entry for ``obj``'s kind, or None when no served API has it."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

        with api_errors(self.cluster, "discover the API"):
            try:
                return self.dynamic.resources.get(api_version=obj.api_version, kind=obj.kind)
            except ResourceNotFoundError:
                return None
            except ResourceNotUniqueError:
                matches = self.dynamic.resources.search(api_version=obj.api_version,
                                                        kind=obj.kind)
                top_level = [r for r in matches if "/" not in r.name]
                return top_level[0] if top_level else matches[0]

    def validate(self, objects: Sequence[KubeObject]) -> None:
        """Look up every kind before anything changes; an unknown kind stops the run.

        Kinds defined by a CRD in the same input are accepted (their CRD is applied first).
        """
        self._declared = kinds_declared_by_crds(objects)
        for obj in objects:
            obj.resource = self.lookup(obj)
            if obj.resource is None and (obj.api_version, obj.kind) not in self._declared:
                raise UsageError(
                    f"{obj.source}: the cluster serves no kind {obj.kind} in "
                    f"apiVersion {obj.api_version}",
                    hint="check kind and apiVersion (kubectl api-resources lists them)")
            self._set_namespace(obj)

    def _set_namespace(self, obj: KubeObject) -> None:
        namespaced = (obj.resource.namespaced if obj.resource is not None
                      else self._declared[(obj.api_version, obj.kind)])
        if not namespaced:
            return
        if obj.namespace and self.cluster.namespace_explicit \
                and obj.namespace != self.cluster.namespace:
            raise UsageError(
                f"{obj.source}: {obj.display} is in namespace {obj.namespace!r}, "
                f"not {self.cluster.namespace!r} given with --namespace",
                hint=f"pass --namespace={obj.namespace} or drop it")
        obj.data = {**obj.data, "metadata": {**obj.data["metadata"],
                                             "namespace": obj.namespace or self.cluster.namespace}}

    def refresh_discovery(self) -> None:
        with api_errors(self.cluster, "refresh API discovery"):
            self.dynamic.resources.invalidate_cache()

    # ---------------------------------------------------------------- requests

    def _action(self, verb: str, obj: KubeObject) -> str:
        resource = obj.resource.name if obj.resource is not None else obj.kind.lower()
        group = f".{obj.group}" if obj.group else ""
        where = f" in namespace {obj.namespace}" if obj.namespace else ""
        return f"{verb} {resource}{group} {obj.name}{where}"

    def resource_version(self, obj: KubeObject) -> str | None:
        """The live object's resourceVersion, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        with api_errors(self.cluster, self._action("get", obj)):
            try:
                live = self.dynamic.get(obj.resource, name=obj.name, namespace=obj.namespace)
            except ApiException as exc:
                if is_not_found(exc):
                    return None
                raise
        return str(live.metadata.resourceVersion)

    def is_gone(self, obj: KubeObject) -> bool:
        return self.resource_version(obj) is None

    def server_side_apply(self, obj: KubeObject, *, dry_run: bool = False) -> str:
        """PATCH ``obj`` as an apply configuration owned by field manager ``kodev``.

        ``force=True`` takes over fields another manager (an earlier ``kubectl apply``,
        ``kubectl scale``, a previous tool) owns: kodev's manifests are the source of
        truth for what they set, as with ``kubectl apply --server-side --force-conflicts``;
        without it a conflict would fail the whole dev loop on objects users have touched.
        Returns the new resourceVersion.
        """
        from kubernetes.client.exceptions import ApiException

        with api_errors(self.cluster, self._action("apply", obj)):
            try:
                applied = self.dynamic.server_side_apply(
                    obj.resource, body=obj.data, name=obj.name, namespace=obj.namespace,
                    field_manager=FIELD_MANAGER, force_conflicts=True,
                    dry_run="All" if dry_run else None)
            except ApiException as exc:
                if exc.status in (400, 422):
                    raise UsageError(f"{obj.source}: {obj.display}: the API server "
                                     f"rejected it: {status_message(exc)}") from exc
                if is_not_found(exc) and obj.namespace:
                    raise KubeError(f"{obj.source}: cannot apply {obj.display}: "
                                    f"{status_message(exc)}",
                                    hint=f"does namespace {obj.namespace!r} exist? Create it "
                                         "or add a Namespace to the input") from exc
                raise
        return str(applied.metadata.resourceVersion)

    def create(self, obj: KubeObject, *, dry_run: bool = False) -> str:
        """POST ``obj``; an object that appeared since the existence check is an error."""
        from kubernetes.client.exceptions import ApiException

        with api_errors(self.cluster, self._action("create", obj)):
            try:
                created = self.dynamic.create(
                    obj.resource, body=obj.data, namespace=obj.namespace,
                    field_manager=FIELD_MANAGER, dry_run="All" if dry_run else None)
            except ApiException as exc:
                if exc.status == 409:
                    raise KubeError(f"{obj.source}: {obj.display} already exists",
                                    hint="use kodev apply to update it") from exc
                if exc.status in (400, 422):
                    raise UsageError(f"{obj.source}: {obj.display}: the API server "
                                     f"rejected it: {status_message(exc)}") from exc
                raise
        return str(created.metadata.resourceVersion)

    def delete(self, obj: KubeObject) -> bool:
        """Delete ``obj`` (dependents in the background); False when it was not there."""
        if obj.resource is None:
            return False
        from kubernetes.client.exceptions import ApiException

        with api_errors(self.cluster, self._action("delete", obj)):
            try:
                self.dynamic.delete(obj.resource, name=obj.name, namespace=obj.namespace,
                                    propagation_policy="Background")
            except ApiException as exc:
                if is_not_found(exc):
                    return False
                raise
        return True

    def wait_until(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                raise KubeError(f"timed out after {self.timeout:g}s waiting for {what}",
                                hint="raise --timeout, or check the cluster's controllers")
            time.sleep(POLL_SECONDS)

    def crd_established(self, obj: KubeObject) -> bool:
        with api_errors(self.cluster, self._action("get", obj)):
            live = self.dynamic.get(obj.resource, name=obj.name)
        conditions = (live.to_dict().get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions)


# --------------------------------------------------------------------------- apply / delete


def apply_objects(kube: Kube, objects: Sequence[KubeObject], report: Report, *,
                  create: bool = False) -> list[Outcome]:
    """Apply ``objects`` (already validated and marked) in dependency order.

    ``create``: ``kodev create``; every object must be new. All are checked (and dry-run
    created) before the first is created, so an existing one stops the run with nothing
    half-created.
    """
    ordered = apply_order(objects)
    if create:
        refuse_existing(kube, ordered)
    preflight(kube, ordered, create=create)
    outcomes = []
    crds_applied = False
    for obj in ordered:
        if crds_applied and not _is_crd(obj):
            kube.refresh_discovery()
            crds_applied = False
        if obj.resource is None:
            obj.resource = kube.lookup(obj)
            if obj.resource is None:
                raise KubeError(f"{obj.source}: kind {obj.kind} ({obj.api_version}) is still "
                                "not served after its CustomResourceDefinition was applied")
        if create:
            kube.create(obj)
        outcome = Outcome(obj, "created" if create else _apply_one(kube, obj))
        report(outcome)
        outcomes.append(outcome)
        if _is_crd(obj):
            kube.wait_until(f"{obj.display} to be Established",
                            functools.partial(kube.crd_established, obj))
            crds_applied = True
    return outcomes


def preflight(kube: Kube, objects: Sequence[KubeObject], *, create: bool = False) -> None:
    """Dry-run every object the server can check now; a rejection stops before any change.

    Skipped: kinds whose CRD is in the input, and objects in namespaces the input creates
    (neither exists yet).
    """
    new_namespaces = {o.name for o in objects if o.kind == "Namespace" and o.group == ""}
    for obj in objects:
        if obj.resource is None or obj.namespace in new_namespaces:
            continue
        if create:
            kube.create(obj, dry_run=True)
            continue
        try:
            kube.server_side_apply(obj, dry_run=True)
        except UsageError as exc:
            if not _replaceable(obj, exc):
                raise


def refuse_existing(kube: Kube, objects: Sequence[KubeObject]) -> None:
    """``kodev create``: name every object that already exists, before anything is created.

    Kinds whose CRD is in the input are not served yet, so none of them can exist."""
    existing = [o for o in objects
                if o.resource is not None and kube.resource_version(o) is not None]
    if existing:
        names = ", ".join(f"{o.display}" + (f" in namespace {o.namespace}" if o.namespace
                                            else "") for o in existing)
        raise KubeError(f"{len(existing)} object(s) already exist: {names}; nothing was "
                        "created", hint="use kodev apply to update existing objects, or "
                        "kodev delete them first")


def _replaceable(obj: KubeObject, exc: UsageError) -> bool:
    """A change the API server refuses because the kind's pod template is immutable (a
    Job): such an object is replaced instead, as the workload table says."""
    kind = BUILTIN_TABLE.of(obj.api_version, obj.kind)
    return kind is not None and kind.update is Update.REPLACE and "immutable" in exc.message


def _apply_one(kube: Kube, obj: KubeObject) -> str:
    before = kube.resource_version(obj)
    try:
        after = kube.server_side_apply(obj)
    except UsageError as exc:
        if before is None or not _replaceable(obj, exc):
            raise
        kube.delete(obj)
        kube.wait_until(f"{obj.display} to be deleted", functools.partial(kube.is_gone, obj))
        kube.server_side_apply(obj)
        return "replaced (its pod template is immutable)"
    if before is None:
        return "created"
    return "unchanged" if before == after else "configured"


def delete_objects(kube: Kube, objects: Sequence[KubeObject], report: Report, *,
                   wait: bool) -> list[Outcome]:
    """Delete in reverse apply order (custom resources before their CRD, namespaces last),
    then wait until each deleted object is gone."""
    outcomes = []
    deleted = []
    for obj in reversed(apply_order(objects)):
        gone = kube.delete(obj)
        outcome = Outcome(obj, "deleted" if gone else "not found")
        if gone:
            deleted.append(obj)
        report(outcome)
        outcomes.append(outcome)
    if wait:
        for obj in deleted:
            kube.wait_until(f"{obj.display} to be deleted", functools.partial(kube.is_gone, obj))
    return outcomes


__all__ = ["Kube", "KubeObject", "Outcome", "apply_objects", "delete_objects", "mark",
           "objects_from_documents", "refuse_existing"]
