"""The build-and-publish pipeline every command calls.

    patterns ─► go list (main packages, .ko.yaml builds) ─► base images (cached)
             ─► ONE go build per platform and settings group ─► kodata + binary layers
             ─► image / index (+ SBOM) ─► outputs: registry, OCI layout, tarball, refs file

``Pipeline.build`` stops after assembling images (no network beyond base manifests);
``Pipeline.publish`` adds the outputs. ``kodev build``, ``resolve``, ``apply``, ``up`` and
the Skaffold hook are thin layers over these two calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from kodev.cache import Cache, atomic_file, default_cache_dir, private_dir
from kodev.config import BuildConfig, KoConfig, load_config
from kodev.errors import BuildError, UsageError
from kodev.golang.builder import BuildOptions, BuiltBinary, GoBuilder, source_date_epoch
from kodev.golang.fingerprint import (
    FingerprintStore,
    binary_record,
    build_key,
    closure_files,
    same_package_graph,
    settled_files,
    signatures_of,
    stats_of,
)
from kodev.golang.graph import PackageGraph, enclosing_module, is_local, load_graph, module_files
from kodev.golang.packages import (
    GoPackage,
    go_binary,
    package_from_json,
    package_json,
    run_go_list,
    select_main_packages,
)
from kodev.oci.base import BaseImage, BaseLoader
from kodev.oci.caps import file_capabilities
from kodev.oci.image import AppLayers, Image, Index, append_app_layers
from kodev.oci.layers import (
    COMPRESSOR,
    Layer,
    TarBuilder,
    add_binary,
    add_kodata,
    own_file,
    stream_layer,
    write_layer,
)
from kodev.oci.mediatypes import layer_type_for
from kodev.oci.platform import (
    Platform,
    PlatformSelection,
    configured_platforms,
    host_platform_default,
    platform_from_json,
)
from kodev.oci.reference import Reference, parse_repository
from kodev.publishers.api import PublishContext, Published, Publisher, tagged
from kodev.publishers.files import LayoutPublisher, RefsFilePublisher, TarballPublisher
from kodev.publishers.multi import MultiPublisher
from kodev.publishers.registry import RegistryPublisher
from kodev.publishers.sbom import SbomPublisher

if TYPE_CHECKING:
    from kodev.registry.auth import Keychain
    from kodev.registry.pool import ClientPool

__all__ = ["Built", "Event", "Pipeline", "PublishOptions", "Published", "Target"]

NAMING_MODES = ("md5", "preserve", "base", "bare")
SBOM_FORMATS = ("spdx", "cyclonedx", "none")


@dataclass(frozen=True)
class Event:
    """A progress event; the CLI renders it as a line, a progress bar or JSON."""

    kind: str
    message: str
    import_path: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


@dataclass
class PublishOptions:
    docker_repo: str | None = None
    tags: tuple[str, ...] = ("latest",)
    tag_only: bool = False
    push: bool = True
    naming: str = "md5"
    insecure_registry: bool = False
    oci_layout_path: Path | None = None
    tarball: Path | None = None
    image_refs: Path | None = None
    sbom: str = "spdx"
    sbom_dir: Path | None = None
    platforms: tuple[str, ...] = ()
    image_labels: tuple[tuple[str, str], ...] = ()
    image_annotations: tuple[tuple[str, str], ...] = ()
    image_user: str | None = None
    jobs: int = 0
    ldflags: tuple[str, ...] = ()
    disable_optimizations: bool = False
    use_cache: bool = True
    live: bool = False  # kodev up --live: Linux images get the live supervisor as entrypoint


@dataclass
class Target:
    """One requested main package and everything decided about it before building."""

    pattern: str
    package: GoPackage
    build: BuildConfig | None
    base_name: str
    base: BaseImage | None = None

    @property
    def import_path(self) -> str:
        return self.package.import_path


@dataclass
class Built:
    target: Target
    artifact: Image | Index
    binaries: dict[Platform, BuiltBinary]


def image_repository(docker_repo: str, import_path: str, naming: str) -> str:
    """ko's naming: ``md5`` (default), ``preserve`` (-P), ``base`` (-B), ``bare``."""
    repo = docker_repo.rstrip("/")
    ip = import_path.lower()
    base = ip.rstrip("/").rsplit("/", 1)[-1]
    if naming == "preserve":
        return f"{repo}/{ip}"
    if naming == "base":
        return f"{repo}/{base}"
    if naming == "bare":
        return repo
    return f"{repo}/{base}-{hashlib.md5(import_path.encode()).hexdigest()}"


class Pipeline:
    def __init__(
        self,
        options: PublishOptions,
        *,
        workdir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        on_event: EventSink | None = None,
        config: KoConfig | None = None,
        keychain: Keychain | None = None,
    ) -> None:
        """``keychain``: where registry credentials come from (default: the docker config
        and its credential helpers, found through ``environ``)."""
        self.options = options
        self.keychain = keychain
        self.workdir = (workdir or Path.cwd()).resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.on_event = on_event or (lambda event: None)
        self.config = config or load_config(self.workdir, self.environ)
        self.cache = Cache(default_cache_dir(self.environ), enabled=options.use_cache)
        self._pool: ClientPool | None = None
        self._pool_lock = threading.Lock()
        self._bases: dict[str, BaseImage] = {}
        self._kodata_layers: dict[tuple[Path, bool, int, str], Layer] = {}
        self._live_layers: dict[tuple[str, str], Layer] = {}
        self._scratch: Path | None = None  # layer files and blobs of this run (scratch())
        self._scratch_exit = contextlib.ExitStack()
        self._scratch_lock = threading.Lock()
        self.selection = self._platform_selection()

    # ---------------------------------------------------------------- helpers

    @property
    def pool(self) -> ClientPool:
        """The registry client pool, created on first use (building to a layout needs none)."""
        with self._pool_lock:
            if self._pool is None:
                from kodev.registry.auth import default_keychain
                from kodev.registry.pool import ClientPool

                keychain = (self.keychain if self.keychain is not None
                            else default_keychain(self.environ))
                self._pool = ClientPool(insecure_registries=self._insecure_registries(),
                                        keychain=keychain)
            return self._pool

    def _insecure_registries(self) -> frozenset[str]:
        """``--insecure-registry`` names the target repository's registry only (as in
        go-containerregistry): base images and every other registry stay https, verified."""
        if not self.options.insecure_registry:
            return frozenset()
        repo = (self.options.docker_repo or self.environ.get("KO_DOCKER_REPO", "")).strip()
        return frozenset({parse_repository(repo)[0]}) if repo else frozenset()

    def close(self) -> None:
        try:
            if self._pool is not None:
                self._pool.close()
        finally:
            self._scratch_exit.close()  # this run's layer files

    def scratch(self) -> Path:
        """A private directory in KOCACHE for this run's files (built layers, and base
        blobs when the cache is off), removed by close(), or by the next kodev if this
        one is killed."""
        with self._scratch_lock:
            if self._scratch is None:
                self._scratch = self._scratch_exit.enter_context(
                    private_dir(self.cache.root, "run-"))
            return self._scratch

    def emit(self, kind: str, message: str, import_path: str | None = None, **data: Any) -> None:
        self.on_event(Event(kind, message, import_path, data))

    def _platform_selection(self) -> PlatformSelection:
        """oci/platform.configured_platforms decides; nothing configured: the host's."""
        selection = configured_platforms(self.options.platforms, self.config.default_platforms,
                                         self.environ)
        return selection or PlatformSelection((host_platform_default(),))

    # ---------------------------------------------------------------- planning

    def plan(self, patterns: Sequence[str]) -> list[Target]:
        """Resolve patterns to main packages and pick each one's .ko.yaml build and base."""
        return self._plan(patterns, with_deps=False)[0]

    def _plan(
        self, patterns: Sequence[str], *, with_deps: bool
    ) -> tuple[list[Target], list[GoPackage]]:
        patterns = _unique_patterns(patterns)
        here = [b for b in self.config.builds if (self.workdir / b.dir).resolve() == self.workdir]
        builds = self._builds_by_import_path([b for b in self.config.builds if b not in here])
        local = [p for p in patterns if p not in builds]
        here_mains = [_main_pattern(b.main) for b in here]
        # One go list answers both the requested patterns and the .ko.yaml builds here.
        listed = (
            run_go_list(
                list(dict.fromkeys([*local, *here_mains])),
                workdir=self.workdir,
                environ=self.environ,
                deps=with_deps,
            )
            if local or here_mains
            else []
        )
        for config, pkg in zip(here, _match_listed(here_mains, listed, self.workdir), strict=True):
            builds[pkg.import_path] = (config, pkg)
        packages = select_main_packages(local, listed, self.workdir)
        targets = []
        for pattern in patterns:
            build: BuildConfig | None
            if pattern in builds:
                build, package = builds[pattern]
            else:
                package = packages[pattern]
                build = builds[package.import_path][0] if package.import_path in builds else None
            targets.append(
                Target(pattern, package, build, self.config.base_image_for(package.import_path))
            )
        return targets, listed

    def _builds_by_import_path(
        self, configured: Sequence[BuildConfig]
    ) -> dict[str, tuple[BuildConfig, GoPackage]]:
        """Resolve .ko.yaml builds that live in other directories (other modules)."""
        by_dir: dict[str, list[BuildConfig]] = {}
        for build in configured:
            by_dir.setdefault(build.dir, []).append(build)
        found: dict[str, tuple[BuildConfig, GoPackage]] = {}
        for directory, builds in by_dir.items():
            base_dir = (self.workdir / directory).resolve()
            mains = [_main_pattern(b.main) for b in builds]
            try:
                listed = run_go_list(mains, workdir=base_dir, environ=self.environ)
            except BuildError as exc:
                where = self.config.path or ".ko.yaml"
                raise BuildError(
                    f"{where}: builds in {directory}: {exc.message}", output=exc.output
                ) from exc
            for build, pkg in zip(builds, _match_listed(mains, listed, base_dir), strict=True):
                found[pkg.import_path] = (build, pkg)
        return found

    # ---------------------------------------------------------------- building

    def build(self, patterns: Sequence[str]) -> list[Built]:
        """Plan, compile and assemble; nothing is compiled when nothing changed."""
        return self._assemble_all(*self.compile_targets(patterns))

    def compile_targets(
        self, patterns: Sequence[str]
    ) -> tuple[list[Target], dict[tuple[str, Platform], BuiltBinary]]:
        """Plan and compile (or find the binaries of an unchanged build), and record the
        fingerprint: a build without its image. One process at a time per fingerprint key
        (Cache.build_lock): a second one waits and then reuses the first one's binaries."""
        patterns = _unique_patterns(patterns)
        key = self.fingerprint_key(patterns)
        waited_since: list[float] = []

        def on_busy() -> bool:
            waited_since.append(time.monotonic())
            self.emit("build", "another kodev is building the same packages: waiting for it")
            return True

        with self.cache.build_lock(key, on_busy):
            return self._compile_once(patterns, key, waited_since[0] if waited_since else None)

    def compile_ahead(self, patterns: Sequence[str], ready: Callable[[], None]) -> None:
        """compile_targets for the build that will most likely come next (Skaffold's,
        once its deps call saw an edit), so that build finds its binaries recorded. Never
        waits: ``ready()`` is called as soon as this call holds the key's build lock, or
        knows it will not compile (no fingerprint key, or another kodev builds them)."""
        patterns = _unique_patterns(patterns)
        key = self.fingerprint_key(patterns)
        if key is None:
            ready()
            return
        with self.cache.build_lock(key, on_busy=lambda: False) as held:
            ready()
            if held:
                self._compile_once(patterns, key, None)

    def _compile_once(
        self, patterns: list[str], key: str | None, waited_since: float | None
    ) -> tuple[list[Target], dict[tuple[str, Platform], BuiltBinary]]:
        store = FingerprintStore(self.cache)
        record = store.load(key) if key else None
        if record is not None:
            targets, binaries = self._reuse(record)
            self._load_bases(targets)
            self.emit(
                "build",
                f"built by that kodev meanwhile ({time.monotonic() - waited_since:.2f} s): "
                "go build skipped" if waited_since is not None else
                "up to date: no source change since the last build, go build skipped",
                skipped=True,
            )
        else:
            previous = store.previous(key) if key else None
            guess = self._guess_targets(previous)
            if previous is None or guess is None:
                targets, closure = self._plan(patterns, with_deps=True)
                files: dict[str, Any] | None = closure_files(closure, self._extra_files(closure))
                self._load_bases(targets)
                binaries = self._compile(targets)
            else:
                targets, binaries, files = self._plan_while_compiling(
                    patterns, *guess, previous)
            if key and files is not None:
                store.save(
                    key,
                    files,
                    [self._target_record(t) for t in targets],
                    {
                        f"{ip}|{platform}": {
                            **binary_record(b.path, b.sha256),
                            "platform": platform.to_json(),
                        }
                        for (ip, platform), b in binaries.items()
                    },
                    signatures_of(files, previous),
                )
        return targets, binaries

    def _guess_targets(
        self, record: Mapping[str, Any] | None
    ) -> tuple[list[Target], dict[str, list[Platform]]] | None:
        """The targets (and their platforms) of the last build with this key, whose files
        changed since: what this build will most likely find, so go build can start
        before go list and the base images answer."""
        if record is None:
            return None
        try:
            targets = self._targets_of(record)
            platforms: dict[str, list[Platform]] = {}
            for name, entry in record["binaries"].items():
                platforms.setdefault(name.split("|", 1)[0], []).append(
                    platform_from_json(entry["platform"]))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return None  # a record from another kodev version or .ko.yaml: plan first
        if any(t.import_path not in platforms for t in targets):
            return None
        return targets, platforms

    def _plan_while_compiling(
        self,
        patterns: Sequence[str],
        guess: list[Target],
        guessed_platforms: Mapping[str, Sequence[Platform]],
        previous: Mapping[str, Any],
    ) -> tuple[list[Target], dict[tuple[str, Platform], BuiltBinary], dict[str, Any] | None]:
        """``go list -deps`` and ``go build`` of the guessed targets at the same time (one-line
        changes rarely change which packages are built). When go list names other targets
        than the guess, they are compiled again (go build's cache makes that cheap); go
        list's errors come first, as in a sequential build, so the result is the same.

        When the edits provably left the package graph as it was (fingerprint's
        same_package_graph: only ``.go`` files changed, none in its imports, package name,
        build constraints or embeds), go list is not run at all: its answer is the
        recorded one, and go build has both cores to itself."""
        module = enclosing_module(self.workdir)
        recorded = list(previous.get("files", {}))
        before = stats_of([*recorded, *(str(p) for p in self._extra_files([], module))])
        started = time.time_ns()
        same_graph = same_package_graph(previous, before)

        def plan() -> tuple[list[Target], list[GoPackage] | None]:
            found, closure = (guess, None) if same_graph else self._plan(patterns, with_deps=True)
            self._load_bases(found)  # a registry base: HTTP, also while go build runs
            return found, closure

        with ThreadPoolExecutor(max_workers=1) as pool:
            planned = pool.submit(plan)
            compile_error: Exception | None = None
            binaries: dict[tuple[str, Platform], BuiltBinary] = {}
            try:
                binaries = self._compile(guess, guessed_platforms)
            except Exception as exc:  # raised below, unless go list explains it first
                compile_error = exc
            targets, closure = planned.result()
        if closure is None:  # the recorded graph: the recorded files, as they were before
            # (same_package_graph found every one of them, so none is None)
            files: dict[str, Any] | None = {p: before[p] for p in recorded}
        else:
            files = settled_files(closure_files(closure, self._extra_files(closure)), before,
                                  started)
        same_platforms = all(
            self._platforms_of(t) == list(guessed_platforms.get(t.import_path, ()))
            for t in targets
        )
        if _same_targets(guess, targets) and same_platforms:
            if compile_error is not None:
                raise compile_error
            return targets, binaries, files
        return targets, self._compile(targets), files

    def _extra_files(self, closure: Sequence[GoPackage], *modules: Path | None) -> list[Path]:
        """The non-source files a build of ``closure`` depends on (``go.mod``, ``go.work``...:
        graph.module_files, the rule ``kodev up`` and ``skaffold deps`` use too), and
        ``.ko.yaml``."""
        dirs = [*modules, *(p.module_dir for p in closure if is_local(p))]
        config = [self.config.path] if self.config.path else []
        return [*sorted(module_files(dirs)), *config]

    def plan_graph(self, patterns: Sequence[str]) -> tuple[list[Target], PackageGraph]:
        """Plan, and keep the dependency graph: for callers that decide themselves what
        needs rebuilding (``kodev up``). One ``go list -deps`` for everything."""
        targets, listed = self._plan(patterns, with_deps=True)
        graph = PackageGraph(
            mains={t.pattern: t.package for t in targets},
            packages={p.import_path: p for p in listed},
            config_files=(self.config.path,) if self.config.path else (),
        )
        missing = [t for t in targets if t.import_path not in graph.packages]
        for target in missing:  # .ko.yaml builds in another module: listed on their own
            module_dir = target.package.module_dir or target.package.dir
            other = load_graph([target.import_path], workdir=module_dir, environ=self.environ)
            graph.packages.update(other.packages)
        return targets, graph

    def rebuild(self, targets: Sequence[Target]) -> list[Built]:
        """Compile and assemble already planned targets: no ``go list``, no fingerprint.
        ``go build`` itself decides what is stale (its build cache)."""
        self._load_bases(targets)
        return self._assemble_all(targets, self._compile(targets))

    def _assemble_all(
        self, targets: Sequence[Target], binaries: Mapping[tuple[str, Platform], BuiltBinary]
    ) -> list[Built]:
        # kodata layers are shared by the platforms of ONE build; a long-lived pipeline
        # (kodev up) must read kodata/ again on the next build, or an edit would be lost.
        self._kodata_layers.clear()
        built = []
        for target in targets:
            per_platform = {
                p: binaries[(target.import_path, p)] for p in self._platforms_of(target)
            }
            built.append(Built(target, self._assemble(target, per_platform), per_platform))
        return built

    def _compile(
        self,
        targets: Sequence[Target],
        platforms_of: Mapping[str, Sequence[Platform]] | None = None,
    ) -> dict[tuple[str, Platform], BuiltBinary]:
        """``platforms_of`` (by import path): platforms to build without the bases loaded."""

        def wanted(t: Target) -> list[Platform]:
            if platforms_of is not None:
                return list(platforms_of[t.import_path])
            return self._platforms_of(t)

        platforms = {p for t in targets for p in wanted(t)}
        self.emit(
            "build",
            f"go build {len(targets)} package(s) for "
            f"{', '.join(sorted(str(p) for p in platforms))}",
        )
        builder = GoBuilder(
            self.config,
            self.cache.bin_root,
            BuildOptions(
                ldflags_override=self.options.ldflags,
                disable_optimizations=self.options.disable_optimizations,
                jobs=self.options.jobs,
                environ=self.environ,
            ),
            tmp_root=self.cache.root,
        )
        return builder.build_for(
            [(t.package, t.build, wanted(t)) for t in targets], self.workdir
        )

    def fingerprint_key(self, patterns: Sequence[str]) -> str | None:
        """Everything but the module's files that decides the binaries (fingerprint.py)."""
        if not self.options.use_cache:
            return None
        settings = {
            "record": 2,  # packages kept in go list's JSON shape
            "platforms": str(self.selection),
            "ldflags": self.options.ldflags,
            "debug": self.options.disable_optimizations,
        }
        return build_key(workdir=self.workdir, patterns=patterns, config=self.config,
                         environ=self.environ, settings=settings,
                         ldflags_override=self.options.ldflags)

    def _target_record(self, target: Target) -> dict[str, Any]:
        build_index = self.config.builds.index(target.build) if target.build else None
        return {
            "pattern": target.pattern,
            "package": package_json(target.package),
            "build": build_index,
            "base": target.base_name,
        }

    def _targets_of(self, record: Mapping[str, Any]) -> list[Target]:
        return [
            Target(
                item["pattern"],
                package_from_json(item["package"]),
                self.config.builds[item["build"]] if item["build"] is not None else None,
                item["base"],
            )
            for item in record["targets"]
        ]

    def _reuse(
        self, record: Mapping[str, Any]
    ) -> tuple[list[Target], dict[tuple[str, Platform], BuiltBinary]]:
        targets = self._targets_of(record)
        binaries = {}
        for name, entry in record["binaries"].items():
            import_path = name.split("|", 1)[0]
            platform = platform_from_json(entry["platform"])
            size = int(entry["stat"][0])
            binaries[(import_path, platform)] = BuiltBinary(
                import_path, platform, Path(entry["path"]), entry["sha256"], size
            )
        return targets, binaries

    def _load_bases(self, targets: Sequence[Target]) -> None:
        names = sorted({t.base_name for t in targets} - set(self._bases))
        loader = BaseLoader(lambda: self.pool, self.cache)
        if names:
            self.emit("base", f"base image(s): {', '.join(names)}")
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            for name, base in zip(
                names, pool.map(lambda n: loader.load(n, self.selection), names), strict=True
            ):
                self._bases[name] = base
        for target in targets:
            target.base = self._bases[target.base_name]

    def _platforms_of(self, target: Target) -> list[Platform]:
        assert target.base is not None
        return [image.platform for image in target.base.images]

    def _assemble(self, target: Target, binaries: Mapping[Platform, BuiltBinary]) -> Image | Index:
        base = target.base
        assert base is not None
        user_annotations = dict(self.options.image_annotations)
        images = []
        for base_image in base.images:
            app = self._app_layers(target, base_image, binaries[base_image.platform])
            annotations = {**user_annotations, **base.annotations_for(base_image)}
            images.append(append_app_layers(base_image, app, annotations))
        if not base.is_index:
            return images[0]
        extras = [
            # ko keeps each base descriptor's platform as it is (os.version, os.features).
            {k: v for k, v in desc.items() if k in ("urls", "annotations", "platform")}
            for desc in base.descriptors
        ]
        return Index(
            media_type=base.media_type,
            images=images,
            annotations={**user_annotations, **base.index_annotations()},
            descriptor_extras=extras,
        )

    def _app_layers(self, target: Target, base: Image, binary: BuiltBinary) -> AppLayers:
        windows = base.platform.os == "windows"
        media_type = layer_type_for(base.media_type)
        epoch = source_date_epoch(self.environ)
        data_epoch = source_date_epoch(self.environ, "KO_DATA_DATE_EPOCH")
        name = target.package.binary_name + (".exe" if windows else "")
        return AppLayers(
            binary_name=name,
            import_path=target.import_path,
            kodata=self._kodata_layer(target, windows, data_epoch or 0, media_type),
            binary=self._binary_layer(binary, name, windows, media_type,
                                      () if windows or target.build is None
                                      else target.build.linux_capabilities),
            windows=windows,
            created=_rfc3339(epoch) if epoch is not None else None,
            kodata_created=_rfc3339(data_epoch) if data_epoch is not None else None,
            user=self.options.image_user,
            labels=self.options.image_labels,
            live=self._live_layer(base.platform, media_type) if self.options.live
            and not windows else None,
        )

    def _live_layer(self, platform: Platform, media_type: str) -> Layer:
        from kodev.golang.supervisor import supervisor_binary
        from kodev.oci.layers import add_live

        key = (platform.slug, media_type)
        if key not in self._live_layers:
            binary = supervisor_binary(platform, self.cache, self.environ)
            self._live_layers[key] = write_layer(
                self.scratch(), lambda tar: add_live(tar, binary.path), media_type=media_type)
        return self._live_layers[key]

    def _kodata_layer(self, target: Target, windows: bool, mtime: int, media_type: str) -> Layer:
        """Built once per package and layout, however many platforms share it."""
        key = (target.package.kodata_dir, windows, mtime, media_type)
        if key not in self._kodata_layers:
            self._kodata_layers[key] = self._make_kodata_layer(target, windows, mtime, media_type)
        return self._kodata_layers[key]

    def _make_kodata_layer(
        self, target: Target, windows: bool, mtime: int, media_type: str
    ) -> Layer:
        def fill(tar: TarBuilder) -> None:
            add_kodata(tar, target.package.kodata_dir, allowed_root=self._kodata_root(target),
                       windows=windows, live=self.options.live and not windows)

        return write_layer(self.scratch(), fill, mtime=mtime, media_type=media_type)

    def _kodata_root(self, target: Target) -> Path:
        allowed = self.environ.get("KO_DATA_PATH_ALLOWED_ROOT")
        return Path(allowed) if allowed else _git_root(target.package.dir)

    def kodata_tar(self, target: Target) -> bytes:
        """The package's kodata as a plain tar with relative names (for a live swap)."""
        from kodev.oci.layers import kodata_tar

        return kodata_tar(target.package.kodata_dir, allowed_root=self._kodata_root(target))

    def _binary_layer(
        self, binary: BuiltBinary, name: str, windows: bool, media_type: str,
        capabilities: Sequence[str] = (),
    ) -> Layer:
        """Cached by the binary's content (and its file capabilities, ``linux_capabilities``):
        an unchanged binary is not tarred or compressed again unless something needs the
        layer's bytes (a registry without it, a layout)."""
        caps = file_capabilities(capabilities)  # checked when .ko.yaml was read
        xattr = caps.xattr() if caps is not None else None
        key = hashlib.sha256(
            f"{binary.sha256}|{name}|{windows}|{media_type}|{COMPRESSOR}|"
            f"{xattr.hex() if xattr else ''}|v2".encode()
        ).hexdigest()

        def fill(tar: TarBuilder) -> None:
            add_binary(tar, binary.path, name, windows=windows, capability_xattr=xattr)

        meta = self.cache.get_meta("binary-layer", key)
        if meta is not None:
            known = Layer(digest=meta["digest"], diff_id=meta["diff_id"], size=int(meta["size"]),
                          media_type=media_type)

            def produce() -> Path:
                path, _, digest, _ = stream_layer(self.scratch(), fill)
                own_file(known, path)
                if digest != known.digest:
                    raise BuildError(
                        f"the binary layer of {binary.path} is {digest}, but KOCACHE "
                        f"recorded {known.digest}",
                        hint="run again with --no-cache, and please report it")
                return path

            known.producer = produce
            return known
        layer = write_layer(self.scratch(), fill, media_type=media_type)
        self.cache.put_meta(
            "binary-layer",
            key,
            {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size},
        )
        return layer

    def open_layer(self, layer: Layer) -> BinaryIO:
        """A layer's compressed bytes as a stream, for the layout and tarball writers: a
        base layer comes from KOCACHE or is streamed from its registry into it first."""
        if layer.local:
            return layer.open()
        return self._base_blob(layer).open("rb")

    def _base_blob(self, layer: Layer) -> Path:
        cached = self.cache.blob_file(layer.digest, layer.size)
        if cached is not None and _file_digest(cached) == layer.digest:
            return cached
        assert layer.location is not None
        target = (self.cache.blob_path(layer.digest) if self.cache.enabled
                  else self.scratch() / layer.digest.replace(":", "-"))
        client = self.pool.get(layer.location.registry)
        # The reader checks size and digest as the bytes pass: a wrong blob is never
        # renamed into place.
        with client.blob_reader(layer.location.repository, layer.digest, layer.size) as source, \
                atomic_file(target) as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return target

    # ---------------------------------------------------------------- publishing

    def publish(self, patterns: Sequence[str]) -> list[Published]:
        """Build, then publish under the options' tags."""
        docker_repo = self.docker_repo()  # fails before any build when unset
        if self.options.push:
            # Importing httpx and opening the client overlaps with go build.
            registry = parse_repository(docker_repo)[0]
            threading.Thread(target=self.pool.get, args=(registry,), daemon=True).start()
        return self.write(self.build(patterns))

    def write(
        self, built: Sequence[Built], *, tags: Sequence[str] | None = None
    ) -> list[Published]:
        """Publish what ``build``/``rebuild`` made, under ``tags`` (default: the options')."""
        chosen = tuple(t for t in (self.options.tags if tags is None else tags) if t)
        docker_repo = self.docker_repo()
        results = [self._published(item, docker_repo, chosen) for item in built]
        self.publisher(chosen).publish(results)
        return results

    def docker_repo(self) -> str:
        """``KO_DOCKER_REPO`` (or ``--docker-repo``); ``ko.local`` when nothing is pushed."""
        repo = (self.options.docker_repo or self.environ.get("KO_DOCKER_REPO", "")).strip()
        if repo:
            return repo
        if self.options.push:
            raise UsageError(
                "KO_DOCKER_REPO environment variable is unset",
                hint="export KO_DOCKER_REPO=<registry>/<path> (for a local registry: "
                "localhost:5000), or use --push=false",
            )
        return "ko.local"

    def publisher(self, tags: Sequence[str]) -> MultiPublisher:
        """The options' publishers in ko's order (layout, tarball, registry: the last
        reference wins); SBOMs are made first and the refs file is written last."""
        options = self.options
        context = PublishContext(emit=self.emit, open_layer=self.open_layer,
                                 clients=lambda: self.pool, cache=self.cache,
                                 go=go_binary(self.environ))
        chain: list[Publisher] = []
        if options.sbom != "none":
            chain.append(SbomPublisher(context, options.sbom, options.sbom_dir))
        if options.oci_layout_path:
            chain.append(LayoutPublisher(context, Path(options.oci_layout_path), tags,
                                         tag_only=options.tag_only))
        if options.tarball:
            chain.append(TarballPublisher(context, Path(options.tarball), tags,
                                          tag_only=options.tag_only))
        if options.push:
            chain.append(RegistryPublisher(context, tags, tag_only=options.tag_only,
                                           jobs=options.jobs or 4,
                                           sbom_media_type=_sbom_media_type(options.sbom)))
        if options.image_refs:
            chain.append(RefsFilePublisher(Path(options.image_refs)))
        return MultiPublisher(*chain)

    def _published(self, item: Built, docker_repo: str, tags: Sequence[str]) -> Published:
        target = item.target
        repository = target_reference(docker_repo, target.import_path, self.options.naming).name
        base = target.base
        assert base is not None
        result = Published(
            pattern=target.pattern,
            import_path=target.import_path,
            reference=f"{repository}@{item.artifact.digest}",
            digest=item.artifact.digest,
            repository=repository,
            artifact=item.artifact,
            binaries=item.binaries,
            binary_name=target.package.binary_name,
            base_name=base.name,
            base_digest=base.digest,
        )
        if self.options.tag_only:
            result.reference = tagged(result, tags)
        return result


def _sbom_media_type(kind: str) -> str | None:
    if kind == "none":
        return None
    from kodev.golang.sbom import SBOM_MEDIA_TYPES  # loaded only when SBOMs are made

    return SBOM_MEDIA_TYPES[kind]


def _unique_patterns(patterns: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(patterns)) or ["."]


def _main_pattern(main: str) -> str:
    if main.endswith(".go"):
        main = os.path.dirname(main) or "."
    if main in (".", "") or main.startswith(("./", "../")) or main.startswith("/"):
        return main or "."
    return main


def _match_listed(
    mains: Sequence[str], listed: Sequence[GoPackage], base_dir: Path
) -> list[GoPackage]:
    out = []
    for main in mains:
        wanted = (base_dir / main).resolve() if main.startswith((".", "/")) else None
        match = next(
            (
                p
                for p in listed
                if p.import_path == main or (wanted is not None and p.dir.resolve() == wanted)
            ),
            None,
        )
        if match is None:
            raise BuildError(f"build main {main!r} in {base_dir} is not a package")
        out.append(match)
    return out


def _same_targets(guess: Sequence[Target], found: Sequence[Target]) -> bool:
    """Whether go build of ``guess`` built what ``found`` asks for: the same packages
    (by import path, name and directory) with the same .ko.yaml builds and bases."""
    def identity(t: Target) -> tuple[Any, ...]:
        p = t.package
        return (t.pattern, p.import_path, p.name, str(p.dir), id(t.build), t.base_name)

    return [identity(t) for t in guess] == [identity(t) for t in found]


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git_root(start: Path) -> Path:
    """The enclosing git work tree (kodata symlinks may point anywhere inside it); outside
    one, the package's own directory (its real path: kodata may not lead out of it)."""
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start.resolve()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def target_reference(docker_repo: str, import_path: str, naming: str) -> Reference:
    name = image_repository(docker_repo, import_path, naming)
    registry, path = parse_repository(name)
    if not path:
        raise UsageError(
            f"KO_DOCKER_REPO={docker_repo} names no repository for --bare",
            hint="set KO_DOCKER_REPO to registry/repository",
        )
    return Reference(registry, path)
