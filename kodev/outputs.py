"""Where built images go: registry (default), OCI layout, tarball, SBOM files, refs file.

ko runs its publishers in order (layout, tarball, registry) and the last reference wins;
kodev keeps that order and rule so printed references are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import kodev
from kodev.cache import atomic_write
from kodev.errors import UsageError
from kodev.golang.builder import BuiltBinary
from kodev.golang.packages import go_binary
from kodev.oci.artifact import artifact_manifest, attachment_tag
from kodev.oci.image import Image, Index
from kodev.oci.reference import Reference, parse_repository

if TYPE_CHECKING:
    from kodev.golang.sbom import GoBuildInfo
    from kodev.publish import Built, Pipeline, Published
    from kodev.registry.push import Pusher


class Outputs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.options = pipeline.options
        self.docker_repo = self._docker_repo()  # fails before any build when unset

    def write(self, built: Sequence[Built]) -> list[Published]:
        from kodev.publish import Published, target_reference

        docker_repo = self.docker_repo
        results = []
        for item in built:
            target = target_reference(docker_repo, item.target.import_path, self.options.naming)
            results.append(
                Published(
                    pattern=item.target.pattern,
                    import_path=item.target.import_path,
                    reference="",
                    digest=item.artifact.digest,
                    repository=target.name,
                    artifact=item.artifact,
                    binaries=item.binaries,
                )
            )
        self._make_sboms(built, results)
        if self.options.oci_layout_path:
            self._write_layout(results)
        if self.options.tarball:
            self._write_tarball(results)
        if self.options.push:
            with ThreadPoolExecutor(max_workers=max(1, len(results))) as pool:
                list(pool.map(self._push, results))
        for result in results:
            result.reference = self._printed_reference(result)
        if self.options.image_refs:
            self._write_refs(results)
        return results

    def _docker_repo(self) -> str:
        repo = (self.options.docker_repo or self.pipeline.environ.get("KO_DOCKER_REPO", "")).strip()
        if repo:
            return repo
        if self.options.push:
            raise UsageError(
                "KO_DOCKER_REPO environment variable is unset",
                hint="export KO_DOCKER_REPO=<registry>/<path> (for a local registry: "
                "localhost:5000), or use --push=false",
            )
        return "ko.local"

    def _printed_reference(self, result: Published) -> str:
        tags = [t for t in self.options.tags if t]
        if self.options.tag_only:
            return f"{result.repository}:{tags[0]}"
        if self.options.push and len(tags) == 1 and tags[0] != "latest":
            return f"{result.repository}:{tags[0]}@{result.digest}"
        if not self.options.push and (self.options.oci_layout_path and not self.options.tarball):
            return f"{self.options.oci_layout_path}@{result.digest}"
        return f"{result.repository}@{result.digest}"

    # ------------------------------------------------------------------ SBOM

    def _make_sboms(self, built: Sequence[Built], results: Sequence[Published]) -> None:
        kind = self.options.sbom
        if kind == "none":
            return
        # Imported only when SBOMs are made (--sbom=none: ~10 ms less per run).
        from kodev.golang.sbom import (
            ImageFacts,
            cyclonedx_document,
            cyclonedx_index_document,
            spdx_document,
            spdx_index_document,
        )

        for item, result in zip(built, results, strict=True):
            base = item.target.base
            assert base is not None
            images = item.artifact.images if isinstance(item.artifact, Index) else [item.artifact]
            facts = []
            for image in images:
                binary = item.binaries[image.platform]
                info = self._build_info(binary)
                annotations = image.annotations
                fact = ImageFacts(
                    digest=image.digest,
                    media_type=image.media_type,
                    created=str(image.config.get("created") or "1970-01-01T00:00:00Z"),
                    repository=result.repository,
                    base_ref=annotations.get("org.opencontainers.image.base.name") or base.name,
                    base_digest=annotations.get("org.opencontainers.image.base.digest"),
                    platform=str(image.platform),
                    tool_version=kodev.__version__,
                )
                facts.append(fact)
                document = (
                    spdx_document(info, fact) if kind == "spdx" else cyclonedx_document(info, fact)
                )
                result.sboms[image.digest] = document
                self._write_sbom_file(item, image, document)
            if isinstance(item.artifact, Index):
                index = item.artifact
                index_fact = ImageFacts(
                    digest=index.digest,
                    media_type=index.media_type,
                    created=facts[0].created,
                    repository=result.repository,
                    base_ref=base.name,
                    base_digest=base.digest,
                    platform=None,
                    tool_version=kodev.__version__,
                )
                document = (
                    spdx_index_document(facts, index_fact)
                    if kind == "spdx"
                    else cyclonedx_index_document(facts, index_fact)
                )
                result.sboms[index.digest] = document
                self._write_sbom_file(item, None, document)

    def _build_info(self, binary: BuiltBinary) -> GoBuildInfo:
        """``go version -m``, run once per distinct binary (cached by its content hash)."""
        from kodev.golang.sbom import go_version_m, parse_go_version_m

        cache = self.pipeline.cache
        cached = cache.get_meta("go-version-m", binary.sha256)
        if cached is not None:
            return parse_go_version_m(str(cached["text"]))
        text = go_version_m(binary.path, go=go_binary(self.pipeline.environ))
        cache.put_meta("go-version-m", binary.sha256, {"text": text})
        return parse_go_version_m(text)

    def _write_sbom_file(self, item: Built, image: Image | None, document: bytes) -> None:
        directory = self.options.sbom_dir
        if directory is None:
            return
        suffix = "spdx.json" if self.options.sbom == "spdx" else "cdx.json"
        name = item.target.package.binary_name
        qualifier = image.platform.slug if image is not None else "index"
        atomic_write(Path(directory) / f"{name}-{qualifier}.{suffix}", document)

    def _sbom_artifacts(self, result: Published) -> list[tuple[str, Image]]:
        if self.options.sbom == "none":
            return []
        from kodev.golang.sbom import SBOM_MEDIA_TYPES

        media_type = SBOM_MEDIA_TYPES[self.options.sbom]
        artifacts = []
        images = result.artifact.images if isinstance(result.artifact, Index) else []
        for subject in [*images, result.artifact]:
            document = result.sboms.get(subject.digest)
            if document is not None:
                artifacts.append(
                    (
                        subject.digest,
                        artifact_manifest(
                            subject.descriptor()
                            if isinstance(subject, Index)
                            else subject.descriptor(with_platform=False),
                            media_type,
                            document,
                        ),
                    )
                )
        return artifacts

    # ------------------------------------------------------------------ registry

    def _push(self, result: Published) -> None:
        from kodev.registry.push import Pusher

        pipeline = self.pipeline
        ref = Reference(*parse_repository(result.repository))
        tags = list(dict.fromkeys(t for t in self.options.tags if t))
        pusher = Pusher(pipeline.pool, ref, jobs=self.options.jobs or 4)
        pipeline.emit("push", f"pushing {result.repository}", result.import_path)
        pusher.push(result.artifact, tags)
        stats = pusher.stats
        if stats.skipped_manifests:
            pipeline.emit(
                "pushed",
                f"{result.repository}@{result.digest} is already there",
                result.import_path,
                skipped=True,
            )
        else:
            pipeline.emit(
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

    # ------------------------------------------------------------------ files

    def _write_layout(self, results: Sequence[Published]) -> None:
        from kodev.oci.layout import LayoutWriter

        path = Path(self.options.oci_layout_path or ".")
        writer = LayoutWriter(path, self.pipeline.open_layer)
        for result in results:
            writer.add(
                result.artifact,
                annotations={
                    "org.opencontainers.image.ref.name": f"{result.repository}@{result.digest}"
                },
            )
        writer.close()
        self.pipeline.emit("layout", f"wrote {len(results)} image(s) to OCI layout {path}")

    def _write_tarball(self, results: Sequence[Published]) -> None:
        from kodev.oci.tarball import write_tarball

        path = Path(self.options.tarball or "image.tar")
        tags = [t for t in self.options.tags if t] or ["latest"]
        write_tarball(
            path, [(r.repository, r.artifact) for r in results], tags, self.pipeline.open_layer
        )
        self.pipeline.emit("tarball", f"wrote {path}")

    def _write_refs(self, results: Sequence[Published]) -> None:
        lines = []
        for result in results:
            lines.append(result.reference)
            if isinstance(result.artifact, Index):
                lines.extend(
                    f"{result.repository}@{image.digest}" for image in result.artifact.images
                )
        atomic_write(Path(self.options.image_refs or "refs"), ("\n".join(lines) + "\n").encode())
