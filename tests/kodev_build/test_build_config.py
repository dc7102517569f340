""".ko.yaml build settings reach go build: checked on the binary with `go version -m`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.fixtures.kodev import Kodev


def built_binaries(cache: Path, name: str) -> list[Path]:
    """KOCACHE/bin/<platform>/<settings>/<name>/<sha256>/<name>"""
    return sorted(p for p in cache.glob(f"bin/**/{name}") if p.is_file())


def test_build_env_wins_over_the_cgo_default(kodev: Kodev, demo_module: Path) -> None:
    (demo_module / ".ko.yaml").write_text(
        "defaultBaseImage: scratch\n"
        "builds:\n"
        "- id: web\n"
        "  main: ./cmd/web\n"
        "  env: [CGO_ENABLED=1, GOEXPERIMENT=]\n"
        "  flags: [-tags, kodevtest]\n"
        '  ldflags: ["-X main.goVersion=cgo{{.Env.CGO_ENABLED}}"]\n'
    )
    kodev.run("build", "--push=false", "--sbom=none", "./cmd/web")
    (binary,) = built_binaries(Path(kodev.env["KOCACHE"]), "web")
    info = subprocess.run(["go", "version", "-m", str(binary)], check=True,
                          capture_output=True, text=True).stdout
    assert "CGO_ENABLED=1" in info
    assert "-tags=kodevtest" in info
    # -trimpath keeps ldflags out of the build info, so run the (host) binary itself.
    run = subprocess.run([str(binary), "--once"], capture_output=True, text=True, check=True,
                         env={"KO_DATA_PATH": str(demo_module / "cmd" / "web" / "kodata")})
    assert "built with: cgo1" in run.stdout


def _build_id(binary: Path) -> str:
    return subprocess.run(["go", "tool", "buildid", str(binary)], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_every_form_of_user_ldflags_is_kept_with_an_empty_build_id(
        kodev: Kodev, demo_module: Path) -> None:
    """The empty Go build ID (identical code, identical binary) is merged into the
    user's ldflags wherever go build takes them from: a -ldflags in the build's flags in
    the pattern form, and GOFLAGS."""
    cache = Path(kodev.env["KOCACHE"])
    kodata = {"KO_DATA_PATH": str(demo_module / "cmd" / "web" / "kodata")}
    cases = {
        "pattern": ("  flags: [-ldflags=all=-X=main.goVersion=from-pattern]\n", {}),
        "goflags": ("", {"GOFLAGS": "-ldflags=-X=main.goVersion=from-goflags"}),
    }
    for name, (flags, env) in cases.items():
        (demo_module / ".ko.yaml").write_text(
            "defaultBaseImage: scratch\nbuilds:\n- id: web\n  main: ./cmd/web\n" + flags)
        shutil.rmtree(cache, ignore_errors=True)
        kodev.run("build", "--push=false", "--sbom=none", "./cmd/web", env=env)
        (binary,) = built_binaries(cache, "web")
        assert _build_id(binary) == "", name
        run = subprocess.run([str(binary), "--once"], capture_output=True, text=True,
                             check=True, env=kodata)
        assert f"built with: from-{name}" in run.stdout
