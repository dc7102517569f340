"""kodev's import graph has no cycle.

Every ``kodev`` module is parsed with ``ast`` (nothing is imported) and every import of
another kodev module becomes an edge, wherever it is written:

- module level, and inside functions and methods (a deferred import still runs, only
  later: a cycle through it is a cycle, just hidden until that function is called);
- inside ``if TYPE_CHECKING:`` blocks too. Such an import never runs, but a cycle through
  it is still two modules that each need the other to be understood; the publishers
  (``kodev/publishers``) were split out precisely to end one of those.

Not counted: the implicit import of a module's parent package (``kodev.cli.build``
runs ``kodev/cli/__init__.py`` first): a package importing its own submodules is how
packages are built, not a cycle between two steps.

``from kodev.oci import image`` is an edge to ``kodev.oci.image`` (the submodule), and
``from kodev.oci.image import Image`` one to ``kodev.oci.image``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kodev

ROOT = Path(kodev.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The kodev modules ``name`` imports anywhere in its source (see the module docstring)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_known(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else _known(base, modules))
    found.discard("")
    found.discard(name)
    return found


def _known(dotted: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``dotted`` that is a kodev module ('' for anything else)."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return ""


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan),
    each printed as a path that returns to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, set(c)) for c in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle in {sorted(component)}")


def test_the_walker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walker itself: module level, in a function, under TYPE_CHECKING, relative."""
    modules = {"kodev.a": tmp_path / "a.py", "kodev.b": tmp_path / "b.py",
               "kodev.c": tmp_path / "c.py", "kodev.d": tmp_path / "d.py",
               "kodev.e": tmp_path / "e.py"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "import kodev.b\n"
        "if TYPE_CHECKING:\n    from kodev.c import X\n"
        "def f():\n    from kodev import d\n"
        "class K:\n    def m(self):\n        from .e import Y\n"
        "import json\n"
    )
    (tmp_path / "a.py").write_text(source)
    assert imports_of("kodev.a", tmp_path / "a.py", modules) == {
        "kodev.b", "kodev.c", "kodev.d", "kodev.e"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_kodev_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "kodev.publish" in graph and "kodev.cli.build" in graph  # the walk found kodev
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
