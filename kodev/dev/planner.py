"""From a batch of changed files to the work it needs: which images to rebuild, whether
the package graph must be read again, which YAML files to re-apply.

Pure logic over the :class:`~kodev.golang.graph.PackageGraph`; the loop runs the plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kodev.golang.graph import MODULE_FILE_NAMES, PackageGraph, import_signature


@dataclass
class Plan:
    images: set[str] = field(default_factory=set)  # import paths to rebuild
    refresh_graph: bool = False  # go list -deps again (imports, files or go.mod changed)
    reload_config: bool = False  # .ko.yaml changed: everything is rebuilt
    manifests: set[Path] = field(default_factory=set)  # YAML files to re-apply
    ignored: set[Path] = field(default_factory=set)  # nothing depends on these

    def __bool__(self) -> bool:
        return bool(self.images or self.refresh_graph or self.reload_config or self.manifests)


class ChangePlanner:
    """Remembers each Go file's imports (and build/embed lines) so that an ordinary edit
    does not need ``go list``, and an import change does."""

    def __init__(self, graph: PackageGraph, manifests: Iterable[Path],
                 config_path: Path | None) -> None:
        self.manifests = {p.resolve() for p in manifests}
        self.config_path = config_path.resolve() if config_path else None
        self._signatures: dict[Path, tuple[str, ...] | None] = {}
        self.use_graph(graph)

    def use_graph(self, graph: PackageGraph) -> None:
        self.graph = graph
        for ip in graph.main_import_paths:
            for path in graph.files_of(ip):
                if path.suffix == ".go" and path not in self._signatures:
                    self._signatures[path] = _signature(path)

    def plan(self, paths: Iterable[Path]) -> Plan:
        plan = Plan()
        for path in paths:
            self._plan_one(path, plan)
        return plan

    def _plan_one(self, path: Path, plan: Plan) -> None:
        if path in self.manifests:
            plan.manifests.add(path)
            return
        if self.config_path is not None and path == self.config_path:
            plan.reload_config = True
            return
        affected = self.graph.affected_by(path)
        if affected:
            plan.images |= affected
            if path.name in MODULE_FILE_NAMES or not path.exists():
                plan.refresh_graph = True  # go.mod changed, or a source file is gone
            elif path.suffix == ".go" and self._signature_changed(path):
                plan.refresh_graph = True
        elif self.graph.may_join_closure(path) and path.exists():
            plan.refresh_graph = True  # a new file in a package (or next to embeds)
        else:
            plan.ignored.add(path)

    def _signature_changed(self, path: Path) -> bool:
        new = _signature(path)
        old = self._signatures.get(path)
        self._signatures[path] = new
        return new != old

    def affected_after_refresh(self, paths: Iterable[Path]) -> set[str]:
        """With the new graph: the images the batch's files belong to now."""
        return {ip for path in paths for ip in self.graph.affected_by(path)}


def _signature(path: Path) -> tuple[str, ...] | None:
    try:
        return import_signature(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
