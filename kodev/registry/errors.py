"""Registry failures, each a :class:`kodev.errors.RegistryError` (exit code 4).

Messages name the registry and the operation, never credentials, tokens or
``Authorization`` headers.
"""

from __future__ import annotations

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


class DigestMismatch(RegistryError):
    """Content did not hash to the digest it was addressed by or the registry reported."""


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
