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
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import DocumentEndEvent, DocumentStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kodev.errors import UsageError

KO_SCHEME = "ko://"
_STR_TAG = "tag:yaml.org,2002:str"
# What a reference kodev prints may contain and still be written as a plain scalar.
_PLAIN_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_DOUBLE_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


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
        constructor = yaml.SafeLoader("")
        try:
            return constructor.construct_document(document.node)
        except yaml.YAMLError as exc:
            raise _yaml_usage_error(self.source, exc) from exc


class _MarkingLoader(yaml.SafeLoader):
    """A SafeLoader that also records each document's start/end events (their marks)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.boundaries: list[tuple[DocumentStartEvent, DocumentEndEvent, Node | None]] = []

    def compose_document(self) -> Node | None:
        next_event: Any = self.get_event
        start = next_event()
        node = self.compose_node(None, None)  # type: ignore[arg-type]
        end = next_event()
        self.anchors = {}
        self.boundaries.append((start, end, node))
        return node


def parse_stream(text: str, source: str) -> YamlStream:
    """Parse ``text`` into documents with their segments and ``ko://`` values.

    Raises UsageError naming ``source`` and the line for invalid YAML.
    """
    loader = _MarkingLoader(text)
    try:
        while loader.check_node():
            loader.get_node()
    except yaml.YAMLError as exc:
        raise _yaml_usage_error(source, exc) from exc
    finally:
        loader.dispose()
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


def _yaml_usage_error(source: str, exc: yaml.YAMLError) -> UsageError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
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
