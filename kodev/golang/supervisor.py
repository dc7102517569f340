"""The live supervisor of ``kodev up --live`` (source: ``supervisor/main.go`` beside this
file, shipped inside the kodev package). It is built with the developer's own Go
toolchain, once per platform and Go version, into KOCACHE; only images that ``kodev up
--live`` builds carry it (at ``/kodev/live``, as their entrypoint).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from kodev.cache import Cache
from kodev.errors import BuildError
from kodev.golang.builder import BuiltBinary, build_environment, describe_binary
from kodev.golang.packages import go_binary
from kodev.oci.platform import Platform

SOURCE = Path(__file__).with_name("supervisor")
IMAGE_PATH = "/kodev/live"  # where the supervisor sits in a live image
LIVE_DIR = "/kodev-live"  # the emptyDir kodev mounts in live mode (see supervisor/main.go)


def supervisor_binary(platform: Platform, cache: Cache, environ: Mapping[str, str]
                      ) -> BuiltBinary:
    """The supervisor for ``platform``, built on first use and cached by its source, the
    Go version and the platform."""
    go = go_binary(environ)
    env = build_environment(platform, environ, ())
    env.update(GOFLAGS="-mod=mod", GOWORK="off", CGO_ENABLED="0")
    source = b"".join(p.read_bytes() for p in sorted(SOURCE.iterdir()) if p.is_file())
    version = _go_version(go, env)
    key = hashlib.sha256(source + version.encode() + platform.slug.encode()).hexdigest()[:16]
    out = cache.path("live", key, "kodev-live")
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            built = Path(tmp) / "kodev-live"
            proc = subprocess.run([go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(built),
                                   "."], cwd=SOURCE, env=env, capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise BuildError(f"building the live supervisor for {platform} failed",
                                 output=(proc.stderr or proc.stdout).strip(),
                                 hint="kodev up --live builds it with your Go toolchain; "
                                      "run without --live to roll out new images instead")
            os.replace(built, out)
    return describe_binary("kodev.dev/live", platform, out)


def _go_version(go: str, env: Mapping[str, str]) -> str:
    proc = subprocess.run([go, "env", "GOVERSION"], env=dict(env), capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip()
