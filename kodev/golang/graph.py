"""Which files each ``main`` package's image depends on, from ``go list -deps``.

A binary depends on the module-local source files (``GoFiles``, ``CgoFiles``,
``EmbedFiles``) of every package in its dependency closure; its image also depends on
the main package's ``kodata/`` tree; and all of them depend on ``go.mod``, ``go.sum``,
``go.work`` and ``.ko.yaml``. Packages from the module cache are immutable (their
version is in ``go.sum``), and test files are never part of a binary.

``kodev up`` maps each saved file to the images it affects with this graph, and
``kodev skaffold deps`` prints one main package's file list from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kodev.golang.packages import GoPackage, run_go_list, select_main_packages

# Every file module_files may name (a module's, or a workspace's beside its go.work).
MODULE_FILE_NAMES = ("go.mod", "go.sum", "go.work", "go.work.sum", "vendor/modules.txt")
# Files go build compiles or links besides .go files (packages.py lists them per package).
COMPILED_SUFFIXES = frozenset((
    ".go", ".s", ".S", ".sx", ".h", ".hh", ".hpp", ".hxx", ".c", ".cc", ".cpp", ".cxx", ".m",
    ".f", ".F", ".for", ".f90", ".syso", ".swig", ".swigcxx",
))


@dataclass
class PackageGraph:
    """The main packages asked for, their closures and the files those are built from."""

    mains: dict[str, GoPackage]  # requested pattern -> main package
    packages: dict[str, GoPackage]  # import path -> every listed package
    config_files: tuple[Path, ...] = ()  # .ko.yaml
    _files: dict[str, frozenset[Path]] = field(default_factory=dict, repr=False)

    def local_closure(self, import_path: str) -> list[GoPackage]:
        """The module-local packages ``import_path`` is built from, itself included."""
        main = self.packages[import_path]
        members = [self.packages[d] for d in main.deps if d in self.packages]
        return [p for p in (*members, main) if is_local(p)]

    def files_of(self, import_path: str) -> frozenset[Path]:
        """Every file whose change can change this main package's image."""
        if import_path not in self._files:
            files: set[Path] = set(self.config_files)
            closure = self.local_closure(import_path)
            for pkg in closure:
                files.update(pkg.source_files())
            main = self.packages[import_path]
            files.update(kodata_files(main))
            files.update(module_files(p.module_dir for p in closure))
            self._files[import_path] = frozenset(files)
        return self._files[import_path]

    def package_dirs_of(self, import_path: str) -> frozenset[Path]:
        return frozenset(p.dir for p in self.local_closure(import_path))

    @property
    def main_import_paths(self) -> list[str]:
        return list(dict.fromkeys(p.import_path for p in self.mains.values()))

    def affected_by(self, path: Path) -> set[str]:
        """The main packages (import paths) whose image a change to ``path`` can change."""
        return {ip for ip in self.main_import_paths if path in self.files_of(ip)}

    def watched_roots(self) -> set[Path]:
        """Directories to watch: the module roots of every local package."""
        roots: set[Path] = set()
        for ip in self.main_import_paths:
            for pkg in self.local_closure(ip):
                roots.add(pkg.module_dir or pkg.dir)
        roots.update(p.parent for p in self.config_files)
        return roots

    def may_join_closure(self, path: Path) -> bool:
        """A file not in any closure that could enter one: a new or newly included .go
        (or assembly, C, .syso...) file in a closure package's directory, or a new file
        next to embedded ones."""
        if path.suffix not in COMPILED_SUFFIXES or path.name.endswith("_test.go"):
            return any(
                self.packages[ip].embed_files and path.is_relative_to(d)
                for ip in self.main_import_paths
                for d in self.package_dirs_of(ip)
            )
        return any(path.parent in self.package_dirs_of(ip) for ip in self.main_import_paths)


def is_local(pkg: GoPackage) -> bool:
    """Editable source: in a module on disk, not the standard library or module cache."""
    return not pkg.standard and pkg.module_dir is not None and not pkg.in_module_cache


def kodata_files(main: GoPackage) -> list[Path]:
    root = main.kodata_dir
    if not root.is_dir():
        return []
    return [p for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()]


def module_files(module_dirs: Iterable[Path | None]) -> set[Path]:
    """The files besides sources that decide a build of packages in ``module_dirs``, the
    one answer for ``kodev up``, ``kodev skaffold deps`` and the build fingerprint:

    - each module's own ``go.mod``, ``go.sum`` and ``vendor/modules.txt``;
    - the ``go.work`` go finds for it, looking upwards from the module to the filesystem
      root as go does (``GOWORK`` aside), with ``go.work.sum`` and the workspace's
      ``vendor/modules.txt`` beside it.

    Nothing else on the way up counts: a parent module's ``go.mod`` (a nested module is a
    module of its own), ``testdata`` and ``vendor`` trees are no part of the build.
    """
    found: set[Path] = set()
    for module_dir in {d for d in module_dirs if d is not None}:
        found.update(_existing(module_dir, "go.mod", "go.sum", "vendor/modules.txt"))
        for directory in (module_dir, *module_dir.parents):
            if (directory / "go.work").is_file():
                found.update(_existing(directory, *MODULE_FILE_NAMES[2:]))
                break
    return found


def enclosing_module(directory: Path) -> Path | None:
    """The module directory go uses for ``directory``: the nearest with a ``go.mod``."""
    for candidate in (directory, *directory.parents):
        if (candidate / "go.mod").is_file():
            return candidate
    return None


def _existing(directory: Path, *names: str) -> list[Path]:
    return [directory / name for name in names if (directory / name).is_file()]


def load_graph(
    patterns: Sequence[str],
    *,
    workdir: Path,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> PackageGraph:
    """ONE ``go list -deps`` for all ``patterns`` (import paths or ./dirs of mains)."""
    listed = run_go_list(list(dict.fromkeys(patterns)), workdir=workdir, deps=True,
                         environ=environ)
    mains = select_main_packages(patterns, listed, workdir)
    return PackageGraph(
        mains=mains,
        packages={p.import_path: p for p in listed},
        config_files=(config_path,) if config_path is not None else (),
    )


_IMPORT_BLOCK = re.compile(r"^import\s*\((.*?)^\)", re.M | re.S)
_IMPORT_LINE = re.compile(r'^import\s+(?:[\w.]+\s+)?"([^"]+)"', re.M)
_QUOTED = re.compile(r'"([^"]+)"')
_BUILD_LINE = re.compile(r"^//(?:go:build |\s*\+build ).*$", re.M)
_EMBED_LINE = re.compile(r"^//go:embed .*$", re.M)


def import_signature(source: str) -> tuple[str, ...]:
    """What decides a file's place in the package graph: its imports, build constraints
    and embed patterns. If this is unchanged after a save, the graph is unchanged."""
    header = source.split("\nfunc ", 1)[0]
    imports = {m for block in _IMPORT_BLOCK.findall(header) for m in _QUOTED.findall(block)}
    imports.update(_IMPORT_LINE.findall(header))
    package = re.search(r"^package\s+(\w+)", source, re.M)
    return (
        package.group(1) if package else "",
        *sorted(imports),
        *_BUILD_LINE.findall(header),
        *_EMBED_LINE.findall(source),
    )
