"""``-f``/``-R``/``-l`` input handling and ``ko://`` resolution shared by resolve, apply, delete.

Steps, each a function: collect the files (:func:`collect_files`), parse them
(:func:`read_streams`), keep the documents the label selector matches
(:func:`select_documents`), check every ``ko://`` value (:func:`buildable_import_paths`),
publish them all with ONE ``Pipeline.publish`` call, and splice the references into the
original text (:func:`render_documents`, :func:`join_output`).

Decisions (where kodev and ko differ, kodev says so here):

* Output is the input text with only the ``ko://`` values replaced (see
  :mod:`kodev.yamlsub`); ko re-encodes every document.
* Files are joined with a ``---`` line, like ko, but not after the last file (so a
  single file with no references comes out byte-for-byte), and not before a file whose
  first line (after comments) already is a ``---`` marker.
* Directories contribute ``.yaml``, ``.yml`` and ``.json`` files in name order (kubectl's
  extensions; ko skips ``.yml``); ``-R`` descends into subdirectories.
* A ``List`` document that the selector matches only partly is the one case that is
  re-serialized (ko does the same): only its matching items are kept.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import yaml

from kodev.errors import BuildError, UsageError
from kodev.kube.selector import LabelSelector, parse_selector
from kodev.yamlsub import (
    KO_SCHEME,
    Document,
    KoRef,
    YamlStream,
    load_yaml,
    parse_stream,
    read_yaml_file,
    read_yaml_stream,
    starts_with_document_marker,
    substitute,
)

if TYPE_CHECKING:
    from kodev.publish import Pipeline, Published

MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "-"


@dataclass
class Selection:
    """The documents of one stream that the selector kept."""

    stream: YamlStream
    documents: list[Document]
    filtered: bool = False  # a selector was applied
    # For a partly matching List document (by document index): which items to keep.
    list_items: dict[int, list[bool]] = field(default_factory=dict)

    @property
    def refs(self) -> list[KoRef]:
        return [ref for document in self.documents for ref in document.refs]


@dataclass(frozen=True)
class ResolvedDocument:
    """One output document: its text (references substituted) and where it came from."""

    source: str
    line: int
    text: str
    first_line: int = 1  # the file's line where ``text`` begins, for messages

    def data(self) -> Any:
        """The document as Python data; an error names the line in the file."""
        return load_yaml("\n" * (self.first_line - 1) + self.text, self.source)


# --------------------------------------------------------------------------- input


def collect_files(filenames: Sequence[str], recursive: bool) -> list[str]:
    """Expand ``-f`` arguments: files as given, directories to their manifest files."""
    if not filenames:
        raise UsageError("no input: pass -f FILE, -f DIR or -f - (stdin)")
    if list(filenames).count(STDIN) > 1:
        raise UsageError("-f - (stdin) can be given only once")
    found: list[str] = []
    for name in filenames:
        if name == STDIN:
            found.append(name)
            continue
        path = Path(name)
        if path.is_dir():
            found.extend(str(p) for p in _manifests_in(path, recursive))
        elif path.exists():
            found.append(name)
        else:
            raise UsageError(f"-f {name}: no such file or directory")
    if not found:
        raise UsageError(f"no {', '.join(MANIFEST_EXTENSIONS)} files in {', '.join(filenames)}",
                         hint=None if recursive else "use -R to include subdirectories")
    return found


def _manifests_in(directory: Path, recursive: bool) -> Iterator[Path]:
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            if recursive:
                yield from _manifests_in(entry, recursive)
        elif entry.suffix in MANIFEST_EXTENSIONS:
            yield entry


def read_streams(files: Sequence[str], stdin: BinaryIO | None = None) -> list[YamlStream]:
    """Read and parse every file (``-`` is stdin) with kodev's limits for YAML (size,
    UTF-8, aliases: :mod:`kodev.yamlsub`); invalid or refused YAML names file and line."""
    streams = []
    for name in files:
        if name == STDIN:
            source = "<stdin>"
            text = read_yaml_stream(stdin or sys.stdin.buffer, source)
        else:
            source = name
            text = read_yaml_file(name)
        streams.append(parse_stream(text, source))
    return streams


# --------------------------------------------------------------------------- selector


def select_documents(streams: Sequence[YamlStream], selector: str | None) -> list[Selection]:
    """Keep the documents whose ``metadata.labels`` match ``selector`` (all without one)."""
    if not selector:
        return [Selection(s, list(s.documents)) for s in streams]
    parsed = parse_selector(selector)
    return [_select(stream, parsed) for stream in streams]


def _select(stream: YamlStream, selector: LabelSelector) -> Selection:
    selection = Selection(stream, [], filtered=True)
    for document in stream.documents:
        data = stream.data(document)
        if data is None:
            continue
        where = f"{stream.source}:{document.line}"
        _require_object(data, where)
        if _is_list(data):
            mask = [selector.matches(_labels(item, where)) for item in data["items"]]
            if not any(mask):
                continue
            if not all(mask):
                selection.list_items[document.index] = mask
        elif not selector.matches(_labels(data, where)):
            continue
        selection.documents.append(document)
    return selection


def _require_object(data: Any, where: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) \
            or not isinstance(data.get("apiVersion"), str):
        raise UsageError(f"{where}: not a Kubernetes object (no apiVersion and kind)")


def _is_list(data: dict[str, Any]) -> bool:
    return str(data["kind"]).endswith("List") and isinstance(data.get("items"), list)


def _labels(data: Any, where: str) -> dict[str, str]:
    _require_object(data, where)
    metadata = data.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


# --------------------------------------------------------------------------- ko:// references


def distinct_import_paths(refs: Sequence[KoRef]) -> list[str]:
    """Import paths in order of first appearance; an empty ``ko://`` is an error."""
    for ref in refs:
        if not ref.import_path:
            raise UsageError(f"{ref.location}: {ref.value.strip()!r} names no import path")
    return list(dict.fromkeys(ref.import_path for ref in refs))


def buildable_import_paths(pipeline: Pipeline, refs: Sequence[KoRef], *, strict: bool,
                           warn: Callable[[str], None]) -> list[str]:
    """The import paths to publish, after checking each ``ko://`` value.

    A value naming no loadable package (a typo, a path outside the module and its
    dependencies) is always an error. One naming a package that is not ``package main``
    is an error with ``--strict``; by default it is left as it is with a warning - ko's
    non-strict rule, where only strings that are buildable main packages were replaced.
    The happy path costs one ``go list`` (``Pipeline.plan``); the per-path diagnosis
    runs only when that fails.
    """
    paths = distinct_import_paths(refs)
    try:
        pipeline.plan(paths)
        return paths
    except BuildError as exc:
        failure = exc
    first_ref = {ref.import_path: ref for ref in reversed(refs)}
    buildable = []
    for path in paths:
        problem = _package_problem(pipeline, path)
        where = f"{first_ref[path].location}: {KO_SCHEME}{path}"
        if problem is None:
            buildable.append(path)
        elif problem.library and not strict:
            warn(f"{where} is {problem.reason}, not a main package: left unchanged "
                 "(--strict makes this an error)")
        else:
            raise UsageError(f"{where}: {problem.reason}",
                             hint="ko:// must name a main package of this module or its "
                                  "dependencies")
    if len(buildable) == len(paths):
        raise failure
    return buildable


@dataclass(frozen=True)
class _PackageProblem:
    reason: str
    library: bool  # the package exists but is not package main


def _package_problem(pipeline: Pipeline, path: str) -> _PackageProblem | None:
    from kodev.golang.packages import run_go_list

    try:
        pipeline.plan([path])
        return None
    except BuildError as exc:
        plan_error = exc
    try:
        listed = run_go_list([path], workdir=pipeline.workdir, environ=pipeline.environ)
    except BuildError as exc:
        return _PackageProblem(exc.message, library=False)
    names = sorted({pkg.name for pkg in listed})
    if names and "main" not in names:
        return _PackageProblem(f"package {names[0]!r}", library=True)
    return _PackageProblem(plan_error.message, library=False)


# --------------------------------------------------------------------------- output


def references_by_path(published: Sequence[Published]) -> dict[str, str]:
    return {result.pattern: result.reference for result in published}


def render_documents(selections: Sequence[Selection],
                     references: Mapping[str, str]) -> list[list[ResolvedDocument]]:
    """Per input, the kept documents' text with ``ko://`` values replaced."""
    rendered = []
    for selection in selections:
        rendered.append([_render(selection, document, references)
                         for document in selection.documents])
    return rendered


def _render(selection: Selection, document: Document,
            references: Mapping[str, str]) -> ResolvedDocument:
    stream = selection.stream
    replacements = {ref: references[ref.import_path] for ref in document.refs
                    if ref.import_path in references}
    text = substitute(stream.text, replacements, document.start, document.end)
    first_line = stream.text.count("\n", 0, document.start) + 1
    mask = selection.list_items.get(document.index)
    if mask is not None:
        text = _filtered_list(text, mask, stream.source, first_line)
        first_line = 1  # lines of the re-written List no longer match the file's
    return ResolvedDocument(stream.source, document.line, text, first_line)


def _filtered_list(text: str, mask: Sequence[bool], source: str, first_line: int) -> str:
    data = load_yaml("\n" * (first_line - 1) + text, source)
    data["items"] = [item for item, keep in zip(data["items"], mask, strict=True) if keep]
    marker = "---\n" if starts_with_document_marker(text) else ""
    return marker + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def join_output(selections: Sequence[Selection],
                rendered: Sequence[Sequence[ResolvedDocument]]) -> str:
    """All inputs as one stream: each input's kept text, files separated by ``---``."""
    pieces: list[str] = []
    for selection, documents in zip(selections, rendered, strict=True):
        text = _input_text(selection, documents)
        if not text:
            continue
        if pieces:
            if not pieces[-1].endswith("\n"):
                pieces.append("\n")
            if not starts_with_document_marker(text):
                pieces.append("---\n")
        pieces.append(text)
    return "".join(pieces)


def _input_text(selection: Selection, documents: Sequence[ResolvedDocument]) -> str:
    if not selection.stream.documents:  # only comments or blank: kept unless filtering
        return "" if selection.filtered else selection.stream.text
    return "".join(document.text for document in documents)
