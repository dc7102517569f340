"""Publishers that write files: an OCI image layout, a ``docker load`` tarball, the refs
file (``--image-refs``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kodev.cache import atomic_write
from kodev.oci.image import Index
from kodev.publishers.api import PublishContext, Published, tagged


class LayoutPublisher:
    """``--oci-layout-path``: blobs and ``index.json`` (updated under a lock)."""

    def __init__(self, context: PublishContext, path: Path, tags: Sequence[str],
                 *, tag_only: bool = False) -> None:
        self.context = context
        self.path = path
        self.tags = [t for t in tags if t]
        self.tag_only = tag_only

    def publish(self, results: Sequence[Published]) -> list[str]:
        from kodev.oci.layout import LayoutWriter

        writer = LayoutWriter(self.path, self.context.open_layer)
        for result in results:
            writer.add(
                result.artifact,
                annotations={
                    "org.opencontainers.image.ref.name": f"{result.repository}@{result.digest}"
                },
            )
        writer.close()
        self.context.emit("layout", f"wrote {len(results)} image(s) to OCI layout {self.path}")
        if self.tag_only:
            return [tagged(result, self.tags) for result in results]
        return [f"{self.path}@{result.digest}" for result in results]


class TarballPublisher:
    """``--tarball``: one ``docker load`` tarball holding every image under every tag."""

    def __init__(self, context: PublishContext, path: Path, tags: Sequence[str],
                 *, tag_only: bool = False) -> None:
        self.context = context
        self.path = path
        self.tags = [t for t in tags if t] or ["latest"]
        self.tag_only = tag_only

    def publish(self, results: Sequence[Published]) -> list[str]:
        from kodev.oci.tarball import write_tarball

        write_tarball(self.path, [(r.repository, r.artifact) for r in results], self.tags,
                      self.context.open_layer)
        self.context.emit("tarball", f"wrote {self.path}")
        if self.tag_only:
            return [tagged(result, self.tags) for result in results]
        return [f"{result.repository}@{result.digest}" for result in results]


class RefsFilePublisher:
    """``--image-refs``: the printed references, then each index's per-platform images.
    Runs last, so it sees the references the other publishers named."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def publish(self, results: Sequence[Published]) -> None:
        lines = []
        for result in results:
            lines.append(result.reference)
            if isinstance(result.artifact, Index):
                lines.extend(
                    f"{result.repository}@{image.digest}" for image in result.artifact.images
                )
        atomic_write(self.path, ("\n".join(lines) + "\n").encode())
