"""Credentials lookup and registry authentication: keychain logic, then real registries with
htpasswd Basic auth and with token auth (JWT issuer in-process)."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from kodev.errors import ConfigError
from kodev.registry.auth import (
    AUTH_RETRY_EXTENSION,
    Credentials,
    DockerConfigKeychain,
    Keychain,
    MultiKeychain,
    RegistryAuth,
    StaticKeychain,
    default_keychain,
    find_config_entry,
)
from kodev.registry.client import RegistryClient
from kodev.registry.errors import RegistryUnauthorized
from tests.fixtures.registry import (
    DockerConfig,
    RegistryFactory,
    RegistryServer,
    StorageServer,
    TestImage,
    TokenIssuer,
    basic_auth_field,
    blob_digest,
    make_test_image,
    opener_for,
    write_htpasswd,
)

HUB = "https://index.docker.io/v1/"


def unique_repo(prefix: str) -> str:
    return f"kodev-auth/{prefix}-{secrets.token_hex(4)}"


def push_image(client: RegistryClient, repo: str, image: TestImage, tag: str) -> str:
    for blob in image.blobs():
        client.push_blob(repo, blob_digest(blob), len(blob), opener_for(blob))
    return client.put_manifest(repo, tag, image.manifest, image.media_type)


def assert_no_secret(secret: str, *texts: object) -> None:
    for text in texts:
        assert secret not in str(text)


# ------------------------------------------------------------------ pure logic


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(username="bob", password="hunter2", identity_token="idtok",
                        registry_token="regtok")

    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "bob" in text
        assert_no_secret("hunter2", text)
        assert_no_secret("idtok", text)
        assert_no_secret("regtok", text)
    assert repr(Credentials(username="bob")) == "Credentials(username='bob')"


@pytest.mark.parametrize("key", [
    HUB, "https://index.docker.io/v1", "index.docker.io", "docker.io", "https://docker.io",
    "registry-1.docker.io", "https://registry-1.docker.io/v2/", "http://index.docker.io/v1/",
])
@pytest.mark.parametrize("registry", ["index.docker.io", "docker.io", "registry-1.docker.io"])
def test_docker_hub_aliases_match(key: str, registry: str) -> None:
    assert find_config_entry({key: "found"}, registry) == (key, "found")


def test_exact_docker_hub_key_wins_over_aliases() -> None:
    entries = {"docker.io": "alias", HUB: "canonical", "index.docker.io": "host"}

    assert find_config_entry(entries, "index.docker.io") == (HUB, "canonical")


@pytest.mark.parametrize(("key", "registry", "matches"), [
    ("myreg.example.com:5000", "myreg.example.com:5000", True),
    ("https://myreg.example.com:5000", "myreg.example.com:5000", True),
    ("http://myreg.example.com:5000/v2/", "myreg.example.com:5000", True),
    ("myreg.example.com:5000/team", "myreg.example.com:5000", True),
    ("myreg.example.com:5001", "myreg.example.com:5000", False),
    ("myreg.example.com", "myreg.example.com:5000", False),
    ("docker.io.example.com", "index.docker.io", False),
    (HUB, "ghcr.io", False),
])
def test_registry_key_matching(key: str, registry: str, matches: bool) -> None:
    assert (find_config_entry({key: 1}, registry) is not None) is matches


def test_auths_entry_forms(docker_config: DockerConfig) -> None:
    docker_config.write({"auths": {
        "a.example": {"auth": basic_auth_field("alice", "pw:with:colons")},
        "b.example": {"username": "bob", "password": "pw2"},
        "c.example": {"identitytoken": "refresh-me"},
        "d.example": {"registrytoken": "bearer-me"},
        "e.example": {},
    }})
    keychain = DockerConfigKeychain()

    a, b, c, d = (keychain.resolve(f"{x}.example") for x in "abcd")
    assert (a.username, a.password) == ("alice", "pw:with:colons")  # type: ignore[union-attr]
    assert (b.username, b.password) == ("bob", "pw2")  # type: ignore[union-attr]
    assert c is not None and c.identity_token == "refresh-me"
    assert d is not None and d.registry_token == "bearer-me"
    assert keychain.resolve("e.example") is None
    assert keychain.resolve("unknown.example") is None


def test_missing_or_empty_config_is_anonymous(docker_config: DockerConfig) -> None:
    assert DockerConfigKeychain().resolve("r.example") is None
    docker_config.write("  \n")
    assert DockerConfigKeychain().resolve("r.example") is None


def test_malformed_config_names_the_file(docker_config: DockerConfig) -> None:
    path = docker_config.write('{"auths": {"r.example": ')

    with pytest.raises(ConfigError, match=str(path)):
        DockerConfigKeychain().resolve("r.example")


def test_invalid_auth_field_is_a_config_error(docker_config: DockerConfig) -> None:
    docker_config.write({"auths": {"r.example": {"auth": "%%%not-base64"}}})

    with pytest.raises(ConfigError, match=r"r\.example"):
        DockerConfigKeychain().resolve("r.example")


def test_registry_auth_file_comes_first(
    docker_config: DockerConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_config.write_auth("r.example", "from-docker", "pw")
    podman = tmp_path / "auth.json"
    podman.write_text(json.dumps(
        {"auths": {"r.example": {"auth": basic_auth_field("from-podman", "pw")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))

    found = DockerConfigKeychain().resolve("r.example")
    assert found is not None and found.username == "from-podman"
    assert DockerConfigKeychain().resolve("s.example") is None
    docker_config.write_auth("s.example", "from-docker", "pw")
    found = DockerConfigKeychain().resolve("s.example")
    assert found is not None and found.username == "from-docker"


def test_helper_identity_token_and_not_found(docker_config: DockerConfig) -> None:
    docker_config.add_credential_helper("kodevtest", {"r.example": ("<token>", "refresh")})
    docker_config.write({"credHelpers": {"r.example": "kodevtest", "s.example": "kodevtest"}})

    assert DockerConfigKeychain().resolve("r.example") == Credentials(identity_token="refresh")
    assert DockerConfigKeychain().resolve("s.example") is None
    assert docker_config.helper_calls("kodevtest") == ["r.example", "s.example"]


def test_docker_hub_helper_gets_the_index_url(docker_config: DockerConfig) -> None:
    docker_config.add_credential_helper("kodevtest", {HUB: ("hubuser", "hubpass")})
    docker_config.write({"credsStore": "kodevtest", "auths": {HUB: {}}})

    found = DockerConfigKeychain().resolve("index.docker.io")
    assert found is not None and found.username == "hubuser"
    assert docker_config.helper_calls("kodevtest") == [HUB]


def test_missing_helper_is_a_config_error(docker_config: DockerConfig) -> None:
    docker_config.write({"credHelpers": {"r.example": "kodev-no-such-helper"}})

    with pytest.raises(ConfigError, match="docker-credential-kodev-no-such-helper"):
        DockerConfigKeychain().resolve("r.example")


# ------------------------------------------------------------------ Basic auth (htpasswd)


def test_static_keychain_answers_for_its_registry_only() -> None:
    keychain = StaticKeychain("r.example:5000", "user", "pw")
    assert keychain.resolve("r.example:5000") == Credentials(username="user", password="pw")
    assert keychain.resolve("R.example:5000") is not None
    assert keychain.resolve("r.example") is None  # another port is another registry
    assert keychain.resolve("s.example:5000") is None
    hub = StaticKeychain("docker.io", "user", "pw")
    assert hub.resolve("index.docker.io") is not None  # docker's aliases, one registry


def test_multi_keychain_asks_in_order(docker_config: DockerConfig) -> None:
    docker_config.write({"auths": {"r.example": {"auth": basic_auth_field("file", "x")},
                                   "s.example": {"auth": basic_auth_field("file", "y")}}})
    keychain = MultiKeychain(StaticKeychain("r.example", "static", "z"), default_keychain())

    assert keychain.resolve("r.example") == Credentials(username="static", password="z")
    assert keychain.resolve("s.example") == Credentials(username="file", password="y")
    assert keychain.resolve("t.example") is None
    assert MultiKeychain().resolve("r.example") is None


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="kodev.registry")
    caplog.set_level(logging.DEBUG, logger="httpx")
    return caplog


def push_and_pull(host: str, *, annotation: str, keychain: Keychain | None = None) -> None:
    repo, image = unique_repo("basic"), make_test_image(annotation=annotation)
    with RegistryClient(host, keychain=keychain) as client:
        digest = push_image(client, repo, image, "v1")
        assert client.get_manifest(repo, "v1").digest == digest
        assert client.get_blob(repo, blob_digest(image.layer)) == image.layer


@pytest.mark.registry
def test_basic_auth_from_auths_field(
    registry_basic: RegistryServer, docker_config: DockerConfig,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    assert registry_basic.username and registry_basic.password
    docker_config.write_auth(registry_basic.host, registry_basic.username,
                             registry_basic.password)

    push_and_pull(registry_basic.host, annotation="auths")

    assert_no_secret(registry_basic.password, debug_log.text)
    assert_no_secret(basic_auth_field(registry_basic.username, registry_basic.password),
                     debug_log.text)


@pytest.mark.registry
def test_basic_auth_from_cred_helper(
    registry_basic: RegistryServer, docker_config: DockerConfig
) -> None:
    assert registry_basic.username and registry_basic.password
    docker_config.add_credential_helper(
        "kodevtest", {registry_basic.host: (registry_basic.username, registry_basic.password)})
    docker_config.write({"credHelpers": {registry_basic.host: "kodevtest"}})

    push_and_pull(registry_basic.host, annotation="cred-helper")

    assert docker_config.helper_calls("kodevtest") == [registry_basic.host]  # looked up once


@pytest.mark.registry
def test_basic_auth_from_creds_store(
    registry_basic: RegistryServer, docker_config: DockerConfig
) -> None:
    assert registry_basic.username and registry_basic.password
    docker_config.add_credential_helper(
        "kodevstore", {registry_basic.host: (registry_basic.username, registry_basic.password)})
    docker_config.write({"credsStore": "kodevstore", "auths": {registry_basic.host: {}}})

    push_and_pull(registry_basic.host, annotation="creds-store")

    assert docker_config.helper_calls("kodevstore") == [registry_basic.host]


@pytest.mark.registry
def test_injected_static_keychain_authenticates(
    registry_basic: RegistryServer, docker_config: DockerConfig,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    """Terraform's basic_auth: credentials for one registry, with no docker config at all;
    and a static keychain for another registry leaves this one anonymous (refused)."""
    assert registry_basic.username and registry_basic.password
    docker_config.write({})
    keychain = MultiKeychain(
        StaticKeychain(registry_basic.host, registry_basic.username, registry_basic.password),
        default_keychain())

    push_and_pull(registry_basic.host, annotation="static", keychain=keychain)

    assert_no_secret(registry_basic.password, debug_log.text)
    other = StaticKeychain("elsewhere.example", registry_basic.username, registry_basic.password)
    with (RegistryClient(registry_basic.host, keychain=other) as client,
          pytest.raises(RegistryUnauthorized, match="requires authentication")):
        client.list_tags(unique_repo("other"))


@pytest.mark.registry
def test_anonymous_access_to_basic_registry_is_refused(
    registry_basic: RegistryServer, docker_config: DockerConfig
) -> None:
    with (
        RegistryClient(registry_basic.host) as client,
        pytest.raises(RegistryUnauthorized, match="requires authentication") as caught,
    ):
        client.list_tags(unique_repo("anon"))

    assert caught.value.hint is not None and "docker login" in caught.value.hint


@pytest.mark.registry
def test_wrong_password_basic(
    registry_basic: RegistryServer, docker_config: DockerConfig,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    docker_config.write_auth(registry_basic.host, "kodev", wrong)
    data = os.urandom(100)

    with (
        RegistryClient(registry_basic.host) as client,
        pytest.raises(RegistryUnauthorized, match="kodev") as caught,
    ):
        client.push_blob(unique_repo("wrong"), blob_digest(data), len(data),
                         opener_for(data))

    error = caught.value
    assert registry_basic.host in str(error)
    assert_no_secret(wrong, str(error), repr(error), error.hint, debug_log.text)


@pytest.mark.registry
def test_streaming_body_is_not_replayed_after_a_challenge(
    registry_basic: RegistryServer, docker_config: DockerConfig
) -> None:
    """A streamed body cannot be sent twice: the flow learns the challenge, flags the 401 for
    the caller to rebuild the request, and authenticates the rebuilt one up front."""
    assert registry_basic.username and registry_basic.password
    docker_config.write_auth(registry_basic.host, registry_basic.username,
                             registry_basic.password)
    url = f"{registry_basic.url}/v2/{unique_repo('stream')}/blobs/uploads/"

    with httpx.Client() as http:
        auth = RegistryAuth(registry_basic.host, credentials=lambda: DockerConfigKeychain().resolve(
            registry_basic.host), token_client=http, registry_url=registry_basic.url)
        first = http.post(url, content=iter([b""]), auth=auth)
        second = http.post(url, content=iter([b""]), auth=auth)

    assert (first.status_code, first.extensions.get(AUTH_RETRY_EXTENSION)) == (401, True)
    assert len(first.history) == 0
    assert second.status_code == 202


# ------------------------------------------------------------------ token auth


@pytest.fixture
def token_login(registry_token: RegistryServer, docker_config: DockerConfig) -> RegistryServer:
    assert registry_token.username and registry_token.password
    docker_config.write_auth(registry_token.host, registry_token.username,
                             registry_token.password)
    return registry_token


def issuer_of(server: RegistryServer) -> TokenIssuer:
    assert server.issuer is not None
    return server.issuer


@pytest.mark.registry
def test_token_reused_per_scope(
    token_login: RegistryServer, debug_log: pytest.LogCaptureFixture
) -> None:
    issuer, repo, other = issuer_of(token_login), unique_repo("tok"), unique_repo("tok2")
    blobs = [os.urandom(1000 + i) for i in range(5)]

    with RegistryClient(token_login.host) as client:
        for blob in blobs:
            assert client.push_blob(repo, blob_digest(blob), len(blob),
                                    opener_for(blob)) == "uploaded"
        assert issuer.count(f"repository:{repo}:pull,push") == 1
        # The push token also serves pulls of the same repository.
        assert client.get_blob(repo, blob_digest(blobs[0])) == blobs[0]
        assert client.blob_exists(repo, blob_digest(blobs[1]))
        assert issuer.count(f"repository:{repo}:pull") == 0
        assert issuer.count(f"repository:{repo}:pull,push") == 1
        # Another repository is another scope.
        client.push_blob(other, blob_digest(blobs[0]), len(blobs[0]), opener_for(blobs[0]))
        assert issuer.count(f"repository:{other}:pull,push") == 1

    for request in issuer.requests:
        assert_no_secret(str(token_login.password), request)
    assert_no_secret(str(token_login.password), debug_log.text)


@pytest.mark.registry
def test_parallel_pushes_fetch_one_token(token_login: RegistryServer) -> None:
    issuer, repo = issuer_of(token_login), unique_repo("tokpar")
    blobs = [os.urandom(20_000 + i) for i in range(8)]

    with (
        RegistryClient(token_login.host, chunk_size=8192) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        results = list(pool.map(
            lambda b: client.push_blob(repo, blob_digest(b), len(b), opener_for(b)),
            blobs))

    assert results == ["uploaded"] * 8
    assert issuer.count(f"repository:{repo}:pull,push") == 1


@pytest.mark.registry
def test_token_mount_asks_for_both_scopes(token_login: RegistryServer) -> None:
    issuer, source, target = issuer_of(token_login), unique_repo("msrc"), unique_repo("mdst")
    data = os.urandom(3000)

    with RegistryClient(token_login.host) as client:
        client.push_blob(source, blob_digest(data), len(data), opener_for(data))
        assert client.push_blob(target, blob_digest(data), len(data), opener_for(data),
                                mount_from=source) == "mounted"

    wanted = frozenset({f"repository:{target}:pull,push", f"repository:{source}:pull"})
    assert any(r.scopes == wanted for r in issuer.requests)


@pytest.mark.registry
def test_token_manifest_round_trip(token_login: RegistryServer) -> None:
    repo, image = unique_repo("tokman"), make_test_image(annotation="token")

    with RegistryClient(token_login.host) as client:
        digest = push_image(client, repo, image, "v1")
        assert client.get_manifest(repo, digest).body == image.manifest
        assert client.list_tags(repo) == ["v1"]


@pytest.mark.registry
def test_token_wrong_password(
    registry_token: RegistryServer, docker_config: DockerConfig,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    docker_config.write_auth(registry_token.host, "kodev", wrong)

    with (
        RegistryClient(registry_token.host) as client,
        pytest.raises(RegistryUnauthorized, match="rejected the credentials") as caught,
    ):
        client.blob_exists(unique_repo("tokwrong"), blob_digest(b"x"))

    error = caught.value
    assert_no_secret(wrong, str(error), repr(error), error.hint, debug_log.text)


@pytest.mark.registry
def test_token_anonymous_is_refused(
    registry_token: RegistryServer, docker_config: DockerConfig
) -> None:
    with (
        RegistryClient(registry_token.host) as client,
        pytest.raises(RegistryUnauthorized, match="requires authentication"),
    ):
        client.list_tags(unique_repo("tokanon"))


@pytest.mark.registry
def test_identity_token_from_helper(
    registry_token: RegistryServer, docker_config: DockerConfig
) -> None:
    issuer = issuer_of(registry_token)
    refresh_token = next(iter(issuer.refresh_tokens))
    docker_config.add_credential_helper(
        "kodevtest", {registry_token.host: ("<token>", refresh_token)})
    docker_config.write({"credHelpers": {registry_token.host: "kodevtest"}})
    repo, data = unique_repo("identity"), os.urandom(700)

    with RegistryClient(registry_token.host) as client:
        client.push_blob(repo, blob_digest(data), len(data), opener_for(data))
        assert client.get_blob(repo, blob_digest(data)) == data

    used = [r for r in issuer.requests if f"repository:{repo}:pull,push" in r.scopes]
    assert [(r.method, r.user) for r in used] == [("POST", "kodev")]


# ------------------------------------------------------------------ redirects


@pytest.fixture
def redirecting_registry(
    registry_factory: RegistryFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryServer, StorageServer]]:
    """A Basic-auth registry whose blob GETs redirect (distribution's ``redirect`` storage
    middleware) to a storage server on another origin (localhost vs 127.0.0.1)."""
    workdir = tmp_path_factory.mktemp("redirecting")
    name = f"redirecting-{secrets.token_hex(3)}"
    username, password = "kodev", "redir-" + secrets.token_hex(6)
    htpasswd = write_htpasswd(workdir / "htpasswd", username, password)
    storage = StorageServer(registry_factory.root / name / "storage")
    try:
        server = registry_factory.create(
            name,
            auth={"htpasswd": {"realm": "kodev-test", "path": str(htpasswd)}},
            middleware={"storage": [{"name": "redirect",
                                     "options": {"baseurl": storage.base_url}}]},
            username=username, password=password,
        )
        assert server.storage == storage.root
        yield server, storage
    finally:
        storage.stop()


@pytest.mark.registry
def test_redirected_blob_get_drops_authorization(
    redirecting_registry: tuple[RegistryServer, StorageServer], docker_config: DockerConfig
) -> None:
    server, storage = redirecting_registry
    assert server.username and server.password
    docker_config.write_auth(server.host, server.username, server.password)
    repo, data = unique_repo("redirect"), os.urandom(5000)

    with RegistryClient(server.host) as client:
        client.upload_blob(repo, blob_digest(data), len(data), opener_for(data))
        assert client.get_blob(repo, blob_digest(data)) == data
        assert client.blob_exists(repo, blob_digest(data))

    followed = [entry for entry in storage.seen if entry[1].endswith("/data")]
    assert {method for method, _path, _auth in followed} == {"GET", "HEAD"}
    assert all(auth is None for _method, _path, auth in followed)


@pytest.mark.registry
def test_injected_keychain_credentials_stay_at_their_origin(
    redirecting_registry: tuple[RegistryServer, StorageServer], docker_config: DockerConfig
) -> None:
    """The same rule for credentials a caller injects: a redirect to another origin
    gets no Authorization header."""
    server, storage = redirecting_registry
    assert server.username and server.password
    docker_config.write({})
    keychain = StaticKeychain(server.host, server.username, server.password)
    repo, data = unique_repo("redirect-static"), os.urandom(3000)
    seen_before = len(storage.seen)

    with RegistryClient(server.host, keychain=keychain) as client:
        client.upload_blob(repo, blob_digest(data), len(data), opener_for(data))
        assert client.get_blob(repo, blob_digest(data)) == data

    followed = [e for e in storage.seen[seen_before:] if e[1].endswith("/data")]
    assert followed and all(auth is None for _method, _path, auth in followed)
