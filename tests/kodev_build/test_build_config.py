""".ko.yaml build settings reach go build: checked on the binary with `go version -m`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.kodev import Kodev


def built_binaries(cache: Path, name: str) -> list[Path]:
    return sorted(cache.glob(f"bin/*/*/{name}"))


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
