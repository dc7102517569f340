"""kodev's on-disk cache (``KOCACHE``, else the user cache directory).

Layout::

    bin/<platform>/<settings-hash>/      stable go build output dirs (no relink when unchanged)
    blobs/sha256/<hex>                  manifests and configs of base images, by digest
    meta/<kind>/<key>.json              small records: binary layer by binary hash, kodata layer
    base/<name>.tar.gz                  kodev's built-in base layer

Every write goes to a temporary file first and is renamed into place, so a killed
kodev never leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("KOCACHE"):
        return Path(env["KOCACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kodev"


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cache:
    def __init__(self, root: Path, *, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    @property
    def bin_root(self) -> Path:
        return self.root / "bin"

    def _blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def get_blob(self, digest: str) -> bytes | None:
        """A cached blob, verified: a corrupted entry is treated as missing."""
        if not self.enabled:
            return None
        try:
            data = self._blob_path(digest).read_bytes()
        except OSError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return None
        return data

    def put_blob(self, digest: str, data: bytes) -> None:
        if self.enabled:
            atomic_write(self._blob_path(digest), data)

    def _meta_path(self, kind: str, key: str) -> Path:
        return self.root / "meta" / kind / f"{key}.json"

    def get_meta(self, kind: str, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            value = json.loads(self._meta_path(kind, key).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put_meta(self, kind: str, key: str, value: Mapping[str, Any]) -> None:
        if self.enabled:
            atomic_write(self._meta_path(kind, key), json.dumps(value, sort_keys=True).encode())

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)
