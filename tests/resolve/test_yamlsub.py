"""Byte-preserving ko:// substitution on tricky YAML (no Go, no registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kodev.errors import UsageError
from kodev.yamlsub import (
    MAX_YAML_BYTES,
    load_yaml,
    parse_stream,
    read_yaml_file,
    starts_with_document_marker,
    substitute,
)

REF = "127.0.0.1:5000/demo/app-0123@sha256:" + "ab" * 32


def resolve_text(text: str, references: dict[str, str] | None = None) -> str:
    stream = parse_stream(text, "test.yaml")
    refs = [ref for document in stream.documents for ref in document.refs]
    table = references or {}
    return substitute(text, {ref: table.get(ref.import_path, REF) for ref in refs})


def replace_ko(data: Any) -> Any:
    """What the data must look like after resolving: every ko:// string value is REF."""
    if isinstance(data, dict):
        return {k: replace_ko(v) for k, v in data.items()}
    if isinstance(data, list):
        return [replace_ko(v) for v in data]
    if isinstance(data, str) and data.strip().startswith("ko://"):
        return REF
    return data


CASES = {
    "plain": (
        "image: ko://example.com/app  # the app\n",
        f"image: {REF}  # the app\n",
    ),
    "single quoted": (
        "image: 'ko://example.com/app'\n",
        f"image: '{REF}'\n",
    ),
    "double quoted with escapes": (
        'image: "ko:\\/\\/example.com/app"\n',
        f'image: "{REF}"\n',
    ),
    "quoted with surrounding spaces (trimmed, as ko does)": (
        "image: ' ko://example.com/app '\n",
        f"image: '{REF}'\n",
    ),
    "flow mapping": (
        "c: {name: app, image: ko://example.com/app}\n",
        f"c: {{name: app, image: {REF}}}\n",
    ),
    "flow sequence": (
        "images: [ko://example.com/app, 'ko://example.com/app', nginx]\n",
        f"images: [{REF}, '{REF}', nginx]\n",
    ),
    "anchor and alias": (
        "a: &img ko://example.com/app\nb: *img\n",
        f"a: &img {REF}\nb: *img\n",
    ),
    "tag": (
        "a: !!str ko://example.com/app\n",
        f"a: !!str {REF}\n",
    ),
    "anchor and tag on a quoted value": (
        "a: &x !!str \"ko://example.com/app\"\n",
        f"a: &x !!str \"{REF}\"\n",
    ),
    "literal block (strip chomping added)": (
        "a: |\n  ko://example.com/app\nb: 1\n",
        f"a: |-\n  {REF}\nb: 1\n",
    ),
    "folded block with indentation indicator": (
        "a: >2\n  ko://example.com/app\n\nb: 1\n",
        f"a: >2-\n  {REF}\n\nb: 1\n",
    ),
    "keys are not values": (
        "ko://example.com/app: ko://example.com/app\n",
        f"ko://example.com/app: {REF}\n",
    ),
    "not a string": (
        "a: !!binary aGVsbG8=\nb: ko\nc: ko:/x\n",
        "a: !!binary aGVsbG8=\nb: ko\nc: ko:/x\n",
    ),
    "CRLF line endings": (
        "# c\r\nimage: ko://example.com/app\r\nx: 'y'\r\n",
        f"# c\r\nimage: {REF}\r\nx: 'y'\r\n",
    ),
    "byte order mark": (
        "\ufeffimage: ko://example.com/app\n",
        f"\ufeffimage: {REF}\n",
    ),
    "JSON": (
        '{"spec": {"containers": [{"image": "ko://example.com/app", "name": "a"}]}}',
        f'{{"spec": {{"containers": [{{"image": "{REF}", "name": "a"}}]}}}}',
    ),
    "no trailing newline": (
        "image: ko://example.com/app",
        f"image: {REF}",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_only_ko_values_change(case: str) -> None:
    original, expected = CASES[case]
    resolved = resolve_text(original)
    assert resolved == expected
    assert list(yaml.safe_load_all(resolved)) == replace_ko(list(yaml.safe_load_all(original)))


def test_comments_order_and_documents_without_references_are_untouched() -> None:
    text = (
        "# header comment\n"
        "---\n"
        "# no references in this one\n"
        "zeta: 1   # odd spacing kept\n"
        "alpha:   'two'\n"
        "list: [ 1,2 ,3 ]\n"
        "---\n"
        "kind: Deployment\n"
        "spec:\n"
        "  containers:\n"
        "  - image:    ko://example.com/web     # a comment after\n"
        "    name: web\n"
        "  - image: \"ko://example.com/worker\"\n"
        "...\n"
        "--- # empty document\n"
        "---\n"
        "last: document\n"
    )
    resolved = resolve_text(text, {"example.com/web": "r/web@sha256:1",
                                   "example.com/worker": "r/worker@sha256:2"})
    expected = (text.replace("ko://example.com/web", "r/web@sha256:1")
                .replace('"ko://example.com/worker"', '"r/worker@sha256:2"'))
    assert resolved == expected


def test_documents_segments_concatenate_to_the_text() -> None:
    text = "# a\n%YAML 1.1\n---\na: 1\n...\n# between\n---\nb: 2\n--- |\n  text\n---\n"
    stream = parse_stream(text, "s.yaml")
    assert "".join(stream.segment(d) for d in stream.documents) == text
    assert [stream.data(d) for d in stream.documents] == [{"a": 1}, {"b": 2}, "text\n", None]
    assert stream.documents[1].line == 8


def test_refs_report_file_line_and_import_path() -> None:
    text = "a:\n  - x\n  - image: ko://example.com/app/cmd/x\n"
    (document,) = parse_stream(text, "f.yaml").documents
    (ref,) = document.refs
    assert ref.import_path == "example.com/app/cmd/x"
    assert ref.location == "f.yaml:3:12"


def test_an_alias_is_reported_once() -> None:
    text = "a: &i ko://x/y\nb: [*i, *i]\nc: {d: *i}\n"
    (document,) = parse_stream(text, "f.yaml").documents
    assert len(document.refs) == 1


def test_a_reference_that_is_not_plain_safe_is_double_quoted() -> None:
    text = "image: ko://example.com/app\n"
    assert resolve_text(text, {"example.com/app": "odd: ref #x"}) == 'image: "odd: ref #x"\n'


def test_single_quotes_in_a_reference_are_doubled() -> None:
    text = "image: 'ko://example.com/app'\n"
    assert resolve_text(text, {"example.com/app": "it's"}) == "image: 'it''s'\n"


@pytest.mark.parametrize(("text", "where"), [
    ("a: [1, 2\nb: 3\n", "bad.yaml:2:2"),
    ("a: b\n c: d\n", "bad.yaml:2:3"),
    ("a: 'unterminated\n", "bad.yaml:2:1"),
    ("key: value\n\tindented: tab\n", "bad.yaml:2:1"),
])
def test_invalid_yaml_names_the_file_and_line(text: str, where: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_stream(text, "bad.yaml")
    assert info.value.message.startswith(f"{where}: invalid YAML: ")
    assert info.value.exit_code == 2


def test_a_multi_line_plain_value_is_refused_clearly() -> None:
    text = "a: ko://example.com/app\n  continued\n"
    stream = parse_stream(text, "m.yaml")
    refs = [r for d in stream.documents for r in d.refs]
    with pytest.raises(UsageError, match=r"m\.yaml:1:4: cannot substitute"):
        substitute(text, {ref: REF for ref in refs})


def test_empty_and_comment_only_streams_have_no_documents() -> None:
    assert parse_stream("", "e.yaml").documents == []
    assert parse_stream("# only a comment\n", "e.yaml").documents == []


@pytest.mark.parametrize(("text", "marker"), [
    ("---\na: 1\n", True),
    ("# c\n\n--- # x\na: 1\n", True),
    ("--- |\n  x\n", True),
    ("a: 1\n---\n", False),
    ("----\n", False),
    ("", False),
])
def test_starts_with_document_marker(text: str, marker: bool) -> None:
    assert starts_with_document_marker(text) is marker


# --------------------------------------------------------------------------- limits


def _nested_aliases(levels: int, width: int) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_aliases_within_go_yaml_limits_load() -> None:
    """Aliasing that gopkg.in/yaml.v3 (ko, kubectl) accepts loads as with PyYAML: small
    documents, and up to 99% of a larger one's nodes from aliases."""
    for text in (_nested_aliases(3, 9), _nested_aliases(2, 40), _nested_aliases(2, 90)):
        assert load_yaml(text, "ok.yaml") == yaml.safe_load(text)


@pytest.mark.parametrize(("text", "says"), [
    (_nested_aliases(9, 9), "1:1: refused: aliases expand the document from 28 written nodes to "),
    (_nested_aliases(4, 9), "1:1: refused: aliases expand the document from 18 written nodes to "
                            "8,307 (an alias bomb)"),
    ("a: &a [1, *a]\n", "1:11: refused: the alias *a is inside the node &a names"),
    ("a: " + "[" * 101 + "]" * 101 + "\n", "1:103: refused: nested more than 100 levels deep"),
    ("a: 1" + "0" * 5000 + "\n", "1:4: invalid YAML: Exceeds the limit (4300 digits)"),
    ("a: b\x07\n", "1:5: invalid YAML: control character U+0007 is not allowed"),
])
def test_hostile_yaml_is_refused_with_file_and_line(text: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        load_yaml(text, "bad.yaml")
    assert info.value.message.startswith(f"bad.yaml:{says}"), info.value.message


def test_aliases_are_counted_over_the_whole_stream() -> None:
    """Documents that each stay within the limit but together multiply the data: the
    stream is kept whole, so the rule applies to it too."""
    document = _nested_aliases(2, 90)  # 8,281 nodes, 98% from aliases: allowed alone
    parse_stream(document, "one.yaml")
    parse_stream("---\n".join([document] * 40), "forty.yaml")
    with pytest.raises(UsageError, match="the documents up to here"):
        parse_stream("---\n".join([document] * 100), "many.yaml")


def test_files_over_the_cap_or_not_utf8_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_YAML_BYTES + 1))
    with pytest.raises(UsageError, match=r"big.yaml: larger than 10 MiB"):
        read_yaml_file(big)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(UsageError, match=r"latin1.yaml:2: not UTF-8 text \(byte 11\)"):
        read_yaml_file(latin1)
