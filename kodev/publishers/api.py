"""The publisher protocol, what it publishes, and the narrow context it works with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from kodev.golang.builder import BuiltBinary
from kodev.oci.image import Image, Index
from kodev.oci.layers import Layer
from kodev.oci.platform import Platform

if TYPE_CHECKING:
    from kodev.cache import Cache
    from kodev.registry.pool import ClientPool


@dataclass
class Published:
    """One built image (or index) on its way out; ``reference`` is what kodev prints."""

    pattern: str
    import_path: str
    reference: str
    digest: str
    repository: str
    artifact: Image | Index
    binaries: dict[Platform, BuiltBinary]
    sboms: dict[str, bytes] = field(default_factory=dict)
    binary_name: str = ""
    base_name: str = ""
    base_digest: str | None = None


class Emit(Protocol):
    """Reports progress (``Pipeline.emit``)."""

    def __call__(
        self, kind: str, message: str, import_path: str | None = None, **data: Any
    ) -> None: ...


@dataclass(frozen=True)
class PublishContext:
    """All a publisher may use of the run that built the images."""

    emit: Emit
    open_layer: Callable[[Layer], BinaryIO]  # a layer's compressed bytes (base layers too)
    clients: Callable[[], ClientPool]  # created on first use: a layout needs no registry
    cache: Cache  # metadata cache (``go version -m`` per binary)
    go: str  # the go command, for ``go version -m``


class Publisher(Protocol):
    """Publishes a batch. Returns one reference per result (``None``: this publisher names
    no reference, e.g. SBOMs, the refs file); in a MultiPublisher the last one wins."""

    def publish(self, results: Sequence[Published]) -> list[str] | None: ...


def tagged(result: Published, tags: Sequence[str]) -> str:
    """``--tag-only``: the reference is ``repo:tag`` (the first tag)."""
    return f"{result.repository}:{tags[0]}"
