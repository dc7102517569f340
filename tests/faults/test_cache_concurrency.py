"""Several kodev processes sharing one KOCACHE and one OCI layout (issue 13, item 16)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.test_build_faults import _check_layout, _random_file, _temporaries
from tests.fixtures.kodev import Kodev

PROCESSES = 8
ROUNDS = 3
PATTERNS = (["./cmd/web"], ["./cmd/worker"], ["./cmd/web", "./cmd/worker"])


def _start(kodev: Kodev, patterns: list[str], layout: Path, repo: str, err: Path
           ) -> subprocess.Popen[str]:
    with err.open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "kodev", "build", f"--oci-layout-path={layout}",
             "--sbom=none", *patterns],
            cwd=kodev.workdir, env={**kodev.env, "KO_DOCKER_REPO": repo},
            stdout=subprocess.PIPE, stderr=stderr, text=True)


@pytest.mark.registry
def test_concurrent_builds_share_one_cache_and_one_layout(
        kodev: Kodev, demo_module: Path, registry: Any, tmp_path: Path) -> None:
    """Fault: 8 kodev build processes of overlapping packages run at once with one
    KOCACHE, one OCI layout and one registry, 3 rounds (cold cache; sources touched so
    every binary is built again; nothing changed). User sees: every build succeeds and
    each package has one digest across all processes and rounds; the OCI layout they
    all write lists each image once (none lost) and holds no half-written blob; no
    temporary file is left."""
    # A large kodata file: copying web's layers into the layout takes a while, the time
    # in which another process may update the layout's index.json too.
    _random_file(demo_module / "cmd" / "web" / "kodata" / "big.bin", 32 << 20)
    repo = f"{registry.host}/shared"
    digests: dict[str, set[str]] = {}
    for round_ in range(ROUNDS):
        if round_ == 1:  # newer sources, same code: every go build runs again
            for main in demo_module.glob("cmd/*/main.go"):
                os.utime(main)
        layout = tmp_path / f"layout-{round_}"  # a new one: every process adds to it
        runs = []
        for i in range(PROCESSES):
            patterns = PATTERNS[i % len(PATTERNS)]
            err = tmp_path / f"round{round_}-{i}.stderr"
            runs.append((patterns, err, _start(kodev, patterns, layout, repo, err)))
        for patterns, err, proc in runs:
            stdout, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, err.read_text()
            refs = [line for line in stdout.splitlines() if line.strip()]
            assert len(refs) == len(patterns), stdout
            for pattern, ref in zip(patterns, refs, strict=True):
                digests.setdefault(pattern, set()).add(ref.split("@", 1)[1])
        # No process lost another's image: both are listed, once each.
        listed = _check_layout(layout)
        assert sorted(listed) == sorted({d for found in digests.values() for d in found})
        assert _temporaries(Path(kodev.env["KOCACHE"]), layout) == []
    assert {p: len(d) for p, d in digests.items()} == {"./cmd/web": 1, "./cmd/worker": 1}


def _waits_for_lock(pid: int, inode: int) -> bool:
    """True when ``pid`` is blocked on a flock of the file with ``inode`` (/proc/locks
    lists a waiter as ``N: -> FLOCK ADVISORY WRITE <pid> <dev>:<inode> ...``)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" \
                and fields[5] == str(pid) and fields[6].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def test_an_image_added_to_the_layout_meanwhile_is_kept(
        kodev: Kodev, demo_module: Path, tmp_path: Path) -> None:
    """Fault: while kodev builds into an OCI layout, another process (holding the
    layout's lock, as a concurrent kodev does) adds an image to its index.json. User
    sees: kodev waits for it, then adds its own image beside it: neither is lost."""
    other = tmp_path / "other"
    kodev.run("build", "--push=false", f"--oci-layout-path={other}", "--sbom=none",
              "./cmd/web")
    layout = tmp_path / "layout"
    layout.mkdir()
    fd = os.open(layout, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kodev", "build", "--push=false",
             f"--oci-layout-path={layout}", "--sbom=none", "./cmd/worker"],
            cwd=demo_module, env=kodev.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        inode = layout.stat().st_ino
        deadline = time.monotonic() + 180
        while not _waits_for_lock(proc.pid, inode):
            assert proc.poll() is None, f"kodev did not wait for the layout's lock: " \
                                        f"{proc.communicate()[1]}"
            assert time.monotonic() < deadline, "kodev never asked for the layout's lock"
            time.sleep(0.01)
        # The other writer's turn: its blobs and its entry in index.json.
        shutil.copytree(other / "blobs", layout / "blobs", dirs_exist_ok=True)
        shutil.copy(other / "oci-layout", layout / "oci-layout")
        (layout / "index.json").write_text((other / "index.json").read_text())
    finally:
        os.close(fd)  # releases the lock
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    web = json.loads((other / "index.json").read_text())["manifests"][0]["digest"]
    worker = stdout.strip().rsplit("@", 1)[1]
    assert sorted(_check_layout(layout)) == sorted([web, worker])
