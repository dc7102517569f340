"""OCI distribution API client: manifests, blobs (monolithic, chunked, mounted), referrers, tags.

One ``RegistryClient`` per registry host. It owns one pooled ``httpx.Client`` and is safe to
share between the threads of a publisher pushing blobs in parallel. Transient failures
(connection errors, 429, 500/502/503/504) are retried with exponential backoff and jitter.

Transport security, per registry (as go-containerregistry decides it):

- a registry named insecure (``--insecure-registry`` names the target repository's
  registry, ``kodev login --insecure-registry`` the one logged in to): https without
  certificate checks, falling back to plain http when https does not answer;
- a loopback registry (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``): plain http;
- any other registry: https with certificate checks.

Only the registry's own origin (scheme, host, port) gets that treatment and its
credentials: redirects and ``Location``s leading elsewhere (blob storage, an upload
service) are followed with a separate client that always verifies TLS and sends no
``Authorization``.

Size limits: a manifest is read up to :data:`MAX_MANIFEST_BYTES` (4 MiB, the distribution
spec's suggestion), an image config up to :data:`MAX_CONFIG_BYTES`, any other buffered
answer (tag lists, referrers, errors) up to :data:`MAX_RESPONSE_BYTES`; when a descriptor
gives the size, reading stops as soon as the content passes it, and the length must match.
Layers are never buffered: :meth:`RegistryClient.blob_reader` streams them, checking size
and digest.
``Link`` pagination stops with an error after :data:`MAX_PAGES` pages, on a page seen
twice, or on a link to another origin.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import httpx

import kodev
from kodev.errors import RegistryError
from kodev.oci.mediatypes import ACCEPT_ALL_MANIFESTS, OCI_INDEX
from kodev.oci.reference import is_loopback_registry
from kodev.registry.auth import (
    AUTH_RETRY_EXTENSION,
    PUSH_INTENT_EXTENSION,
    Keychain,
    RegistryAuth,
    default_keychain,
    url_origin,
)
from kodev.registry.errors import (
    TRANSIENT_ERRORS,
    BlobUnknown,
    ContentTooLarge,
    DigestMismatch,
    ManifestBlobUnknown,
    ManifestUnknown,
    RegistryNotFound,
    RegistryServerError,
    RegistryUnauthorized,
    RegistryUnreachable,
    is_tls_failure,
    is_untrusted_certificate,
    unreachable_reason,
)

if TYPE_CHECKING:
    from hashlib import _Hash

logger = logging.getLogger("kodev.registry")

T = TypeVar("T")

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_STREAM_PIECE = 64 * 1024
_MAX_RETRY_AFTER_SECONDS = 60.0
_OCTET_STREAM = "application/octet-stream"
_MAX_REDIRECTS = 10
_ERROR_BODY_BYTES = 64 * 1024

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest or index kodev reads (the distribution spec's suggested limit)."""
MAX_CONFIG_BYTES = 8 * 1024 * 1024
"""Largest image config kodev reads from a registry."""
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Largest other answer kodev buffers: a page of tags or referrers, an error body."""
MAX_PAGES = 1000
"""Most ``Link`` pages kodev follows for one tag or referrers listing."""
_PAGINATION_HINT = ("the registry's Link headers are broken; report it to whoever runs the "
                    "registry")


@dataclass(frozen=True)
class Descriptor:
    """What a manifest HEAD tells: media type, digest and size."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A fetched manifest; ``digest`` is computed from ``body``."""

    body: bytes
    media_type: str
    digest: str


class _TooLong(ContentTooLarge):
    """An answer longer than kodev reads (a size cap or its descriptor's size)."""


class _AuthenticationLearned(RegistryUnauthorized):
    """A streaming request got a 401 the auth flow can now answer; send it again at once."""


def _hasher(digest: str) -> _Hash:
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise RegistryError(f"unsupported digest {digest!r}")
    return hashlib.new(algorithm)


def _is_digest(reference: str) -> bool:
    return ":" in reference


def _digest_like(data: bytes, reference: str) -> str:
    """``data``'s digest, with the algorithm of ``reference`` when it is a digest, else sha256."""
    hasher = _hasher(reference if _is_digest(reference) else "sha256:")
    hasher.update(data)
    return f"{hasher.name}:{hasher.hexdigest()}"


def _named(repo: str, reference: str) -> str:
    """``repo:tag`` or ``repo@digest``, for messages."""
    return f"{repo}@{reference}" if _is_digest(reference) else f"{repo}:{reference}"


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_prefix(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (an error body is never read whole)."""
    try:
        return response.content[:limit]
    except httpx.ResponseNotRead:
        pass
    data = bytearray()
    try:
        for piece in response.iter_bytes():
            data.extend(piece)
            if len(data) >= limit:
                break
    except httpx.HTTPError:
        pass
    finally:
        response.close()
    return bytes(data[:limit])


def _registry_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """(code, message) pairs of an OCI ``errors`` body; a non-JSON body becomes one message."""
    body = _body_prefix(response, _ERROR_BODY_BYTES)
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()[:200]
        return [("", text)] if text else []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return []
    return [(str(e.get("code", "")), str(e.get("message", "")))
            for e in errors if isinstance(e, dict)]


def _error_detail(response: httpx.Response) -> str:
    """The registry's error codes and messages as one line, for exception messages."""
    return "; ".join(f"{code}: {message}" if code and message else code or message
                     for code, message in _registry_errors(response))


def _read_exactly(stream: BinaryIO, length: int, digest: str) -> Iterator[bytes]:
    """Stream ``length`` bytes of ``stream`` in small pieces (a chunk is never held whole)."""
    remaining = length
    while remaining:
        piece = stream.read(min(_STREAM_PIECE, remaining))
        if not piece:
            raise RegistryError(f"blob {digest}: content ended {remaining} bytes early")
        remaining -= len(piece)
        yield piece


def _read_up_to(stream: BinaryIO, limit: int) -> bytes:
    """Read until ``limit`` bytes or EOF (a raw stream may return less than asked)."""
    data = bytearray()
    while len(data) < limit:
        piece = stream.read(limit - len(data))
        if not piece:
            break
        data.extend(piece)
    return bytes(data)


def _read_capped(response: httpx.Response, limit: int, what: str, registry: str) -> bytes:
    """The body of a streamed response, refused (and the connection dropped) as soon as it
    is longer than ``limit`` bytes: a registry cannot make kodev buffer without end. (The
    Content-Length of an answer to HEAD is the size of what GET would send: not checked.)"""
    declared = response.headers.get("Content-Length", "")
    head = response.request.method == "HEAD"
    if not head and declared.isdigit() and int(declared) > limit:
        response.close()
        raise _TooLong(
            f"registry {registry} answered {what} with {int(declared)} bytes, more than the "
            f"{limit} kodev accepts"
        )
    data = bytearray()
    try:
        for piece in response.iter_bytes():
            data.extend(piece)
            if len(data) > limit:
                raise _TooLong(
                    f"registry {registry} answered {what} with more than the {limit} bytes "
                    "kodev accepts"
                )
    except httpx.TransportError as exc:
        raise _lost_connection(registry, what, exc) from exc
    finally:
        response.close()
    return bytes(data)


def _buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    """``response`` with ``body`` (already decoded) as its content."""
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() != "content-encoding"]
    return httpx.Response(response.status_code, headers=headers, content=body,
                          request=response.request, extensions=response.extensions)


class BlobReader(io.RawIOBase):
    """A blob as a stream (for uploading it elsewhere), never held whole: pieces are hashed
    as they pass, and the digest and size are checked the moment ``size`` bytes have been
    read, before the caller can finish an upload with them."""

    def __init__(self, pieces: Iterator[bytes], digest: str, size: int, where: str) -> None:
        super().__init__()
        self._pieces = pieces
        self._digest = digest
        self._size = size
        self._where = where
        self._hasher = _hasher(digest)
        self._buffer = bytearray()
        self._received = 0
        self._ended = False
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size + 1 - self._received + len(self._buffer)
        while len(self._buffer) < size and not self._ended:
            self._pull()
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _pull(self) -> None:
        piece = next(self._pieces, None)
        if piece is None:
            self._ended = True
            if self._received < self._size:
                raise RegistryError(f"{self._where}: content ended after {self._received} "
                                    f"of {self._size} bytes")
        else:
            self._received += len(piece)
            if self._received > self._size:
                raise DigestMismatch(f"{self._where}: content is longer than its "
                                     f"{self._size} bytes")
            self._hasher.update(piece)
            self._buffer.extend(piece)
        if self._received == self._size and not self._verified:
            self._verified = True
            actual = f"{self._hasher.name}:{self._hasher.hexdigest()}"
            if actual != self._digest:
                raise DigestMismatch(f"{self._where}: content has digest {actual}")

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
        super().close()


def _lost_connection(registry: str, what: str, exc: httpx.TransportError) -> RegistryUnreachable:
    return RegistryUnreachable(
        f"lost the connection to registry {registry} during {what} ({unreachable_reason(exc)})")


def _iterate_and_close(
    response: httpx.Response, what: str, registry: str
) -> Generator[bytes, None, None]:
    try:
        yield from response.iter_bytes()
    except httpx.TransportError as exc:
        raise _lost_connection(registry, what, exc) from exc
    finally:
        response.close()


class RegistryClient:
    """The OCI distribution API of one registry host."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        keychain: Keychain | None = None,
        user_agent: str = f"kodev/{kodev.__version__}",
        max_attempts: int = 5,
        chunk_size: int = 8 * 1024 * 1024,
        timeout: float = 60.0,
        jobs: int = 4,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        self.registry = registry
        self.insecure = insecure
        # go-containerregistry's Registry.Scheme(): "http" when plain http is allowed. An
        # insecure registry still gets https first (unverified); see base_url.
        self.scheme = "http" if insecure or is_loopback_registry(registry) else "https"
        self._base_url: str | None = None if insecure else f"{self.scheme}://{registry}"
        self._origin: tuple[str, str, int | None] | None = None
        self.max_attempts = max(1, max_attempts)
        self.chunk_size = max(1, chunk_size)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        keychain = keychain if keychain is not None else default_keychain()
        # Parallel blob pushes each hold a connection; token requests may need one more each.
        pool = max(8, 2 * jobs + 2)
        self._client_options: dict[str, Any] = {
            "headers": {"User-Agent": user_agent},
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            "limits": httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            "follow_redirects": False,
        }
        # The registry's own origin only (see _client_for). Plain-http registries need no
        # CA bundle; loading one costs ~100 ms.
        self._http = httpx.Client(
            verify=not insecure and self.scheme == "https", **self._client_options
        )
        self._verified: httpx.Client | None = None
        self._lock = threading.Lock()
        self._auth = RegistryAuth(
            registry,
            credentials=lambda: keychain.resolve(registry),
            token_client=self._http,
            registry_url=f"{self.scheme}://{registry}",
            verified_client=self._verified_client,
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self._base_url or f'{self.scheme}://{self.registry}'!r})"

    @property
    def base_url(self) -> str:
        """``scheme://registry``; for an insecure registry decided on first use, as ggcr
        does: https (certificates unchecked) if it answers there, else plain http."""
        with self._lock:
            if self._base_url is None:
                self._base_url = self._probe_scheme()
                self._auth.set_registry_url(self._base_url)
            if self._origin is None:
                self._origin = url_origin(httpx.URL(self._base_url))
            return self._base_url

    def _probe_scheme(self) -> str:
        https = f"https://{self.registry}"
        try:
            self._http.get(f"{https}/v2/").close()  # no credentials: nothing is known yet
        except httpx.TransportError as exc:
            logger.debug("insecure registry %s: no https (%s), using plain http",
                          self.registry, unreachable_reason(exc))
            return f"http://{self.registry}"
        logger.debug("insecure registry %s: https without certificate checks", self.registry)
        return https

    def _verified_client(self) -> httpx.Client:
        """A client for every origin but the registry's: certificates always checked."""
        with self._lock:
            if self._verified is None:
                self._verified = httpx.Client(verify=True, **self._client_options)
            return self._verified

    def _is_registry(self, url: httpx.URL) -> bool:
        self.base_url  # noqa: B018  (sets _origin)
        return url_origin(url) == self._origin

    def close(self) -> None:
        self._http.close()
        with self._lock:
            if self._verified is not None:
                self._verified.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """``GET /v2/`` with the keychain's credentials (a token with no scope on a Bearer
        registry), as ``docker login`` checks them; RegistryUnauthorized if refused."""
        what = "GET /v2/"
        response = self._call("GET", f"{self.base_url}/v2/", what)
        self._raise_for_status(response, what)

    # ------------------------------------------------------------------ manifests

    def get_manifest(
        self,
        repo: str,
        reference: str,
        accept: str = ACCEPT_ALL_MANIFESTS,
        *,
        size: int | None = None,
    ) -> Manifest:
        """The manifest, read up to ``MAX_MANIFEST_BYTES``; with ``size`` (from the
        descriptor that pointed at it) at most size+1 bytes, and the length must match."""
        what = f"GET manifest {_named(repo, reference)}"
        if size is not None and not 0 <= size <= MAX_MANIFEST_BYTES:
            raise ContentTooLarge(f"{what} from {self.registry}: its descriptor gives a size "
                                  f"of {size} bytes, kodev reads manifests of at most "
                                  f"{MAX_MANIFEST_BYTES} bytes")

        def attempt() -> Manifest:
            response = self._send("GET", self._url(repo, "manifests", reference), what,
                                  headers={"Accept": accept}, stream=True)
            try:
                self._raise_for_status(response, what, not_found=ManifestUnknown)
            except BaseException:
                response.close()
                raise
            limit = MAX_MANIFEST_BYTES if size is None else size
            try:
                body = _read_capped(response, limit, what, self.registry)
            except _TooLong as exc:
                if size is None:
                    raise
                raise DigestMismatch(f"manifest {_named(repo, reference)} from "
                                     f"{self.registry} is longer than the {size} bytes its "
                                     "descriptor gives") from exc
            if size is not None and len(body) != size:
                raise DigestMismatch(f"manifest {_named(repo, reference)} from {self.registry} "
                                     f"is {len(body)} bytes, its descriptor says {size}")
            return self._manifest_from(response, body, repo, reference)

        return self._with_retries(attempt, what)

    def _manifest_from(
        self, response: httpx.Response, body: bytes, repo: str, reference: str
    ) -> Manifest:
        digest = _digest_like(body, reference)
        if _is_digest(reference):
            reported = response.headers.get("Docker-Content-Digest")
            if digest != reference:
                raise DigestMismatch(
                    f"manifest {repo}@{reference} from {self.registry} has digest {digest}"
                )
            if reported and reported != digest:
                raise DigestMismatch(
                    f"manifest {repo}@{reference}: registry {self.registry} reported "
                    f"digest {reported}"
                )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(body=body, media_type=media_type or _media_type_in(body), digest=digest)

    def head_manifest(
        self, repo: str, reference: str, *, for_push: bool = False
    ) -> Descriptor | None:
        """The manifest's descriptor, None if absent. ``for_push``: a push follows, so
        authenticate for push right away (one token for the whole push)."""
        what = f"HEAD manifest {_named(repo, reference)}"
        response = self._call("HEAD", self._url(repo, "manifests", reference), what,
                              headers={"Accept": ACCEPT_ALL_MANIFESTS}, push_intent=for_push)
        if response.status_code == 404:
            return None
        self._raise_for_status(response, what, not_found=ManifestUnknown)
        digest = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        size = response.headers.get("Content-Length", "")
        if not digest or not media_type or not size.isdigit():
            manifest = self.get_manifest(repo, reference)  # registry omits headers on HEAD
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.body))
        if int(size) > MAX_MANIFEST_BYTES:
            raise ContentTooLarge(f"{what}: registry {self.registry} gives a size of {size} "
                                  f"bytes, kodev reads manifests of at most "
                                  f"{MAX_MANIFEST_BYTES} bytes")
        return Descriptor(media_type, digest, int(size))

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        digest = _digest_like(body, reference)
        what = f"PUT manifest {_named(repo, reference)}"
        if _is_digest(reference) and reference != digest:
            raise DigestMismatch(f"{what}: the body has digest {digest}")
        response = self._call("PUT", self._url(repo, "manifests", reference), what,
                              headers={"Content-Type": media_type}, content=body)
        if not response.is_success and any(
                code == "MANIFEST_BLOB_UNKNOWN" for code, _ in _registry_errors(response)):
            raise ManifestBlobUnknown(f"registry {self.registry} answered "
                                      f"{response.status_code} to {what}: "
                                      f"{_error_detail(response)}")
        self._raise_for_status(response, what)
        reported = response.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            raise DigestMismatch(
                f"{what}: registry {self.registry} stored digest {reported}, expected {digest}"
            )
        logger.debug("pushed manifest %s/%s:%s as %s", self.registry, repo, reference, digest)
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        what = f"DELETE manifest {repo}@{digest}"
        response = self._call("DELETE", self._url(repo, "manifests", digest), what)
        self._raise_for_status(response, what, not_found=ManifestUnknown)

    # ------------------------------------------------------------------ blobs

    def blob_exists(self, repo: str, digest: str, *, for_push: bool = False) -> bool:
        """HEAD the blob. ``for_push``: an upload follows, authenticate for push already."""
        return self._with_retries(lambda: self._blob_exists_once(repo, digest, for_push),
                                  f"HEAD blob {repo}@{digest}")

    def _blob_exists_once(self, repo: str, digest: str, for_push: bool = False) -> bool:
        what = f"HEAD blob {repo}@{digest}"
        response = self._send("HEAD", self._url(repo, "blobs", digest), what,
                              follow_redirects=True, push_intent=for_push)
        if response.status_code == 404:
            return False
        self._raise_for_status(response, what, not_found=BlobUnknown)
        return True

    def get_blob(
        self, repo: str, digest: str, *, size: int | None = None, max_size: int | None = None
    ) -> bytes:
        """A small blob (a config) whole, digest checked. With ``size`` (its descriptor's)
        at most size+1 bytes are read and the length must match; with ``max_size``
        nothing longer is accepted. Layers are streamed instead: ``blob_reader``."""
        what = f"GET blob {repo}@{digest}"
        if size is not None and max_size is not None and not 0 <= size <= max_size:
            raise ContentTooLarge(f"{what} from {self.registry}: its descriptor gives a size "
                                  f"of {size} bytes, kodev reads at most {max_size} bytes")

        def attempt() -> bytes:
            hasher = _hasher(digest)
            data = bytearray()
            limit = size if size is not None else max_size
            pieces = self._open_blob_once(repo, digest)
            try:
                for piece in pieces:
                    hasher.update(piece)
                    data.extend(piece)
                    if limit is not None and len(data) > limit:
                        break  # nothing more is read
            finally:
                pieces.close()
            if size is not None and len(data) != size:
                got = f"more than {size}" if len(data) > size else str(len(data))
                raise DigestMismatch(f"blob {repo}@{digest} from {self.registry} is {got} "
                                     f"bytes, its descriptor says {size}")
            if limit is not None and len(data) > limit:
                raise ContentTooLarge(f"blob {repo}@{digest} from {self.registry} is longer "
                                      f"than the {limit} bytes kodev accepts")
            actual = f"{hasher.name}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(f"blob {repo}@{digest} from {self.registry} has {actual}")
            return bytes(data)

        return self._with_retries(attempt, what)

    def blob_reader(self, repo: str, digest: str, size: int) -> BlobReader:
        """The blob as a stream to copy it elsewhere without holding it: size and digest are
        checked as it is read (the error comes before the last byte is handed over)."""
        pieces = self.open_blob(repo, digest)
        return BlobReader(pieces, digest, size, f"blob {repo}@{digest} from {self.registry}")

    def open_blob(self, repo: str, digest: str) -> Generator[bytes, None, None]:
        """Stream a blob (following redirects to storage). The caller verifies the digest."""
        return self._with_retries(lambda: self._open_blob_once(repo, digest),
                                  f"GET blob {repo}@{digest}")

    def _open_blob_once(self, repo: str, digest: str) -> Generator[bytes, None, None]:
        what = f"GET blob {repo}@{digest}"
        response = self._send("GET", self._url(repo, "blobs", digest), what,
                              follow_redirects=True, stream=True)
        try:
            self._raise_for_status(response, what, not_found=BlobUnknown)
        except BaseException:
            response.close()
            raise
        return _iterate_and_close(response, what, self.registry)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False (and the upload it opened cancelled) if refused."""
        mounted, location = self._mount_or_start(repo, digest, from_repo)
        if not mounted and location is not None:
            self._cancel_upload(location)
        return mounted

    def upload_blob(
        self, repo: str, digest: str, size: int, opener: Callable[[], BinaryIO]
    ) -> None:
        """Upload a blob: one PUT when it fits in ``chunk_size``, else PATCH chunks.

        A failed attempt restarts from a new upload session with a fresh ``opener()``, after
        checking whether the blob arrived anyway.
        """
        self._upload(repo, digest, size, opener, location=None)

    def push_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        *,
        mount_from: str | None = None,
    ) -> str:
        """HEAD, then mount (when ``mount_from`` is another repo), then upload. Returns what
        happened: ``"exists"``, ``"mounted"`` or ``"uploaded"``."""
        if self.blob_exists(repo, digest, for_push=True):
            logger.debug("existing blob: %s", digest)
            return "exists"
        location = None
        if mount_from and mount_from != repo:
            mounted, location = self._mount_or_start(repo, digest, mount_from)
            if mounted:
                logger.debug("mounted blob: %s from %s", digest, mount_from)
                return "mounted"
        self._upload(repo, digest, size, opener, location=location)
        logger.debug("pushed blob: %s (%d bytes)", digest, size)
        return "uploaded"

    def _mount_or_start(self, repo: str, digest: str, from_repo: str) -> tuple[bool, str | None]:
        """POST ?mount=&from=: (True, None) when mounted, else (False, upload location)."""
        what = f"mount blob {digest} from {from_repo} into {repo}"
        response = self._call("POST", self._url(repo, "blobs", "uploads", ""), what,
                              params={"mount": digest, "from": from_repo})
        if response.status_code == 201:
            return True, None
        self._raise_for_status(response, what)
        return False, self._location(response, what)

    def _cancel_upload(self, location: str) -> None:
        try:
            self._send("DELETE", location, "cancel upload").close()
        except RegistryError as exc:
            logger.debug("could not cancel upload session: %s", exc)

    def _upload(
        self,
        repo: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        *,
        location: str | None,
    ) -> None:
        what = f"upload blob {repo}@{digest}"
        attempts = 0
        session = location

        def attempt() -> None:
            nonlocal attempts, session
            attempts += 1
            start, session = session, None
            if attempts > 1 and self._blob_exists_once(repo, digest, for_push=True):
                return
            if start is None:
                start = self._start_upload(repo, what)
            if size <= self.chunk_size:
                self._put_monolithic(start, digest, size, opener, what)
            else:
                self._put_chunked(start, digest, size, opener, what)

        self._with_retries(attempt, what)

    def _start_upload(self, repo: str, what: str) -> str:
        response = self._send("POST", self._url(repo, "blobs", "uploads", ""), what)
        self._raise_for_status(response, what)
        return self._location(response, what)

    def _put_monolithic(
        self, location: str, digest: str, size: int, opener: Callable[[], BinaryIO], what: str
    ) -> None:
        with opener() as stream:
            body = _read_up_to(stream, size + 1)  # one byte more reveals a longer stream
        if len(body) != size:
            raise RegistryError(f"{what}: content is {len(body)} bytes, expected {size}")
        response = self._send("PUT", location, what, params={"digest": digest}, content=body,
                              headers={"Content-Type": _OCTET_STREAM})
        self._check_upload_finished(response, what)

    def _put_chunked(
        self, location: str, digest: str, size: int, opener: Callable[[], BinaryIO], what: str
    ) -> None:
        with opener() as stream:
            offset = 0
            while offset < size:
                length = min(self.chunk_size, size - offset)
                headers = {
                    "Content-Type": _OCTET_STREAM,
                    "Content-Range": f"{offset}-{offset + length - 1}",
                    "Content-Length": str(length),
                }
                response = self._send("PATCH", location, what, headers=headers,
                                      content=_read_exactly(stream, length, digest))
                self._raise_for_status(response, what)
                location = self._location(response, what)
                offset += length
        response = self._send("PUT", location, what, params={"digest": digest})
        self._check_upload_finished(response, what)

    def _check_upload_finished(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 400:
            errors = _registry_errors(response)
            detail = "; ".join(f"{code}: {message}" for code, message in errors)
            if {code for code, _ in errors} & {"DIGEST_INVALID", "SIZE_INVALID"}:
                raise DigestMismatch(f"{what}: registry {self.registry} rejected it: {detail}")
        self._raise_for_status(response, what)

    # ------------------------------------------------------------------ listing

    def referrers(
        self, repo: str, digest: str, *, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        """Manifests referring to ``digest`` (OCI 1.1), or None when the registry lacks the
        referrers API (404, or an answer that is not an image index)."""
        what = f"GET referrers of {repo}@{digest}"
        params = {"artifactType": artifact_type} if artifact_type else None
        found: list[dict[str, Any]] = []
        for response in self._pages(self._url(repo, "referrers", digest), what,
                                    headers={"Accept": OCI_INDEX}, params=params):
            if response.status_code == 404:
                return None
            self._raise_for_status(response, what)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            data = _json_or_none(response)
            if content_type != OCI_INDEX or not isinstance(data, dict):
                return None
            found.extend(m for m in data.get("manifests") or [] if isinstance(m, dict))
        return found

    def list_tags(self, repo: str) -> list[str]:
        """All tags of ``repo`` (following ``Link`` pagination); [] if the repo is unknown."""
        what = f"list tags of {repo}"
        tags: list[str] = []
        for response in self._pages(self._url(repo, "tags", "list"), what):
            if response.status_code == 404:
                return []
            self._raise_for_status(response, what)
            data = _json_or_none(response)
            if isinstance(data, dict):
                tags.extend(str(t) for t in data.get("tags") or [])
        return tags

    def _pages(
        self,
        url: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """The pages of a listing, following ``Link: <...>; rel="next"``: only on the
        registry's own origin (a link elsewhere would carry the listing's credentials
        there; it is refused), never a page twice, at most ``MAX_PAGES``."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if len(seen) >= MAX_PAGES:
                raise RegistryError(f"registry {self.registry} paginated {what} beyond "
                                    f"{MAX_PAGES} pages; kodev stopped there",
                                    hint=_PAGINATION_HINT)
            seen.add(next_url)
            response = self._call("GET", next_url, what, headers=headers, params=params)
            yield response
            next_url, params = _next_link(response), None
            if next_url is None:
                return
            if not self._is_registry(httpx.URL(next_url)):
                raise RegistryError(
                    f"registry {self.registry} paginated {what} to another origin "
                    f"({_loggable(httpx.URL(next_url))}); kodev does not follow it",
                    hint=_PAGINATION_HINT,
                )
            if next_url in seen:
                raise RegistryError(f"registry {self.registry} paginated {what} in a loop "
                                    "(a page links to one already read)",
                                    hint=_PAGINATION_HINT)

    # ------------------------------------------------------------------ plumbing

    def _url(self, repo: str, *parts: str) -> str:
        return f"{self.base_url}/v2/{repo}/" + "/".join(parts)

    def _location(self, response: httpx.Response, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: registry {self.registry} sent no Location header")
        return str(response.request.url.join(location))

    def _call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        push_intent: bool = False,
    ) -> httpx.Response:
        """One request with retries; the body must be replayable bytes."""
        return self._with_retries(
            lambda: self._send(method, url, what, headers=headers, params=params,
                               content=content, push_intent=push_intent),
            what,
        )

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        follow_redirects: bool = False,
        stream: bool = False,
        push_intent: bool = False,
    ) -> httpx.Response:
        """One attempt. Raises the transient errors (unreachable, 429/5xx) for
        ``_with_retries`` and returns any other response, read (at most
        ``MAX_RESPONSE_BYTES``) unless ``stream``.

        ``params`` are added to the query already in ``url`` (upload locations carry state
        there): httpx's own ``params=`` would replace it. Redirects are followed here, not
        by httpx, so that each hop goes through the client of its origin (``_client_for``).
        """
        target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
        response = self._send_once(method, target, headers, content, push_intent)
        hops = 0
        while follow_redirects and response.has_redirect_location:
            hops += 1
            location = response.headers["Location"]
            response.close()
            if hops > _MAX_REDIRECTS:
                raise RegistryError(f"registry {self.registry} redirected {what} more than "
                                    f"{_MAX_REDIRECTS} times")
            try:
                target = response.url.join(location)
            except httpx.InvalidURL as exc:
                raise RegistryError(f"registry {self.registry} redirected {what} to an "
                                    "invalid URL") from exc
            if target.scheme not in ("http", "https"):
                raise RegistryError(f"registry {self.registry} redirected {what} to a "
                                    f"{target.scheme or 'relative'} URL")
            if response.status_code == 303 and method != "HEAD":
                method, content = "GET", None
            response = self._send_once(method, target, headers, content, push_intent)
        try:
            self._raise_transient(response, what)
            if not stream:
                body = _read_capped(response, MAX_RESPONSE_BYTES, what, self.registry)
                response = _buffered(response, body)
        except BaseException:
            response.close()
            raise
        return response

    def _client_for(self, url: httpx.URL) -> tuple[httpx.Client, RegistryAuth | None]:
        """The registry's own client and credentials for its origin; for any other origin
        (blob storage, a Location or Link elsewhere, https turned http) the verifying
        client and no credentials at all."""
        if self._is_registry(url):
            return self._http, self._auth
        return self._verified_client(), None

    def _send_once(
        self,
        method: str,
        target: httpx.URL,
        headers: dict[str, str] | None,
        content: bytes | Iterator[bytes] | None,
        push_intent: bool,
    ) -> httpx.Response:
        client, auth = self._client_for(target)
        request = client.build_request(method, target, headers=headers, content=content)
        if push_intent:
            request.extensions[PUSH_INTENT_EXTENSION] = True
        try:
            response = client.send(request, auth=auth, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            logger.debug("%s %s failed: %s", method, _loggable(request.url), type(exc).__name__)
            where = ("" if auth is not None else
                     f" (at {target.host}, where it sent kodev)")
            host = target.netloc.decode("ascii", "replace")
            hint = (_untrusted_hint(host) if is_tls_failure(exc)
                    else f"is the registry running and listening on {host}?")
            # an untrusted certificate stays untrusted: no retry (RegistryError is final)
            error = RegistryError if is_untrusted_certificate(exc) else RegistryUnreachable
            raise error(
                f"cannot reach registry {self.registry}{where} ({unreachable_reason(exc)})",
                hint=hint,
            ) from exc
        logger.debug("%s %s -> %d", method, _loggable(request.url), response.status_code)
        return response

    def _raise_transient(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status == 401 and response.extensions.get(AUTH_RETRY_EXTENSION):
            raise _AuthenticationLearned(f"{what}: authenticating")
        if status not in _RETRYABLE_STATUSES:
            return
        detail = _error_detail(response)
        raise RegistryServerError(
            f"registry {self.registry} answered {status} {response.reason_phrase} to {what}"
            + (f": {detail}" if detail else ""),
            status_code=status,
            retry_after=_parse_retry_after(response.headers.get("Retry-After")),
        )

    def _raise_for_status(
        self,
        response: httpx.Response,
        what: str,
        *,
        not_found: type[RegistryNotFound] | None = None,
    ) -> None:
        status = response.status_code
        if response.is_success:
            return
        detail = _error_detail(response)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            raise self._unauthorized(status, what, suffix)
        if status == 404 and not_found is not None:
            raise not_found(f"{what}: not found in registry {self.registry}{suffix}")
        raise RegistryError(f"registry {self.registry} answered {status} to {what}{suffix}")

    def _unauthorized(self, status: int, what: str, suffix: str) -> RegistryUnauthorized:
        user = self._auth.username()
        if status == 403:
            reason = f"denied {what}" + (f" to user {user}" if user else "")
        elif user:
            reason = f"rejected the credentials of user {user} for {what}"
        else:
            reason = f"requires authentication for {what}"
        return RegistryUnauthorized(
            f"registry {self.registry} {reason} ({status}){suffix}",
            hint=f"run `docker login {self.registry}` or `kodev login {self.registry}`",
        )

    def _with_retries(self, attempt: Callable[[], T], what: str) -> T:
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except _AuthenticationLearned:
                if number >= self.max_attempts:
                    raise
            except TRANSIENT_ERRORS as exc:
                if number >= self.max_attempts:
                    raise
                delay = self._backoff_delay(number, getattr(exc, "retry_after", None))
                logger.debug("%s failed (%s); attempt %d/%d in %.2fs",
                             what, exc, number + 1, self.max_attempts, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff_delay(self, failed_attempt: int, retry_after: float | None) -> float:
        """Base doubling per attempt, capped, with jitter in [50%, 100%]; ``Retry-After``
        (capped at a minute) wins when the registry sends one."""
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_SECONDS)
        delay = min(self._backoff_cap, self._backoff_base * 2 ** (failed_attempt - 1))
        return float(delay * random.uniform(0.5, 1.0))


def _untrusted_hint(host: str) -> str:
    return (f"kodev verifies the TLS certificate of {host}: add its CA to the system's "
            "trust store (or SSL_CERT_FILE); --insecure-registry lifts the check only for "
            "the registry of the target repository")


def _loggable(url: httpx.URL) -> str:
    """The URL without its query (upload state tokens are long and not useful in logs)."""
    return str(url.copy_with(query=None))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _next_link(response: httpx.Response) -> str | None:
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    try:
        return str(response.request.url.join(link))
    except httpx.InvalidURL as exc:
        raise RegistryError(f"invalid pagination Link {link[:100]!r}") from exc


def _media_type_in(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    value = data.get("mediaType") if isinstance(data, dict) else None
    return str(value) if value else ""
