"""Attached artifacts (SBOMs): an OCI 1.1 artifact manifest with a ``subject``.

Registries that implement the referrers API index it under the image it describes. For
the others kodev also tags it ``sha256-<hex>.<suffix>``, the scheme cosign and ko use,
so ``cosign download sbom`` and friends still find it.
"""

from __future__ import annotations

from typing import Any

from kodev.oci.image import Image
from kodev.oci.layers import Layer
from kodev.oci.mediatypes import OCI_EMPTY, OCI_MANIFEST, sha256_digest
from kodev.oci.platform import Platform


def attachment_tag(subject_digest: str, suffix: str) -> str:
    """cosign's fallback tag: ``sha256:abc`` + ``sbom`` gives ``sha256-abc.sbom``."""
    return subject_digest.replace(":", "-") + f".{suffix}"


def artifact_manifest(
    subject: dict[str, Any],
    media_type: str,
    payload: bytes,
    *,
    annotations: dict[str, str] | None = None,
) -> Image:
    """An artifact whose single layer is ``payload`` and whose subject is ``subject``."""
    layer = Layer(
        digest=sha256_digest(payload),
        diff_id=sha256_digest(payload),
        size=len(payload),
        media_type=media_type,
        data=payload,
    )
    return Image(
        media_type=OCI_MANIFEST,
        config={},  # serialises to b"{}", the content of OCI's empty descriptor
        layers=[layer],
        platform=Platform("unknown", "unknown"),
        annotations=dict(annotations or {}),
        subject={k: subject[k] for k in ("mediaType", "digest", "size")},
        artifact_type=media_type,
        config_media_type=OCI_EMPTY,
    )
