"""OCI distribution API client: manifests, blobs (monolithic, chunked, mounted), referrers, tags.

One ``RegistryClient`` per registry host. It owns one pooled ``httpx.Client`` and is safe to
share between the threads of a publisher pushing blobs in parallel. Transient failures
(connection errors, 429, 500/502/503/504) are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
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
)
from kodev.registry.errors import (
    TRANSIENT_ERRORS,
    BlobUnknown,
    DigestMismatch,
    ManifestUnknown,
    RegistryNotFound,
    RegistryServerError,
    RegistryUnauthorized,
    RegistryUnreachable,
)

if TYPE_CHECKING:
    from hashlib import _Hash

logger = logging.getLogger("kodev.registry")

T = TypeVar("T")

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_STREAM_PIECE = 64 * 1024
_MAX_RETRY_AFTER_SECONDS = 60.0
_OCTET_STREAM = "application/octet-stream"


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


def _registry_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """(code, message) pairs of an OCI ``errors`` body; a non-JSON body becomes one message."""
    try:
        body = response.read()
    except httpx.HTTPError:
        return []
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


def _unreachable_reason(exc: httpx.TransportError) -> str:
    text = str(exc).lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the registry"
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "certificate" in text or "ssl" in text or "tls" in text:
        return f"TLS handshake failed: {exc}"[:200]
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the registry closed the connection"
    if "reset" in text:
        return "connection reset"
    return f"{type(exc).__name__}: {exc}"[:200]


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


def _iterate_and_close(response: httpx.Response, what: str, registry: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()
    except httpx.TransportError as exc:
        raise RegistryUnreachable(
            f"lost the connection to registry {registry} during {what} "
            f"({_unreachable_reason(exc)})"
        ) from exc
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
        self.scheme = "http" if insecure or is_loopback_registry(registry) else "https"
        self.base_url = f"{self.scheme}://{registry}"
        self.max_attempts = max(1, max_attempts)
        self.chunk_size = max(1, chunk_size)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        keychain = keychain if keychain is not None else Keychain()
        # Parallel blob pushes each hold a connection; token requests may need one more each.
        pool = max(8, 2 * jobs + 2)
        self._http = httpx.Client(
            headers={"User-Agent": user_agent},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            # Plain-http registries need no CA bundle; loading one costs ~100 ms.
            verify=not insecure and self.scheme == "https",
            follow_redirects=False,
        )
        self._auth = RegistryAuth(
            registry,
            credentials=lambda: keychain.resolve(registry),
            token_client=self._http,
            registry_url=self.base_url,
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

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
        self, repo: str, reference: str, accept: str = ACCEPT_ALL_MANIFESTS
    ) -> Manifest:
        what = f"GET manifest {_named(repo, reference)}"

        def attempt() -> Manifest:
            response = self._send("GET", self._url(repo, "manifests", reference), what,
                                  headers={"Accept": accept})
            self._raise_for_status(response, what, not_found=ManifestUnknown)
            return self._manifest_from(response, repo, reference)

        return self._with_retries(attempt, what)

    def _manifest_from(self, response: httpx.Response, repo: str, reference: str) -> Manifest:
        body = response.content
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
        size = response.headers.get("Content-Length")
        if not digest or not media_type or size is None:
            manifest = self.get_manifest(repo, reference)  # registry omits headers on HEAD
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.body))
        return Descriptor(media_type, digest, int(size))

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        digest = _digest_like(body, reference)
        what = f"PUT manifest {_named(repo, reference)}"
        if _is_digest(reference) and reference != digest:
            raise DigestMismatch(f"{what}: the body has digest {digest}")
        response = self._call("PUT", self._url(repo, "manifests", reference), what,
                              headers={"Content-Type": media_type}, content=body)
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

    def get_blob(self, repo: str, digest: str) -> bytes:
        what = f"GET blob {repo}@{digest}"

        def attempt() -> bytes:
            hasher = _hasher(digest)
            data = bytearray()
            for piece in self._open_blob_once(repo, digest):
                hasher.update(piece)
                data.extend(piece)
            actual = f"{hasher.name}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(f"blob {repo}@{digest} from {self.registry} has {actual}")
            return bytes(data)

        return self._with_retries(attempt, what)

    def open_blob(self, repo: str, digest: str) -> Iterator[bytes]:
        """Stream a blob (following redirects to storage). The caller verifies the digest."""
        return self._with_retries(lambda: self._open_blob_once(repo, digest),
                                  f"GET blob {repo}@{digest}")

    def _open_blob_once(self, repo: str, digest: str) -> Iterator[bytes]:
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
        url: str | None = self._url(repo, "referrers", digest)
        found: list[dict[str, Any]] = []
        while url is not None:
            response = self._call("GET", url, what, headers={"Accept": OCI_INDEX},
                                  params=params)
            if response.status_code == 404:
                return None
            self._raise_for_status(response, what)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            data = _json_or_none(response)
            if content_type != OCI_INDEX or not isinstance(data, dict):
                return None
            found.extend(m for m in data.get("manifests") or [] if isinstance(m, dict))
            url, params = _next_link(response), None
        return found

    def list_tags(self, repo: str) -> list[str]:
        """All tags of ``repo`` (following ``Link`` pagination); [] if the repo is unknown."""
        what = f"list tags of {repo}"
        url: str | None = self._url(repo, "tags", "list")
        tags: list[str] = []
        while url is not None:
            response = self._call("GET", url, what)
            if response.status_code == 404:
                return []
            self._raise_for_status(response, what)
            data = _json_or_none(response)
            if isinstance(data, dict):
                tags.extend(str(t) for t in data.get("tags") or [])
            url = _next_link(response)
        return tags

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
        ``_with_retries`` and returns any other response, read unless ``stream``.

        ``params`` are added to the query already in ``url`` (upload locations carry state
        there): httpx's own ``params=`` would replace it."""
        target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
        request = self._http.build_request(method, target, headers=headers, content=content)
        if push_intent:
            request.extensions[PUSH_INTENT_EXTENSION] = True
        try:
            response = self._http.send(request, auth=self._auth, stream=True,
                                       follow_redirects=follow_redirects)
        except httpx.TransportError as exc:
            logger.debug("%s %s failed: %s", method, _loggable(request.url), type(exc).__name__)
            raise RegistryUnreachable(
                f"cannot reach registry {self.registry} ({_unreachable_reason(exc)})",
                hint=f"is the registry running and listening on {self.registry}?",
            ) from exc
        logger.debug("%s %s -> %d", method, _loggable(request.url), response.status_code)
        try:
            self._raise_transient(response, what)
            if not stream:
                response.read()
        except httpx.TransportError as exc:
            response.close()
            raise RegistryUnreachable(
                f"lost the connection to registry {self.registry} during {what} "
                f"({_unreachable_reason(exc)})"
            ) from exc
        except BaseException:
            response.close()
            raise
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
    return str(response.request.url.join(link)) if link else None


def _media_type_in(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    value = data.get("mediaType") if isinstance(data, dict) else None
    return str(value) if value else ""
