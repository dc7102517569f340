"""Registry failures, each a :class:`kodev.errors.RegistryError` (exit code 4).

Messages name the registry and the operation, never credentials, tokens or
``Authorization`` headers.
"""

from __future__ import annotations

import httpx

from kodev.errors import RegistryError


class RegistryUnreachable(RegistryError):
    """The registry (or its token service) could not be reached: refused, reset, timed out."""


class RegistryUnauthorized(RegistryError):
    """The registry answered 401/403, or its token service refused the credentials."""


class RegistryNotFound(RegistryError):
    """Base of the 404 errors."""


class ManifestUnknown(RegistryNotFound):
    """The manifest (tag or digest) does not exist in the repository."""


class BlobUnknown(RegistryNotFound):
    """The blob does not exist in the repository."""


class ManifestBlobUnknown(RegistryError):
    """A manifest PUT answered ``MANIFEST_BLOB_UNKNOWN``: the registry does not (or not
    yet) know a blob the manifest names. Seen with several pushes of the same blobs at
    once (distribution links a blob another upload is still committing)."""


class DigestMismatch(RegistryError):
    """Content did not hash to the digest it was addressed by or the registry reported,
    or was not the size its descriptor gives."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or CONTENT_HINT)


class ContentTooLarge(RegistryError):
    """The registry sent (or announced) more than kodev buffers: a manifest over 4 MiB,
    a config over 8 MiB, any other answer over 16 MiB."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or CONTENT_HINT)


CONTENT_HINT = ("check the image reference and the registry (or a proxy or cache in front "
                "of it); kodev never uses content that does not match its digest and size")


class RegistryServerError(RegistryError):
    """The registry kept answering 429 or 5xx; raised once retries are exhausted."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.retry_after = retry_after


TRANSIENT_ERRORS: tuple[type[RegistryError], ...] = (RegistryUnreachable, RegistryServerError)
"""Errors worth retrying with backoff; every other RegistryError is final."""


def is_tls_failure(exc: httpx.TransportError) -> bool:
    """The TLS handshake failed (an untrusted or wrong certificate, no TLS at all)."""
    text = str(exc).lower()
    return "certificate" in text or "ssl" in text or "tls" in text


def is_untrusted_certificate(exc: httpx.TransportError) -> bool:
    """The peer's certificate failed verification: final, not worth a retry."""
    return "certificate verify failed" in str(exc).lower()


def unreachable_reason(exc: httpx.TransportError) -> str:
    """Why a connection failed, in a few words (never a URL or header)."""
    text = str(exc).lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the registry"
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if is_tls_failure(exc):
        detail = str(exc).split("] ", 1)[-1].split(" (_ssl", 1)[0]
        return f"TLS handshake failed: {detail}"[:200]
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the registry closed the connection"
    if "reset" in text:
        return "connection reset"
    return f"{type(exc).__name__}: {exc}"[:200]
