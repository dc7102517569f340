"""``--tarball``: one file that both ``docker load`` and OCI tools read, multi-platform too.

The archive is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``) with a
docker-save ``manifest.json`` beside it, the shape ``docker save`` itself writes since
Docker 25. ko cannot write a tarball for an index (ko#995); kodev lists every platform's
image in the OCI index and gives the docker tags to the image for the host platform.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from kodev.cache import atomic_file
from kodev.errors import KodevError
from kodev.oci.image import Image, Index, canonical_json
from kodev.oci.layers import Layer
from kodev.oci.layout import LayerReader, empty_index, open_stream
from kodev.oci.platform import host_platform_default


def write_tarball(
    path: Path,
    artifacts: Sequence[tuple[str, Image | Index]],
    tags: Sequence[str],
    read_layer: LayerReader,
) -> None:
    """Stream the archive into a temporary file beside ``path`` (renamed into place when
    complete): each blob goes from its source into the tar in pieces, never whole."""
    index = empty_index()
    blobs: dict[str, Layer | bytes] = {}
    docker_manifest = []
    for repository, artifact in artifacts:
        descriptor = (artifact.descriptor() if isinstance(artifact, Index)
                      else artifact.descriptor(with_platform=False))
        descriptor["annotations"] = {
            "io.containerd.image.name": f"{repository}:{tags[0]}",
            "org.opencontainers.image.ref.name": tags[0],
        }
        if not any(m["digest"] == descriptor["digest"] for m in index["manifests"]):
            index["manifests"].append(descriptor)
        _collect_blobs(artifact, blobs)
        image = _docker_image(artifact)
        docker_manifest.append(
            {
                "Config": _blob_name(image.config_descriptor()["digest"]),
                "RepoTags": [f"{repository}:{tag}" for tag in tags],
                "Layers": [_blob_name(layer.digest) for layer in image.layers],
            }
        )
    # Entries in name order, as a sorted directory listing would give them.
    with atomic_file(path) as out, tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in sorted(blobs):
            source = blobs[digest]
            if isinstance(source, bytes):
                _add_bytes(tar, _blob_name(digest), source)
            else:
                with open_stream(read_layer(source)) as stream:
                    _add_stream(tar, _blob_name(digest), stream, source.size, digest)
        _add_bytes(tar, "index.json", canonical_json(index))
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode())
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')


def _collect_blobs(artifact: Image | Index, blobs: dict[str, Layer | bytes]) -> None:
    images = artifact.images if isinstance(artifact, Index) else [artifact]
    for image in images:
        for layer in image.layers:
            blobs.setdefault(layer.digest, layer)
        blobs.setdefault(image.config_descriptor()["digest"], image.config_bytes())
        blobs.setdefault(image.digest, image.manifest_bytes())
    if isinstance(artifact, Index):
        blobs.setdefault(artifact.digest, artifact.manifest_bytes())


def _info(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_info(name, tarfile.DIRTYPE))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


class _Hashing(io.RawIOBase):
    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hasher.update(data)
        return data


def _add_stream(tar: tarfile.TarFile, name: str, stream: IO[bytes], size: int,
                digest: str) -> None:
    reader = _Hashing(stream)
    tar.addfile(_info(name, tarfile.REGTYPE, size), reader)
    actual = "sha256:" + reader.hasher.hexdigest()
    if actual != digest:
        raise KodevError(f"blob {digest} came out as {actual} while writing the tarball")


def _docker_image(artifact: Image | Index) -> Image:
    if isinstance(artifact, Image):
        return artifact
    host = host_platform_default()
    for image in artifact.images:
        if image.platform.os == host.os and image.platform.architecture == host.architecture:
            return image
    return artifact.images[0]


def _blob_name(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/")

