"""Hostile YAML input: ``.ko.yaml`` and manifests (issue 13, item 11, and the size cap of
item 12).

Every test runs the real ``kodev`` CLI on real files it writes: an alias bomb (a few
hundred bytes that expand to hundreds of millions of nodes), an alias inside the node
its anchor names, bytes that are not UTF-8, a file over the size cap, and nesting too
deep to walk. kodev runs with its address space capped at :data:`MEMORY_LIMIT`, so a
reader that expands the bomb dies instead of eating the machine, and with a timeout, so
one that hangs fails the test instead of stalling it. The issue's bound is "exit 2
within a second"; the test allows :data:`BOUND_S` for a loaded 2-core machine (and
Python's start-up). ``kodev apply`` runs against the real API server of the test
environment, where nothing may be applied.

Hostile log output (item 12): a container on the real node prints 8 MiB without a
newline under ``kodev logs``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.apply.test_apply_kube import core, exists
from tests.fixtures.kodev import Kodev
from tests.fixtures.kube import KubeEnv

BOUND_S = 10.0  # the 1 s, with a margin for a loaded 2-core machine and start-up
HANG_S = 60.0  # a reader that expands the bomb never ends: fail instead of waiting
MEMORY_LIMIT = 2 * 1024**3  # address space of the kodev process
CAP = 10 * 1024 * 1024  # kodev's size limit for a YAML file (kodev.yamlsub.MAX_YAML_BYTES)

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n"


def alias_bomb(prefix: str = "") -> str:
    """The "billion laughs" in YAML: 342 bytes, nine levels of nine aliases each."""
    lines = [f'{prefix}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{prefix}l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Hostile:
    """One hostile file: how to write it, and what the error line says after the path."""

    name: str
    write: Callable[[Path, str], None]  # (path, text for a manifest's first lines)
    says: str


def _text(content: str) -> Callable[[Path, str], None]:
    return lambda path, head: path.write_text(head + content)


def _latin1(path: Path, head: str) -> None:
    path.write_bytes(head.encode() + b"labels: {team: caf\xe9}\n")


def _oversized(path: Path, head: str) -> None:
    with path.open("w") as out:
        out.write(head + "data:\n")
        line = "  k{}: " + "x" * 1000 + "\n"
        for i in range(CAP // 1000 + 10):
            out.write(line.format(i))


HOSTILE = [
    Hostile("alias-bomb", _text(alias_bomb()), "refused: aliases expand the document from "),
    Hostile("self-alias", _text("spec: &loop {again: *loop}\n"),
            "refused: the alias *loop is inside the node &loop names"),
    Hostile("not-utf8", _latin1, "not UTF-8 text (byte "),
    Hostile("oversized", _oversized, "larger than 10 MiB, kodev's limit for a YAML file"),
    Hostile("too-deep", _text("deep: " + "[" * 5000 + "]" * 5000 + "\n"),
            "refused: nested more than 100 levels deep"),
]
IDS = [h.name for h in HOSTILE]


def run_kodev(kodev: Kodev, *args: str, stdin: bytes | None = None,
              env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str],
                                                            float]:
    """``python -m kodev ARGS`` with its memory capped; (result, seconds it took)."""
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kodev", *args], cwd=kodev.workdir,
                          env={**kodev.env, **(env or {})}, capture_output=True,
                          input=stdin.decode("latin-1") if stdin is not None else None,
                          text=True, encoding="latin-1", timeout=HANG_S,
                          preexec_fn=cap_memory)
    return proc, time.monotonic() - started


def assert_refused(proc: subprocess.CompletedProcess[str], took: float, where: str,
                   says: str) -> None:
    """Exit 2 in time, one error line naming the file (and line), nothing on stdout."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"kodev: error: {where}"), line
    assert says in line, line
    assert proc.stdout == ""
    assert took < BOUND_S, f"took {took:.1f}s"


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_hostile_ko_yaml_is_refused_fast(kodev: Kodev, hostile: Hostile) -> None:
    """Fault: a hostile .ko.yaml: an alias bomb of 342 bytes, an alias inside its own
    anchor, bytes that are not UTF-8, a file over 10 MiB, 5000 nested brackets.
    User sees: `kodev build` exits 2 within a second with one line naming the file and
    line (e.g. "refused: aliases expand the document ... (an alias bomb)"); memory stays
    small."""
    config = kodev.workdir / ".ko.yaml"
    hostile.write(config, "defaultBaseImage: kodev://minimal\n")
    proc, took = run_kodev(kodev, "build", "--push=false", "./cmd/web")
    assert_refused(proc, took, f"{config}", hostile.says)


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_hostile_manifest_is_refused_by_resolve(kodev: Kodev, tmp_path: Path,
                                                hostile: Hostile) -> None:
    """Fault: a hostile manifest given to `kodev resolve` as a file and on stdin (an
    alias bomb that would blow up the JSON serialisation, a self-referencing alias, not
    UTF-8, over 10 MiB, too deep).
    User sees: exit 2 within a second with one line naming the file (or <stdin>) and
    line; nothing on stdout, no cluster or registry needed."""
    manifest = tmp_path / "hostile.yaml"
    hostile.write(manifest, CONFIG_MAP + "---\n" + CONFIG_MAP.replace("first", "second"))
    proc, took = run_kodev(kodev, "resolve", "-f", str(manifest))
    assert_refused(proc, took, f"{manifest}", hostile.says)
    proc, took = run_kodev(kodev, "resolve", "-f", "-", stdin=manifest.read_bytes())
    assert_refused(proc, took, "<stdin>", hostile.says)


@pytest.mark.kube
@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_hostile_manifest_applies_nothing(kodev: Kodev, kube_env: KubeEnv, kube_api: Any,
                                          kube_namespace: str, tmp_path: Path,
                                          hostile: Hostile) -> None:
    """Fault: `kodev apply` of a file whose first object is a valid ConfigMap and whose
    second document is hostile (alias bomb, self-referencing alias, not UTF-8, over
    10 MiB, too deep), against the real API server.
    User sees: exit 2 within a second with one line naming the file and line; nothing is
    applied (the valid ConfigMap does not exist afterwards)."""
    manifest = tmp_path / "hostile.yaml"
    hostile.write(manifest, CONFIG_MAP + "---\n" + CONFIG_MAP.replace("first", "second"))
    proc, took = run_kodev(kodev, "apply", "-f", str(manifest), "-n", kube_namespace,
                           env={"KUBECONFIG": str(kube_env.kubeconfig)})
    assert_refused(proc, took, f"{manifest}", hostile.says)
    assert not exists(kube_api, core(kube_api).read_namespaced_config_map, "first",
                      kube_namespace)


LONG_LINE_MAIN = """\
// Command longline prints 8 MiB without a newline, then one ordinary line, then waits.
package main

import (
\t"bytes"
\t"os"
\t"time"
)

func main() {
\tos.Stdout.Write(bytes.Repeat([]byte("x"), 8<<20))
\tos.Stdout.Write([]byte("\\nafter the long line\\n"))
\tfor {
\t\ttime.Sleep(time.Hour)
\t}
}
"""

LONG_LINE_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: longline, labels: {app: longline}}
spec:
  selector: {matchLabels: {app: longline}}
  template:
    metadata: {labels: {app: longline}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: ko://example.com/kodev-demo/cmd/longline}
"""


@pytest.mark.kube
def test_a_huge_log_line_is_cut_and_shown_promptly(kodev: Kodev, kube_env: KubeEnv,
                                                   kube_namespace: str, tmp_path: Path) -> None:
    """Fault: a container on the real node prints 8 MiB without a newline (then one
    ordinary line) under `kodev logs`.
    User sees: the first 1 MiB of the line, ended by "[kodev: line cut, 7,340,032 more
    bytes not shown; ...]", then the next line; kodev keeps at most 1 MiB of a line in
    memory and reads it in linear time (8 MiB took 4.8 s before)."""
    from tests.logs.test_logs_kube import LogsProcess, kodev_env

    (kodev.workdir / "cmd" / "longline").mkdir()
    (kodev.workdir / "cmd" / "longline" / "main.go").write_text(LONG_LINE_MAIN)
    manifest = tmp_path / "longline.yaml"
    manifest.write_text(LONG_LINE_DEPLOYMENT)
    kodev.run("apply", "-f", str(manifest), "-n", kube_namespace,
              env={"KUBECONFIG": str(kube_env.kubeconfig),
                   "KO_DOCKER_REPO": f"{kube_env.registry}/demo"})
    logs = LogsProcess(["longline", "-n", kube_namespace], kodev_env(kube_env.kubeconfig),
                       tmp_path)
    try:
        logs.wait_until("the line after the long one",
                        lambda: any(line.endswith("/app after the long line")
                                    for line in logs.stdout))
        assert logs.interrupt() == 130
    finally:
        logs.kill()
    (long_line,) = [line for line in logs.stdout if "/app x" in line]
    prefix, _, message = long_line.partition(" ")
    text, _, rest = message.partition(" ")
    # The cap counts the raw line, which starts with the API's timestamp and a space.
    assert set(text) == {"x"} and 1024 * 1024 - 40 <= len(text) < 1024 * 1024, len(text)
    assert rest == (f"[kodev: line cut, {8 * 1024 * 1024 - len(text):,} more bytes not "
                    "shown; at most 1 MiB of a line is kept]")
    assert prefix.endswith("/app")
