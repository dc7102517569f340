"""What ``kodev build`` publishes, and what it leaves on disk (issue 13, items 1-3, 12, 15).

Every test runs kodev as users do (a subprocess) on a private copy of examples/demo, with
a real registry, real files and real signals; images are run with runc
(tests/support/runimage.py) where what matters is what the binary prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.kodev import Kodev, KodevRun
from tests.fixtures.up import edit, import_path
from tests.kodev_build.test_build_errors import assert_one_clear_line
from tests.support.runimage import run_image

WEB = "./cmd/web"
SKIPPED = "go build skipped"
# What a kodev killed mid-write could leave: temporary files beside their target
# (cache entries, layout blobs, a --tarball), streamed layers, go build's work directory.
TEMPORARY_PREFIXES = (".tmp-", "layer-", "go-build", "run-")


def _build(kodev: Kodev, repo: str, *args: str, **env: str) -> KodevRun:
    return kodev.run("build", *args, env={"KO_DOCKER_REPO": repo, **env})


def _catalog(registry: Any) -> list[str]:
    response = httpx.get(f"{registry.url}/v2/_catalog", params={"n": 1000}, timeout=10)
    response.raise_for_status()
    repositories: list[str] = response.json().get("repositories") or []
    return repositories


# --------------------------------------------------------------------------- item 1


@pytest.mark.registry
def test_an_env_var_read_by_an_ldflags_template_decides_up_to_date(
        kodev: Kodev, demo_module: Path, registry: Any) -> None:
    """Fault: .ko.yaml ldflags read {{.Env.VERSION}}; only VERSION changes between two
    builds. User sees: the second build runs go build and its image prints the new
    version (an unchanged VERSION still skips go build)."""
    edit(demo_module / ".ko.yaml", "{{.GoEnv.GOVERSION}}", "{{.Env.VERSION}}")
    repo = f"{registry.host}/stale"
    (first,) = _build(kodev, repo, WEB, VERSION="1.0.0").refs
    assert "built with: 1.0.0" in run_image(first, ["--once"]).stdout

    second = _build(kodev, repo, WEB, VERSION="2.0.0")
    assert SKIPPED not in second.stderr
    assert second.refs != [first]
    assert "built with: 2.0.0" in run_image(second.refs[0], ["--once"]).stdout

    again = _build(kodev, repo, WEB, VERSION="2.0.0")
    assert SKIPPED in again.stderr and again.refs == second.refs


@pytest.mark.registry
def test_goflags_from_the_go_env_file_decide_up_to_date(
        kodev: Kodev, demo_module: Path, registry: Any, tmp_path: Path) -> None:
    """Fault: only the go env -w file (GOENV) changes between two builds: it adds
    -ldflags through GOFLAGS. User sees: the second build runs go build, and its image
    has the new ldflags."""
    (demo_module / ".ko.yaml").write_text("defaultBaseImage: kodev://minimal\n")
    goenv = tmp_path / "goenv"
    goenv.write_text("")
    repo = f"{registry.host}/goenv"
    # GOFLAGS in the environment (make test exports -mod=mod) would hide the file's: go
    # reads the file's value when the variable is empty.
    env = {"GOENV": str(goenv), "GOFLAGS": ""}
    (first,) = _build(kodev, repo, WEB, **env).refs
    assert "built with: unknown" in run_image(first, ["--once"]).stdout

    goenv.write_text("GOFLAGS=-ldflags=-X=main.goVersion=from-goenv\n")
    second = _build(kodev, repo, WEB, **env)
    assert SKIPPED not in second.stderr
    assert "built with: from-goenv" in run_image(second.refs[0], ["--once"]).stdout


# --------------------------------------------------------------------------- item 2


@pytest.mark.registry
def test_a_comment_only_edit_of_a_main_package_keeps_the_digest(
        kodev: Kodev, demo_module: Path, registry: Any) -> None:
    """Fault: a comment is added to main.go (no code change; Go's build ID hashes the
    source). User sees: go build runs again and gives the same image digest."""
    repo = f"{registry.host}/comment"
    (first,) = _build(kodev, repo, WEB).refs
    main = demo_module / "cmd" / "web" / "main.go"
    main.write_text(main.read_text() + "\n// A comment-only edit.\n")
    second = _build(kodev, repo, WEB)
    assert SKIPPED not in second.stderr  # the binary really was built again
    assert second.refs == [first]


@pytest.mark.kube
def test_up_reports_a_comment_only_edit_of_a_main_package_unchanged(
        up_module: Path, start_up: Any, kube_env: Any) -> None:
    """Fault: under kodev up, a comment in a main package changes (same lines). User
    sees: "unchanged" (a byte-identical binary): nothing pushed, nothing rolled."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    edit(up_module / "cmd/gamma/main.go", "// main prints its name.",
         "// main prints the name of this binary.")
    event = up.wait_for(lambda e: e["event"] in ("unchanged", "built")
                        and e.get("importpath") == import_path("gamma"), since)
    assert event["event"] == "unchanged", up.dump(since)
    assert "byte-identical" in event["message"]
    assert not up.of_kind("pushed", since) and not up.of_kind("patched", since)


# --------------------------------------------------------------------------- item 3


def _kodata_is_a_link_to(target: Path) -> Callable[[Path], None]:
    def arrange(module: Path) -> None:
        kodata = module / "cmd" / "web" / "kodata"
        shutil.rmtree(kodata)
        os.symlink(target, kodata)
    return arrange


def _kodata_passes_through_a_link_to(target: Path) -> Callable[[Path], None]:
    """kodata is a relative link to a directory inside the repository, ``assets``, that
    itself is a link to ``target``: every directory on the way must stay inside."""
    def arrange(module: Path) -> None:
        kodata = module / "cmd" / "web" / "kodata"
        shutil.rmtree(kodata)
        os.symlink(target, module / "assets")
        os.symlink(Path("..") / ".." / "assets" / "kodata", kodata)
    return arrange


@pytest.mark.registry
@pytest.mark.parametrize("layout", ["kodata-link", "link-on-the-way"])
def test_kodata_leading_out_of_the_repository_is_refused(
        kodev: Kodev, demo_module: Path, registry: Any, tmp_path: Path, layout: str) -> None:
    """Fault: a package's kodata is a symlink (git keeps them) to a directory outside the
    repository holding a private key, directly or through a symlinked directory on the
    way. User sees: exit 2 with one line naming kodata and where it really is; nothing
    is pushed (the registry has no such repository)."""
    outside = tmp_path / "outside"
    (outside / "kodata").mkdir(parents=True)
    (outside / "kodata" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    arrange = (_kodata_is_a_link_to(outside / "kodata") if layout == "kodata-link"
               else _kodata_passes_through_a_link_to(outside))
    arrange(demo_module)
    repo = f"{registry.host}/escape-{layout}"
    result = kodev.run("build", WEB, check=False, env={"KO_DOCKER_REPO": repo})
    assert_one_clear_line(result, 2, "kodata", str(outside.resolve()))
    assert "PRIVATE KEY" not in result.stderr
    assert not [r for r in _catalog(registry) if r.startswith(f"escape-{layout}")]

    # Allowed explicitly: the same tree builds.
    allowed = kodev.run("build", "--push=false", WEB,
                        env={"KO_DATA_PATH_ALLOWED_ROOT": str(tmp_path)})
    assert allowed.returncode == 0


# --------------------------------------------------------------------------- items 12, 15


def _random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))


def _temporaries(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if path.name.startswith(TEMPORARY_PREFIXES):
                found.append(str(path))
        tmp = root / "tmp"
        if tmp.is_dir() and any(tmp.iterdir()):
            found.append(f"{tmp} is not empty: {sorted(p.name for p in tmp.iterdir())}")
    return found


def _wait_for_path(proc: subprocess.Popen[bytes], find: Callable[[], Path | None],
                   what: str, timeout: float = 180) -> Path:
    """Poll until ``find`` sees the path kodev is writing (the moment to send SIGTERM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"kodev exited ({proc.returncode}) before {what} appeared")
        time.sleep(0.005)
    raise AssertionError(f"{what} did not appear within {timeout}s")


def _first(root: Path, pattern: str) -> Callable[[], Path | None]:
    def find() -> Path | None:
        try:
            return next(iter(root.glob(pattern)), None)
        except OSError:  # a directory removed while it was listed
            return None
    return find


@pytest.mark.parametrize("moment", ["go build", "kodata layer", "layout blob", "tarball"])
def test_sigterm_while_building_leaves_no_temporary_files(
        kodev: Kodev, demo_module: Path, tmp_path: Path, moment: str) -> None:
    """Fault: SIGTERM while go build runs, while a layer is streamed into the cache, while
    a blob is copied into the OCI layout, while the --tarball is written. User sees:
    "kodev: terminated" (exit 143); no temporary file is left in KOCACHE, the layout
    directory, beside the tarball or in TMPDIR."""
    _random_file(demo_module / "cmd" / "web" / "kodata" / "big.bin", 96 << 20)
    cache = Path(kodev.env["KOCACHE"])
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = tmp_path / "out"
    layout, tarball = out / "layout", out / "image.tar"
    args = ["build", "--push=false", f"--oci-layout-path={layout}", f"--tarball={tarball}",
            "--sbom=none", WEB]
    env = {**kodev.env, "TMPDIR": str(tmpdir)}
    if moment != "go build":  # a warm cache: go build skipped, the layers come sooner
        subprocess.run([sys.executable, "-m", "kodev", *args], cwd=demo_module, env=env,
                       check=True, capture_output=True)
        shutil.rmtree(out)
    find = {
        "go build": _first(cache, "tmp/go-build-*/tmp/go-build*"),  # go build's WORK dir
        "kodata layer": _first(cache, "tmp/run-*/layer-*"),
        "layout blob": _first(layout, "blobs/sha256/.tmp-*"),
        "tarball": _first(out, ".tmp-*"),
    }[moment]
    _terminate_when(find, moment, args, demo_module, env)
    assert _temporaries(cache, out) == []
    assert list(tmpdir.iterdir()) == []
    # Nothing half-written is trusted later: the next build works and its layout is valid.
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "kodev", *args], cwd=demo_module, env=env,
                   check=True, capture_output=True)
    _check_layout(layout)


def _terminate_when(find: Callable[[], Path | None], what: str, args: list[str], cwd: Path,
                    env: dict[str, str]) -> None:
    """Run kodev, send SIGTERM the moment ``find`` sees ``what``, check it says so."""
    proc = subprocess.Popen([sys.executable, "-m", "kodev", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_path(proc, find, what)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr.decode(errors="replace")
    assert "kodev: terminated" in stderr.decode(errors="replace")


@pytest.mark.registry
@pytest.mark.parametrize("moment", ["kodata layer", "upload"])
def test_sigterm_while_resolving_leaves_no_temporary_files(
        kodev: Kodev, demo_module: Path, registry: Any, tmp_path: Path, moment: str) -> None:
    """Fault: SIGTERM during kodev resolve, while a layer is streamed into the cache, or
    while a layer is uploaded to the registry. User sees: "kodev: terminated" (exit 143);
    no temporary file is left in KOCACHE or TMPDIR, and a second resolve works."""
    _random_file(demo_module / "cmd" / "web" / "kodata" / "big.bin", 96 << 20)
    cache = Path(kodev.env["KOCACHE"])
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    name = f"resolve-{moment.replace(' ', '-')}"
    env = {**kodev.env, "TMPDIR": str(tmpdir), "KO_DOCKER_REPO": f"{registry.host}/{name}"}
    args = ["resolve", "-f", "config", "--sbom=none"]
    find = {
        "kodata layer": _first(cache, "tmp/run-*/layer-*"),
        "upload": _first(registry.storage, f"docker/registry/v2/repositories/{name}/*/_uploads/*"),
    }[moment]
    _terminate_when(find, moment, args, demo_module, env)
    assert _temporaries(cache) == []
    assert list(tmpdir.iterdir()) == []
    again = subprocess.run([sys.executable, "-m", "kodev", *args], cwd=demo_module, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{registry.host}/{name}/web" in again.stdout


def _check_layout(layout: Path) -> list[str]:
    """Every blob of the layout has the digest of its name; returns the listed digests."""
    import hashlib

    for blob in (layout / "blobs" / "sha256").iterdir():
        digest = hashlib.sha256()
        with blob.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert digest.hexdigest() == blob.name, f"{blob} is half-written or wrong"
    index = json.loads((layout / "index.json").read_text())
    return [m["digest"] for m in index["manifests"]]


def test_a_large_kodata_file_is_streamed_into_the_tarball_and_layout(
        kodev: Kodev, demo_module: Path, tmp_path: Path) -> None:
    """Fault: a 384 MiB kodata file, written with --tarball and --oci-layout-path. User
    sees: kodev's memory stays far below the file's size (layers, layout blobs and the
    tarball are streamed, never held whole); skopeo reads the tarball."""
    size = 384 << 20
    _random_file(demo_module / "cmd" / "web" / "kodata" / "big.bin", size)
    out = tmp_path / "out"
    args = ["build", "--push=false", f"--oci-layout-path={out / 'layout'}",
            f"--tarball={out / 'image.tar'}", "--sbom=none", WEB]
    # The first build compiles (go's own memory would count below); the measured one
    # finds the binary up to date and only streams.
    first = kodev.run(*args)
    shutil.rmtree(out)
    proc = subprocess.Popen([sys.executable, "-m", "kodev", *args], cwd=demo_module,
                            env=kodev.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr.decode(errors="replace")
    assert SKIPPED in stderr.decode() and SKIPPED not in first.stderr
    peak = usage.ru_maxrss << 10  # KiB on Linux
    print(f"kodev peak RSS with a {size >> 20} MiB kodata file: {peak >> 20} MiB")
    assert peak < size // 2, f"peak RSS {peak >> 20} MiB for a {size >> 20} MiB layer"
    assert (out / "image.tar").stat().st_size > size
    _check_layout(out / "layout")
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{out / 'image.tar'}"],
        check=True, capture_output=True, text=True)
    assert len(json.loads(inspect.stdout)["Layers"]) >= 2
