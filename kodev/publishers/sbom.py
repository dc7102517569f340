"""SBOM documents from each binary's ``go version -m``: one per platform image and one per
index, kept on the result (the registry publisher attaches them) and, with
``--sbom-dir``, written to files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import kodev
from kodev.cache import atomic_write
from kodev.golang.builder import BuiltBinary
from kodev.oci.image import Image, Index
from kodev.publishers.api import PublishContext, Published

if TYPE_CHECKING:
    from kodev.golang.sbom import GoBuildInfo, ImageFacts

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


class SbomPublisher:
    def __init__(self, context: PublishContext, kind: str, directory: Path | None) -> None:
        self.context = context
        self.kind = kind  # "spdx" or "cyclonedx"
        self.directory = directory

    def publish(self, results: Sequence[Published]) -> None:
        for result in results:
            self._document_all(result)

    def _document_all(self, result: Published) -> None:
        # Imported only when SBOMs are made (--sbom=none: ~10 ms less per run).
        from kodev.golang.sbom import ImageFacts

        artifact = result.artifact
        facts = []
        for image in artifact.images if isinstance(artifact, Index) else [artifact]:
            fact = ImageFacts(
                digest=image.digest,
                media_type=image.media_type,
                created=str(image.config.get("created") or "1970-01-01T00:00:00Z"),
                repository=result.repository,
                base_ref=image.annotations.get(BASE_NAME) or result.base_name,
                base_digest=image.annotations.get(BASE_DIGEST),
                platform=str(image.platform),
                tool_version=kodev.__version__,
            )
            facts.append(fact)
            self._keep(result, image, self._image_document(result.binaries[image.platform], fact))
        if isinstance(artifact, Index):
            index_fact = ImageFacts(
                digest=artifact.digest,
                media_type=artifact.media_type,
                created=facts[0].created,
                repository=result.repository,
                base_ref=result.base_name,
                base_digest=result.base_digest,
                platform=None,
                tool_version=kodev.__version__,
            )
            self._keep(result, None, self._index_document(facts, index_fact))

    def _image_document(self, binary: BuiltBinary, fact: ImageFacts) -> bytes:
        from kodev.golang.sbom import cyclonedx_document, spdx_document

        info = self._build_info(binary)
        return spdx_document(info, fact) if self.kind == "spdx" else cyclonedx_document(info, fact)

    def _index_document(self, facts: list[ImageFacts], index_fact: ImageFacts) -> bytes:
        from kodev.golang.sbom import cyclonedx_index_document, spdx_index_document

        if self.kind == "spdx":
            return spdx_index_document(facts, index_fact)
        return cyclonedx_index_document(facts, index_fact)

    def _keep(self, result: Published, image: Image | None, document: bytes) -> None:
        subject = image if image is not None else result.artifact
        result.sboms[subject.digest] = document
        if self.directory is None:
            return
        suffix = "spdx.json" if self.kind == "spdx" else "cdx.json"
        qualifier = image.platform.slug if image is not None else "index"
        atomic_write(self.directory / f"{result.binary_name}-{qualifier}.{suffix}", document)

    def _build_info(self, binary: BuiltBinary) -> GoBuildInfo:
        """``go version -m``, run once per distinct binary (cached by its content hash)."""
        from kodev.golang.sbom import go_version_m, parse_go_version_m

        cache = self.context.cache
        cached = cache.get_meta("go-version-m", binary.sha256)
        if cached is not None:
            return parse_go_version_m(str(cached["text"]))
        text = go_version_m(binary.path, go=self.context.go)
        cache.put_meta("go-version-m", binary.sha256, {"text": text})
        return parse_go_version_m(text)
