"""Find ``ko://`` string values in YAML text and replace them without re-serializing.

ko decodes manifests into ``yaml.Node`` trees and encodes them again, which loses
comments, key order quirks and quoting. kodev instead parses with PyYAML's composer
only to *locate* things: every scalar node carries start/end marks (character offsets
into the text), so a substitution is a splice of the original text. Everything that is
not a ``ko://`` value - comments, blank lines, ``---`` markers, other documents - comes
out exactly as it went in.

A stream is cut into *segments*, one per document, that concatenate back to the whole
text: a document's segment starts at the beginning of the line of its ``---`` marker
(or its first token) and runs to the start of the next one. Leading comments belong to
the first document, trailing ones to the last.

This module is also **the one place kodev reads YAML that users (or clusters) give it**:
``.ko.yaml``, manifests (files and stdin), kubeconfig's current context and the cluster's
local-registry ConfigMap all go through :func:`read_yaml_file` / :func:`decode_yaml`
and :class:`SafeYamlLoader`. Hostile input fails fast with exit code 2 and one line
naming the file:

* at most :data:`MAX_YAML_BYTES` (10 MiB) per file or stdin, decoded strictly as UTF-8;
* collections nested at most :data:`MAX_YAML_DEPTH` (100) levels deep;
* an alias inside the node its anchor names (``&a [*a]``) is refused: the data would
  contain itself;
* aliases may not multiply the data: Go's ``gopkg.in/yaml.v3`` rule (what ko and
  kubectl decode with), counted on the composed node graph without expanding it, per
  document and over the whole stream - so a few hundred bytes of nested aliases (an
  "alias bomb") is refused before anything walks or serialises it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.events import AliasEvent, DocumentEndEvent, DocumentStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kodev.errors import UsageError

KO_SCHEME = "ko://"
_STR_TAG = "tag:yaml.org,2002:str"
# What a reference kodev prints may contain and still be written as a plain scalar.
_PLAIN_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_DOUBLE_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}

MAX_YAML_BYTES = 10 * 1024 * 1024  # per file, or stdin
MAX_YAML_DEPTH = 100  # nested nodes; Kubernetes objects need far fewer
# gopkg.in/yaml.v3's alias rule (decode.go, allowedAliasRatio): up to 99% of the nodes of
# a small document may come from alias expansion, sliding down to 10% for 4M nodes.
_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000
_SIZE_CLAMP = 1 << 62  # expanded sizes are capped so that a bomb never makes huge ints


@dataclass(frozen=True)
class KoRef:
    """One ``ko://`` string value: where its text is and what it says."""

    source: str
    start: int  # offset of the scalar's text (after any &anchor / !tag)
    end: int
    style: str | None  # None (plain), "'", '"', "|" or ">"
    value: str
    line: int  # 1-based, for messages
    column: int

    @property
    def import_path(self) -> str:
        return self.value.strip()[len(KO_SCHEME):]

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"


@dataclass
class Document:
    """One YAML document of a stream: its text segment, parsed node and ``ko://`` values."""

    index: int
    start: int
    end: int
    node: Node | None
    refs: list[KoRef] = field(default_factory=list)

    @property
    def line(self) -> int:
        """The 1-based line where the document's content begins."""
        return self.node.start_mark.line + 1 if self.node is not None else 1


@dataclass
class YamlStream:
    """A file (or stdin) as text plus the documents found in it."""

    source: str
    text: str
    documents: list[Document]

    def segment(self, document: Document) -> str:
        return self.text[document.start:document.end]

    def data(self, document: Document) -> Any:
        """The document as Python data (dicts, lists, scalars), as ``yaml.safe_load`` gives."""
        if document.node is None:
            return None
        return construct_yaml(document.node, self.source)


# --------------------------------------------------------------------------- reading safely


class YamlLimitError(yaml.MarkedYAMLError):
    """YAML that is well-formed but refused: recursive, too deep, or an alias bomb."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


def decode_yaml(raw: bytes, source: str) -> str:
    """``raw`` as text: at most :data:`MAX_YAML_BYTES`, strictly UTF-8 (UsageError else)."""
    if len(raw) > MAX_YAML_BYTES:
        raise UsageError(f"{source}: larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB, "
                         "kodev's limit for a YAML file",
                         hint="is it the right file? Split a large manifest into several")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{source}:{line}: not UTF-8 text (byte {exc.start})",
                         hint="save the file as UTF-8") from exc


def read_yaml_file(path: str | Path, source: str | None = None) -> str:
    """A YAML file's text; reads at most one byte more than the limit."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode_yaml(raw, source or str(path))


def read_yaml_stream(stream: BinaryIO, source: str) -> str:
    """Like :func:`read_yaml_file` for an open binary stream (stdin)."""
    return decode_yaml(stream.read(MAX_YAML_BYTES + 1), source)


class SafeYamlLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with kodev's limits (see the module docstring), checked while
    composing: the node graph is never expanded to count it."""

    def __init__(self, text: str, source: str = "<yaml>") -> None:
        super().__init__(text)
        self.source = source
        self._depth = 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, int] = {}  # id(node) -> nodes once aliases are expanded
        self._written = 0  # nodes of the current document, aliases not expanded
        self._stream_sizes = (0, 0)  # (expanded, written) of the documents before

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        events: Any = self  # PyYAML's event methods have no type hints
        if self.check_event(AliasEvent):
            event = events.peek_event()
            if event.anchor in self._open_anchors:
                raise YamlLimitError(
                    f"the alias *{event.anchor} is inside the node &{event.anchor} names, "
                    "so the data would contain itself", event.start_mark,
                    "an alias may only repeat a node that is complete")
            return super().compose_node(parent, index)
        event = events.peek_event()
        if self._depth >= MAX_YAML_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_YAML_DEPTH} levels deep",
                                 event.start_mark, "flatten the data")
        anchor = event.anchor
        self._depth += 1
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        self._written += 1
        sizes = self._sizes
        if isinstance(node, MappingNode):
            size = 1 + sum(sizes[id(k)] + sizes[id(v)] for k, v in node.value)
        elif isinstance(node, SequenceNode):
            size = 1 + sum(sizes[id(item)] for item in node.value)
        else:
            size = 1
        sizes[id(node)] = min(size, _SIZE_CLAMP)
        return node

    def compose_document(self) -> Node | None:
        events: Any = self
        start = events.get_event()
        node = self.compose_node(None, None)
        end = events.get_event()
        self.anchors = {}
        self._document_composed(start, end, node)
        return node

    def _document_composed(self, start: DocumentStartEvent, end: DocumentEndEvent,
                           node: Node | None) -> None:
        """Check the alias rule for this document and for the stream so far."""
        assert node is not None  # an empty document is a null scalar
        expanded, written = self._sizes[id(node)], self._written
        self._sizes, self._written = {}, 0
        _check_aliasing(expanded, written, node.start_mark, "the document")
        before_expanded, before_written = self._stream_sizes
        self._stream_sizes = (before_expanded + expanded, before_written + written)
        _check_aliasing(*self._stream_sizes, node.start_mark, "the documents up to here")

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:  # int() digit limit, a date like 2024-02-30, ...
            raise yaml.constructor.ConstructorError(
                None, None, str(exc).split(";")[0], node.start_mark) from exc


def _check_aliasing(expanded: int, written: int, mark: Any, what: str) -> None:
    aliased = expanded - written
    if aliased <= 100 or expanded <= 1000:
        return
    if expanded <= _ALIAS_RATIO_LOW:
        allowed = 0.99
    elif expanded >= _ALIAS_RATIO_HIGH:
        allowed = 0.10
    else:
        allowed = 0.99 - 0.89 * (expanded - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH
                                                                 - _ALIAS_RATIO_LOW)
    if aliased / expanded > allowed:
        raise YamlLimitError(
            f"aliases expand {what} from {written:,} written nodes to "
            f"{'more than ' if expanded >= _SIZE_CLAMP else ''}{expanded:,} (an alias bomb)",
            mark, "kodev allows as much aliasing as ko and kubectl do")


def _parse(loader: SafeYamlLoader) -> list[Node | None]:
    """All documents' nodes; YAML errors become UsageError naming the source."""
    try:
        nodes = []
        while loader.check_node():
            nodes.append(loader.get_node())
        return nodes
    except yaml.YAMLError as exc:
        raise _yaml_usage_error(loader.source, exc, loader) from exc
    finally:
        loader.dispose()


def _loader(text: str, source: str, cls: type[SafeYamlLoader] = SafeYamlLoader
            ) -> SafeYamlLoader:
    try:
        return cls(text, source)
    except yaml.YAMLError as exc:  # the reader checks every character up front
        raise _yaml_usage_error(source, exc, text=text) from exc


def compose_yaml(text: str, source: str) -> Node | None:
    """The node of a single-document stream (None when it is empty)."""
    nodes = [node for node in _parse(_loader(text, source)) if node is not None]
    if len(nodes) > 1:
        raise UsageError(f"{source}:{nodes[1].start_mark.line + 1}: expected one YAML "
                         "document, found several")
    return nodes[0] if nodes else None


def construct_yaml(node: Node, source: str) -> Any:
    """A composed node as Python data, as ``yaml.safe_load`` gives."""
    constructor = SafeYamlLoader("", source)
    try:
        return constructor.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_usage_error(source, exc) from exc


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with kodev's limits: a single document's data, or None."""
    node = compose_yaml(text, source)
    return None if node is None else construct_yaml(node, source)


class _MarkingLoader(SafeYamlLoader):
    """A SafeYamlLoader that also records each document's start/end events (their marks)."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text, source)
        self.boundaries: list[tuple[DocumentStartEvent, DocumentEndEvent, Node | None]] = []

    def _document_composed(self, start: DocumentStartEvent, end: DocumentEndEvent,
                           node: Node | None) -> None:
        super()._document_composed(start, end, node)
        self.boundaries.append((start, end, node))


def parse_stream(text: str, source: str) -> YamlStream:
    """Parse ``text`` into documents with their segments and ``ko://`` values.

    Raises UsageError naming ``source`` and the line for invalid or refused YAML.
    """
    loader = _loader(text, source, _MarkingLoader)
    assert isinstance(loader, _MarkingLoader)
    _parse(loader)
    documents = _documents(text, loader.boundaries)
    for document in documents:
        if document.node is not None:
            document.refs = list(_ko_refs(text, source, document.node))
    return YamlStream(source, text, documents)


def _documents(text: str, boundaries: Sequence[tuple[DocumentStartEvent, DocumentEndEvent,
                                                       Node | None]]) -> list[Document]:
    if not boundaries:
        return []
    starts = [0] + [_line_start(text, _index(start.start_mark)) for start, _, _ in boundaries[1:]]
    ends = [*starts[1:], len(text)]
    documents = []
    for index, ((_, _, node), start, end) in enumerate(zip(boundaries, starts, ends, strict=True)):
        empty = isinstance(node, ScalarNode) and node.tag.endswith(":null") and not node.value
        documents.append(Document(index, start, end, None if empty else node))
    return documents


def _index(mark: Any) -> int:
    return int(mark.index)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _yaml_usage_error(source: str, exc: yaml.YAMLError, loader: Any = None,
                      text: str | None = None) -> UsageError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        text = text if text is not None else str(getattr(loader, "buffer", ""))
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return UsageError(f"{source}:{line}:{column}: invalid YAML: control character "
                          f"U+{int(exc.character):04X} is not allowed")
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, YamlLimitError):
        return UsageError(f"{where}: refused: {problem}", hint=exc.hint)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    return UsageError(f"{where}: invalid YAML: {detail}")


# --------------------------------------------------------------------------- finding ko:// values


def _ko_refs(text: str, source: str, root: Node) -> Iterator[KoRef]:
    """Every string *value* (mapping values, sequence items) starting with ``ko://``.

    Mapping keys are names, never images, so they are not considered. An aliased node is
    reported once: replacing the anchored text changes every alias with it.
    """
    seen: set[int] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            stack.extend(value for _, value in reversed(node.value))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, ScalarNode) and _is_ko_string(node):
            start = _content_start(text, node.start_mark.index, node.end_mark.index)
            yield KoRef(source, start, node.end_mark.index, node.style, node.value,
                        node.start_mark.line + 1, node.start_mark.column + 1)


def _is_ko_string(node: ScalarNode) -> bool:
    return node.tag == _STR_TAG and node.value.strip().startswith(KO_SCHEME)


def _content_start(text: str, start: int, end: int) -> int:
    """Skip a node's ``&anchor`` / ``!tag`` properties (and comments after them).

    PyYAML's node start mark is where the properties begin, not the scalar itself.
    """
    index = start
    while index < end and text[index] in "&!":
        while index < end and not text[index].isspace():
            index += 1
        while index < end:
            if text[index].isspace():
                index += 1
            elif text[index] == "#":
                newline = text.find("\n", index, end)
                index = end if newline < 0 else newline
            else:
                break
    return index


# --------------------------------------------------------------------------- substitution


def substitute(text: str, replacements: Mapping[KoRef, str], start: int = 0,
               end: int | None = None) -> str:
    """``text[start:end]`` with each ``ko://`` value in that range replaced by its
    reference, written in the value's own style (plain, quoted, block)."""
    end = len(text) if end is None else end
    pieces = []
    position = start
    for ref in sorted(replacements, key=lambda r: r.start):
        if not start <= ref.start < end:
            continue
        cut_start, cut_end, new_text = _replacement(text, ref, replacements[ref])
        pieces.append(text[position:cut_start])
        pieces.append(new_text)
        position = cut_end
    pieces.append(text[position:end])
    return "".join(pieces)


def _replacement(text: str, ref: KoRef, reference: str) -> tuple[int, int, str]:
    """The splice (start, end, new text) that writes ``reference`` in ``ref``'s style."""
    if ref.style == "'":
        return ref.start, ref.end, "'" + reference.replace("'", "''") + "'"
    if ref.style == '"':
        return ref.start, ref.end, _double_quoted(reference)
    if ref.style in ("|", ">"):
        return _block_replacement(text, ref, reference)
    if text[ref.start:ref.end] != ref.value:
        raise _unsupported(ref)
    plain = reference if _PLAIN_SAFE.fullmatch(reference) else _double_quoted(reference)
    return ref.start, ref.end, plain


def _block_replacement(text: str, ref: KoRef, reference: str) -> tuple[int, int, str]:
    """In a ``|``/``>`` block scalar, replace the path and switch to strip chomping (``-``),
    so the value is the reference without the block's trailing newline."""
    raw = text[ref.start:ref.end]
    header_end = raw.find("\n")
    wanted = ref.value.strip()
    offset = raw.find(wanted, header_end)
    if header_end < 0 or offset < 0 or ref.value.lstrip() != ref.value:
        raise _unsupported(ref)
    indicators = re.match(r"[|>][0-9+-]{0,2}", raw)
    assert indicators is not None
    header = raw[0] + "".join(c for c in indicators.group()[1:] if c.isdigit()) + "-"
    new_text = header + raw[indicators.end():offset] + reference
    return ref.start, ref.start + offset + len(wanted), new_text


def _unsupported(ref: KoRef) -> UsageError:
    return UsageError(f"{ref.location}: cannot substitute {ref.value.strip()}: write it on one "
                      "line as a plain or quoted string")


def _double_quoted(value: str) -> str:
    escaped = "".join(_DOUBLE_QUOTE_ESCAPES.get(ch, ch) if ch >= " " or ch in "\n\t\r"
                      else f"\\x{ord(ch):02x}" for ch in value)
    return f'"{escaped}"'


def starts_with_document_marker(text: str) -> bool:
    """Whether the first line that is not blank or a comment is a ``---`` marker."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        return line.startswith("---") and (len(line) == 3 or line[3].isspace())
    return False
