"""Media type constants and small digest helpers shared by every OCI module."""

from __future__ import annotations

import hashlib

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

SPDX_JSON = "text/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT_ALL_MANIFESTS = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def layer_type_for(manifest_media_type: str) -> str:
    """ko's rule: new layers take the media type family of the base manifest."""
    return DOCKER_LAYER_GZIP if manifest_media_type == DOCKER_MANIFEST else OCI_LAYER_GZIP


def config_type_for(manifest_media_type: str) -> str:
    return DOCKER_CONFIG if manifest_media_type == DOCKER_MANIFEST else OCI_CONFIG
