"""``kodev version``: kodev's version and the Go toolchain builds would use."""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def version_info() -> dict[str, Any]:
    return {"kodev": __version__, "go": go_toolchain(), "python": platform.python_version()}


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
    return 0
