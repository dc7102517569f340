"""OCI image layout output (``--oci-layout-path``): blobs by digest plus ``index.json``.

Like ko's layout publisher, new images are appended to an existing layout's
``index.json`` (an image already listed is not listed twice).

Blobs are streamed from their source into a temporary file beside their final name,
checked against their digest, and renamed into place: a layout never holds a partial or
wrong blob, and no layer is ever read into memory whole. ``index.json`` is updated under
a lock on the layout directory (read, merge, write a new file, rename), so several kodev
processes may write to one layout at once without losing each other's images.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from kodev.cache import atomic_file, atomic_write
from kodev.errors import KodevError, UsageError
from kodev.oci.image import Image, Index, canonical_json
from kodev.oci.layers import Layer
from kodev.oci.mediatypes import OCI_INDEX

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows hosts
    fcntl = None  # type: ignore[assignment]

# How to get a layer's compressed bytes: a stream (or, for small layers, the bytes).
LayerReader = Callable[[Layer], "BinaryIO | bytes"]
_PIECE = 1 << 20


def open_stream(source: BinaryIO | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray) else source


def copy_verified(source: IO[bytes], out: IO[bytes], digest: str, size: int) -> None:
    """Copy ``size`` bytes, in pieces, checking that they are the blob ``digest``."""
    hasher = hashlib.sha256()
    copied = 0
    while piece := source.read(_PIECE):
        hasher.update(piece)
        out.write(piece)
        copied += len(piece)
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest or copied != size:
        raise KodevError(f"blob {digest} ({size} bytes) came out as {actual} ({copied} bytes)")


class BlobStore:
    """A directory of ``blobs/sha256/<hex>`` files, written once each."""

    def __init__(self, root: Path, read_layer: LayerReader) -> None:
        self.root = root
        self.read_layer = read_layer

    def path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def put(self, digest: str, data: bytes) -> None:
        path = self.path(digest)
        if not path.exists():
            atomic_write(path, data)

    def put_layer(self, layer: Layer) -> None:
        path = self.path(layer.digest)
        if path.exists():
            return
        with open_stream(self.read_layer(layer)) as source, atomic_file(path) as out:
            copy_verified(source, out, layer.digest, layer.size)

    def put_image(self, image: Image) -> None:
        for layer in image.layers:
            self.put_layer(layer)
        self.put(image.config_descriptor()["digest"], image.config_bytes())
        self.put(image.digest, image.manifest_bytes())

    def put_artifact(self, artifact: Image | Index) -> None:
        if isinstance(artifact, Index):
            for image in artifact.images:
                self.put_image(image)
            self.put(artifact.digest, artifact.manifest_bytes())
        else:
            self.put_image(artifact)


def empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


class LayoutWriter:
    def __init__(self, root: Path, read_layer: LayerReader) -> None:
        if root.exists() and not root.is_dir():
            raise UsageError(f"--oci-layout-path {root} exists and is not a directory")
        self.root = root
        self.blobs = BlobStore(root, read_layer)
        self.index = self._read_index()  # fails early on a directory that is no layout
        self._added: list[dict[str, Any]] = []

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return empty_index()
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except ValueError as exc:
            raise UsageError(f"{path} is not valid JSON; is this an OCI layout?") from exc
        return data

    def add(self, artifact: Image | Index, annotations: dict[str, str] | None = None) -> None:
        self.blobs.put_artifact(artifact)
        descriptor = (
            artifact.descriptor()
            if isinstance(artifact, Index)
            else artifact.descriptor(with_platform=False)
        )
        if annotations:
            descriptor["annotations"] = annotations
        self._added.append(descriptor)
        _merge(self.index, [descriptor])

    def close(self) -> None:
        """Write ``oci-layout`` and ``index.json``: the index as it is on disk NOW (another
        kodev may have added images since this one started) plus this run's images."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root):
            atomic_write(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            self.index = self._read_index()
            _merge(self.index, self._added)
            atomic_write(self.root / "index.json", canonical_json(self.index))


def _merge(index: dict[str, Any], descriptors: list[dict[str, Any]]) -> None:
    manifests = index.setdefault("manifests", [])
    for descriptor in descriptors:
        if not any(m.get("digest") == descriptor["digest"] for m in manifests):
            manifests.append(descriptor)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` itself (no lock file is left in the layout)."""
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
