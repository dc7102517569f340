"""Deterministic layers: tar entries with fixed owners, modes and times, gzip without timestamps.

A layer is described by its compressed digest, its uncompressed ``diff_id`` and a way to
get the compressed bytes. Layers built here are streamed (tar, then gzip in fixed 1 MiB
blocks, then a file) into a private directory, so no layer is ever held in memory whole;
layers of a base image only know where they live (a registry repository), so they are
mounted or streamed, never downloaded just to be uploaded again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import stat
import struct
import tarfile
import threading
import types
import weakref
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from kodev.cache import temporary_file
from kodev.errors import UsageError
from kodev.oci.caps import PAX_RECORD
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
# Layers are compressed in blocks of exactly this size (GzipSink): the bytes depend on
# the split, so a fixed one is what keeps digests reproducible.
_BLOCK = 1 << 20
# Part of every cache key that holds a layer digest: how the bytes were compressed.
COMPRESSOR += "-blocks1m"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

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
    # A file holding the compressed bytes, or how to write one (a layer whose digest is
    # known from the cache is only written if something needs its bytes).
    path: Path | None = None
    producer: Callable[[], Path] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def local(self) -> bool:
        """True when kodev can produce the bytes itself (not only copy them from a registry)."""
        return self.data is not None or self.path is not None or self.producer is not None

    def file(self) -> Path | None:
        """The file with the compressed bytes (written now if it is not yet)."""
        with self._lock:
            if self.path is None and self.producer is not None:
                self.path = self.producer()
            return self.path

    def open(self) -> BinaryIO:
        """The compressed bytes as a stream."""
        if self.data is not None:
            return io.BytesIO(self.data)
        path = self.file()
        if path is None:
            raise ValueError(f"layer {self.digest} has no local bytes")
        return path.open("rb")

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        with self.open() as f:
            return f.read()

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

    def opener(self) -> Callable[[], BinaryIO]:
        return self.open


def gzip_deterministic(raw: bytes) -> bytes:
    """gzip with no name and mtime 0, so equal input gives equal output on every machine
    (the same bytes :class:`GzipSink` writes for a streamed layer)."""
    out = io.BytesIO()
    sink = GzipSink(out)
    sink.write(raw)
    sink.finish()
    return out.getvalue()


def _deflate_block(block: bytes, window: bytes) -> bytes:
    """One block as raw deflate, primed with the 32 KiB before it and ended with a sync
    flush (byte-aligned, not final): blocks compressed apart concatenate into one stream,
    and each block's bytes depend on the block and its window only."""
    if window:
        compressor = _deflate_impl.compressobj(_LEVEL, zlib.DEFLATED, -15, zdict=window)
    else:
        compressor = _deflate_impl.compressobj(_LEVEL, zlib.DEFLATED, -15)
    out: bytes = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out


_FINAL_BLOCK: bytes = _deflate_impl.compressobj(_LEVEL, zlib.DEFLATED, -15).flush()
_WINDOW = 32 * 1024  # deflate's window: what a block may refer back to
_COMPRESS_THREADS = max(1, min(4, os.cpu_count() or 1))


class GzipSink:
    """Where a streamed layer's tar goes: gzip into ``out``, hashing the tar (diff_id) and
    the gzip (digest) on the way.

    The tar is cut into fixed 1 MiB blocks that are compressed on several threads at once
    (ISA-L and zlib release the GIL), the way pigz does: each block is primed with the
    32 KiB before it and sync-flushed, so the bytes do not depend on how many threads
    ran, only on the input. At most two blocks per thread are in flight: memory stays
    bounded whatever the layer's size. The hashing and the file writes run on the
    calling thread meanwhile."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self._pending = bytearray()
        self._window = b""
        self._inflight: collections.deque[Future[bytes]] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None
        self._raw = hashlib.sha256()
        self._gz = hashlib.sha256()
        self._crc = 0
        self.raw_size = 0
        self.size = 0
        self._emit(_GZIP_HEADER)

    def _emit(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self._gz.update(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        self._raw.update(data)
        self._crc = _deflate_impl.crc32(data, self._crc)
        self.raw_size += len(data)
        self._pending += data
        while len(self._pending) >= _BLOCK:
            self._submit(bytes(self._pending[:_BLOCK]))
            del self._pending[:_BLOCK]
        return len(data)

    def _submit(self, block: bytes) -> None:
        window, self._window = self._window, block[-_WINDOW:]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_COMPRESS_THREADS, thread_name_prefix="gzip")
        self._inflight.append(self._pool.submit(_deflate_block, block, window))
        while len(self._inflight) > 2 * _COMPRESS_THREADS:
            self._emit(self._inflight.popleft().result())

    def tell(self) -> int:  # tarfile asks where it is
        return self.raw_size

    def finish(self) -> tuple[str, str, int]:
        """(diff_id, digest, compressed size) once the tar is complete."""
        try:
            while self._inflight:
                self._emit(self._inflight.popleft().result())
            if self._pending:  # the last, short block: no thread needed
                self._emit(_deflate_block(bytes(self._pending), self._window))
                self._pending.clear()
        finally:
            self.close()
        self._emit(_FINAL_BLOCK)
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self.raw_size & 0xFFFFFFFF))
        return ("sha256:" + self._raw.hexdigest(), "sha256:" + self._gz.hexdigest(), self.size)

    def close(self) -> None:
        """Stop the compression threads (also when the layer is abandoned half-way)."""
        for future in self._inflight:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def stream_layer(
    directory: Path, fill: Callable[[TarBuilder], None], *, mtime: int = 0
) -> tuple[Path, str, str, int]:
    """Stream a layer into a new file in ``directory`` (an existing private directory;
    ``fill`` adds the tar entries); returns (file, diff_id, digest, size). A failure or
    an interruption removes the partial file at once."""
    with temporary_file(directory, prefix="layer-") as (out, path):
        sink = GzipSink(out)
        try:
            tar = TarBuilder(mtime, fileobj=sink)
            fill(tar)
            tar.close()
            diff_id, digest, size = sink.finish()
        finally:
            sink.close()
    return path, diff_id, digest, size


def write_layer(
    directory: Path,
    fill: Callable[[TarBuilder], None],
    *,
    mtime: int = 0,
    media_type: str = OCI_LAYER_GZIP,
) -> Layer:
    """:func:`stream_layer` as a Layer that owns the file: it is removed when the Layer is
    garbage collected (a long ``kodev up`` keeps only the layers it still uses) and, at
    the latest, with ``directory``."""
    path, diff_id, digest, size = stream_layer(directory, fill, mtime=mtime)
    layer = Layer(digest=digest, diff_id=diff_id, size=size, media_type=media_type, path=path)
    own_file(layer, path)
    return layer


def own_file(owner: object, path: Path) -> None:
    """Remove ``path`` when ``owner`` is garbage collected."""
    weakref.finalize(owner, _unlink_quietly, str(path))


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


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

    def __init__(self, mtime: int = 0, fileobj: GzipSink | None = None) -> None:
        """In memory (``finish()`` returns the bytes), or streamed into ``fileobj``."""
        self.buffer = io.BytesIO()
        target: IO[bytes] = fileobj or self.buffer  # type: ignore[assignment]
        self.tar = tarfile.TarFile(  # closed in finish() or close()
            fileobj=target, mode="w", format=tarfile.PAX_FORMAT,
            copybufsize=_BLOCK,  # files go to the sink in 1 MiB reads, not 16 KiB
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

    def close(self) -> None:
        self.tar.close()

    def finish(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def add_binary(
    tar: TarBuilder,
    binary: Path,
    name: str,
    *,
    windows: bool = False,
    capability_xattr: bytes | None = None,
) -> None:
    """The application layer: ``/ko-app/<name>`` (mode 0555), or the Windows layout."""
    if windows:
        for directory in (*WINDOWS_ROOT_DIRS, "Files/ko-app"):
            tar.add_dir(directory, 0o555)
        tar.add_file_from(f"Files/ko-app/{name}", binary, 0o555, WINDOWS_FILE_PAX)
        return
    pax = None
    if capability_xattr is not None:
        # tarfile writes a PAX value as UTF-8; surrogateescape keeps bytes that are not
        # UTF-8 exactly as they are (with a hdrcharset=BINARY record, as POSIX says).
        pax = {PAX_RECORD: capability_xattr.decode("utf-8", "surrogateescape")}
    tar.add_dir("ko-app", 0o555)
    tar.add_file_from(f"ko-app/{name}", binary, 0o555, pax)


def binary_layer_tar(
    binary: Path,
    name: str,
    *,
    windows: bool = False,
    mtime: int = 0,
    capability_xattr: bytes | None = None,
) -> bytes:
    """:func:`add_binary` as an in-memory tar (small binaries and tests)."""
    tar = TarBuilder(mtime)
    add_binary(tar, binary, name, windows=windows, capability_xattr=capability_xattr)
    return tar.finish()


def add_live(tar: TarBuilder, supervisor: Path) -> None:
    """The live supervisor of ``kodev up --live`` at ``/kodev/live`` (mode 0555)."""
    tar.add_dir("kodev", 0o555)
    tar.add_file_from("kodev/live", supervisor, 0o555, None)


def live_layer_tar(supervisor: Path, *, mtime: int = 0) -> bytes:
    tar = TarBuilder(mtime)
    add_live(tar, supervisor)
    return tar.finish()


def add_kodata(
    tar: TarBuilder, kodata: Path, *, allowed_root: Path, windows: bool = False,
    live: bool = False,
) -> None:
    """``kodata/`` at ``/var/run/ko`` with every entry mode 0555, symlinks dereferenced.

    ``kodata`` itself, every directory under it and every symlink target must resolve to
    a real path inside ``allowed_root`` (ko's rule on main: the git root, or
    ``KO_DATA_PATH_ALLOWED_ROOT``): a ``kodata`` that is a symlink to a directory
    elsewhere, or a link inside it that escapes, is an error, never a silent copy.

    ``live`` (``kodev up --live`` only): the files go to ``/kodev/kodata`` and
    ``/var/run/ko`` is a symlink to ``/kodev-live/kodata``, which the live supervisor
    points at them, and at newer kodata after a live swap.
    """
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
    top = checked_kodata_dir(kodata, allowed_root)
    if top is not None:
        for rel, path in _walk_kodata(top, allowed_root.resolve(), windows=windows):
            if path.is_dir():
                tar.add_dir(f"{prefix}/{rel}", 0o555)
            else:
                tar.add_file_from(f"{prefix}/{rel}", path, 0o555, pax)


def kodata_layer_tar(
    kodata: Path, *, allowed_root: Path, windows: bool = False, mtime: int = 0,
    live: bool = False,
) -> bytes:
    """:func:`add_kodata` as an in-memory tar."""
    tar = TarBuilder(mtime)
    add_kodata(tar, kodata, allowed_root=allowed_root, windows=windows, live=live)
    return tar.finish()


def kodata_tar(kodata: Path, *, allowed_root: Path) -> bytes:
    """``kodata/`` as a plain tar with relative names (what a live swap sends), by the
    same rules as the image's kodata layer."""
    tar = TarBuilder(0)
    top = checked_kodata_dir(kodata, allowed_root)
    if top is not None:
        for rel, path in _walk_kodata(top, allowed_root.resolve(), windows=False):
            if path.is_dir():
                tar.add_dir(rel, 0o555)
            else:
                tar.add_file_from(rel, path, 0o555)
    return tar.finish()


def checked_kodata_dir(kodata: Path, allowed_root: Path) -> Path | None:
    """The real path of ``kodata`` (None when there is none), once it is known to lie
    inside ``allowed_root``: ``kodata`` may be a symlink, or sit below one, only if the
    directory it really is stays inside."""
    if not os.path.lexists(kodata):
        return None
    real = kodata.resolve()
    if not real.exists():
        raise UsageError(f"kodata {kodata} is a broken symlink (target {real} is missing)")
    if not real.is_dir():
        return None
    root = allowed_root.resolve()
    if not real.is_relative_to(root):
        raise UsageError(
            f"kodata {kodata} is really {real}, outside {root}: its files would be copied "
            "into the image",
            hint="keep kodata/ inside the repository (or set KO_DATA_PATH_ALLOWED_ROOT)",
        )
    return real


def _walk_kodata(
    top: Path,
    allowed_root: Path,
    *,
    windows: bool,
    rel: str = "",
    seen: frozenset[Path] = frozenset(),
) -> Iterator[tuple[str, Path]]:
    """``top`` is a real directory inside ``allowed_root``; so is every directory this
    walks into (a plain subdirectory of one, or a checked symlink target)."""
    real_top = top.resolve()
    if real_top in seen:
        raise UsageError(f"kodata symlink loop at {top}")
    if not real_top.is_relative_to(allowed_root):  # a directory renamed or swapped meanwhile
        raise UsageError(f"kodata directory {top} is really {real_top}, outside {allowed_root}")
    for entry in sorted(os.scandir(real_top), key=lambda e: e.name):
        path = Path(entry.path)
        name = f"{rel}{entry.name}"
        if entry.is_symlink():
            if windows:
                continue
            target = path.resolve()
            if not target.is_relative_to(allowed_root):
                raise UsageError(
                    f"kodata symlink {top / entry.name} points outside {allowed_root} "
                    f"(to {target})",
                    hint="copy the file into kodata/ or set KO_DATA_PATH_ALLOWED_ROOT",
                )
            if not target.exists():
                raise UsageError(
                    f"kodata symlink {top / entry.name} is broken (target {target} is missing)")
            path = target
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            yield name, path
            yield from _walk_kodata(
                path, allowed_root, windows=windows, rel=name + "/", seen=seen | {real_top}
            )
        elif stat.S_ISREG(mode):
            yield name, path
