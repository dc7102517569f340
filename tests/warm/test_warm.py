"""The warm command server (kodev/warm/): one-shot calls handed to a forked, pre-imported
kodev give exactly what a cold run gives, and the server never outlives its use.

Warm calls run the installed ``kodev`` entry point (the one users and Skaffold run) with
a private ``KODEV_SERVER_DIR``; each is compared with ``python -m kodev`` (always cold)
on an empty KOCACHE. The server's log (one ``call PID: exit N`` line per call it ran)
proves which calls it served.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.kodev import REPO_ROOT, Kodev, KodevRun, add_extra_package, run_cold
from tests.fixtures.kodev import image_digest as digest
from tests.fixtures.registry import RegistryServer
from tests.support.warm import served_calls, server_log, wait_for_server

pytestmark = pytest.mark.registry

KODEV_SCRIPT = Path(sys.executable).parent / "kodev"
WAIT_S = 60.0


class Warm:
    """Runs the ``kodev`` entry point with the server on, in its own server directory."""

    def __init__(self, cold: Kodev, directory: Path) -> None:
        self.cold = cold
        self.directory = directory
        self.env = {**cold.env, "KODEV_SERVER_DIR": str(directory)}
        self.env.pop("KODEV_SERVER", None)

    def popen(self, *args: str, env: dict[str, str] | None = None,
              **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen([str(KODEV_SCRIPT), *args], cwd=self.cold.workdir,
                                env={**self.env, **(env or {})}, text=True,
                                **kwargs)  # type: ignore[call-overload]

    def run(self, *args: str, env: dict[str, str] | None = None,
            check: bool = True) -> KodevRun:
        proc = self.popen(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"kodev {' '.join(args)} failed ({proc.returncode}):\n{err}")
        return KodevRun(proc.returncode, out, err)

    def log(self) -> str:
        return server_log(self.directory)

    def calls(self) -> int:
        return served_calls(self.directory)

    def wait_log(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            text = self.log()
            if predicate(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"the server log never showed {what}:\n{self.log()}")

    def wait_ready(self) -> None:
        """The first call starts the server; wait until it serves."""
        wait_for_server(self.directory, WAIT_S)

    def status(self) -> dict[str, object]:
        out = self.run("server", "status", "--json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.run("server", "stop", check=False)


@pytest.fixture
def warm(kodev: Kodev, tmp_path: Path) -> Iterator[Warm]:
    directory = tmp_path / "servers"
    directory.mkdir(mode=0o700)
    server = Warm(kodev, directory)
    yield server
    server.stop()


def cold(kodev: Kodev, tmp_path: Path, env: dict[str, str], *args: str) -> KodevRun:
    """The same call, cold, on an empty KOCACHE of its own."""
    return run_cold(kodev, tmp_path / f"cold-{time.monotonic_ns()}", env, *args)


def test_warm_calls_give_what_cold_calls_give_after_many_edits(
    warm: Warm, kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    env = {"KO_DOCKER_REPO": f"{registry.host}/warm"}
    warm.run("build", "./cmd/web", env=env)  # cold, and starts the server
    warm.wait_ready()
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    web = demo_module / "cmd" / "web" / "main.go"
    good_web = web.read_text()
    extra = demo_module / "internal" / "extra"

    edits: list[tuple[str, Callable[[], object]]] = [
        ("one line", lambda: greeting.write_text(
            greeting.read_text().replace("hello from", "hi from"))),
        ("comment only", lambda: greeting.write_text(greeting.read_text() + "\n// note\n")),
        ("new file", lambda: (greeting.parent / "more.go").write_text(
            'package greeting\n\nfunc init() { println("more") }\n')),
        ("new package", lambda: add_extra_package(demo_module)),
        ("edit in the new package", lambda: (extra / "extra.go").write_text(
            'package extra\n\nconst Word = "changed"\n')),
        ("compile error", lambda: (extra / "extra.go").write_text(
            'package extra\n\nconst Word = undefinedName\n')),
        ("not a main package", lambda: web.write_text(
            good_web.replace("package main", "package web", 1))),
        ("back to the start", lambda: (web.write_text(good_web),
                                       shutil.rmtree(extra),
                                       (greeting.parent / "more.go").unlink())),
        ("no change", lambda: None),
    ]
    served = warm.calls()
    for name, edit in edits:
        edit()
        got = warm.run("build", "./cmd/web", env=env, check=False)
        want = cold(kodev, tmp_path, env, "build", "./cmd/web")
        assert got.returncode == want.returncode, (name, got.stderr, want.stderr)
        if want.returncode == 0:
            assert digest(got) == digest(want), name
        else:
            assert got.stderr.splitlines()[-1] == want.stderr.splitlines()[-1], name
        served += 1
        assert warm.calls() == served, (name, warm.log())  # the server ran it
    assert warm.log().count("serving") == 1


def test_each_call_runs_with_its_callers_environment_and_directory(
    warm: Warm, kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    warm.run("build", "./cmd/web", env={"KO_DOCKER_REPO": f"{registry.host}/first"})
    warm.wait_ready()
    other = tmp_path / "other"
    shutil.copytree(demo_module, other)
    (other / "internal" / "greeting" / "greeting.go").write_text(
        (other / "internal" / "greeting" / "greeting.go").read_text().replace(
            "hello from", "other from"))
    runs = {
        "a": warm.run("build", "./cmd/web", env={"KO_DOCKER_REPO": f"{registry.host}/a"}),
        "b": warm.run("build", "./cmd/web", "--bare",
                      env={"KO_DOCKER_REPO": f"{registry.host}/b/exact"}),
    }
    assert runs["a"].refs[0].startswith(f"{registry.host}/a/web-")
    assert runs["b"].refs[0].startswith(f"{registry.host}/b/exact@sha256:")
    elsewhere = subprocess.run(
        [str(KODEV_SCRIPT), "build", "./cmd/web"], cwd=other, capture_output=True, text=True,
        env={**warm.env, "KO_DOCKER_REPO": f"{registry.host}/a"}, timeout=300, check=True)
    reference = cold(kodev, tmp_path, {"KO_DOCKER_REPO": f"{registry.host}/a"},
                     "build", "./cmd/web")
    assert elsewhere.stdout.strip() != runs["a"].refs[0]  # other source, other image
    assert digest(reference) == digest(runs["a"])
    assert warm.calls() == 3  # the first call ran cold and started the server


def test_skaffold_deps_and_build_warm_are_those_of_cold(
    warm: Warm, kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    env = {"BUILD_CONTEXT": str(demo_module), "PUSH_IMAGE": "true",
           "IMAGE": f"{registry.host}/skaffold/web:t1"}
    warm.run("skaffold", "deps", "./cmd/web", env=env)
    warm.wait_ready()
    deps = warm.run("skaffold", "deps", "./cmd/web", env=env)
    assert json.loads(deps.stdout) == json.loads(
        cold(kodev, tmp_path, env, "skaffold", "deps", "./cmd/web").stdout)
    built = warm.run("skaffold", "build", "./cmd/web", env=env)
    reference = cold(kodev, tmp_path, {**env, "IMAGE": f"{registry.host}/skaffold/web:t2"},
                     "skaffold", "build", "./cmd/web")
    assert reference.returncode == 0, reference.stderr
    assert built.stdout == reference.stdout.replace(":t2", ":t1")
    assert warm.calls() == 2


def test_skaffold_deps_after_an_edit_compiles_ahead_of_the_build(
    warm: Warm, kodev: Kodev, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    """After an edit, the warm ``kodev skaffold deps`` (Skaffold asks it first) leaves a
    background compile of the image's binaries running; the ``kodev skaffold build`` that
    follows waits for it and runs no go build itself. A ``go`` wrapper (``KO_GO_PATH``)
    records each go command and which kodev process ran it; the image is a cold build's."""
    calls = tmp_path / "go-calls"
    wrapper = tmp_path / "go"
    wrapper.write_text(f'#!/bin/sh\necho "$1 $PPID" >> "{calls}"\nexec go "$@"\n')
    wrapper.chmod(0o755)
    env = {"BUILD_CONTEXT": str(demo_module), "PUSH_IMAGE": "true", "KO_GO_PATH": str(wrapper),
           "IMAGE": f"{registry.host}/ahead/web:t1"}
    warm.run("skaffold", "deps", "./cmd/web", env=env)
    warm.wait_ready()
    warm.run("skaffold", "build", "./cmd/web", env=env)
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    greeting.write_text(greeting.read_text().replace("hello from", "ahead of"))
    calls.write_text("")
    warm.run("skaffold", "deps", "./cmd/web", env=env)
    built = warm.run("skaffold", "build", "./cmd/web", env=env)
    assert "go build skipped" in built.stderr and "go build 1 package" not in built.stderr
    ran = [line.split() for line in calls.read_text().splitlines()]
    assert [name for name, _ in ran].count("build") == 1  # the background compile's
    served = set(re.findall(r": call (\d+): ", warm.log()))  # the calls' own processes
    assert not {pid for name, pid in ran if name == "build"} & served
    reference = cold(kodev, tmp_path, {**env, "IMAGE": f"{registry.host}/ahead/web:t2"},
                     "skaffold", "build", "./cmd/web")
    assert built.stdout == reference.stdout.replace(":t2", ":t1")
    warm.run("skaffold", "deps", "./cmd/web", env=env)  # no edit: nothing compiled ahead
    again = warm.run("skaffold", "build", "./cmd/web", env=env)
    assert "up to date" in again.stderr and "waiting" not in again.stderr


def test_concurrent_first_calls_start_one_server_and_all_succeed(
    warm: Warm, registry: RegistryServer, demo_module: Path
) -> None:
    env = {"BUILD_CONTEXT": str(demo_module)}
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda _: warm.run("skaffold", "deps", "./cmd/web", env=env),
                             range(8)))
    assert len({r.stdout for r in runs}) == 1
    warm.wait_ready()
    with ThreadPoolExecutor(8) as pool:
        again = list(pool.map(lambda _: warm.run("skaffold", "deps", "./cmd/web", env=env),
                              range(8)))
    assert {r.stdout for r in again} == {runs[0].stdout}
    assert warm.log().count("serving") == 1
    assert len(warm.status()["servers"]) == 1  # type: ignore[arg-type]
    assert warm.calls() >= 8


def _interrupt_during_go_build(warm: Warm, demo_module: Path, env: dict[str, str],
                               signum: int) -> tuple[int, str]:
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    greeting.write_text(greeting.read_text() + f"\nvar _ = {time.monotonic_ns()}\n")
    proc = warm.popen("build", "./cmd/web", "./cmd/worker", env=env,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:  # the child writes straight to our pipe
        if "go build" in line:
            break
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_ctrl_c_and_sigterm_reach_the_warm_call(
    warm: Warm, registry: RegistryServer, demo_module: Path, tmp_path: Path
) -> None:
    """Fault: Ctrl-C or SIGTERM while a warm call runs go build.
    User sees: what a cold run shows: `kodev: interrupted` (130) or `kodev: terminated`
    (143); nothing is left in KOCACHE's tmp/."""
    env = {"KO_DOCKER_REPO": f"{registry.host}/signals"}
    warm.run("build", "./cmd/web", env=env)
    warm.wait_ready()
    for signum, code, line in ((signal.SIGINT, 130, "kodev: interrupted"),
                               (signal.SIGTERM, 143, "kodev: terminated")):
        returncode, err = _interrupt_during_go_build(warm, demo_module, env, signum)
        assert returncode == code, err
        assert err.splitlines()[-1] == line
        warm.wait_log(lambda text, c=code: f"exit {c}" in text, f"the call's exit {code}")
    leftovers = tmp_path / "kocache" / "tmp"
    assert not leftovers.exists() or not any(leftovers.iterdir())


def test_a_killed_caller_ends_its_call(
    warm: Warm, registry: RegistryServer, demo_module: Path
) -> None:
    """Fault: the process that called kodev is killed (SIGKILL) during a warm build.
    User sees: nothing (the caller is gone); the build it asked for is ended as SIGTERM
    ends a cold run (exit 143), not left running."""
    env = {"KO_DOCKER_REPO": f"{registry.host}/killed"}
    warm.run("build", "./cmd/web", env=env)
    warm.wait_ready()
    returncode, _err = _interrupt_during_go_build(warm, demo_module, env, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    warm.wait_log(lambda text: "exit 143 (caller gone)" in text, "the orphaned call ended")


def test_a_changed_kodev_is_never_served_by_the_old_server(
    warm: Warm, registry: RegistryServer, tmp_path: Path
) -> None:
    """Fault: kodev's files change (an upgrade, an edit) while a warm server runs.
    User sees: the new code's behaviour at once: the old server refuses the call (it runs
    cold), stops, and a new one starts."""
    copy = tmp_path / "kodev-copy"
    shutil.copytree(REPO_ROOT / "kodev", copy / "kodev",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(copy), "KO_DOCKER_REPO": f"{registry.host}/changed"}
    first = warm.run("build", "./cmd/missing", env=env, check=False)
    assert first.returncode == 3 and "cannot load package" in first.stderr
    warm.wait_ready()
    warm.run("build", "./cmd/missing", env=env, check=False)
    assert warm.calls() == 1
    graph = copy / "kodev" / "golang" / "packages.py"
    text = graph.read_text()
    assert "cannot load package" in text
    graph.write_text(text.replace("cannot load package", "CANNOT LOAD PACKAGE (edited)"))
    edited = warm.run("build", "./cmd/missing", env=env, check=False)
    assert edited.returncode == 3
    assert "CANNOT LOAD PACKAGE (edited)" in edited.stderr
    log = warm.wait_log(lambda t: t.count("serving") == 2, "a new server")
    assert "kodev's files changed: stopping" in log
    served = warm.calls()
    again = warm.run("build", "./cmd/missing", env=env, check=False)
    assert "CANNOT LOAD PACKAGE (edited)" in again.stderr
    assert warm.calls() == served + 1  # the new server ran it


def test_an_idle_server_exits(warm: Warm, registry: RegistryServer) -> None:
    env = {"KODEV_SERVER_IDLE": "1", "KO_DOCKER_REPO": f"{registry.host}/idle"}
    warm.run("build", "./cmd/web", env=env)
    # its log, not its socket: with 1 s of idle time the server may come and go between
    # two looks at the directory on a loaded machine
    warm.wait_log(lambda text: ": serving " in text, "the first call's server serving")
    warm.run("build", "./cmd/web", env=env)
    warm.wait_log(lambda text: "stopped" in text, "the idle server stopping")
    assert ": idle" in warm.log()
    # a call that came after an idle exit started a new server, which idles out too
    deadline = time.monotonic() + WAIT_S
    while warm.status()["servers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert warm.status()["servers"] == []
    assert warm.log().count("stopped") == warm.log().count("serving")
    assert not list(warm.directory.glob("*.sock"))


def test_off_runs_cold_and_starts_no_server(warm: Warm, registry: RegistryServer) -> None:
    env = {"KODEV_SERVER": "off", "KO_DOCKER_REPO": f"{registry.host}/off"}
    run = warm.run("build", "./cmd/web", env=env)
    assert run.refs
    # a call that starts a server creates its log before it returns
    assert not list(warm.directory.glob("*.log"))
    status = warm.run("server", "status", env=env)
    assert "KODEV_SERVER=off" in status.stdout


def test_commands_no_server_runs_stay_cold(warm: Warm) -> None:
    version = warm.run("version")
    assert version.stdout.startswith("kodev")
    assert not list(warm.directory.glob("*.log"))

