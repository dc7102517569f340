"""Registry credentials (docker/podman config files, credential helpers) and the httpx auth flow.

A ``Keychain`` answers "which credentials for this registry?" (go-containerregistry's
``authn.Keychain``): ``DockerConfigKeychain`` reads docker's and podman's files and runs
credential helpers (the default), ``StaticKeychain`` holds one registry's username and
password (Terraform's ``basic_auth``), ``MultiKeychain`` asks several in order.
``RegistryAuth`` answers ``WWW-Authenticate`` challenges: Basic, or Bearer tokens from the
registry's token service, cached per scope set so one push asks for a token once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from kodev.errors import ConfigError, RegistryError
from kodev.oci.reference import is_loopback_host
from kodev.registry.errors import (
    RegistryServerError,
    RegistryUnauthorized,
    RegistryUnreachable,
    is_tls_failure,
    is_untrusted_certificate,
    unreachable_reason,
)

logger = logging.getLogger("kodev.registry")

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
"""The key docker writes Docker Hub credentials under, and sends to credential helpers."""
_DOCKER_HUB_HOSTS = ("index.docker.io", "docker.io", "registry-1.docker.io")
_IDENTITY_TOKEN_USERNAME = "<token>"
_HELPER_TIMEOUT_SECONDS = 60.0
_MIN_TOKEN_LIFETIME_SECONDS = 60
_MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
_TOKEN_EXPIRY_MARGIN_SECONDS = 10
PUSH_INTENT_EXTENSION = "kodev.push_intent"
"""Request extension: this read is the first step of a push (HEAD before upload), so ask for
a ``pull,push`` token now and the upload that follows reuses it, as ggcr's push does."""
AUTH_RETRY_EXTENSION = "kodev.auth_retry"
"""Set on a 401 response whose streaming request could not be replayed inside the auth flow,
although the flow now has credentials: the caller should rebuild the request and send it again."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """What to authenticate with: a username/password, an identity (refresh) token or a
    registry (bearer) token. ``repr`` never shows a secret."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None

    @property
    def has_password(self) -> bool:
        return bool(self.username and self.password)

    def __repr__(self) -> str:
        parts = [f"username={self.username!r}"]
        for name in ("password", "identity_token", "registry_token"):
            if getattr(self, name):
                parts.append(f"{name}=<redacted>")
        return f"Credentials({', '.join(parts)})"

    __str__ = __repr__


# --------------------------------------------------------------------------- keychain


def _config_key_hostname(key: str) -> str:
    """Docker's ``ConvertToHostname``: drop the scheme and any path from a config key."""
    text = key.strip().lower()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text.split("/", 1)[0]


def _canonical_registry(host: str) -> str:
    return "index.docker.io" if host in _DOCKER_HUB_HOSTS else host


def is_docker_hub(registry: str) -> bool:
    return _canonical_registry(_config_key_hostname(registry)) == "index.docker.io"


def server_url_for(registry: str) -> str:
    """The server address docker uses for ``registry`` in config keys and helper calls."""
    return DOCKER_HUB_CONFIG_KEY if is_docker_hub(registry) else _config_key_hostname(registry)


def find_config_entry(entries: Mapping[str, Any], registry: str) -> tuple[str, Any] | None:
    """Find ``registry``'s entry in an ``auths``/``credHelpers`` map, matching keys as docker
    does: exact key first, then any key whose hostname (scheme and path stripped) matches.
    Docker Hub's aliases (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``,
    ``https://index.docker.io/v1/``) all name the same registry."""
    target = _canonical_registry(_config_key_hostname(registry))
    exact = [server_url_for(registry), registry]
    if target == "index.docker.io":
        exact.extend(_DOCKER_HUB_HOSTS)
    for key in exact:
        if key in entries:
            return key, entries[key]
    for key, value in entries.items():
        if _canonical_registry(_config_key_hostname(key)) == target:
            return key, value
    return None


def _load_config_file(path: Path) -> dict[str, Any]:
    """Parse a docker/podman auth file; a missing or empty file is an empty config."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"cannot parse {path}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"cannot parse {path}: expected a JSON object")
    return data


def _credentials_from_auth_entry(entry: Any, path: Path, key: str) -> Credentials | None:
    """Decode one ``auths`` entry; an empty entry (as ``docker login`` with a credsStore
    leaves behind) yields None so the lookup goes on."""
    if not isinstance(entry, dict):
        raise ConfigError(f"invalid entry {key!r} in {path}: expected a JSON object")
    username = entry.get("username") or None
    password = entry.get("password") or None
    encoded = entry.get("auth")
    if encoded:
        username, password = _decode_basic_auth_field(encoded, path, key)
    identity_token = entry.get("identitytoken") or None
    registry_token = entry.get("registrytoken") or None
    creds = Credentials(username, password, identity_token, registry_token)
    if creds.has_password or identity_token or registry_token:
        return creds
    return None


def _decode_basic_auth_field(encoded: Any, path: Path, key: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(str(encoded), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid base64 in the auth field of {key!r} in {path}") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise ConfigError(f"the auth field of {key!r} in {path} is not base64 of user:password")
    return username, password


def run_credential_helper(helper: str, registry: str, config_path: Path) -> Credentials | None:
    """``docker-credential-<helper> get`` with the server URL on stdin (docker's protocol)."""
    program = f"docker-credential-{helper}"
    server_url = server_url_for(registry)
    logger.debug("asking credential helper %s for %s", program, server_url)
    stdout = call_credential_helper(helper, "get", server_url, config_path,
                                    subject=f"for {registry}")
    if stdout is None:
        return None
    return _parse_helper_output(program, registry, stdout)


def call_credential_helper(
    helper: str,
    action: str,
    stdin: str,
    config_path: Path,
    *,
    subject: str = "",
    secrets: Iterable[str] = (),
) -> str | None:
    """Run ``docker-credential-<helper> <action>`` (``get``, ``store``, ``erase``) with
    docker's stdin protocol; the one place kodev runs a credential helper.

    Returns its stdout, or None when it answers "credentials not found". Any other failure
    is a RegistryError whose message quotes at most one line of the helper's output, with
    every secret removed: ``secrets`` (what kodev handed it) and whatever the output itself
    carries as a secret (a helper may print its JSON answer and still fail)."""
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        raise ConfigError(
            f"credential helper {program} (configured in {config_path}) is not on PATH",
            hint=f"install {program} or remove it from {config_path}",
        )
    context = f" ({action} {subject})" if subject else f" ({action})"
    try:
        result = subprocess.run(
            [executable, action],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"credential helper {program} did not answer{context}") from exc
    except OSError as exc:
        raise RegistryError(
            f"cannot run credential helper {program}{context}: {exc.strerror or exc}"
        ) from exc
    if result.returncode == 0:
        return result.stdout
    message = _helper_failure_message(result, secrets)
    if "credentials not found" in message.lower():
        return None
    raise RegistryError(f"credential helper {program} failed{context}: {message}",
                        hint=f"check {program}, or the credHelpers/credsStore entry in "
                        f"{config_path} that names it")


_SECRET_FIELD_RE = re.compile(
    r'"(?:secret|password|passwd|token|identitytoken|registrytoken|access_token|'
    r'refresh_token|auth)"\s*:\s*"((?:[^"\\]|\\.)*)',
    re.IGNORECASE,
)
_SECRET_LINE_RE = re.compile(
    r"(secret|passw|token|\bauth\b|authorization)\W*[:=]", re.IGNORECASE
)
_SECRET_KEY_NAMES = ("secret", "password", "passwd", "token", "identitytoken",
                     "registrytoken", "access_token", "refresh_token", "auth")
_MAX_HELPER_MESSAGE = 200


def _helper_failure_message(
    result: subprocess.CompletedProcess[str], secrets: Iterable[str]
) -> str:
    """One line of a failed helper's output (stdout first, as docker's helpers print their
    errors there), never a secret: lines that look like a credential payload are skipped and
    every known secret is cut out before the line is shortened. Lines of a JSON document
    (a helper's answer printed before it failed) are skipped altogether."""
    outputs = (result.stdout or "", result.stderr or "")
    known = {s for s in secrets if s}
    for text in outputs:
        known |= _secrets_in_output(text)
    for text in outputs:
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in '{}[]"' or _SECRET_LINE_RE.search(line):
                continue
            for secret in sorted(known, key=len, reverse=True):
                line = line.replace(secret, "<redacted>")
            if line.replace("<redacted>", "").strip(" :,;-"):
                return line[:_MAX_HELPER_MESSAGE]
    return f"exit status {result.returncode}"


def _secrets_in_output(text: str) -> set[str]:
    """Secret values a helper's output carries (JSON, whole or cut short)."""
    found = {m.group(1) for m in _SECRET_FIELD_RE.finditer(text)}
    found |= {bytes(v, "utf-8").decode("unicode_escape", "ignore") for v in list(found)}
    try:
        data = json.loads(text)
    except ValueError:
        data = None

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and str(key).lower() in _SECRET_KEY_NAMES:
                    found.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return {s for s in found if s}


def _parse_helper_output(program: str, registry: str, stdout: str) -> Credentials | None:
    # The output holds the secret: errors below must never quote it.
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        raise RegistryError(
            f"credential helper {program} printed invalid JSON for {registry}"
        ) from None
    if not isinstance(data, dict):
        raise RegistryError(f"credential helper {program} printed invalid JSON for {registry}")
    username = str(data.get("Username") or "")
    secret = str(data.get("Secret") or "")
    if not secret:
        return None
    if username == _IDENTITY_TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    return Credentials(username=username or None, password=secret)


def docker_config_path(env: Mapping[str, str]) -> Path:
    """docker's own file: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    docker_dir = env.get("DOCKER_CONFIG")
    if docker_dir:
        return Path(docker_dir) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def load_config_file(path: Path) -> dict[str, Any]:
    """A docker config file as a dict ({} when missing or empty); ConfigError if invalid."""
    return _load_config_file(path)


class Keychain(Protocol):
    """Credentials for a registry host, or None: anonymous (ask the next keychain)."""

    def resolve(self, registry: str) -> Credentials | None: ...


class DockerConfigKeychain:
    """Resolves credentials for a registry host from the user's auth files.

    Order: ``$REGISTRY_AUTH_FILE`` (podman), then ``$DOCKER_CONFIG/config.json`` or
    ``~/.docker/config.json``; in each file ``credHelpers``, then ``auths``, then
    ``credsStore``. Files are read on every call; callers cache the result.
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def config_files(self) -> list[Path]:
        """The auth files consulted, in order."""
        env = self._env()
        files: list[Path] = []
        if env.get("REGISTRY_AUTH_FILE"):
            files.append(Path(env["REGISTRY_AUTH_FILE"]))
        files.append(docker_config_path(env))
        return files

    def resolve(self, registry: str) -> Credentials | None:
        for path in self.config_files():
            creds = self._resolve_from_file(path, registry)
            if creds is not None:
                logger.debug("credentials for %s from %s", registry, path)
                return creds
        logger.debug("no credentials for %s in the docker config", registry)
        return None

    def _resolve_from_file(self, path: Path, registry: str) -> Credentials | None:
        config = _load_config_file(path)
        helpers = config.get("credHelpers") or {}
        if isinstance(helpers, dict):
            found = find_config_entry(helpers, registry)
            if found is not None and found[1]:
                return run_credential_helper(str(found[1]), registry, path)
        auths = config.get("auths") or {}
        if isinstance(auths, dict):
            found = find_config_entry(auths, registry)
            if found is not None:
                creds = _credentials_from_auth_entry(found[1], path, found[0])
                if creds is not None:
                    return creds
        store = config.get("credsStore")
        if store:
            return run_credential_helper(str(store), registry, path)
        return None


def default_keychain(environ: Mapping[str, str] | None = None) -> Keychain:
    """What kodev uses unless told otherwise: the docker config and its helpers."""
    return DockerConfigKeychain(environ=environ)


class StaticKeychain:
    """One registry's username and password (Terraform's ``basic_auth``); nothing for any
    other registry. Docker Hub's aliases count as one registry, as in the docker config."""

    def __init__(self, registry: str, username: str, password: str) -> None:
        self._registry = _canonical_registry(_config_key_hostname(registry))
        self._credentials = Credentials(username=username, password=password)

    def resolve(self, registry: str) -> Credentials | None:
        if _canonical_registry(_config_key_hostname(registry)) != self._registry:
            return None
        return self._credentials


class MultiKeychain:
    """Asks each keychain in order; the first that has credentials answers
    (go-containerregistry's ``NewMultiKeychain``)."""

    def __init__(self, *keychains: Keychain) -> None:
        self.keychains = keychains

    def resolve(self, registry: str) -> Credentials | None:
        for keychain in self.keychains:
            credentials = keychain.resolve(registry)
            if credentials is not None:
                return credentials
        logger.debug("no credentials for %s: anonymous", registry)
        return None


# --------------------------------------------------------------------------- challenges

_PARAM_RE = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_REPOSITORY_PATH_RE = re.compile(r"^/v2/(?P<name>.+)/(?:blobs|manifests|tags|referrers)/")


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header (the first challenge in it)."""

    scheme: str  # lower case: "basic" or "bearer"
    realm: str = ""
    service: str = ""
    scopes: frozenset[str] = frozenset()
    error: str = ""


def parse_challenge(header: str) -> Challenge | None:
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        name = match.group(1).lower()
        if name in params:  # a second challenge started; keep the first
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[name] = re.sub(r"\\(.)", r"\1", value)
    scopes = frozenset(params.get("scope", "").split())
    return Challenge(
        scheme=scheme.lower(),
        realm=params.get("realm", ""),
        service=params.get("service", ""),
        scopes=scopes,
        error=params.get("error", ""),
    )


def _parse_scope(scope: str) -> tuple[str, frozenset[str]]:
    resource, _, actions = scope.rpartition(":")
    return resource, frozenset(a for a in actions.split(",") if a)


def normalize_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Merge scopes naming the same resource: ``repository:x:pull`` + ``repository:x:push``
    → ``repository:x:pull,push``."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        resource, actions = _parse_scope(scope)
        if resource:
            merged.setdefault(resource, set()).update(actions)
    return frozenset(f"{res}:{','.join(sorted(acts))}" for res, acts in merged.items())


def scopes_covered(granted: frozenset[str], required: frozenset[str]) -> bool:
    """True when every required resource/action is in ``granted`` (push implies nothing;
    a ``pull,push`` grant serves a ``pull`` request)."""
    grants = dict(_parse_scope(s) for s in granted)
    for scope in required:
        resource, actions = _parse_scope(scope)
        allowed = grants.get(resource, frozenset())
        if "*" not in allowed and not actions <= allowed:
            return False
    return True


def scopes_for_request(request: httpx.Request) -> frozenset[str]:
    """The token scopes the distribution registry checks for this request (its
    ``appendAccessRecords``), including ``pull`` on the source of a cross-repo mount."""
    path = request.url.path
    if path.startswith("/v2/_catalog"):
        return frozenset({"registry:catalog:*"})
    match = _REPOSITORY_PATH_RE.match(path)
    if match is None:
        return frozenset()
    name = match.group("name")
    method = request.method.upper()
    if method in ("GET", "HEAD") and not request.extensions.get(PUSH_INTENT_EXTENSION):
        scopes = {f"repository:{name}:pull"}
    elif method in ("GET", "HEAD", "POST", "PUT", "PATCH"):
        scopes = {f"repository:{name}:pull,push"}
    elif method == "DELETE":
        scopes = {f"repository:{name}:delete"}
    else:
        scopes = set()
    source = request.url.params.get("from")
    if method == "POST" and source and request.url.params.get("mount"):
        scopes.add(f"repository:{source}:pull")
    return normalize_scopes(scopes)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    value: str
    scopes: frozenset[str]
    expires_at: float


class _TokenCache:
    """Bearer tokens by the scope set they were issued for; thread-safe.

    A per-scope-set fetch lock makes concurrent requests needing the same scopes wait for
    one token request instead of each sending their own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[frozenset[str], _Token] = {}
        self._fetch_locks: dict[frozenset[str], threading.Lock] = {}

    def find(self, required: frozenset[str]) -> str | None:
        now = time.monotonic()
        with self._lock:
            exact = self._tokens.get(required)
            if exact is not None and exact.expires_at > now:
                return exact.value
            for token in self._tokens.values():
                if token.expires_at > now and scopes_covered(token.scopes, required):
                    return token.value
        return None

    def store(self, token: _Token) -> None:
        with self._lock:
            self._tokens[token.scopes] = token

    def discard(self, value: str) -> None:
        with self._lock:
            for key in [k for k, t in self._tokens.items() if t.value == value]:
                del self._tokens[key]

    def fetch_lock(self, scopes: frozenset[str]) -> threading.Lock:
        with self._lock:
            return self._fetch_locks.setdefault(scopes, threading.Lock())


def _login_hint(registry: str) -> str:
    return f"run `docker login {registry}` or `kodev login {registry}`"


class RegistryAuth(httpx.Auth):
    """Answers a registry's 401 challenges and then authenticates later requests up front.

    After the first challenge the scheme (and, for Bearer, the realm and service) is
    remembered, so later requests carry credentials from the start: streaming upload bodies
    cannot be replayed after a 401. Tokens are fetched with ``token_client`` outside the
    flow, so ``requires_response_body`` stays False and blob downloads keep streaming.

    Credentials go only where they were issued for: an ``Authorization`` header only on
    requests to the registry's own origin (scheme, host and port: an https registry's
    credentials never travel on plain http, even to the same host and port), challenges only
    from responses of that origin (a 401 from a storage host a blob redirect led to is not
    answered), and the token ``realm`` is checked before anything is sent to it: plain http
    only on loopback, and TLS always verified on a non-loopback realm (``verified_client``),
    even when the registry itself is insecure.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        registry: str,
        *,
        credentials: Callable[[], Credentials | None],
        token_client: httpx.Client,
        registry_url: str,
        verified_client: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.registry = registry
        self._credentials_source = credentials
        self._token_client = token_client
        self._verified_client = verified_client
        self._origin = url_origin(httpx.URL(registry_url))
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._tokens = _TokenCache()

    # -- state

    def set_registry_url(self, registry_url: str) -> None:
        """The registry's origin once known (an insecure registry's scheme is probed)."""
        with self._lock:
            self._origin = url_origin(httpx.URL(registry_url))

    def _is_registry(self, url: httpx.URL) -> bool:
        with self._lock:
            origin = self._origin
        return url_origin(url) == origin

    def credentials(self) -> Credentials | None:
        """The registry's credentials, looked up once (helpers may be slow or prompt)."""
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = self._credentials_source()
                self._credentials_loaded = True
            return self._credentials

    def username(self) -> str | None:
        """Who we authenticate as, for error messages (never a secret); None if anonymous
        or not looked up yet."""
        with self._lock:
            creds = self._credentials
        return creds.username if creds is not None else None

    def _remember(self, challenge: Challenge) -> None:
        with self._lock:
            self._challenge = challenge

    def _known_challenge(self) -> Challenge | None:
        with self._lock:
            return self._challenge

    # -- the flow

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._is_registry(request.url):
            yield request
            return
        scopes = scopes_for_request(request)
        challenge = self._known_challenge()
        sent = self._authorization(challenge, scopes, refresh=False) if challenge else None
        if sent is not None:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401 or not self._is_registry(response.request.url):
            return  # a 401 from another host (a blob redirect's storage) is not answered
        fresh = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if fresh is None:
            return
        response.read()  # frees the connection before a token request needs one
        self._remember(fresh)
        if sent is not None and sent.startswith("Bearer "):
            self._tokens.discard(sent.removeprefix("Bearer "))
        retry = self._authorization(fresh, scopes | fresh.scopes, refresh=sent is not None)
        if retry is None or retry == sent:
            return
        if not isinstance(request.stream, httpx.ByteStream):
            response.extensions[AUTH_RETRY_EXTENSION] = True
            return
        request.headers["Authorization"] = retry
        yield request

    def _authorization(
        self, challenge: Challenge, scopes: frozenset[str], *, refresh: bool
    ) -> str | None:
        creds = self.credentials()
        if challenge.scheme == "basic":
            if creds is None or not creds.has_password:
                return None
            pair = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if challenge.scheme == "bearer":
            if creds is not None and creds.registry_token:
                return f"Bearer {creds.registry_token}"
            return "Bearer " + self._token(challenge, normalize_scopes(scopes), refresh=refresh)
        return None

    def _token(self, challenge: Challenge, scopes: frozenset[str], *, refresh: bool) -> str:
        if not refresh:
            cached = self._tokens.find(scopes)
            if cached is not None:
                return cached
        with self._tokens.fetch_lock(scopes):
            if not refresh:
                cached = self._tokens.find(scopes)
                if cached is not None:
                    return cached
            token = self._fetch_token(challenge, scopes)
            self._tokens.store(token)
            return token.value

    # -- token service

    def _fetch_token(self, challenge: Challenge, scopes: frozenset[str]) -> _Token:
        if not challenge.realm:
            raise RegistryError(f"registry {self.registry} sent a Bearer challenge without realm")
        client = self._realm_client(challenge.realm)
        creds = self.credentials()
        logger.debug(
            "requesting a token from %s for %s", _url_without_query(challenge.realm),
            " ".join(sorted(scopes)) or "(no scope)",
        )
        request = self._token_request(client, challenge, scopes, creds)
        try:
            response = client.send(request, auth=None, follow_redirects=False, stream=True)
            try:
                body = _read_at_most(response, _MAX_TOKEN_RESPONSE_BYTES)
            finally:
                response.close()
        except httpx.TransportError as exc:
            host = httpx.URL(challenge.realm).host
            error = RegistryError if is_untrusted_certificate(exc) else RegistryUnreachable
            raise error(
                f"cannot reach the token service {host} of registry {self.registry} "
                f"({unreachable_reason(exc)}); no credentials were sent",
                hint=(f"kodev verifies the TLS certificate of the token service {host}, "
                      "even for an insecure registry: add its CA to the trust store"
                      if is_tls_failure(exc) else None),
            ) from exc
        if body is None:
            raise RegistryError(f"the token service of registry {self.registry} sent more "
                                f"than {_MAX_TOKEN_RESPONSE_BYTES} bytes")
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() != "content-encoding"]  # body is decoded already
        response = httpx.Response(response.status_code, headers=headers, content=body,
                                  request=request)
        self._check_token_response(response, creds)
        return self._parse_token(response, scopes)

    def _realm_client(self, realm: str) -> httpx.Client:
        """The client to ask ``realm`` for a token with, once the realm is known to be safe:
        an absolute https URL, or http on a loopback host only. A non-loopback realm gets
        ``verified_client`` (TLS verified whatever the registry's own client does, e.g. for
        an insecure registry); a loopback realm the registry's client."""
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise RegistryError(
                f"registry {self.registry} sent a token realm that is not an http(s) URL; "
                "no credentials were sent",
            )
        loopback = is_loopback_host(url.host)
        if url.scheme == "http" and not loopback:
            raise RegistryError(
                f"registry {self.registry} sent a token realm on plain http "
                f"({_url_without_query(realm)}); kodev sends no credentials and asks for no "
                "token in clear text to a host that is not loopback",
                hint="the registry's token service (auth.token.realm) must use https",
            )
        if loopback or self._verified_client is None:
            return self._token_client
        return self._verified_client()

    def _token_request(
        self,
        client: httpx.Client,
        challenge: Challenge,
        scopes: frozenset[str],
        creds: Credentials | None,
    ) -> httpx.Request:
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": challenge.service,
                "client_id": "kodev",
                "scope": " ".join(sorted(scopes)),
            }
            return client.build_request("POST", challenge.realm, data=form)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params.extend(("scope", scope) for scope in sorted(scopes))
        headers: dict[str, str] = {}
        if creds is not None and creds.has_password:
            params.append(("account", str(creds.username)))
            pair = f"{creds.username}:{creds.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return client.build_request("GET", challenge.realm, params=params, headers=headers)

    def _check_token_response(self, response: httpx.Response, creds: Credentials | None) -> None:
        if response.is_success:
            return
        status = response.status_code
        if status in (401, 403):
            who = f" of user {creds.username}" if creds and creds.username else ""
            what = f"rejected the credentials{who}" if creds else "refused anonymous access"
            raise RegistryUnauthorized(
                f"the token service of registry {self.registry} {what} ({status})",
                hint=_login_hint(self.registry),
            )
        if status == 429 or status >= 500:
            raise RegistryServerError(
                f"the token service of registry {self.registry} answered {status}",
                status_code=status,
            )
        raise RegistryError(f"the token service of registry {self.registry} answered {status}")

    def _parse_token(self, response: httpx.Response, scopes: frozenset[str]) -> _Token:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(
                f"the token service of registry {self.registry} sent invalid JSON"
            ) from exc
        if not isinstance(data, dict):
            data = {}
        value = data.get("token") or data.get("access_token")
        if not value:
            raise RegistryError(f"the token service of registry {self.registry} sent no token")
        try:
            lifetime = int(data.get("expires_in") or _MIN_TOKEN_LIFETIME_SECONDS)
        except (TypeError, ValueError):
            lifetime = _MIN_TOKEN_LIFETIME_SECONDS
        lifetime = max(lifetime, _MIN_TOKEN_LIFETIME_SECONDS) - _TOKEN_EXPIRY_MARGIN_SECONDS
        return _Token(str(value), scopes, time.monotonic() + lifetime)


def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The (decoded) body of a streamed response, or None once it passes ``limit`` bytes."""
    data = bytearray()
    for piece in response.iter_bytes():
        data.extend(piece)
        if len(data) > limit:
            return None
    return bytes(data)


def _url_without_query(url: str) -> str:
    return str(httpx.URL(url).copy_with(query=None, username=None, password=None))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what credentials are
    bound to."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)
