"""Deterministic layers: tar entries with fixed owners, modes and times, gzip without timestamps.

A layer is described by its compressed digest, its uncompressed ``diff_id`` and a way to
get the compressed bytes. Layers built here keep their bytes; layers of a base image only
know where they live (a registry repository), so they are mounted or streamed, never
downloaded just to be uploaded again.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import types
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kodev.errors import UsageError
from kodev.oci.mediatypes import OCI_LAYER_GZIP

_deflate_impl: types.ModuleType
try:  # ISA-L's deflate is 5-7x faster than zlib at the same ratio (see README, Performance).
    from isal import isal_zlib

    _deflate_impl = isal_zlib
    COMPRESSOR = "isal-" + str(getattr(isal_zlib, "ISAL_VERSION", "2"))
except ImportError:  # pragma: no cover - isal is a declared dependency
    _deflate_impl = zlib
    COMPRESSOR = "zlib-" + zlib.ZLIB_VERSION
_LEVEL = 1

# Windows layers mark every file with this security descriptor (ko, pkg/build/layer.go).
WINDOWS_RAWSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="
WINDOWS_FILE_PAX = {"MSWINDOWS.rawsd": WINDOWS_RAWSD}
# A Windows layer keeps registry hives in Hives/ and the file system under Files/; like ko,
# directories are plain 0555 entries and only files carry the security descriptor.
WINDOWS_ROOT_DIRS = ("Hives", "Files")


@dataclass(frozen=True)
class BlobLocation:
    """Where an existing blob can be copied or mounted from."""

    registry: str
    repository: str


@dataclass
class Layer:
    """A layer descriptor plus how to obtain its compressed bytes."""

    digest: str
    diff_id: str
    size: int
    media_type: str = OCI_LAYER_GZIP
    data: bytes | None = None
    location: BlobLocation | None = None
    annotations: dict[str, str] | None = None
    urls: list[str] | None = None
    producer: Callable[[], bytes] | None = None

    @property
    def local(self) -> bool:
        """True when kodev can produce the bytes itself (not only copy them from a registry)."""
        return self.data is not None or self.producer is not None

    def read(self) -> bytes:
        if self.data is None:
            if self.producer is None:
                raise ValueError(f"layer {self.digest} has no local bytes")
            self.data = self.producer()
        return self.data

    def descriptor(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "size": self.size,
            "digest": self.digest,
        }
        if self.urls:
            out["urls"] = self.urls
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    def opener(self) -> Callable[[], io.BytesIO]:
        return lambda: io.BytesIO(self.read())


def gzip_deterministic(raw: bytes) -> bytes:
    """gzip with no name and mtime 0, so equal input gives equal output on every machine."""
    compressor = _deflate_impl.compressobj(_LEVEL, zlib.DEFLATED, -15)
    body: bytes = compressor.compress(raw) + compressor.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", zlib.crc32(raw) & 0xFFFFFFFF, len(raw) & 0xFFFFFFFF)
    return header + body + trailer


def layer_from_tar(raw_tar: bytes, media_type: str = OCI_LAYER_GZIP) -> Layer:
    compressed = gzip_deterministic(raw_tar)
    return Layer(
        digest="sha256:" + hashlib.sha256(compressed).hexdigest(),
        diff_id="sha256:" + hashlib.sha256(raw_tar).hexdigest(),
        size=len(compressed),
        media_type=media_type,
        data=compressed,
    )


class TarBuilder:
    """Writes tar entries with uid/gid 0, empty owner names and a fixed mtime."""

    def __init__(self, mtime: int = 0) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(  # noqa: SIM115 - closed in finish()
            fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT
        )
        self.mtime = mtime

    def _info(
        self, name: str, kind: bytes, mode: int, pax: dict[str, str] | None
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if pax:
            info.pax_headers = dict(pax)
        return info

    def add_dir(
        self, name: str, mode: int = 0o755, pax: dict[str, str] | None = None, *, uid: int = 0
    ) -> None:
        info = self._info(name, tarfile.DIRTYPE, mode, pax)
        info.uid = info.gid = uid
        self.tar.addfile(info)

    def add_file(
        self, name: str, data: bytes, mode: int = 0o644, pax: dict[str, str] | None = None
    ) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, pax)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def add_file_from(
        self, name: str, path: Path, mode: int, pax: dict[str, str] | None = None
    ) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, pax)
        info.size = path.stat().st_size
        with path.open("rb") as f:
            self.tar.addfile(info, f)

    def add_symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777, None)
        info.linkname = target
        self.tar.addfile(info)

    def finish(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def binary_layer_tar(
    binary: Path,
    name: str,
    *,
    windows: bool = False,
    mtime: int = 0,
    capability_xattr: bytes | None = None,
) -> bytes:
    """The application layer: ``/ko-app/<name>`` (mode 0555), or the Windows layout."""
    tar = TarBuilder(mtime)
    if windows:
        for directory in (*WINDOWS_ROOT_DIRS, "Files/ko-app"):
            tar.add_dir(directory, 0o555)
        tar.add_file_from(f"Files/ko-app/{name}", binary, 0o555, WINDOWS_FILE_PAX)
        return tar.finish()
    pax = None
    if capability_xattr is not None:
        pax = {"SCHILY.xattr.security.capability": capability_xattr.decode("latin-1")}
    tar.add_dir("ko-app", 0o555)
    tar.add_file_from(f"ko-app/{name}", binary, 0o555, pax)
    return tar.finish()


def live_layer_tar(supervisor: Path, *, mtime: int = 0) -> bytes:
    """The live supervisor of ``kodev up --live`` at ``/kodev/live`` (mode 0555)."""
    tar = TarBuilder(mtime)
    tar.add_dir("kodev", 0o555)
    tar.add_file_from("kodev/live", supervisor, 0o555, None)
    return tar.finish()


def kodata_layer_tar(
    kodata: Path, *, allowed_root: Path, windows: bool = False, mtime: int = 0,
    live: bool = False,
) -> bytes:
    """``kodata/`` at ``/var/run/ko`` with every entry mode 0555, symlinks dereferenced.

    A symlink may point anywhere inside ``allowed_root`` (ko's rule on main: the git root,
    or ``KO_DATA_PATH_ALLOWED_ROOT``); a link that escapes it is an error, not a silent copy.

    ``live`` (``kodev up --live`` only): the files go to ``/kodev/kodata`` and
    ``/var/run/ko`` is a symlink to ``/kodev-live/kodata``, which the live supervisor
    points at them, and at newer kodata after a live swap.
    """
    tar = TarBuilder(mtime)
    if windows:
        prefix, pax = "Files/var/run/ko", WINDOWS_FILE_PAX
        for directory in (*WINDOWS_ROOT_DIRS, "Files/var", "Files/var/run", prefix):
            tar.add_dir(directory, 0o555)
    elif live:
        prefix, pax = "kodev/kodata", None
        for parent in ("var", "var/run"):
            tar.add_dir(parent, 0o755)
        tar.add_symlink("var/run/ko", "/kodev-live/kodata")
        tar.add_dir("kodev", 0o555)
        tar.add_dir(prefix, 0o555)
    else:
        prefix, pax = "var/run/ko", None
        for parent in ("var", "var/run"):
            tar.add_dir(parent, 0o755)
        tar.add_dir(prefix, 0o555)
    if kodata.is_dir():
        root = allowed_root.resolve()
        for rel, path in _walk_kodata(kodata, root, windows=windows):
            if path.is_dir():
                tar.add_dir(f"{prefix}/{rel}", 0o555)
            else:
                tar.add_file_from(f"{prefix}/{rel}", path, 0o555, pax)
    return tar.finish()


def kodata_tar(kodata: Path, *, allowed_root: Path) -> bytes:
    """``kodata/`` as a plain tar with relative names (what a live swap sends), by the
    same rules as the image's kodata layer."""
    tar = TarBuilder(0)
    if kodata.is_dir():
        for rel, path in _walk_kodata(kodata, allowed_root.resolve(), windows=False):
            if path.is_dir():
                tar.add_dir(rel, 0o555)
            else:
                tar.add_file_from(rel, path, 0o555)
    return tar.finish()


def _walk_kodata(
    top: Path,
    allowed_root: Path,
    *,
    windows: bool,
    rel: str = "",
    seen: frozenset[Path] = frozenset(),
) -> Iterator[tuple[str, Path]]:
    real_top = top.resolve()
    if real_top in seen:
        raise UsageError(f"kodata symlink loop at {top}")
    for entry in sorted(os.scandir(top), key=lambda e: e.name):
        path = Path(entry.path)
        name = f"{rel}{entry.name}"
        if entry.is_symlink():
            if windows:
                continue
            target = path.resolve()
            if not target.is_relative_to(allowed_root):
                raise UsageError(
                    f"kodata symlink {path} points outside {allowed_root} (to {target})",
                    hint="copy the file into kodata/ or set KO_DATA_PATH_ALLOWED_ROOT",
                )
            if not target.exists():
                raise UsageError(f"kodata symlink {path} is broken (target {target} is missing)")
            path = target
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            yield name, path
            yield from _walk_kodata(
                path, allowed_root, windows=windows, rel=name + "/", seen=seen | {real_top}
            )
        elif stat.S_ISREG(mode):
            yield name, path
