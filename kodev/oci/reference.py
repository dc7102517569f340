"""Image references (``registry/repo[:tag][@sha256:...]``), parsed as go-containerregistry does."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from kodev.errors import UsageError

DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_REPO_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``registry`` is a host[:port]; ``repository`` has no registry part."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: where blobs and manifests live."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, tag=self.tag, digest=digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _split_registry(rest: str) -> tuple[str, str]:
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry = DOCKER_HUB if first in _DOCKER_HUB_ALIASES else first
        return registry, remainder
    return DOCKER_HUB, rest


def parse_reference(text: str, *, default_tag: str = "latest") -> Reference:
    """Parse ``text``; Docker Hub names get ``library/`` as docker does. Raises UsageError."""
    original = text
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"invalid digest in image reference {original!r}")
    registry, path = _split_registry(text)
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise UsageError(f"invalid tag {tag!r} in image reference {original!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not _REPO_RE.match(path):
        raise UsageError(
            f"invalid image reference {original!r}",
            hint="repository names are lowercase letters, digits and . _ - separated by /",
        )
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, path, tag=tag, digest=digest)


def parse_repository(text: str) -> tuple[str, str]:
    """Split a ``KO_DOCKER_REPO``-style value (``host[:port][/path]``) into registry and path.

    A bare registry (``localhost:5000``) gives an empty path, as ko allows.
    """
    text = text.rstrip("/")
    first, _, remainder = text.partition("/")
    if "." in first or ":" in first or first == "localhost":
        registry = DOCKER_HUB if first in _DOCKER_HUB_ALIASES else first
        return registry, remainder
    return DOCKER_HUB, text


def is_loopback_registry(registry: str) -> bool:
    """True for registries go-containerregistry talks plain http to without being told."""
    host = registry
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 or ``::1`` (a host name, no port)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
