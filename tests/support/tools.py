"""Tools built from Go modules for the tests (Skaffold, OpenTofu): each has a build script
with ``--check`` (cached?) and ``--print`` (its path), run by a make target before pytest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def built_tool(script: Path, make_target: str, module: str) -> str:
    """The path of the tool ``script`` builds; a missing one fails the test (a skip would
    hide it) with the make target that builds it."""
    check = subprocess.run([str(script), "--check"], check=False)
    if check.returncode != 0:
        pytest.fail(f"{make_target} is not built: run `make {make_target}` (builds {module} "
                    "from the module proxy)")
    return subprocess.run([str(script), "--print"], check=True, capture_output=True,
                          text=True).stdout.strip()
