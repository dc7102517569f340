"""Pushing images and indexes: blobs first (in parallel), manifests only once all blobs are in.

The order is what makes a failed push harmless: a tag is written last, after every
blob and child manifest it points at has been confirmed, so a tag never names a broken
image. A tag that already names the same digest costs one HEAD and nothing else.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from kodev.oci.image import Image, Index
from kodev.oci.layers import Layer
from kodev.oci.reference import Reference
from kodev.registry.client import RegistryClient
from kodev.registry.errors import ManifestBlobUnknown
from kodev.registry.pool import ClientPool

log = logging.getLogger("kodev.registry")

BlobCallback = Callable[[str, str, int], None]


@dataclass
class PushStats:
    """What a push did, blob by blob: the numbers behind "pushed only the new layers"."""

    existing: int = 0
    mounted: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_manifests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, outcome: str, size: int) -> None:
        with self.lock:
            if outcome == "exists":
                self.existing += 1
            elif outcome == "mounted":
                self.mounted += 1
            else:
                self.uploaded += 1
                self.uploaded_bytes += size


class Pusher:
    """Pushes to one target repository, copying base layers from wherever they live."""

    def __init__(
        self,
        pool: ClientPool,
        target: Reference,
        *,
        jobs: int = 4,
        on_blob: BlobCallback | None = None,
    ) -> None:
        self.pool = pool
        self.target = target
        self.client: RegistryClient = pool.get(target.registry)
        self.jobs = max(1, jobs)
        self.on_blob = on_blob
        self.stats = PushStats()
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def push(self, artifact: Image | Index, tags: Iterable[str]) -> str:
        """Push ``artifact`` and point every tag at it; returns the manifest digest."""
        tags = list(tags)
        digest = artifact.digest
        if tags and self._tag_already_points_at(tags[0], digest):
            self.stats.skipped_manifests += 1
            for tag in tags[1:]:
                self._put_manifest(artifact, tag)
            return digest
        images = artifact.images if isinstance(artifact, Index) else [artifact]
        self._push_blobs(images)
        for image in images if isinstance(artifact, Index) else []:
            self._put_manifest(image, image.digest)
        if not tags:
            self._put_manifest(artifact, digest)
        for tag in tags:
            self._put_manifest(artifact, tag)
        return digest

    def push_image_by_digest(self, image: Image) -> str:
        """For artifacts such as SBOMs: blobs, then the manifest by digest only."""
        self._push_blobs([image])
        return self._put_manifest(image, image.digest)

    def _tag_already_points_at(self, tag: str, digest: str) -> bool:
        head = self.client.head_manifest(self.target.repository, tag)
        return head is not None and head.digest == digest

    def _put_manifest(self, artifact: Image | Index, reference: str) -> str:
        """PUT the manifest. Answered MANIFEST_BLOB_UNKNOWN (another push of the same blobs
        was committing them as this one checked), its blobs are checked (and uploaded if
        missing) again, and the PUT is made once more."""
        def put() -> str:
            return self.client.put_manifest(self.target.repository, reference,
                                            artifact.manifest_bytes(), artifact.media_type)

        try:
            return put()
        except ManifestBlobUnknown:
            with self._lock:
                self._done.clear()
            images = artifact.images if isinstance(artifact, Index) else [artifact]
            self._push_blobs(images)
            return put()

    def _push_blobs(self, images: Sequence[Image]) -> None:
        work: dict[str, tuple[Layer | None, bytes | None, int]] = {}
        for image in images:
            config = image.config_bytes()
            work.setdefault(image.config_descriptor()["digest"], (None, config, len(config)))
            for layer in image.layers:
                work.setdefault(layer.digest, (layer, None, layer.size))
        pending = [(d, item) for d, item in work.items() if d not in self._done]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(lambda entry: self._push_one(entry[0], *entry[1]), pending))

    def _push_one(self, digest: str, layer: Layer | None, data: bytes | None, size: int) -> None:
        repo = self.target.repository
        if data is not None:
            outcome = self.client.push_blob(repo, digest, size, _opener(data))
        elif layer is not None and layer.local:
            outcome = self.client.push_blob(repo, digest, size, layer.opener())
        elif layer is not None and layer.location is not None:
            outcome = self._copy_remote_layer(layer)
        else:
            raise ValueError(f"no source for blob {digest}")
        self.stats.record(outcome, size)
        with self._lock:
            self._done.add(digest)
        if self.on_blob is not None:
            self.on_blob(digest, outcome, size)
        log.debug("blob %s: %s", digest, outcome)

    def _copy_remote_layer(self, layer: Layer) -> str:
        """Mount from the base's repository on the same registry; else stream it across:
        the source is read piece by piece as the upload goes (never held whole), its size
        and digest checked before the upload is finished."""
        assert layer.location is not None
        location = layer.location
        source = self.pool.get(location.registry)

        def fetch() -> BinaryIO:
            reader = source.blob_reader(location.repository, layer.digest, layer.size)
            return cast(BinaryIO, reader)

        same_registry = location.registry == self.target.registry
        return self.client.push_blob(
            self.target.repository,
            layer.digest,
            layer.size,
            fetch,
            mount_from=location.repository if same_registry else None,
        )


def _opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)
