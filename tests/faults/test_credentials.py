"""Credentials go only where they belong (issue 13, items 4-8).

Each test runs kodev as a user does (a subprocess) against real registries on 127.0.0.1
and tiny local servers that misbehave on purpose (tests/support/fakeregistry.py). Names
that are not loopback (``base.kodev.test``, ``auth.example.test``) are reached through a
recording proxy on 127.0.0.1 (``HTTPS_PROXY``), so nothing leaves the machine and every
connection kodev attempts is seen.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, KodevRun
from tests.fixtures.registry import RegistryServer, make_test_image
from tests.support.fakeregistry import (
    ConnectProxy,
    FakeServer,
    Reply,
    Seen,
    image_reply,
    make_ca,
    not_found,
)

pytestmark = pytest.mark.registry

USER = "kodev"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def write_docker_config(directory: Path, config: dict[str, object]) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory)}


def one_error_line(result: KodevRun, code: int = 4) -> str:
    assert result.returncode == code, result.stderr
    """The one error line on stderr (progress lines may come before it)."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("kodev: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    print(errors[0])  # shown with -s: the line a user reads
    assert errors[0].startswith("kodev: error: "), errors[0]
    assert "Traceback" not in result.stderr
    return errors[0]


def build(kodev: Kodev, env: dict[str, str], *args: str) -> KodevRun:
    return kodev.run("build", *args, "./cmd/worker", check=False, timeout=180,
                     env={"GOPROXY": "off", **env})


def denied() -> Reply:
    return Reply(403, {"Content-Type": "application/json"},
                 b'{"errors":[{"code":"DENIED","message":"the fake registry stops here"}]}')


# --------------------------------------------------------------------------- item 4


@pytest.fixture
def base_image_server(tmp_path: Path) -> Iterator[tuple[FakeServer, Path, Path]]:
    """A TLS registry (TLS and plain http on one port) holding ``base:v1``, with a
    certificate for ``base.kodev.test`` from a test CA; yields the server, the CA kodev
    trusts and a CA it does not know (whose certificate the server can be switched to)."""
    trusted = make_ca(tmp_path / "trusted-ca", ["base.kodev.test"])
    image = make_test_image(content=b"base layer served by base.kodev.test\n")
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in image.blobs()}

    def handler(seen: Seen, server: FakeServer) -> Reply:
        reply = image_reply(seen, "base", "v1", image.manifest, image.media_type, blobs)
        return reply if reply is not None else not_found()

    server = FakeServer(handler, tls=trusted.server_context())
    try:
        yield server, trusted.ca_path, tmp_path
    finally:
        server.stop()


@pytest.mark.parametrize("network", ["trusted-https", "untrusted-certificate", "no-https"])
def test_insecure_registry_is_only_the_target(
        kodev: Kodev, registry: RegistryServer, base_image_server: tuple[FakeServer, Path, Path],
        network: str) -> None:
    """Fault: `--insecure-registry` for the target registry while the base image's
    registry (base.kodev.test) presents a certificate nobody trusts, or its https is blocked
    so only plain http would answer. User sees: the base is still fetched over verified
    https only: with a trusted certificate the build works over https, otherwise it stops
    with one registry error (exit 4) and nothing is requested over plain http."""
    server, trusted_ca, tmp_path = base_image_server
    if network == "untrusted-certificate":
        other = make_ca(tmp_path / "attacker-ca", ["base.kodev.test"], label="attacker CA")
        server.use_tls(other.server_context())
    routes = {} if network == "no-https" else {"base.kodev.test:443": ("127.0.0.1", server.port)}
    with ConnectProxy(routes) as proxy:
        env = {**proxy.env(), "SSL_CERT_FILE": str(trusted_ca),
               "KO_DOCKER_REPO": f"{registry.host}/insecure-target",
               "KO_DEFAULTBASEIMAGE": "base.kodev.test/base:v1"}
        result = build(kodev, env, "--insecure-registry", "--sbom=none")
        attempts = proxy.seen()
    assert all(method == "CONNECT" for method, _ in attempts), attempts  # no plain http
    assert all(seen.scheme == "https" for seen in server.requests()), server.requests()
    if network == "trusted-https":
        assert result.returncode == 0, result.stderr
        assert {seen.path for seen in server.requests()} >= {"/v2/base/manifests/v1"}
        return
    line = one_error_line(result)
    assert "base.kodev.test" in line
    assert server.requests() == []  # TLS failed before any request
    if network == "untrusted-certificate":
        assert "certificate" in line.lower() or "tls" in line.lower(), line


# --------------------------------------------------------------------------- item 5


@pytest.mark.parametrize("redirect", ["same-host-and-port-http", "other-port"])
def test_credentials_do_not_follow_a_redirect_elsewhere(
        kodev: Kodev, tmp_path: Path, redirect: str) -> None:
    """Fault: an insecure registry reached over https, with Basic credentials, redirects
    a blob request to plain http on the same host and port, or to another port. User sees:
    the request after the redirect carries no Authorization header (the registry's own
    https requests do); the push ends with the registry's error, exit 4."""
    password = "pw-" + secrets.token_hex(8)
    expected = basic(USER, password)
    ca = make_ca(tmp_path / "ca", ["127.0.0.1"])
    storage = FakeServer(lambda seen, server: Reply(200, {"Content-Length": "1"}))

    def handler(seen: Seen, server: FakeServer) -> Reply:
        if seen.scheme == "http":
            return Reply(200, {"Content-Length": "1"})  # "the blob exists"
        if seen.header("Authorization") != expected:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="fake"'}, b"")
        if "/blobs/" in seen.path and seen.method in ("HEAD", "GET"):
            port = server.port if redirect.startswith("same") else storage.port
            return Reply(307, {"Location": f"http://127.0.0.1:{port}{seen.path}"})
        if seen.method == "HEAD" and "/manifests/" in seen.path:
            return not_found()
        if seen.path == "/v2/":
            return Reply(200, {}, b"{}")
        return denied()

    with FakeServer(handler, tls=ca.server_context()) as fake:
        env = {**write_docker_config(tmp_path / "docker",
                                     {"auths": {fake.host: {"auth": basic(USER, password)[6:]}}}),
               "KO_DOCKER_REPO": f"{fake.host}/demo"}
        result = build(kodev, env, "--insecure-registry", "--sbom=none")
        own = [s for s in fake.requests() if s.scheme == "https"]
        elsewhere = [s for s in fake.requests() if s.scheme == "http"] + storage.requests()
    storage.stop()
    assert any(s.header("Authorization") == expected for s in own)  # credentials were in use
    assert elsewhere, "the redirect was not followed"
    assert all(s.header("Authorization") is None for s in elsewhere), elsewhere
    line = one_error_line(result)
    assert fake.host in line and password not in result.stderr + result.stdout


# --------------------------------------------------------------------------- item 6


def bearer_registry(realm: str, password: str) -> FakeServer:
    """A registry asking for a Bearer token from ``realm`` for everything."""

    def handler(seen: Seen, server: FakeServer) -> Reply:
        challenge = f'Bearer realm="{realm}",service="fake-registry"'
        return Reply(401, {"WWW-Authenticate": challenge,
                           "Content-Type": "application/json"},
                     b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}')

    return FakeServer(handler)


def test_plain_http_token_realm_elsewhere_gets_nothing(kodev: Kodev, tmp_path: Path) -> None:
    """Fault: a registry's Bearer challenge names a token realm on plain http on a host
    that is not loopback (http://auth.example.test/token). User sees: one registry error
    naming the realm (exit 4) before any connection to it: no credential, no token request."""
    password = "pw-" + secrets.token_hex(8)
    with ConnectProxy() as proxy, bearer_registry("http://auth.example.test/token",
                                                  password) as fake:
        env = {**proxy.env(),
               **write_docker_config(tmp_path / "docker",
                                     {"auths": {fake.host: {"auth": basic(USER, password)[6:]}}}),
               "KO_DOCKER_REPO": f"{fake.host}/demo"}
        result = build(kodev, env, "--sbom=none")
        attempts = proxy.seen()
        seen = fake.requests()
    line = one_error_line(result)
    assert "plain http" in line and "auth.example.test" in line, line
    assert attempts == []  # nothing went towards auth.example.test
    assert seen and all(s.header("Authorization") is None for s in seen)


def test_token_realm_tls_is_verified_for_an_insecure_registry(kodev: Kodev,
                                                              tmp_path: Path) -> None:
    """Fault: an insecure registry (`--insecure-registry`) sends kodev to an https token
    realm on another host whose certificate nobody trusts. User sees: the TLS check fails,
    one registry error (exit 4); the token service receives no request, so no password."""
    password = "pw-" + secrets.token_hex(8)
    untrusted = make_ca(tmp_path / "ca", ["auth.example.test"])
    token_service = FakeServer(lambda seen, server: Reply(200, {"Content-Type": "application/json"},
                                                          b'{"token":"t"}'),
                               tls=untrusted.server_context())
    routes = {"auth.example.test:8443": ("127.0.0.1", token_service.port)}
    with ConnectProxy(routes) as proxy, bearer_registry("https://auth.example.test:8443/token",
                                                        password) as fake:
        env = {**proxy.env(),
               **write_docker_config(tmp_path / "docker",
                                     {"auths": {fake.host: {"auth": basic(USER, password)[6:]}}}),
               "KO_DOCKER_REPO": f"{fake.host}/demo"}
        result = build(kodev, env, "--insecure-registry", "--sbom=none")
        attempts = proxy.seen()
    token_service.stop()
    line = one_error_line(result)
    assert "auth.example.test" in line, line
    assert ("CONNECT", "auth.example.test:8443") in attempts  # it tried, over TLS only
    assert token_service.requests() == []
    assert token_service.tls_failures  # the handshake was refused by kodev


# --------------------------------------------------------------------------- item 7

_FAILING_HELPER = """#!{python}
import json, sys
action = sys.argv[1]
payload = sys.stdin.read()
secret = {secret!r}
if action == "get":
    answer = {{"ServerURL": payload.strip(), "Username": "kodev", "Secret": secret}}
    print(json.dumps(answer, indent={indent}))
    print("error: keychain locked after reading " + secret, file=sys.stderr)
elif action == "store":
    print(payload)  # echoes what it was given, password included
sys.exit(1)
"""


def install_failing_helper(bin_dir: Path, secret: str, indent: int | None) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "docker-credential-xyz"
    path.write_text(_FAILING_HELPER.format(python=sys.executable, secret=secret, indent=indent))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def assert_no_part_of(secret: str, text: str) -> None:
    for start in range(len(secret) - 5):
        assert secret[start:start + 6] not in text, "a piece of the secret was printed"


@pytest.mark.parametrize("indent", [None, 2])
def test_failing_credential_helper_never_shows_its_secret(
        kodev: Kodev, registry_basic: RegistryServer, tmp_path: Path, indent: int | None) -> None:
    """Fault: the registry's credential helper (docker-credential-xyz) prints its JSON
    answer with the secret (compact or indented) and a message quoting it, then exits 1.
    User sees: one registry error naming the helper and registry (exit 4), with no part of
    the secret."""
    secret = secrets.token_hex(16)
    install_failing_helper(tmp_path / "bin", secret, indent)
    env = {**write_docker_config(tmp_path / "docker",
                                 {"credHelpers": {registry_basic.host: "xyz"}}),
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{kodev.env['PATH']}",
           "KO_DOCKER_REPO": f"{registry_basic.host}/demo"}
    result = build(kodev, env, "--sbom=none")
    line = one_error_line(result)
    assert "docker-credential-xyz" in line and registry_basic.host in line, line
    assert_no_part_of(secret, result.stderr + result.stdout)


def test_failing_credential_store_never_shows_the_password(
        kodev: Kodev, registry_basic: RegistryServer, tmp_path: Path) -> None:
    """Fault: `kodev login` with a credsStore whose helper echoes the JSON it was given
    (password included) and exits 1. User sees: one error naming the helper (exit 4), no
    part of the password; the config file is left as it was."""
    assert registry_basic.password is not None
    install_failing_helper(tmp_path / "bin", "unused-secret", None)
    env = {**write_docker_config(tmp_path / "docker", {"credsStore": "xyz"}),
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{kodev.env['PATH']}"}
    before = (tmp_path / "docker" / "config.json").read_text()
    proc = subprocess.run([sys.executable, "-m", "kodev", "login", registry_basic.host, "-u",
                           USER, "--password-stdin"], input=registry_basic.password + "\n",
                          env={**kodev.env, **env}, capture_output=True, text=True,
                          timeout=120, cwd=kodev.workdir)
    line = one_error_line(KodevRun(proc.returncode, proc.stdout, proc.stderr))
    assert "docker-credential-xyz" in line, line
    assert_no_part_of(registry_basic.password, proc.stdout + proc.stderr)
    assert (tmp_path / "docker" / "config.json").read_text() == before


# --------------------------------------------------------------------------- item 8

_SLOW_STORE_HELPER = """#!{python}
# stores each login in its own file, slowly: a read-modify-write of config.json around
# this call without a lock loses the other logins' entries
import hashlib, json, sys, time
payload = sys.stdin.read()
if sys.argv[1] != "store":
    print("credentials not found in native keychain")
    sys.exit(1)
entry = json.loads(payload)
time.sleep(0.3)
name = hashlib.sha256(entry["ServerURL"].encode()).hexdigest()
with open({store!r} + "/" + name, "w") as f:
    json.dump(entry, f)
"""

LOGINS = 8


@pytest.fixture
def login_registries() -> Iterator[list[tuple[FakeServer, str]]]:
    """Eight registries, each accepting its own password (Basic) on GET /v2/."""
    servers: list[tuple[FakeServer, str]] = []

    def make(password: str) -> FakeServer:
        expected = basic(USER, password)

        def handler(seen: Seen, server: FakeServer) -> Reply:
            if seen.header("Authorization") == expected:
                return Reply(200, {}, b"{}")
            return Reply(401, {"WWW-Authenticate": 'Basic realm="fake"'}, b"")

        return FakeServer(handler)

    try:
        for _ in range(LOGINS):
            password = "pw-" + secrets.token_hex(6)
            servers.append((make(password), password))
        yield servers
    finally:
        for server, _ in servers:
            server.stop()


@pytest.mark.parametrize("store", ["config-file", "slow-credential-helper"])
def test_concurrent_logins_through_a_symlinked_config(
        kodev: Kodev, tmp_path: Path, login_registries: list[tuple[FakeServer, str]],
        store: str) -> None:
    """Fault: eight `kodev login`s to different registries at once, while
    $DOCKER_CONFIG/config.json is a symlink into a dotfiles directory (and, with a slow
    credsStore helper, each login spends 0.3 s between reading and writing the file).
    User sees: every login succeeds, all eight entries are in the link's target (mode
    0600), and config.json is still the same symlink."""
    docker_dir, dotfiles = tmp_path / "docker", tmp_path / "dotfiles"
    docker_dir.mkdir()
    dotfiles.mkdir()
    target = dotfiles / "docker-config.json"
    env = {"DOCKER_CONFIG": str(docker_dir)}
    if store == "slow-credential-helper":
        helper_store = tmp_path / "helper-store"
        helper_store.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-slow"
        helper.write_text(_SLOW_STORE_HELPER.format(python=sys.executable,
                                                    store=str(helper_store)))
        helper.chmod(0o755)
        target.write_text(json.dumps({"credsStore": "slow", "psFormat": "table"}))
        env["PATH"] = f"{bin_dir}{os.pathsep}{kodev.env['PATH']}"
    (docker_dir / "config.json").symlink_to("../dotfiles/docker-config.json")

    processes = [
        subprocess.Popen([sys.executable, "-m", "kodev", "login", server.host, "-u", USER,
                          "--password-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**kodev.env, **env},
                         cwd=kodev.workdir)
        for server, _ in login_registries
    ]
    results = [p.communicate(input=password + "\n", timeout=120)
               for p, (_, password) in zip(processes, login_registries, strict=True)]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == "Login Succeeded"

    link = docker_dir / "config.json"
    assert link.is_symlink() and os.readlink(link) == "../dotfiles/docker-config.json"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    config = json.loads(target.read_text())
    hosts = {server.host for server, _ in login_registries}
    assert set(config["auths"]) == hosts
    if store == "config-file":
        for server, password in login_registries:
            decoded = base64.b64decode(config["auths"][server.host]["auth"]).decode()
            assert decoded == f"{USER}:{password}"
    else:
        assert config["psFormat"] == "table" and config["credsStore"] == "slow"
        assert all(entry == {} for entry in config["auths"].values())
        stored = [json.loads(p.read_text()) for p in (tmp_path / "helper-store").iterdir()]
        assert {s["ServerURL"] for s in stored} == hosts
    assert not [p for p in dotfiles.iterdir() if p.name.startswith(".docker-config.json.")
                and not p.name.endswith(".lock")]  # no temporary file left
