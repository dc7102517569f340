"""Push to the registry (images in parallel), then each image's SBOMs as OCI 1.1
artifacts whose ``subject`` is the image; tagged ``sha256-<hex>.sbom`` as well where the
registry has no referrers API (the tag cosign and ko use)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from kodev.oci.artifact import artifact_manifest, attachment_tag
from kodev.oci.image import Image, Index
from kodev.oci.reference import Reference, parse_repository
from kodev.publishers.api import PublishContext, Published, tagged

if TYPE_CHECKING:
    from kodev.registry.push import Pusher


class RegistryPublisher:
    def __init__(
        self,
        context: PublishContext,
        tags: Sequence[str],
        *,
        tag_only: bool = False,
        jobs: int = 4,
        sbom_media_type: str | None = None,
    ) -> None:
        self.context = context
        self.tags = list(dict.fromkeys(t for t in tags if t))
        self.tag_only = tag_only
        self.jobs = jobs
        self.sbom_media_type = sbom_media_type

    def publish(self, results: Sequence[Published]) -> list[str]:
        with ThreadPoolExecutor(max_workers=max(1, len(results))) as pool:
            list(pool.map(self._push, results))
        return [self._reference(result) for result in results]

    def _reference(self, result: Published) -> str:
        if self.tag_only:
            return tagged(result, self.tags)
        if len(self.tags) == 1 and self.tags[0] != "latest":
            return f"{result.repository}:{self.tags[0]}@{result.digest}"
        return f"{result.repository}@{result.digest}"

    def _push(self, result: Published) -> None:
        from kodev.registry.push import Pusher

        emit = self.context.emit
        ref = Reference(*parse_repository(result.repository))
        pusher = Pusher(self.context.clients(), ref, jobs=self.jobs)
        emit("push", f"pushing {result.repository}", result.import_path)
        pusher.push(result.artifact, self.tags)
        stats = pusher.stats
        if stats.skipped_manifests:
            emit("pushed", f"{result.repository}@{result.digest} is already there",
                 result.import_path, skipped=True)
            return
        emit(
            "pushed",
            f"pushed {result.repository}@{result.digest} ({stats.uploaded} new blob(s), "
            f"{stats.uploaded_bytes} bytes; {stats.existing} existing, "
            f"{stats.mounted} mounted)",
            result.import_path,
            uploaded=stats.uploaded,
            uploaded_bytes=stats.uploaded_bytes,
            existing=stats.existing,
            mounted=stats.mounted,
        )
        self._push_sboms(result, pusher)

    def _push_sboms(self, result: Published, pusher: Pusher) -> None:
        artifacts = self._sbom_artifacts(result)
        if not artifacts:
            return
        repo = pusher.target.repository
        supports_referrers = pusher.client.referrers(repo, result.digest) is not None
        for subject_digest, artifact in artifacts:
            pusher.push_image_by_digest(artifact)
            if not supports_referrers:
                pusher.client.put_manifest(
                    repo,
                    attachment_tag(subject_digest, "sbom"),
                    artifact.manifest_bytes(),
                    artifact.media_type,
                )

    def _sbom_artifacts(self, result: Published) -> list[tuple[str, Image]]:
        if self.sbom_media_type is None:
            return []
        artifacts = []
        images = result.artifact.images if isinstance(result.artifact, Index) else []
        for subject in [*images, result.artifact]:
            document = result.sboms.get(subject.digest)
            if document is None:
                continue
            descriptor = (subject.descriptor() if isinstance(subject, Index)
                          else subject.descriptor(with_platform=False))
            artifacts.append(
                (subject.digest, artifact_manifest(descriptor, self.sbom_media_type, document)))
        return artifacts
