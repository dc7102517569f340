"""``kodev version``: kodev's version, the Go toolchain builds would use, and the versions
of the Python packages kodev runs on (what a bug report needs)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
from typing import Any

from kodev import __version__
from kodev.golang.packages import go_binary

_GO_VERSION_TIMEOUT_SECONDS = 30.0


def go_toolchain() -> dict[str, str] | None:
    """``go env GOVERSION`` of ``KO_GO_PATH`` / ``go`` on PATH, or None when there is none."""
    path = shutil.which(go_binary(os.environ))
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "env", "GOVERSION", "GOOS", "GOARCH"], capture_output=True,
                              text=True, timeout=_GO_VERSION_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) != 3:
        return None
    return {"version": fields[0], "path": path, "host": f"{fields[1]}/{fields[2]}"}


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def dependency_versions() -> dict[str, str]:
    """The installed version of each runtime dependency kodev's package metadata declares
    (optional extras such as ``test`` left out); empty when kodev runs without metadata."""
    try:
        requirements = importlib.metadata.requires("kodev") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    versions: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT_NAME.match(requirement)
        if match is None or "extra ==" in requirement:
            continue
        name = match.group(0)
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def version_info() -> dict[str, Any]:
    return {"kodev": __version__, "go": go_toolchain(), "python": platform.python_version(),
            "dependencies": dependency_versions()}


def run(args: argparse.Namespace) -> int:
    info = version_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"kodev {info['kodev']}")
    go = info["go"]
    if go is None:
        print(f"go: not found ({go_binary(os.environ)}; install Go or set KO_GO_PATH)")
    else:
        print(f"go: {go['version']} {go['host']} ({go['path']})")
    print(f"python: {info['python']}")
    dependencies = info["dependencies"]
    if dependencies:
        print("dependencies: " + ", ".join(f"{name} {version}"
                                           for name, version in sorted(dependencies.items())))
    return 0
