"""Fixtures for the Skaffold hook tests: ``kodev`` on PATH as Skaffold and Tilt call it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev


def install_kodev_command(bin_dir: Path) -> Path:
    """A ``kodev`` executable that runs this checkout's kodev with this Python."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "kodev"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kodev "$@"\n')
    script.chmod(0o755)
    return bin_dir


# What Skaffold and Tilt set; each test sets its own.
HOOK_VARIABLES = ("IMAGE", "PUSH_IMAGE", "BUILD_CONTEXT", "PLATFORMS", "SKIP_TEST",
                  "EXPECTED_REF", "EXPECTED_IMAGE", "EXPECTED_TAG", "DOCKER_HOST")


@pytest.fixture
def hook_env(kodev: Kodev, tmp_path: Path) -> dict[str, str]:
    """The kodev fixture's environment (private KOCACHE, crane on PATH) with ``kodev``
    itself first on PATH, so ``sh -c "kodev skaffold build ..."`` runs this checkout."""
    bin_dir = install_kodev_command(tmp_path / "bin")
    env = {k: v for k, v in kodev.env.items() if k not in HOOK_VARIABLES}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env
