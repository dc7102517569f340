"""``kodev login`` / ``logout`` against real registries (htpasswd Basic and token auth);
the stored credentials are then used by ``kodev build`` to push."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tests.commands.support import helper_calls, install_store_helper, run_with_input
from tests.fixtures.kodev import Kodev, KodevRun

pytestmark = pytest.mark.registry


@pytest.fixture
def docker_env(kodev: Kodev, tmp_path: Path) -> dict[str, str]:
    """A private DOCKER_CONFIG (not created yet) and a bin dir for credential helpers."""
    bin_dir = tmp_path / "helpers"
    bin_dir.mkdir()
    return {"DOCKER_CONFIG": str(tmp_path / "docker"),
            "PATH": f"{bin_dir}:{kodev.env['PATH']}"}


def config_path(env: dict[str, str]) -> Path:
    return Path(env["DOCKER_CONFIG"]) / "config.json"


def login(kodev: Kodev, env: dict[str, str], host: str, user: str, password: str) -> KodevRun:
    return run_with_input(kodev, "login", host, "-u", user, "--password-stdin",
                          stdin=password + "\n", env=env)


def build_pushes(kodev: Kodev, env: dict[str, str], host: str) -> str:
    result = kodev.run("build", "./cmd/worker", env={**env, "KO_DOCKER_REPO": f"{host}/demo"})
    (ref,) = result.refs
    return ref


@pytest.mark.parametrize("server", ["registry_basic", "registry_token"])
def test_wrong_password_writes_nothing_right_one_is_used_by_build(
        kodev: Kodev, docker_env: dict[str, str], server: str,
        request: pytest.FixtureRequest) -> None:
    registry = request.getfixturevalue(server)
    wrong = login(kodev, docker_env, registry.host, registry.username, "not-" + registry.password)
    assert wrong.returncode == 4
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kodev: error: login to {registry.host} "
                                                   "failed")
    assert not config_path(docker_env).exists()

    # Without credentials the push is refused (so the next push really uses the login).
    refused = kodev.run("build", "./cmd/worker", check=False,
                        env={**docker_env, "KO_DOCKER_REPO": f"{registry.host}/demo"})
    assert refused.returncode == 4

    ok = login(kodev, docker_env, registry.host, registry.username, registry.password)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "Login Succeeded"
    assert registry.password not in ok.stdout + ok.stderr
    path = config_path(docker_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = json.loads(path.read_text())["auths"][registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{registry.username}:{registry.password}"
    assert build_pushes(kodev, docker_env, registry.host).startswith(f"{registry.host}/demo/")


def test_login_keeps_other_keys_and_replaces_the_entry(kodev: Kodev, docker_env: dict[str, str],
                                                      registry_basic) -> None:
    path = config_path(docker_env)
    path.parent.mkdir()
    path.write_text(json.dumps({
        "auths": {f"http://{registry_basic.host}": {"auth": "b2xkOm9sZA=="},
                  "other.example": {"auth": "eDp5"}},
        "psFormat": "table {{.ID}}",
    }))
    result = run_with_input(kodev, "login", f"http://{registry_basic.host}/v2/", "-u",
                            registry_basic.username, "-p", registry_basic.password, stdin="",
                            env=docker_env)
    assert result.returncode == 0, result.stderr
    assert "WARNING! Using --password via the CLI is insecure" in result.stderr
    config = json.loads(path.read_text())
    assert config["psFormat"] == "table {{.ID}}"
    assert set(config["auths"]) == {registry_basic.host, "other.example"}
    assert config["auths"]["other.example"] == {"auth": "eDp5"}

    out = kodev.run("logout", registry_basic.host, env=docker_env)
    assert out.stdout.strip() == f"Removing login credentials for {registry_basic.host}"
    assert set(json.loads(path.read_text())["auths"]) == {"other.example"}
    again = kodev.run("logout", registry_basic.host, env=docker_env)
    assert again.stdout.strip() == f"Not logged in to {registry_basic.host}"


def test_creds_store_gets_the_secret_and_config_json_does_not(
        kodev: Kodev, docker_env: dict[str, str], registry_token, tmp_path: Path) -> None:
    calls = install_store_helper(tmp_path / "helpers", "kodevtest")
    path = config_path(docker_env)
    path.parent.mkdir()
    path.write_text(json.dumps({"credsStore": "kodevtest"}))

    ok = login(kodev, docker_env, registry_token.host, registry_token.username,
               registry_token.password)
    assert ok.returncode == 0, ok.stderr
    (stored,) = helper_calls(calls)
    assert stored["action"] == "store"
    assert json.loads(stored["stdin"]) == {"ServerURL": registry_token.host,
                                           "Username": registry_token.username,
                                           "Secret": registry_token.password}
    text = path.read_text()
    assert registry_token.password not in text
    assert json.loads(text) == {"credsStore": "kodevtest", "auths": {registry_token.host: {}}}

    # kodev build reads them back through the same helper ("get").
    build_pushes(kodev, docker_env, registry_token.host)
    assert "get" in [c["action"] for c in helper_calls(calls)]

    kodev.run("logout", registry_token.host, env=docker_env)
    assert helper_calls(calls)[-1] == {"action": "erase", "stdin": registry_token.host}
    assert json.loads(path.read_text())["auths"] == {}


def test_password_stdin_needs_a_username_and_a_password(kodev: Kodev,
                                                        docker_env: dict[str, str]) -> None:
    no_user = run_with_input(kodev, "login", "127.0.0.1:1", "--password-stdin", stdin="x\n",
                             env=docker_env)
    assert no_user.returncode == 2
    assert no_user.stderr.strip() == "kodev: error: --password-stdin needs --username"
    empty = run_with_input(kodev, "login", "127.0.0.1:1", "-u", "me", "--password-stdin",
                           stdin="\n", env=docker_env)
    assert empty.returncode == 2
    assert empty.stderr.strip() == "kodev: error: the password is empty"
    assert not config_path(docker_env).exists()
