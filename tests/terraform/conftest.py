"""Fixtures for the provider tests: the real OpenTofu CLI (built by tests/terraform/build.sh
from the Go module proxy), the provider installed the two ways users install it (a
filesystem mirror for ``tofu init``, ``dev_overrides``), and a ``go`` on PATH that records
every invocation, so a test can tell a plan ran no ``go build``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.kodev import REPO_ROOT, TOOLS_BIN
from tests.support.tools import built_tool

BUILD_SCRIPT = REPO_ROOT / "tests" / "terraform" / "build.sh"
PROVIDER_SOURCE = "registry.opentofu.org/kodev/kodev"
COLORED = ("init", "plan", "apply", "destroy", "output")  # the commands taking -no-color


@pytest.fixture(scope="session")
def tofu_bin() -> str:
    """The tofu binary `make tofu` built (a missing one fails the test: a skip would
    hide it)."""
    return built_tool(BUILD_SCRIPT, "tofu", "github.com/opentofu/opentofu/cmd/tofu")


def recording_go(bin_dir: Path, calls: Path) -> Path:
    """A ``go`` first on PATH: appends its arguments to ``calls``, then runs the real go."""
    real = shutil.which("go")
    assert real is not None, "go is not on PATH"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "go"
    script.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "$*" >> "{calls}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return bin_dir


def write_mirror(directory: Path) -> Path:
    """The provider in a filesystem mirror, written by its own ``mirror`` command."""
    proc = subprocess.run([sys.executable, "-m", "kodev.terraform", "mirror", str(directory)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


@dataclass
class Tofu:
    """``tofu`` in one root module directory, with a private KOCACHE, CLI config, log and
    recording ``go``."""

    binary: str
    workdir: Path
    env: dict[str, str]
    go_calls: Path
    log_path: Path
    runs: list[str] = field(default_factory=list)

    def run(self, *args: str, expect: int | tuple[int, ...] = 0,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        if args and args[0] in COLORED:
            args = (args[0], "-no-color", *args[1:])
        proc = subprocess.run([self.binary, *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        codes = (expect,) if isinstance(expect, int) else expect
        assert proc.returncode in codes, (
            f"tofu {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def go_mark(self) -> int:
        return len(self.go_lines())

    def go_lines(self, since: int = 0) -> list[str]:
        if not self.go_calls.exists():
            return []
        return self.go_calls.read_text().splitlines()[since:]

    def log_mark(self) -> int:
        return len(self.log_text())

    def log_text(self, since: int = 0) -> str:
        return self.log_path.read_text()[since:] if self.log_path.exists() else ""

    def provider_messages(self, since: int = 0) -> list[str]:
        """The provider's own log lines (its stderr, relayed by tofu) from ``since``."""
        return [line for line in self.log_text(since).splitlines() if "kodev: " in line]

    def outputs(self) -> dict[str, object]:
        data = json.loads(self.run("output", "-json").stdout)
        return {name: entry["value"] for name, entry in data.items()}

    def write(self, main_tf: str) -> None:
        (self.workdir / "main.tf").write_text(main_tf)


def tofu_env(tmp_path: Path, cli_config: str, go_calls: Path, log_path: Path
             ) -> dict[str, str]:
    config = tmp_path / "tofurc"
    config.write_text(cli_config)
    go_dir = recording_go(tmp_path / "go-bin", go_calls)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KO_", "KOCACHE", "TF_"))}
    env.update(
        PATH=f"{go_dir}{os.pathsep}{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO_ROOT),
        KOCACHE=str(tmp_path / "kocache"),
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
        TF_CLI_CONFIG_FILE=str(config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        TF_LOG_PROVIDER="INFO",
        TF_LOG_PATH=str(log_path),
        NO_COLOR="1",
    )
    return env


@pytest.fixture
def tofu(tofu_bin: str, tmp_path: Path) -> Tofu:
    """tofu with the provider from a filesystem mirror (``tofu init`` installs it, with
    nothing from the network)."""
    mirror = tmp_path / "mirror"
    write_mirror(mirror)
    cli_config = (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n'
        f'    include = ["{PROVIDER_SOURCE}"]\n  }}\n'
        "}\n"
    )
    workdir = tmp_path / "infra"
    workdir.mkdir()
    go_calls, log_path = tmp_path / "go-calls", tmp_path / "tofu.log"
    return Tofu(tofu_bin, workdir, tofu_env(tmp_path, cli_config, go_calls, log_path),
                go_calls, log_path)


def provider_block(repo: str, extra: str = "") -> str:
    return (
        'terraform {\n  required_providers {\n'
        '    kodev = { source = "kodev/kodev" }\n  }\n}\n\n'
        f'provider "kodev" {{\n  repo = "{repo}"\n{extra}}}\n\n'
    )
