"""``kodev up``: deploy once, then rebuild exactly what each change affects and hot-swap it.

    save ─► watcher ─► coalesce (quiet period) ─► plan (package graph) ─► ONE go build
         ─► image (cached base, kodata and unchanged layers) ─► push new blobs only
         ─► patch the containers' image to the new digest ─► follow the rollout (watch)

Everything runs on the loop's thread except the watchers, which only report: so there
is never more than one build at a time, and changes made during a build queue into the
next one. Failures (compile errors, an unreachable registry or API server, a workload
deleted by hand) are reported and retried; the last good digest stays deployed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kodev.dev.dashboard import BUILDING, FAILED, PUSHING, READY, ROLLING, Dashboard
from kodev.dev.forwards import PortForwards, PortSpec, declared_ports
from kodev.dev.live import (
    LiveSwapper,
    Opened,
    PodContainer,
    SwapOutcome,
    add_live_volume,
    frame,
    kodata_digest,
    live_blocker,
    running_targets,
)
from kodev.dev.planner import ChangePlanner, Plan
from kodev.dev.retry import RetryScheduler
from kodev.dev.rollouts import PendingRollout, RolloutTracker
from kodev.dev.watcher import Batch, ChangeQueue, FileWatcher
from kodev.errors import BuildError, KodevError, KubeError, RegistryError, UsageError
from kodev.golang.builder import BuiltBinary
from kodev.golang.graph import PackageGraph
from kodev.kube.apply import (
    Kube,
    KubeObject,
    Outcome,
    apply_objects,
    mark,
    objects_from_documents,
)
from kodev.kube.client import Cluster, KubeOptions
from kodev.kube.cluster_info import LocalRegistry
from kodev.kube.rollout import (
    ContainerSlot,
    Swapped,
    WorkloadRef,
    WorkloadWatch,
    run_now,
    swap_images,
)
from kodev.kube.workloads import (
    BUILTIN_TABLE,
    Update,
    WorkloadKind,
    WorkloadTable,
    is_complete,
    project_table,
)
from kodev.publish import Built, Event, Pipeline, Published, PublishOptions, Target
from kodev.resolve import (
    Selection,
    buildable_import_paths,
    collect_files,
    distinct_import_paths,
    read_streams,
    render_documents,
    select_documents,
)
from kodev.yamlsub import KoRef

RETRIABLE = (RegistryError, KubeError, OSError)


@dataclass
class UpSettings:
    files: Sequence[str]
    recursive: bool = False
    selector: str | None = None
    strict: bool = False
    kube: KubeOptions = field(default_factory=KubeOptions)
    timeout: float = 120.0
    options: PublishOptions = field(default_factory=PublishOptions)
    quiet_seconds: float = 0.1
    cleanup: bool = False
    logs: bool = True  # follow the workloads' logs (kodev logs' engine) into the events
    port_forward: bool | None = None  # None: .ko.yaml's kodev.portForward (default off)
    live: bool = False  # swap new binaries into the running containers (kodev/dev/live.py)
    run_cronjobs: bool = False  # start a CronJob's Job at once after its image changed
    rerun_jobs: bool = False  # replace a Job that completed, too (a failed one always is)
    workload_kinds: Sequence[str] = ()  # --workload-kind GROUP/VERSION/KIND=JSONPATH
    workdir: Path = field(default_factory=Path.cwd)


@dataclass
class Deployed:
    """What runs now for one import path."""

    reference: str  # as written into the workloads
    digest: str
    binaries: dict[str, str]  # platform -> sha256 of the binary
    frame: str = ""  # live.frame(): the image but its binary and kodata layers
    kodata: str = ""  # live.kodata_digest(): the live image's kodata layer


class DevLoop:
    def __init__(self, settings: UpSettings, dashboard: Dashboard,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.dashboard = dashboard
        self.environ = dict(os.environ if environ is None else environ)
        self.changes = ChangeQueue(settings.quiet_seconds)
        self.stopping = threading.Event()
        self.cluster: Cluster | None = None
        self.kube: Kube | None = None
        self.registry: LocalRegistry | None = None
        self.pipeline: Pipeline | None = None
        self.targets: dict[str, Target] = {}
        self.graph: PackageGraph | None = None
        self.planner: ChangePlanner | None = None
        self.deployed: dict[str, Deployed] = {}
        self.selections: dict[Path, Selection] = {}
        self.objects: dict[Path, list[KubeObject]] = {}
        self.slots: dict[str, list[ContainerSlot]] = {}
        self.workload_file: dict[WorkloadRef, Path] = {}
        self.rollouts = RolloutTracker(dashboard, self._import_paths_of, live=settings.live,
                                       stopping=self.stopping)
        self.watch: WorkloadWatch | None = None
        self.table: WorkloadTable = BUILTIN_TABLE  # + the project's kinds, once connected
        self.forwards: PortForwards | None = None
        self.ports: dict[WorkloadRef, list[PortSpec]] = {}
        self.live: LiveSwapper | None = None
        # live mode: what each workload's containers run, ahead of its spec (slot -> ref),
        # and which binary each (Pod UID, container) got
        self.live_ahead: dict[WorkloadRef, dict[ContainerSlot, str]] = {}
        self.live_binary: dict[str, BuiltBinary] = {}  # import path -> its newest binary
        self.live_kodata: dict[str, bytes] = {}  # import path -> kodata swapped in, if any
        self.live_swapped: dict[tuple[str, str], str] = {}
        self._live_lock = threading.Lock()
        self._catch_up = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-catch-up")
        self.log_followers: list[Any] = []  # kodev.kube.logs.LogFollower, imported lazily
        self.files_watcher: FileWatcher | None = None
        self.failed_builds: set[str] = set()
        self.retry = RetryScheduler()
        self._deploy_attempts = 0
        self._pod_workload: dict[tuple[str, str], str] = {}  # (namespace, pod) -> workload
        dashboard.rebuild_handler = self.rebuild
        self.config_error = False  # .ko.yaml failed to load: reload it on every batch

    # ================================================================ lifecycle

    def run(self) -> int:
        try:
            self.prepare()
            while not self.deploy():  # a compile error, or a registry still down
                batch = self.changes.next_batch(timeout=self.retry.until())
                if ChangeQueue.STOP in batch.requests or self.stopping.is_set():
                    return 0
            self._start_cluster_watchers()
            self.dashboard.emit("watching", f"watching {len(self.targets)} image(s) in "
                                f"{', '.join(str(p) for p in sorted(self._watch_roots()))}; "
                                f"quiet period {self.settings.quiet_seconds * 1000:.0f} ms")
            while not self.stopping.is_set():
                batch = self.changes.next_batch(timeout=self.retry.until())
                if ChangeQueue.STOP in batch.requests or self.stopping.is_set():
                    break
                self._iterate_safely(batch)
                self.retry.settled()  # nothing failed: the next failure starts afresh
        finally:
            self.shutdown()
        return 0

    def stop(self) -> None:
        self.stopping.set()
        self.changes.request(ChangeQueue.STOP)

    def prepare(self) -> None:
        """Read the manifests, connect, and start watching files (before the first build,
        so that a tree that does not compile yet is fixed by the next save)."""
        self._load_manifests()
        self._connect()
        self.pipeline = self._make_pipeline()
        self.files_watcher = FileWatcher(self.changes)
        self.files_watcher.watch({self.settings.workdir, *(p.parent for p in self.selections)})
        self.files_watcher.start()

    def deploy(self) -> bool:
        """Build and push every image, apply the manifests. False after a compile error
        or a bad file (reported; the next save tries again), or when the registry or the
        API server cannot be reached (retried with back-off), as the loop does later."""
        assert self.pipeline is not None
        retry = self._deploy_attempts > 0
        self._deploy_attempts += 1
        try:
            if retry:  # after a fix: the manifests and .ko.yaml may have changed too
                self._load_manifests()
                self._replace_pipeline()
            refs = [r for s in self.selections.values() for r in s.refs]
            self._plan_references(refs)
            built = self.pipeline.rebuild(list(self.targets.values()))
            self.failed_builds.clear()
            self.dashboard.set_error(None)
            for result in self._publish(built):
                self._record(result)
            self._apply(list(self.selections), started=time.monotonic())
        except BuildError as exc:
            self._build_failed(set(self.targets), exc)
            self._waiting("it builds: fix the error and save")
            return False
        except RETRIABLE as exc:
            self._schedule_retry(set(self.targets), set(), exc)
            self._waiting("this works")
            return False
        except KodevError as exc:
            if not retry:  # bad input at start-up: one line and exit 2, as any command
                raise
            self.dashboard.emit("error", f"{exc}: fix it and save; kodev up keeps watching")
            self._waiting("the error is fixed")
            return False
        self.retry.succeeded()
        return True

    def _waiting(self, until: str) -> None:
        self.dashboard.emit("waiting", f"nothing is deployed until {until}; kodev up "
                            "keeps watching and tries again")

    def shutdown(self) -> None:
        self.stopping.set()
        if self.files_watcher is not None:
            self.files_watcher.stop()
        if self.forwards is not None:
            self.forwards.close()
        if self.watch is not None:
            self.watch.stop()
        for follower in self.log_followers:
            follower.stop()
        try:
            if self.settings.cleanup and self.kube is not None:
                self._cleanup()
            elif self.live_ahead:
                self._converge(time.monotonic(), follow=False)
        finally:
            self._catch_up.shutdown(wait=False, cancel_futures=True)
            if self.live is not None:
                self.live.close()
            if self.pipeline is not None:
                self.pipeline.close()
            if self.cluster is not None:
                self.cluster.close()
            self.dashboard.emit("stopped", "stopped watching; workloads left running"
                                if not self.settings.cleanup else "stopped; cleaned up")
            self.dashboard.close()

    # ================================================================ setup

    def _connect(self) -> None:
        from kodev.cache import default_cache_dir
        from kodev.config import load_config
        from kodev.kube.client import connect, dynamic_client
        from kodev.kube.cluster_info import local_registry, node_platforms
        from kodev.oci.platform import configured_platforms

        self.cluster = connect(self.settings.kube, self.environ)
        dynamic = dynamic_client(self.cluster, default_cache_dir(self.environ) / "kube")
        self.kube = Kube(self.cluster, dynamic, timeout=self.settings.timeout)
        options = self.settings.options
        config = load_config(self.settings.workdir, self.environ)
        if self.settings.port_forward is None:
            self.settings.port_forward = config.port_forward
        self.table = project_table(config.workload_kinds, self.settings.workload_kinds)
        if configured_platforms(options.platforms, config.default_platforms,
                                self.environ) is None:
            platforms = tuple(node_platforms(self.cluster))
            if platforms:
                self.settings.options = options = replace(options, platforms=platforms)
                self.dashboard.emit("cluster", f"building for the nodes' platforms: "
                                    f"{', '.join(platforms)}", platforms=list(platforms))
        if not options.docker_repo:
            self.registry = local_registry(self.cluster)
            if self.registry is None:
                raise UsageError(
                    "KO_DOCKER_REPO is unset and the cluster advertises no local registry",
                    hint="export KO_DOCKER_REPO=<registry>, or create the KEP-1755 ConfigMap "
                         "kube-public/local-registry-hosting (kind, k3d and minikube do)")
            self.settings.options = replace(options, docker_repo=self.registry.host)
            self.dashboard.emit("cluster", f"pushing to the cluster's local registry "
                                f"{self.registry.host}", registry=self.registry.host)

    def _make_pipeline(self) -> Pipeline:
        # The config (and so .ko.yaml defaults) is read here, after platforms are known.
        return Pipeline(self.settings.options, workdir=self.settings.workdir,
                        environ=self.environ, on_event=self._pipeline_event)

    def _pipeline_event(self, event: Event) -> None:
        if event.kind in ("push", "base", "warning", "pushed"):
            self.dashboard.emit(event.kind, event.message, event.import_path, **event.data)

    def _load_manifests(self) -> None:
        if "-" in self.settings.files:
            raise UsageError("kodev up cannot watch stdin (-f -)", hint="pass files or dirs")
        names = collect_files(self.settings.files, self.settings.recursive)
        for name, selection in zip(names, self._select(names), strict=True):
            self.selections[Path(name).resolve()] = selection
        if not any(s.refs for s in self.selections.values()):
            found = ", ".join(sorted(p.name for p in self.selections)) or "the -f input"
            raise UsageError(f"no ko:// references in {found}: nothing to build or watch",
                             hint="point -f at manifests whose image: fields are ko://IMPORTPATH")

    def _select(self, names: Sequence[str]) -> list[Selection]:
        return select_documents(read_streams(list(names)), self.settings.selector)

    def _plan(self, import_paths: Iterable[str]) -> None:
        """Plan the targets and read the package graph (one go list -deps for all)."""
        assert self.pipeline is not None
        paths = list(dict.fromkeys([*self.targets, *import_paths]))
        targets, graph = self.pipeline.plan_graph(paths)
        self.targets = {t.import_path: t for t in targets}
        self.graph = graph
        for ip in self.targets:
            self.dashboard.add_image(ip)
        if self.planner is None:
            self.planner = ChangePlanner(graph, self.selections, self.pipeline.config.path)
        else:
            self.planner.use_graph(graph)
        if self.files_watcher is not None:
            self.files_watcher.watch(self._watch_roots())

    def _plan_references(self, refs: Sequence[KoRef]) -> list[str]:
        """Plan the ``ko://`` import paths with ONE go list; only when that fails, find out
        which value is wrong (an error) or merely not a main package (skipped, warned)."""
        paths = distinct_import_paths(refs)
        try:
            self._plan(paths)
        except BuildError:
            assert self.pipeline is not None
            paths = buildable_import_paths(self.pipeline, refs, strict=self.settings.strict,
                                           warn=self._warn)
            self._plan(paths)
        return paths

    def _watch_roots(self) -> set[Path]:
        assert self.graph is not None
        return {*self.graph.watched_roots(), *(p.parent for p in self.selections)}

    def _start_cluster_watchers(self) -> None:
        assert self.cluster is not None
        namespaces = {w.namespace for w in self.workload_file}
        self.watch = WorkloadWatch(self.cluster, namespaces or {self.cluster.namespace},
                                   self._on_cluster_change,
                                   label_selector="app.kubernetes.io/managed-by=kodev",
                                   table=self.table,
                                   kinds={w.kind for w in self.workload_file},
                                   on_error=self._watch_failed)
        self.rollouts.watch = self.watch
        self.watch.start()
        if self.settings.live:
            self.live = LiveSwapper(self.cluster)
        if self.settings.port_forward:
            self.forwards = PortForwards(self.cluster, self.watch, self.dashboard)
            self.forwards.ensure(p for specs in self.ports.values() for p in specs)
        if self.settings.logs:
            self._follow_logs()

    def _follow_logs(self) -> None:
        """Every kodev workload's Pods, across rollouts, into the events (a log pane in the
        TUI, interleaved lines otherwise): kodev logs' engine, on the same watched state
        as the rollouts (namespaces added later are followed too)."""
        from kodev.kube.logs import LogFollower
        from kodev.kube.tail import LogOptions

        assert self.cluster is not None and self.watch is not None
        assert self.watch.state is not None
        follower = LogFollower(self.cluster, None, None, None,
                               LogOptions(tail=10, follow=True), self._log_event,
                               table=self.table, state=self.watch.state)
        follower.start()
        self.log_followers.append(follower)

    def _log_event(self, event: Any) -> None:
        from kodev.kube.logs import format_line, format_notice
        from kodev.kube.tail import LogLine

        if isinstance(event, LogLine):
            self.dashboard.emit("log", format_line(event), namespace=event.namespace,
                                pod=event.pod, container=event.container,
                                timestamp=event.timestamp, line=event.message,
                                workload=self._workload_of_pod(event.namespace, event.pod))
        elif event.kind in ("added", "removed", "restarted"):
            self.dashboard.emit("logs", format_notice(event), namespace=event.namespace,
                                pod=event.pod, container=event.container)

    # ================================================================ one iteration

    def iterate(self, batch: Batch) -> None:
        """Do what one batch of changes (or a retry) needs."""
        assert self.planner is not None
        started = batch.first_seen or time.monotonic()
        plan = self.planner.plan(batch.paths)
        self._add_requests(batch, plan)
        if batch.paths and not plan and not self.retry.due():
            names = ", ".join(sorted(p.name for p in plan.ignored))
            self.dashboard.emit("ignored", f"no image depends on {names}")
            return
        if batch.paths:
            changed = sorted(str(p) for p in batch.paths if p not in plan.ignored)
            self.dashboard.emit("change", f"changed: {', '.join(_short(c) for c in changed)}",
                                files=changed)
        images = set(plan.images)
        if self.retry.due():
            owed_images, owed_files = self.retry.take()
            images |= owed_images
            plan.manifests |= owed_files
        try:
            if plan.reload_config or self.config_error:
                images |= self._reload_config()
            elif plan.refresh_graph:
                self._refresh_graph()
                images |= self.planner.affected_after_refresh(batch.paths)
        except BuildError as exc:
            self._build_failed(images or set(self.targets), exc)
            return
        except RETRIABLE as exc:
            self._schedule_retry(images or set(self.targets), set(), exc)
            return
        except KodevError as exc:  # .ko.yaml does not parse, names a bad base, ...
            self.dashboard.emit("error", f"{exc}: fix it and save; kodev up keeps watching")
            return
        images = (images | self.failed_builds) & set(self.targets)
        if images:
            self._rebuild_and_swap(sorted(images), started)
        if plan.manifests:
            self._reapply(sorted(plan.manifests), started)

    def _iterate_safely(self, batch: Batch) -> None:
        """One iteration; an error no step handled is shown and retried, never the end
        of the loop (the last good images stay deployed)."""
        try:
            self.iterate(batch)
        except RETRIABLE as exc:  # rebuilding everything is safe: unchanged images stay
            self._schedule_retry(set(self.targets), set(), exc)
        except KodevError as exc:
            self.dashboard.emit("error", f"{exc}: kodev up keeps watching")

    def _add_requests(self, batch: Batch, plan: Plan) -> None:
        for request in batch.requests:
            kind, _, value = request.partition(":")
            if kind == "reapply":
                plan.manifests.add(Path(value))
            elif kind == "converge" and self.live_ahead:
                self._converge(batch.first_seen or time.monotonic(), follow=True)
            elif kind == "rebuild" and value in self.targets:
                plan.images.add(value)

    def _reload_config(self) -> set[str]:
        """.ko.yaml changed (or is still broken): read it again, rebuild every image. An
        error in it is reported and leaves the loop waiting for the next save of it;
        meanwhile nothing is built with the old configuration."""
        self.dashboard.emit("config", ".ko.yaml still has an error: reading it again"
                            if self.config_error else
                            ".ko.yaml changed: reloading it, rebuilding every image")
        self.config_error = True
        self._replace_pipeline()
        self._plan(self.targets)
        self.config_error = False
        return set(self.targets)

    def _replace_pipeline(self) -> None:
        """A new pipeline from .ko.yaml as it is now; the old one stays until that worked."""
        pipeline = self._make_pipeline()
        if self.pipeline is not None:
            self.pipeline.close()
        self.pipeline = pipeline

    def _refresh_graph(self) -> None:
        began = time.monotonic()
        self._plan(self.targets)
        self.dashboard.emit("graph", f"package graph read again "
                            f"({(time.monotonic() - began) * 1000:.0f} ms)")

    # ================================================================ build, push, swap

    def _rebuild_and_swap(self, images: list[str], started: float) -> None:
        assert self.pipeline is not None
        for ip in images:
            self.dashboard.update(ip, state=BUILDING, message="")
        self.dashboard.emit("build", f"building {len(images)} image(s): "
                            f"{', '.join(_short(i) for i in images)}", images=images)
        began = time.monotonic()
        opened = self._open_live_streams(images)
        try:
            self._build_and_publish(images, began, started, opened)
        finally:
            if self.live is not None:  # streams no swap used: tell them nothing changed
                self.live.abort(f for streams in opened.values() for f in streams.values())

    def _build_and_publish(self, images: list[str], began: float, started: float,
                           opened: dict[str, dict[PodContainer, Future[Opened]]]) -> None:
        assert self.pipeline is not None
        try:
            built = self.pipeline.rebuild([self.targets[ip] for ip in images])
        except BuildError as exc:
            self._build_failed(set(images), exc)
            return
        except RETRIABLE as exc:  # the base's registry, a full disk in the cache
            self._schedule_retry(set(images), set(), exc)
            return
        seconds = time.monotonic() - began
        self.failed_builds -= set(images)
        self.dashboard.set_error(None)
        changed = [b for b in built if self._is_new(b, seconds)]
        if not changed:
            return
        # Live swaps need the binary, not the registry: they run while the push does.
        live = ThreadPoolExecutor(max_workers=len(changed)) if self.live is not None else None
        went_live = {b.target.import_path: live.submit(
            self._go_live_then_close, b, started, opened.pop(b.target.import_path, {}))
            for b in changed} if live is not None else {}
        try:
            published = self._publish(changed)
        except RETRIABLE as exc:
            self._schedule_retry({b.target.import_path for b in changed}, set(), exc)
            return
        finally:
            if live is not None:
                live.shutdown(wait=True)
        self._swap(published, started,
                   {ip for ip, future in went_live.items() if future.result()})

    def _open_live_streams(self, images: Iterable[str]
                           ) -> dict[str, dict[PodContainer, Future[Opened]]]:
        """Live mode: open the exec streams to every container that will get a new binary
        now, so their handshake overlaps go build."""
        if self.live is None or self.watch is None:
            return {}
        opened: dict[str, dict[PodContainer, Future[Opened]]] = {}
        for ip in images:
            slots = [s for s in self.slots.get(ip, []) if not s.init]
            for workload in {s.workload for s in slots}:
                containers = [s.container for s in slots if s.workload == workload]
                targets = running_targets(self.watch.workload_pods(workload), containers)
                opened.setdefault(ip, {}).update(self.live.open(workload.namespace, targets))
        return opened

    def _is_new(self, item: Built, seconds: float) -> bool:
        ip = item.target.import_path
        current = self.deployed.get(ip)
        binaries = {str(p): b.sha256 for p, b in item.binaries.items()}
        if current is not None and item.artifact.digest == current.digest:
            same_binary = binaries == current.binaries
            why = "byte-identical binary" if same_binary else "identical image"
            self.dashboard.update(ip, state=READY, build_seconds=seconds,
                                  message=f"{why}: nothing pushed")
            self.dashboard.emit("unchanged", f"{_short(ip)}: {why} "
                                "(no code change): nothing pushed, nothing rolled",
                                ip, build_seconds=round(seconds, 3))
            return False
        self.dashboard.update(ip, state=PUSHING, build_seconds=seconds)
        self.dashboard.emit("built", f"{_short(ip)} built in {seconds:.2f}s", ip,
                            build_seconds=round(seconds, 3), digest=item.artifact.digest)
        return True

    def _publish(self, built: Sequence[Built]) -> list[Published]:
        assert self.pipeline is not None
        return self.pipeline.write(built)

    def _reference(self, result: Published) -> str:
        """The digest reference as the workloads must name it."""
        reference = f"{result.repository}@{result.digest}"
        return self.registry.runtime_reference(reference) if self.registry else reference

    def _record(self, result: Published) -> None:
        """``result`` is what runs now (or will run once the manifests are applied)."""
        self.deployed[result.import_path] = Deployed(
            self._reference(result), result.digest,
            {str(p): b.sha256 for p, b in result.binaries.items()}, frame(result.artifact),
            kodata_digest(result.artifact))
        self.dashboard.update(result.import_path, digest=result.digest)

    def _swap(self, published: Sequence[Published], started: float,
              went_live: Set[str] = frozenset()) -> None:
        """Patch the new digests into every container that runs them. An image counts as
        deployed only when every patch for it went through; otherwise it is retried.
        What already runs live (``went_live``) is only recorded."""
        for result in published:
            if result.import_path in went_live:
                self._record_live(result)
        published = [r for r in published if r.import_path not in went_live]
        by_workload: dict[WorkloadRef, dict[ContainerSlot, str]] = {}
        for result in published:
            for slot in self.slots.get(result.import_path, []):
                by_workload.setdefault(slot.workload, {})[slot] = self._reference(result)
        failed: set[str] = set()
        gone: list[WorkloadRef] = []
        for workload, images in by_workload.items():
            with self._live_lock:  # a rollout also records what went live before in it
                images = {**self.live_ahead.pop(workload, {}), **images}
            outcome = self._swap_one(workload, images, started)
            if outcome == "failed":
                failed |= self._import_paths_in(images)
            elif outcome == "gone":
                gone.append(workload)
        for result in published:
            if result.import_path in failed:
                continue
            self._record(result)
            if not self.slots.get(result.import_path):
                self.dashboard.update(result.import_path, state=READY,
                                      message="pushed; no workload runs it")
        for workload in gone:
            self._workload_gone(workload)

    def _import_paths_in(self, images: Mapping[ContainerSlot, str]) -> set[str]:
        return {ip for ip, slots in self.slots.items() if any(s in images for s in slots)}

    def _swap_one(self, workload: WorkloadRef, images: Mapping[ContainerSlot, str],
                  started: float) -> str:
        """Patch one workload: "patched", "kept" (a completed Job), "gone" (deleted by
        hand) or "failed" (retried)."""
        assert self.cluster is not None
        import_paths = self._import_paths_in(images)
        kind = self._kind(workload)
        if kind.update is Update.REPLACE:
            if self._completed(workload) and not self.settings.rerun_jobs:
                self.dashboard.emit("kept", f"{workload} has completed: not run again with "
                                    "the new image (--rerun-jobs runs completed Jobs again)",
                                    workload=str(workload))
                return "kept"
            self.rollouts.replacing.add(workload)
        try:
            swapped = swap_images(self.cluster, workload, images, kind)
        except RETRIABLE as exc:
            self._schedule_retry(import_paths, set(), exc)
            return "failed"
        if swapped is None:
            return "gone"
        patched = time.monotonic() - started
        uid = swapped.uid if swapped.update is Update.REPLACE else ""
        self.rollouts.expect(workload, PendingRollout(import_paths, started,
                                                      swapped.generation, uid=uid))
        for ip in import_paths:
            self.dashboard.update(ip, state=ROLLING)
        self.dashboard.emit("patched", f"{workload}: {_swap_words(swapped)} "
                            f"({patched:.2f}s after the save)", workload=str(workload),
                            namespace=workload.namespace, update=swapped.update.value,
                            images=sorted(images.values()), save_to_patch_seconds=round(
                                patched, 3), importpaths=sorted(import_paths))
        if swapped.update is Update.NEXT_RUN and self.settings.run_cronjobs:
            self._run_cronjob(workload)
        self.rollouts.check(workload)
        return "patched"

    def _completed(self, workload: WorkloadRef) -> bool:
        state = self.watch.state if self.watch is not None else None
        current = state.get(workload) if state is not None else None
        return current is not None and is_complete(current)

    def _kind(self, workload: WorkloadRef) -> WorkloadKind:
        return self.watch.kind_of(workload) if self.watch is not None \
            else self.table.get(workload.kind)

    def _run_cronjob(self, workload: WorkloadRef) -> None:
        """--run-cronjobs: start the CronJob's Job now (kubectl create job --from)."""
        assert self.cluster is not None
        try:
            job = run_now(self.cluster, workload)
        except RETRIABLE as exc:
            self.dashboard.emit("error", f"{workload}: could not start a Job now: {exc}",
                                workload=str(workload))
            return
        self.dashboard.emit("job", f"{workload}: started job/{job} with the new image",
                            workload=str(workload), job=job)

    # ================================================================ live swaps

    def _go_live_then_close(self, built: Built, started: float,
                            opened: Mapping[PodContainer, Future[Opened]]) -> bool:
        assert self.live is not None
        try:
            return self._go_live(built, started, opened)
        finally:  # a stream the swap did not use (a blocker, a Pod gone) ends unused
            self.live.abort(opened.values())

    def _go_live(self, built: Built, started: float,
                 opened: Mapping[PodContainer, Future[Opened]]) -> bool:
        """Swap the new binary into every running container of its import path. False
        (with one line saying why) when it must be rolled out instead."""
        ip = built.target.import_path
        current = self.deployed.get(ip)
        why = live_blocker(current.frame if current else None, built.artifact, built.binaries)
        slots = self.slots.get(ip, [])
        if why is None and not slots:
            why = "no workload runs it"
        outcomes: dict[WorkloadRef, list[SwapOutcome]] = {}
        if why is None:
            binary = next(iter(built.binaries.values()))
            try:
                kodata = None
                if current is not None and kodata_digest(built.artifact) != current.kodata:
                    assert self.pipeline is not None
                    kodata = self.pipeline.kodata_tar(built.target)
                outcomes, why = self._swap_into_workloads(ip, slots, binary, opened, kodata)
            except Exception as exc:  # a bug here must not end the loop: roll out instead
                why = f"internal error: {type(exc).__name__}: {exc}"
        if why is not None:
            self.dashboard.emit("live-fallback", f"{_short(ip)}: rolling out a new Pod "
                                f"instead of a live swap: {why}", ip, reason=why)
            return False
        seconds = time.monotonic() - started
        for workload, done in sorted(outcomes.items(), key=lambda item: str(item[0])):
            pods = sorted({o.target.pod for o in done})
            self.dashboard.emit("live", f"{workload}: new binary running in {len(pods)} "
                                f"container(s), {seconds:.2f}s after the save (same Pods)",
                                ip, workload=str(workload), namespace=workload.namespace,
                                mode="live", pods=pods, save_to_running_seconds=round(
                                    seconds, 3))
        self.dashboard.update(ip, state=READY, latency_seconds=seconds, message="live")
        return True

    def _record_live(self, result: Published) -> None:
        """``result`` runs live (and is now in the registry): what the workloads' specs
        must be patched to when the loop converges."""
        reference = self._reference(result)
        self._record(result)
        slots = self.slots.get(result.import_path, [])
        with self._live_lock:
            for slot in slots:
                self.live_ahead.setdefault(slot.workload, {})[slot] = reference

    def _swap_into_workloads(self, ip: str, slots: Sequence[ContainerSlot],
                             binary: BuiltBinary,
                             opened: Mapping[PodContainer, Future[Opened]] | None = None,
                             kodata: bytes | None = None
                             ) -> tuple[dict[WorkloadRef, list[SwapOutcome]], str | None]:
        """Swap into each workload's running containers; what happened per workload, and
        the first reason it could not be done (then the image is rolled out)."""
        assert self.live is not None and self.watch is not None
        outcomes: dict[WorkloadRef, list[SwapOutcome]] = {}
        for workload in sorted({s.workload for s in slots}, key=str):
            containers = [s.container for s in slots if s.workload == workload and not s.init]
            targets = running_targets(self.watch.workload_pods(workload), containers)
            if not targets:
                return outcomes, f"{workload} has no running container to swap into"
            done = outcomes[workload] = self.live.swap(workload.namespace, targets, binary,
                                                       opened, kodata)
            failed = [o for o in done if o.error]
            if failed:
                return outcomes, failed[0].error
        with self._live_lock:
            self.live_binary[ip] = binary
            if kodata is not None:
                self.live_kodata[ip] = kodata
            for outcome in (o for done in outcomes.values() for o in done):
                key = (outcome.target.uid, outcome.target.container)
                self.live_swapped[key] = binary.sha256
        return outcomes, None

    def _catch_up_new_pods(self) -> None:
        """Pods that started after a live swap (scale-up, eviction, a deleted Pod) run
        their spec's older binary: swap the newest in, and say so."""
        assert self.live is not None and self.watch is not None
        with self._live_lock:
            work = [(w, dict(slots)) for w, slots in self.live_ahead.items()]
        for workload, slots in work:
            for ip in {ip for ip, ip_slots in self.slots.items()
                       if any(s in slots for s in ip_slots)}:
                binary = self.live_binary.get(ip)
                if binary is None:
                    continue
                containers = [s.container for s in slots if s.workload == workload
                              and s in self.slots[ip] and not s.init]
                running = running_targets(self.watch.workload_pods(workload), containers)
                with self._live_lock:
                    targets = [t for t in running
                               if self.live_swapped.get((t.uid, t.container)) != binary.sha256]
                    for t in targets:  # claimed: a second event does not swap again
                        self.live_swapped[(t.uid, t.container)] = binary.sha256
                if not targets:
                    continue
                began = time.monotonic()
                for outcome in self.live.swap(workload.namespace, targets, binary,
                                              kodata=self.live_kodata.get(ip)):
                    if outcome.error:
                        self.dashboard.emit("live-fallback", f"{workload}: new pod "
                                            f"{outcome.target.pod} runs the older binary: "
                                            f"{outcome.error}", workload=str(workload))
                        continue
                    self.dashboard.emit("live", f"{workload}: newest binary swapped into new "
                                        f"pod {outcome.target.pod} as it started "
                                        f"({time.monotonic() - began:.2f}s)", ip,
                                        workload=str(workload), mode="live",
                                        pods=[outcome.target.pod], new_pod=True)

    def _converge(self, started: float, *, follow: bool) -> None:
        """Patch the live workloads to the digest of the last build: a normal rollout, so
        the cluster's objects say what runs (on stop, and on request)."""
        with self._live_lock:
            ahead, self.live_ahead = self.live_ahead, {}
        for workload, images in ahead.items():
            if not follow:
                assert self.cluster is not None
                try:
                    swap_images(self.cluster, workload, images, self._kind(workload))
                except RETRIABLE as exc:
                    self.dashboard.emit("error", f"{workload}: could not record the live "
                                        f"binary in its spec: {exc}")
                    continue
                self.dashboard.emit("converged", f"{workload}: spec patched to the running "
                                    "digest (a normal rollout follows)", workload=str(workload))
            elif self._swap_one(workload, images, started) == "patched":
                self.dashboard.emit("converged", f"{workload}: rolling out the running digest",
                                    workload=str(workload))

    def converge(self) -> None:
        """From another thread (the TUI): roll the live changes out now."""
        self.changes.request("converge")

    def rebuild(self, import_paths: Iterable[str]) -> None:
        """From another thread (the TUI's ``r``): build, push and roll these images now,
        changed or not (a no-op build reports itself unchanged)."""
        for ip in import_paths:
            self.changes.request(f"rebuild:{ip}")

    # ================================================================ manifests

    def _apply(self, files: Sequence[Path], started: float) -> None:
        """Render these files with the current digests and server-side apply them."""
        assert self.kube is not None
        references = {ip: d.reference for ip, d in self.deployed.items()}
        selections = [self.selections[f] for f in files]
        import_path_of = {ref: ip for ip, ref in references.items()}
        applied: dict[Path, list[KubeObject]] = {}
        rendered = [(path, objects_from_documents(docs)) for path, docs in
                    zip(files, render_documents(selections, references), strict=True)]
        # All files at once: a kind whose CRD is in another file is known.
        self.kube.validate([o for _, objects in rendered for o in objects])
        for path, objects in rendered:
            for obj in objects:
                mark(obj, import_path_of, self.table)
                kind = self.table.of(obj.api_version, obj.kind)
                if self.settings.live and kind is not None and kind.live:
                    obj.data = add_live_volume(obj.data, import_path_of.__contains__)
            applied[path] = objects
        everything = [o for objects in applied.values() for o in objects]
        apply_objects(self.kube, everything, self._report_outcome)
        for path, objects in applied.items():
            self.objects[path] = objects
            self._track_workloads(path, objects, import_path_of, started)

    def _report_outcome(self, outcome: Outcome) -> None:
        self.dashboard.emit("applied", outcome.line(), **outcome.json())

    def _track_workloads(self, path: Path, objects: Sequence[KubeObject],
                         import_path_of: Mapping[str, str], started: float) -> None:
        for ip in self.slots:
            self.slots[ip] = [s for s in self.slots[ip]
                              if self.workload_file.get(s.workload) != path]
        kinds = set()
        for obj in objects:
            kind = self.table.of(obj.api_version, obj.kind)
            if kind is None:
                continue
            kinds.add(kind.key)
            workload = WorkloadRef(kind.key, obj.namespace or "default", obj.name)
            self.workload_file[workload] = path
            self.ports[workload] = declared_ports(workload, obj.data, kind)
            runs = set()
            for slot, image in _container_slots(kind, workload, obj.data):
                runs_path = import_path_of.get(image)
                if runs_path:
                    self.slots.setdefault(runs_path, []).append(slot)
                    runs.add(runs_path)
            if runs:
                self.rollouts.expect(workload, PendingRollout(runs, started, 0, "apply"))
                for ip in runs:
                    self.dashboard.update(ip, state=ROLLING)
                self.dashboard.add_workload(str(workload), workload.namespace, sorted(runs))
        if self.forwards is not None:
            self.forwards.ensure(p for specs in self.ports.values() for p in specs)
        if self.watch is not None:  # a re-applied file may bring a new namespace or kind
            namespaces = {w.namespace for w in self.workload_file}
            self.watch.add_namespaces(namespaces)
            self.watch.add_kinds(kinds)

    def _reapply(self, files: Sequence[Path], started: float) -> None:
        """A YAML file changed (or a workload from it was deleted): read it again, build
        any new ko:// import path, apply."""
        assert self.pipeline is not None
        try:
            for path, selection in zip(files, self._select([str(f) for f in files]),
                                       strict=True):
                self.selections[path] = selection
            new_paths = [r.import_path for f in files for r in self.selections[f].refs
                         if r.import_path not in self.targets]
            if new_paths:
                paths = self._plan_references([r for f in files for r in self.selections[f].refs
                                               if r.import_path in new_paths])
                for result in self._publish(self.pipeline.rebuild(
                        [self.targets[p] for p in paths])):
                    self._record(result)
            self.dashboard.emit("apply", f"applying {', '.join(f.name for f in files)}")
            self._apply(files, started)
        except RETRIABLE as exc:
            self._schedule_retry(set(), set(files), exc)
        except KodevError as exc:
            self.dashboard.emit("error", f"{exc}: fix the file; kodev up keeps watching")

    # ================================================================ cluster state

    def _on_cluster_change(self, what: str, workload: WorkloadRef | None) -> None:
        if what == "deleted" and workload is not None:
            if workload in self.rollouts.replacing:
                return  # kodev's own delete-and-create of a Job
            path = self.workload_file.get(workload)
            if path is not None and not self.stopping.is_set():
                self.dashboard.emit("deleted", f"{workload} was deleted: applying "
                                    f"{path.name} again", workload=str(workload))
                self.changes.request(f"reapply:{path}")
            return
        if self.forwards is not None:
            self.forwards.pods_changed()
        if self.live is not None and self.live_ahead and not self.stopping.is_set():
            with contextlib.suppress(RuntimeError):  # stopping: no more catch-ups
                self._catch_up.submit(self._catch_up_new_pods)
        self._refresh_pod_counts()
        if workload is None:
            for item in self.rollouts.pending_workloads():
                self.rollouts.check(item)
            for item in list(self.workload_file):
                self.rollouts.check_health(item)
        else:
            self.rollouts.check(workload)
            self.rollouts.check_health(workload)

    def _workload_of_pod(self, namespace: str, pod: str) -> str | None:
        """The workload (``deployment/web``) a Pod belongs to, for the log events (the
        TUI's log pane shows the selected workload's lines)."""
        key = (namespace, pod)
        found = self._pod_workload.get(key)
        if found is None and self.watch is not None:
            if len(self._pod_workload) > 1000:  # Pods of rollouts long gone
                self._pod_workload.clear()
            for workload in list(self.workload_file):
                if workload.namespace == namespace and any(
                        p["metadata"].get("name") == pod
                        for p in self.watch.workload_pods(workload)):
                    found = self._pod_workload[key] = str(workload)
                    break
        return found

    def _import_paths_of(self, workload: WorkloadRef) -> set[str]:
        return {ip for ip, slots in self.slots.items() if any(s.workload == workload
                                                               for s in slots)}

    def _refresh_pod_counts(self) -> None:
        if self.watch is None:
            return
        for ip, slots in list(self.slots.items()):
            ready = desired = 0
            for workload in {s.workload for s in slots}:
                status = self.watch.status(workload)
                if status is not None:
                    ready += status.ready
                    desired += status.desired
                    self.dashboard.set_pods(str(workload), status.ready, status.desired)
            row = self.dashboard.row(ip)
            if (row.ready, row.desired) != (ready, desired):
                self.dashboard.update(ip, ready=ready, desired=desired)

    def _workload_gone(self, workload: WorkloadRef) -> None:
        path = self.workload_file.get(workload)
        self.dashboard.emit("deleted", f"{workload} is gone: applying "
                            f"{path.name if path else 'its file'} again")
        if path is not None:
            self._reapply([path], time.monotonic())

    # ================================================================ failures

    def _watch_failed(self, exc: BaseException) -> None:
        self.dashboard.emit("error", f"stopped watching the cluster: {exc} (rollouts are no "
                            "longer followed; restart kodev up)")

    def _warn(self, message: str) -> None:
        self.dashboard.emit("warning", message)

    def _build_failed(self, images: set[str], exc: BuildError) -> None:
        self.failed_builds |= images
        for ip in images:
            self.dashboard.update(ip, state=FAILED, message="build failed")
        self.dashboard.set_error(exc.output or exc.message)
        self.dashboard.emit("compile-error", exc.message, output=exc.output or "",
                            images=sorted(images))

    def _schedule_retry(self, images: set[str], files: set[Path], exc: BaseException) -> None:
        delay = self.retry.schedule(images, files)
        for ip in images:
            self.dashboard.update(ip, state=FAILED, message=str(exc))
        kept = ("the last good image stays deployed" if self.deployed
                else "nothing is deployed yet")
        self.dashboard.emit("retry", f"{exc}: retrying in {delay:.1f}s ({kept})",
                            images=sorted(images), retry_seconds=delay)

    def _cleanup(self) -> None:
        from kodev.kube.apply import delete_objects

        assert self.kube is not None
        everything = [o for objects in self.objects.values() for o in objects]
        delete_objects(self.kube, everything, self._report_deleted, wait=True)

    def _report_deleted(self, outcome: Outcome) -> None:
        self.dashboard.emit("deleted", outcome.line(), **outcome.json())


def _container_slots(kind: WorkloadKind, workload: WorkloadRef, data: Mapping[str, Any]
                     ) -> list[tuple[ContainerSlot, str]]:
    return [(ContainerSlot(workload, c.name, c.init), c.image)
            for c in kind.containers_of(data)]


def _swap_words(swapped: Swapped) -> str:
    """What the swap did, for the event line."""
    return {
        Update.ROLLS: "image patched",
        Update.RECREATE_PODS: "image patched; its Pods are recreated",
        Update.REPLACE: "replaced with the new image (a Job's pod template is immutable)",
        Update.NEXT_RUN: "image patched; the next scheduled run uses it",
        Update.IN_PLACE: "image patched; the container restarts with it",
    }[swapped.update]


def _short(text: str) -> str:
    """The last two elements of an import path or file path, for messages."""
    parts = text.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else text
