"""OCI image layout output (``--oci-layout-path``): blobs by digest plus ``index.json``.

Like ko's layout publisher, new images are appended to an existing layout's
``index.json`` (an image already listed is not listed twice).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kodev.cache import atomic_write
from kodev.errors import UsageError
from kodev.oci.image import Image, Index, canonical_json
from kodev.oci.layers import Layer
from kodev.oci.mediatypes import OCI_INDEX

LayerReader = Callable[[Layer], bytes]


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
        if not self.path(layer.digest).exists():
            self.put(layer.digest, self.read_layer(layer))

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


class LayoutWriter:
    def __init__(self, root: Path, read_layer: LayerReader) -> None:
        if root.exists() and not root.is_dir():
            raise UsageError(f"--oci-layout-path {root} exists and is not a directory")
        self.root = root
        self.blobs = BlobStore(root, read_layer)
        self.index = self._read_index()

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
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
        manifests = self.index.setdefault("manifests", [])
        if not any(m.get("digest") == descriptor["digest"] for m in manifests):
            manifests.append(descriptor)

    def close(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        atomic_write(self.root / "index.json", canonical_json(self.index))
