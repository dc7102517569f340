"""``kodev skaffold deps``: exactly the files an image is built from, and nothing else.

The fixture module has two mains (alpha, beta), a package both import (shared), one only
alpha imports (onlyalpha), one nobody imports (unused), an embedded file, a kodata
directory, test files and a file excluded by a build constraint. The claim the list makes
(a file outside it cannot change the image) is proven by building: changing an unlisted
file gives the same image digest, changing a listed file gives another.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev

SOURCES = {
    "go.mod": "module example.com/depsfix\n\ngo 1.22\n",
    "go.sum": "",
    ".ko.yaml": "defaultBaseImage: kodev://minimal\n",
    "README.md": "# fixture\n",
    "cmd/alpha/main.go": """package main

import (
\t_ "embed"
\t"fmt"

\t"example.com/depsfix/internal/onlyalpha"
\t"example.com/depsfix/internal/shared"
)

//go:embed banner.txt
var banner string

func main() { fmt.Println("alpha-v1", banner, shared.Name(), onlyalpha.Name()) }
""",
    "cmd/alpha/banner.txt": "banner-v1\n",
    "cmd/alpha/kodata/index.html": "<p>v1</p>\n",
    "cmd/alpha/main_test.go": "package main\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) {}\n",
    "cmd/beta/main.go": """package main

import (
\t"fmt"

\t"example.com/depsfix/internal/shared"
)

func main() { fmt.Println("beta-v1", shared.Name()) }
""",
    "internal/shared/shared.go": "package shared\n\nfunc Name() string { return \"shared-v1\" }\n",
    "internal/shared/shared_test.go": "package shared\n\nimport \"testing\"\n\n"
    "func TestName(t *testing.T) {}\n",
    "internal/shared/tool.go": "//go:build ignore\n\npackage main\n\n"
    "func main() { println(\"tool-v1\") }\n",
    "internal/onlyalpha/onlyalpha.go": "package onlyalpha\n\n"
    "func Name() string { return \"only-v1\" }\n",
    "internal/unused/unused.go": "package unused\n\nfunc Name() string { return \"unused-v1\" }\n",
}

ALPHA = [
    ".ko.yaml",
    "cmd/alpha/banner.txt",
    "cmd/alpha/kodata/index.html",
    "cmd/alpha/main.go",
    "go.mod",
    "go.sum",
    "internal/onlyalpha/onlyalpha.go",
    "internal/shared/shared.go",
]
BETA = [".ko.yaml", "cmd/beta/main.go", "go.mod", "go.sum", "internal/shared/shared.go"]


@pytest.fixture
def depsfix(tmp_path: Path) -> Path:
    root = tmp_path / "depsfix"
    for name, text in SOURCES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture
def fx(depsfix: Path, tmp_path: Path) -> Kodev:
    return Kodev(depsfix, tmp_path / "kocache")


def deps(fx: Kodev, *args: str) -> list[str]:
    files: list[str] = json.loads(fx.run("skaffold", "deps", *args).stdout)
    return files


def test_each_main_gets_exactly_its_files(fx: Kodev) -> None:
    assert deps(fx, "./cmd/alpha") == ALPHA
    assert deps(fx, "example.com/depsfix/cmd/beta") == BETA


def test_cached_answer_follows_edits_and_new_files(fx: Kodev, depsfix: Path) -> None:
    assert deps(fx, "./cmd/beta") == BETA
    assert deps(fx, "./cmd/beta") == BETA  # served from the cache
    main = depsfix / "cmd/beta/main.go"
    main.write_text(main.read_text().replace(
        '"example.com/depsfix/internal/shared"',
        '"example.com/depsfix/internal/shared"\n\t_ "example.com/depsfix/internal/unused"'))
    assert deps(fx, "./cmd/beta") == sorted([*BETA, "internal/unused/unused.go"])
    (depsfix / "internal/shared/more.go").write_text("package shared\n")
    assert "internal/shared/more.go" in deps(fx, "./cmd/beta")
    (depsfix / ".ko.yaml").unlink()
    assert ".ko.yaml" not in deps(fx, "./cmd/beta")


def test_an_edit_that_keeps_the_imports_keeps_the_answer_without_go_list(
    fx: Kodev, depsfix: Path, tmp_path: Path
) -> None:
    """Skaffold asks right after every save (twice per artifact). An edit that leaves every
    file's imports, package name and build constraints as they were keeps the cached
    answer without ``go list`` (kodev build's rule); any other edit runs it, and the
    answer follows. Every answer is a cold one's (empty KOCACHE). A ``go`` wrapper
    (``KO_GO_PATH``) records which go commands ran."""
    calls = tmp_path / "go-calls"
    wrapper = tmp_path / "go"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\nexec go "$@"\n')
    wrapper.chmod(0o755)
    env = {"KO_GO_PATH": str(wrapper)}
    colds = iter(range(100))

    def answer_after(path: str, old: str, new: str, *, rename: bool = False) -> tuple[
            list[str], list[str]]:
        target = depsfix / path
        text = target.read_text()
        assert old in text
        if rename:  # as editors that write a new file and rename it over the old one do
            temporary = target.with_name(target.name + ".tmp")
            temporary.write_text(text.replace(old, new))
            temporary.rename(target)
        else:
            target.write_text(text.replace(old, new))
        calls.write_text("")
        files: list[str] = json.loads(fx.run("skaffold", "deps", "./cmd/beta", env=env).stdout)
        ran = calls.read_text().split()
        cold = Kodev(depsfix, tmp_path / f"cold-{next(colds)}")
        assert files == json.loads(cold.run("skaffold", "deps", "./cmd/beta", env=env).stdout)
        return files, ran

    assert deps(fx, "./cmd/beta") == BETA
    fx.run("skaffold", "deps", "./cmd/beta", env=env)
    files, ran = answer_after("cmd/beta/main.go", "beta-v1", "beta-v2")
    assert files == BETA and "list" not in ran
    files, ran = answer_after("internal/shared/shared.go", "shared-v1", "shared-v2",
                              rename=True)
    assert files == BETA and "list" not in ran
    files, ran = answer_after("cmd/beta/main.go", '"fmt"\n',
                              '"fmt"\n\t_ "example.com/depsfix/internal/unused"\n')
    assert files == sorted([*BETA, "internal/unused/unused.go"]) and "list" in ran
    files, ran = answer_after("internal/unused/unused.go", "unused-v1", "unused-v2")
    assert "internal/unused/unused.go" in files and "list" not in ran
    files, ran = answer_after("internal/shared/shared.go", "package shared",
                              "//go:build !plan9\n\npackage shared")
    assert "list" in ran


def test_errors_are_one_line(fx: Kodev) -> None:
    library = fx.run("skaffold", "deps", "./internal/shared", check=False)
    assert library.returncode == 3
    assert library.stderr.strip().splitlines() == [
        "kodev: error: ./internal/shared is package 'shared', not a main package "
        "(kodev builds only 'package main' (commands); point it at a cmd directory)"]
    missing = fx.run("skaffold", "deps", "./cmd/nope", check=False)
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    assert missing.stdout == ""


def image_digest(fx: Kodev, layout: Path) -> str:
    """Build alpha from scratch (no kodev cache: go build really runs) into a layout."""
    result = fx.run("build", "--push=false", "--no-cache", "--sbom=none",
                    "--platform=linux/amd64", f"--oci-layout-path={layout}", "./cmd/alpha")
    return result.refs[0].rsplit("@", 1)[1]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


UNLISTED_EDITS = [
    ("README.md", "fixture", "fixture, edited"),
    ("cmd/alpha/main_test.go", "TestX", "TestY"),
    ("cmd/beta/main.go", "beta-v1", "beta-v2"),
    ("internal/shared/shared_test.go", "TestName", "TestOther"),
    ("internal/shared/tool.go", "tool-v1", "tool-v2"),
    ("internal/unused/unused.go", "unused-v1", "unused-v2"),
]
LISTED_EDITS = [
    ("cmd/alpha/main.go", "alpha-v1", "alpha-v2"),
    ("cmd/alpha/banner.txt", "banner-v1", "banner-v2"),
    ("cmd/alpha/kodata/index.html", "v1", "v2"),
    ("internal/shared/shared.go", "shared-v1", "shared-v2"),
    ("internal/onlyalpha/onlyalpha.go", "only-v1", "only-v2"),
    (".ko.yaml", "kodev://minimal\n", "kodev://minimal\ndefaultLdflags: [-s]\n"),
]


@pytest.mark.slow
def test_unlisted_files_cannot_change_the_image_and_listed_ones_do(
    fx: Kodev, depsfix: Path, tmp_path: Path
) -> None:
    listed = deps(fx, "./cmd/alpha")
    assert {name for name, _, _ in UNLISTED_EDITS}.isdisjoint(listed)
    assert {name for name, _, _ in LISTED_EDITS} <= set(listed)
    layout = tmp_path / "layout"
    digest = image_digest(fx, layout)
    for name, old, new in UNLISTED_EDITS:
        edit(depsfix / name, old, new)
    assert image_digest(fx, layout) == digest, "an unlisted file changed the image"
    for name, old, new in LISTED_EDITS:
        edit(depsfix / name, old, new)
        changed = image_digest(fx, layout)
        assert changed != digest, f"editing {name} did not change the image"
        digest = changed
