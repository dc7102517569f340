"""One-shot ``kodev build`` after an edit: ``go list -deps`` and ``go build`` run at the
same time (the last build's targets are the guess), and the result is always the one a
cold build (empty KOCACHE) gives."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, KodevRun, add_extra_package, run_cold
from tests.fixtures.kodev import image_digest as digest
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.registry


def go_builds(run: KodevRun) -> int:
    return sum(1 for line in run.stderr.splitlines() if " go build " in line)


def cold(kodev: Kodev, tmp_path: Path, env: dict[str, str], name: str) -> KodevRun:
    """The same build with an empty KOCACHE: no fingerprint, no guess."""
    return run_cold(kodev, tmp_path / name, env, "build", "./cmd/web")


def test_edits_give_the_digest_of_a_cold_build(
    kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    env = {"KO_DOCKER_REPO": f"{registry.host}/oneshot"}
    kodev.run("build", "./cmd/web", env=env)
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    extra = demo_module / "internal" / "extra"

    edits: list[tuple[str, Callable[[], object]]] = [
        ("one line", lambda: greeting.write_text(
            greeting.read_text().replace("hello from", "hi from"))),
        ("new file", lambda: (greeting.parent / "more.go").write_text(
            'package greeting\n\nfunc init() { println("more") }\n')),
        ("new package", lambda: add_extra_package(demo_module)),
        ("edit in the new package", lambda: (extra / "extra.go").write_text(
            'package extra\n\nconst Word = "changed"\n')),
    ]
    seen: set[str] = set()
    for name, edit in edits:
        edit()
        warm = kodev.run("build", "./cmd/web", env=env)
        assert "go build skipped" not in warm.stderr, name
        reference = cold(kodev, tmp_path, env, f"cold-{len(seen)}")
        assert reference.returncode == 0, reference.stderr
        assert digest(warm) == digest(reference), name
        assert digest(warm) not in seen, name
        seen.add(digest(warm))
    # the guess was right for a one-line change: one go build, not two
    greeting.write_text(greeting.read_text().replace("hi from", "hey from"))
    once = kodev.run("build", "./cmd/web", env=env)
    assert go_builds(once) == 1, once.stderr
    assert digest(once) == digest(cold(kodev, tmp_path, env, "cold-last"))


def test_errors_after_an_edit_are_those_of_a_cold_build(kodev: Kodev, registry: RegistryServer,
                                                        demo_module: Path,
                                                        tmp_path: Path) -> None:
    env = {"KO_DOCKER_REPO": f"{registry.host}/oneshot-errors"}
    kodev.run("build", "./cmd/web", env=env)
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    good = greeting.read_text()
    greeting.write_text(good + "\nfunc broken() { undefined() }\n")  # go build fails
    warm = kodev.run("build", "./cmd/web", env=env, check=False)
    reference = cold(kodev, tmp_path, env, "cold-compile")
    assert warm.returncode == reference.returncode == 3
    assert "undefined: undefined" in warm.stderr
    assert warm.stderr.splitlines()[-1] == reference.stderr.splitlines()[-1]

    greeting.write_text(good)
    web = demo_module / "cmd" / "web" / "main.go"
    web.write_text(web.read_text().replace("package main", "package web", 1))  # go list says
    warm = kodev.run("build", "./cmd/web", env=env, check=False)
    reference = cold(kodev, tmp_path, env, "cold-notmain")
    assert warm.returncode == reference.returncode == 3
    assert "not a main package" in warm.stderr
    assert warm.stderr.splitlines()[-1] == reference.stderr.splitlines()[-1]


def test_go_list_runs_only_when_an_edit_can_change_the_package_graph(
    kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    """After an edit that leaves every file's imports, package name, build constraints and
    embeds as they were, ``go list`` is not run (the recorded graph is the answer); any
    other edit runs it. Every build's digest is a cold build's. A ``go`` wrapper
    (``KO_GO_PATH``) records which go commands kodev ran."""
    calls = tmp_path / "go-calls"
    wrapper = tmp_path / "go"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\nexec go "$@"\n')
    wrapper.chmod(0o755)
    env = {"KO_DOCKER_REPO": f"{registry.host}/graph", "KO_GO_PATH": str(wrapper)}
    kodev.run("build", "./cmd/web", env=env)
    greeting = demo_module / "internal" / "greeting" / "greeting.go"

    def build_after(edit: Callable[[], object]) -> list[str]:
        edit()
        calls.write_text("")
        warm = kodev.run("build", "./cmd/web", env=env)
        ran = calls.read_text().split()
        assert digest(warm) == digest(cold(kodev, tmp_path, env, f"cold-{len(seen)}"))
        assert digest(warm) not in seen
        seen.add(digest(warm))
        return ran

    seen: set[str] = set()
    body = build_after(lambda: greeting.write_text(
        greeting.read_text().replace("hello from", "hi from")))
    assert "build" in body and "list" not in body
    imports = build_after(lambda: greeting.write_text(greeting.read_text().replace(
        'import "fmt"', 'import (\n\t"fmt"\n\t"strings"\n)').replace(
        'fmt.Sprintf("hi from %s", who)', 'strings.ToUpper(fmt.Sprintf("hi from %s", who))')))
    assert "list" in imports  # a new import: the graph may change
    again = build_after(lambda: greeting.write_text(greeting.read_text().replace(
        "hi from", "hey from")))
    assert "list" not in again  # the new import was recorded
    constraint = build_after(lambda: greeting.write_text(
        "//go:build !plan9\n\n" + greeting.read_text().replace("hey from", "yo from")))
    assert "list" in constraint

    def save_by_rename() -> None:  # as editors that write a new file and rename it do
        text = greeting.read_text().replace("yo from", "hallo from")
        temporary = greeting.with_suffix(".go.tmp")
        temporary.write_text(text)
        temporary.rename(greeting)

    renamed = build_after(save_by_rename)
    assert "list" not in renamed  # the directory's mtime moved, not its entries
    new_file = build_after(lambda: (greeting.parent / "more.go").write_text(
        'package greeting\n\nfunc init() { println("more") }\n'))
    assert "list" in new_file  # a new entry in a package directory


def test_two_builds_of_the_same_packages_at_once_compile_once(
    kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    """Two kodev builds of exactly the same packages at once, on one KOCACHE (parallel CI
    jobs; Skaffold's build after the prebuild its deps call started): the second waits
    for the first (it says so) and then uses the binaries the first recorded. One go
    build in all; both images are a cold build's."""
    calls = tmp_path / "go-calls"
    wrapper = tmp_path / "go"
    # a go build holds on until the second kodev has said it waits (20 s at most: without
    # the lock, the second one's go build would wait here too)
    wrapper.write_text(
        f'#!/bin/sh\necho "$1" >> "{calls}"\nn=0\n'
        f'while [ "$1" = build ] && [ ! -e "{tmp_path}/go-on" ] && [ $n -lt 400 ]; do\n'
        '  sleep 0.05; n=$((n+1)); done\nexec go "$@"\n')
    wrapper.chmod(0o755)
    env = {**kodev.env, "KO_DOCKER_REPO": f"{registry.host}/twice", "KO_GO_PATH": str(wrapper)}
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    greeting.write_text(greeting.read_text().replace("hello from", "twice from"))

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "kodev", "build", "./cmd/web"],
                                cwd=demo_module, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    first = start()
    deadline = time.monotonic() + 120
    while "build" not in (calls.read_text() if calls.exists() else ""):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = start()
    assert second.stderr is not None
    for line in second.stderr:  # a positive event: it found the lock taken
        if "waiting for it" in line:
            break
    (tmp_path / "go-on").touch()
    outs = [proc.communicate(timeout=300) for proc in (first, second)]
    assert [proc.returncode for proc in (first, second)] == [0, 0], outs
    assert "go build skipped" in outs[1][1]
    assert calls.read_text().split().count("build") == 1
    reference = cold(kodev, tmp_path, {"KO_DOCKER_REPO": f"{registry.host}/twice"}, "cold")
    assert {out.strip().rsplit("@", 1)[1] for out, _ in outs} == {digest(reference)}
