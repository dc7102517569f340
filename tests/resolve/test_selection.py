"""-f/-R file collection, -l selectors and how inputs are joined (no Go, no registry)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from kodev.errors import UsageError
from kodev.kube.selector import parse_selector
from kodev.resolve import (
    collect_files,
    join_output,
    read_streams,
    render_documents,
    select_documents,
)

WEB = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  labels: {app: web, tier: front}\n"
DB = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\n  labels: {app: db, size: '3'}\n"
BARE = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bare\n"


# --------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ("", {}, True),
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "db"}, False),
    ("app!=web", {}, True),
    ("app!=web", {"app": "web"}, False),
    ("app", {"app": ""}, True),
    ("!app", {"app": "x"}, False),
    ("!app", {}, True),
    ("app in (web, db)", {"app": "db"}, True),
    ("app in (web,db)", {}, False),
    ("app notin (web,db)", {}, True),
    ("app notin (web,db)", {"app": "web"}, False),
    ("app=web,tier=front", {"app": "web", "tier": "front"}, True),
    ("app=web, tier=back", {"app": "web", "tier": "front"}, False),
    ("size>2", {"size": "3"}, True),
    ("size<2", {"size": "3"}, False),
    ("size>2", {}, False),
    ("example.com/team=a", {"example.com/team": "a"}, True),
    ("app=", {"app": ""}, True),
])
def test_label_selector_semantics(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(selector).matches(labels) is matches


@pytest.mark.parametrize("selector", [
    "app=web,", "=web", "app in web", "app in (web", "size>x", "a b", "!", "app=(x)",
])
def test_invalid_selectors_are_usage_errors(selector: str) -> None:
    with pytest.raises(UsageError, match="invalid label selector"):
        parse_selector(selector)


# --------------------------------------------------------------------------- files


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_directories_give_manifests_in_name_order_and_recurse_only_with_R(tmp_path: Path
                                                                          ) -> None:
    write(tmp_path / "b.yaml", WEB)
    write(tmp_path / "a.json", "{}")
    write(tmp_path / "c.yml", DB)
    write(tmp_path / "notes.txt", "x")
    write(tmp_path / "sub" / "d.yaml", BARE)
    names = [Path(p).relative_to(tmp_path).as_posix()
             for p in collect_files([str(tmp_path)], recursive=False)]
    assert names == ["a.json", "b.yaml", "c.yml"]
    names = [Path(p).relative_to(tmp_path).as_posix()
             for p in collect_files([str(tmp_path)], recursive=True)]
    assert names == ["a.json", "b.yaml", "c.yml", "sub/d.yaml"]


def test_an_explicit_file_is_read_whatever_its_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "manifest.txt", WEB)
    assert collect_files([str(path), "-"], recursive=False) == [str(path), "-"]


@pytest.mark.parametrize(("args", "message"), [
    (["missing.yaml"], "-f missing.yaml: no such file or directory"),
    (["-", "-"], "stdin) can be given only once"),
    ([], "no input"),
])
def test_bad_file_arguments(tmp_path: Path, args: list[str], message: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        collect_files(args, recursive=False)


def test_an_empty_directory_is_an_error_with_a_hint(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "a.yaml", WEB)
    with pytest.raises(UsageError) as info:
        collect_files([str(tmp_path)], recursive=False)
    assert info.value.hint == "use -R to include subdirectories"


def test_stdin_and_non_utf8(tmp_path: Path) -> None:
    (stream,) = read_streams(["-"], stdin=io.BytesIO(WEB.encode()))
    assert stream.source == "<stdin>" and stream.text == WEB
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_streams([str(bad)])


# --------------------------------------------------------------------------- selection + output


def output(tmp_path: Path, texts: list[str], selector: str | None = None) -> str:
    paths = [str(write(tmp_path / f"{i}.yaml", text)) for i, text in enumerate(texts)]
    selections = select_documents(read_streams(paths), selector)
    return join_output(selections, render_documents(selections, {}))


def test_a_single_file_comes_out_byte_for_byte(tmp_path: Path) -> None:
    text = f"# c\n{WEB}---\n{DB}\n# trailing comment, no newline"
    assert output(tmp_path, [text]) == text


def test_files_are_joined_with_a_separator_unless_they_start_with_one(tmp_path: Path) -> None:
    assert output(tmp_path, [WEB, DB]) == f"{WEB}---\n{DB}"
    assert output(tmp_path, [WEB.rstrip("\n"), DB]) == f"{WEB}---\n{DB}"
    assert output(tmp_path, [WEB, f"# leading\n---\n{DB}"]) == f"{WEB}# leading\n---\n{DB}"


def test_selector_drops_documents_and_keeps_the_rest_verbatim(tmp_path: Path) -> None:
    text = f"# head\n{WEB}---\n{DB}--- # bare\n{BARE}"
    assert output(tmp_path, [text], "app=db") == f"---\n{DB}"
    assert output(tmp_path, [text], "app") == f"# head\n{WEB}---\n{DB}"
    assert output(tmp_path, [text], "!app") == f"--- # bare\n{BARE}"
    assert output(tmp_path, [text, WEB], "app=nothing") == ""
    assert output(tmp_path, [text, WEB], "app=web") == f"# head\n{WEB}---\n{WEB}"


def test_selector_filters_list_items(tmp_path: Path) -> None:
    web_item = yaml.safe_load(WEB)
    db_item = yaml.safe_load(DB)
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [web_item, db_item]})
    assert output(tmp_path, [text], "app") == text  # all match: untouched
    assert output(tmp_path, [text], "nothing") == ""
    assert yaml.safe_load(output(tmp_path, [text], "app=db"))["items"] == [db_item]


def test_selector_needs_kubernetes_objects(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"1\.yaml:2: not a Kubernetes object"):
        output(tmp_path, [WEB, "---\njust: data\n"], "app=web")
    assert output(tmp_path, ["---\n---\n"], "app=web") == ""  # empty documents are skipped


def test_comment_only_inputs_are_kept_without_a_selector(tmp_path: Path) -> None:
    assert output(tmp_path, ["# nothing here\n"]) == "# nothing here\n"
    assert output(tmp_path, ["# nothing here\n"], "app") == ""
