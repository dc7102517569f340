"""kodev's on-disk cache (``KOCACHE``, else the user cache directory).

Layout::

    bin/<platform>/<settings>/<name>/<sha256>/<name>  go build output, by content (immutable)
    blobs/sha256/<hex>          manifests, configs and layers of base images, by digest
    meta/<kind>/<key>.json      small records: fingerprints, binary layer by binary hash
    tmp/<random>/               one running kodev's temporary files (see private_dir)

Several kodev processes may share one cache (a CI runner, ``kodev up`` beside a ``kodev
build``). No reader ever sees a half-written entry: every file is written to a temporary
file in the same directory first and renamed into place (a rename is atomic, and a
reader that opened the old file keeps reading the old file); binaries are stored by their
content, so an entry never changes once it exists. A killed kodev leaves no entry that a
later run would trust, and its ``tmp/`` directory is removed by the next run.

Temporary files and directories (here, beside a layout's blobs or a ``--tarball``) are
also listed while they exist: a kodev ended by SIGTERM or Ctrl-C removes them at exit
(:func:`remove_temporaries`), even those a worker thread was still writing.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows hosts
    fcntl = None  # type: ignore[assignment]

TMP = "tmp"
_STALE_AFTER_SECONDS = 60  # a tmp dir younger than this may still be taking its lock


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("KOCACHE"):
        return Path(env["KOCACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kodev"


class _Temporaries:
    """The temporary files and directories this process is writing now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: set[str] = set()
        self.closed = False  # the process is ending: no new ones

    def add(self, path: str) -> None:
        with self.lock:
            if self.closed:
                _remove(path)
                raise InterruptedError("kodev is ending: no new temporary files")
            self.paths.add(path)

    def discard(self, path: str) -> None:
        with self.lock:
            self.paths.discard(path)


_temporaries = _Temporaries()


def remove_temporaries() -> None:
    """Remove every temporary file and directory of this process, and refuse new ones.

    For the end of the process only (atexit, and a forced exit after SIGTERM or Ctrl-C):
    a worker thread that was still writing one fails instead of leaving it behind."""
    with _temporaries.lock:
        _temporaries.closed = True
        paths = sorted(_temporaries.paths)
        _temporaries.paths.clear()
    for path in paths:
        _remove(path)


atexit.register(remove_temporaries)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def temporary_file(directory: Path, prefix: str = ".tmp-") -> Iterator[tuple[IO[bytes], Path]]:
    """A new file in ``directory`` (which must exist), open for writing: closed when the
    block ends, removed if it fails, listed for :func:`remove_temporaries` while the
    block runs. The caller renames it into place or keeps it."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
    f = os.fdopen(fd, "wb")
    try:
        _temporaries.add(name)
        yield f, Path(name)
    except BaseException:
        f.close()
        Path(name).unlink(missing_ok=True)
        raise
    finally:
        f.close()
        _temporaries.discard(name)


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp gives 0600)


@contextlib.contextmanager
def atomic_file(path: Path, mode: int | None = None) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary file beside it, renamed into place when the block
    succeeds and removed when it fails (an exception, KeyboardInterrupt, SIGTERM): ``path``
    is either its old content or the complete new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporary_file(path.parent) as (f, tmp):
        os.fchmod(f.fileno(), _FILE_MODE if mode is None else mode)
        yield f
        f.close()
        os.replace(tmp, path)


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def private_dir(root: Path, prefix: str = "") -> Iterator[Path]:
    """A new directory under ``root/tmp`` for one kodev's temporary files, removed with
    everything in it when the block exits, however it exits.

    The directory is locked (``flock``) while it is in use; a directory whose lock is free
    belongs to a kodev that was killed before it could clean up, and is removed here."""
    tmp_root = root / TMP
    tmp_root.mkdir(parents=True, exist_ok=True)
    _sweep(tmp_root)
    path = Path(tempfile.mkdtemp(dir=tmp_root, prefix=prefix))
    fd = None
    try:
        _temporaries.add(str(path))
        fd = _lock_dir(path, block=True)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        _temporaries.discard(str(path))
        if fd is not None:
            os.close(fd)


def _lock_dir(path: Path, *, block: bool) -> int | None:
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        raise
    return fd


def _sweep(tmp_root: Path) -> None:
    """Remove the tmp directories of kodev processes that are gone (their lock is free)."""
    if fcntl is None:
        return
    now = time.time()
    for entry in os.scandir(tmp_root):
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < _STALE_AFTER_SECONDS:
                continue
            fd = _lock_dir(Path(entry.path), block=False)
        except OSError:  # in use (locked), or already removed by another kodev
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            if fd is not None:
                os.close(fd)


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

    def blob_file(self, digest: str, size: int) -> Path | None:
        """The cached file of a (large) blob, if there is one of the right size. Callers
        that read it check its digest as they stream it (see verified_copy)."""
        if not self.enabled:
            return None
        path = self._blob_path(digest)
        try:
            return path if path.stat().st_size == size else None
        except OSError:
            return None

    def blob_path(self, digest: str) -> Path:
        """Where a blob is cached (for atomic_file)."""
        return self._blob_path(digest)

    def drop_blob(self, digest: str) -> None:
        self._blob_path(digest).unlink(missing_ok=True)

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

    @contextlib.contextmanager
    def build_lock(self, key: str | None, on_busy: Callable[[], bool]) -> Iterator[bool]:
        """One build per fingerprint key at a time, across processes: a second kodev that
        would compile exactly the same binaries (parallel CI jobs, Skaffold's build after
        the compile ahead its deps call started) finds the lock held and asks
        ``on_busy``: True waits (and then finds the first one's fingerprint record
        instead of running go build again), False gives up (the block gets False). A
        flock on ``KOCACHE/locks/<key>.lock``: released when its holder dies."""
        if key is None or not self.enabled or fcntl is None:
            yield True
            return
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not on_busy():
                    yield False
                    return
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield True
        finally:
            os.close(fd)
