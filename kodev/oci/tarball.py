"""``--tarball``: one file that both ``docker load`` and OCI tools read, multi-platform too.

The archive is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``) with a
docker-save ``manifest.json`` beside it, the shape ``docker save`` itself writes since
Docker 25. ko cannot write a tarball for an index (ko#995); kodev lists every platform's
image in the OCI index and gives the docker tags to the image for the host platform.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kodev.cache import atomic_write
from kodev.oci.image import Image, Index
from kodev.oci.layout import LayerReader, LayoutWriter
from kodev.oci.platform import host_platform_default


def write_tarball(
    path: Path,
    artifacts: Sequence[tuple[str, Image | Index]],
    tags: Sequence[str],
    read_layer: LayerReader,
) -> None:
    with tempfile.TemporaryDirectory(prefix="kodev-tarball-") as scratch:
        root = Path(scratch)
        layout = LayoutWriter(root, read_layer)
        docker_manifest = []
        for repository, artifact in artifacts:
            layout.add(
                artifact,
                annotations={
                    "io.containerd.image.name": f"{repository}:{tags[0]}",
                    "org.opencontainers.image.ref.name": tags[0],
                },
            )
            image = _docker_image(artifact)
            docker_manifest.append(
                {
                    "Config": _blob_name(image.config_descriptor()["digest"]),
                    "RepoTags": [f"{repository}:{tag}" for tag in tags],
                    "Layers": [_blob_name(layer.digest) for layer in image.layers],
                }
            )
        layout.close()
        atomic_write(root / "manifest.json", json.dumps(docker_manifest).encode())
        atomic_write(path, _tar_directory(root))


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


def _tar_directory(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()

