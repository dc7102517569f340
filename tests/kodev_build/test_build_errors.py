"""Bad input gives one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, KodevRun


def assert_one_clear_line(result: KodevRun, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("kodev: error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
    assert result.stdout == ""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ko_docker_repo_unset(kodev: Kodev) -> None:
    assert_one_clear_line(kodev.run("build", "./cmd/web", check=False), 2, "KO_DOCKER_REPO")


def test_package_that_is_not_main(kodev: Kodev) -> None:
    result = kodev.run("build", "--push=false", "./internal/greeting", check=False)
    assert_one_clear_line(result, 3, "not a main package")


def test_missing_package(kodev: Kodev) -> None:
    result = kodev.run("build", "--push=false", "./cmd/nope", check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr


def test_compile_error_shows_the_compiler_output(kodev: Kodev, demo_module: Path) -> None:
    """Fault: main.go calls an undefined function. User sees: the compiler's output (file and name)
    above one 'go build failed' line; exit 3."""
    main = demo_module / "cmd" / "worker" / "main.go"
    main.write_text(main.read_text().replace("func main() {", "func main() {\n\tundefinedThing()"))
    result = kodev.run("build", "--push=false", "./cmd/worker", check=False)
    assert_one_clear_line(result, 3, "go build failed")
    assert "main.go" in result.stderr and "undefinedThing" in result.stderr


def test_unknown_platform(kodev: Kodev) -> None:
    result = kodev.run(
        "build", "--push=false", "--platform=linux/sparc99", "./cmd/web", check=False
    )
    assert_one_clear_line(result, 2, "linux/sparc99")


def test_invalid_ko_yaml_names_file_and_line(kodev: Kodev, demo_module: Path) -> None:
    (demo_module / ".ko.yaml").write_text("defaultBaseImage: kodev://minimal\nbuilds:\n  - id: [\n")
    result = kodev.run("build", "--push=false", "./cmd/web", check=False)
    assert_one_clear_line(result, 2, ".ko.yaml:")


def test_ko_yaml_type_error_names_the_key_and_line(kodev: Kodev, demo_module: Path) -> None:
    (demo_module / ".ko.yaml").write_text("defaultBaseImage: kodev://minimal\nbuilds: 3\n")
    result = kodev.run("build", "--push=false", "./cmd/web", check=False)
    assert_one_clear_line(result, 2, ".ko.yaml:2", "builds")


def test_kodata_symlink_escaping_the_repository(
    kodev: Kodev, demo_module: Path, tmp_path: Path
) -> None:
    """Fault: a kodata file is a symlink to a file outside the repository. User sees: one line
    saying it points outside; exit 2; nothing built."""
    secret = tmp_path / "outside.txt"
    secret.write_text("do not ship me")
    os.symlink(secret, demo_module / "cmd" / "web" / "kodata" / "leak.txt")
    result = kodev.run("build", "--push=false", "./cmd/web", check=False)
    assert_one_clear_line(result, 2, "points outside")


def test_registry_unreachable(kodev: Kodev) -> None:
    """Fault: KO_DOCKER_REPO names a port nothing listens on. User sees: one line naming the
    registry; exit 4."""
    result = kodev.run(
        "build", "./cmd/web", env={"KO_DOCKER_REPO": f"127.0.0.1:{closed_port()}/demo"}, check=False
    )
    assert_one_clear_line(result, 4, "127.0.0.1")


@pytest.mark.registry
def test_base_image_missing(kodev: Kodev, registry, demo_module: Path) -> None:
    """Fault: the base image does not exist in its registry. User sees: one line naming it;
    exit 4."""
    result = kodev.run(
        "build",
        "./cmd/worker",
        check=False,
        env={
            "KO_DOCKER_REPO": f"{registry.host}/demo",
            "KO_DEFAULTBASEIMAGE": f"{registry.host}/no/such-base:v1",
        },
    )
    assert_one_clear_line(result, 4, "no/such-base")


@pytest.mark.registry
def test_unauthorized_registry_does_not_print_secrets(
    kodev: Kodev, registry_basic, tmp_path: Path
) -> None:
    """Fault: the docker config holds a wrong password for the registry. User sees: one error
    line, exit 4, and no part of the credential."""
    import base64
    import json

    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    wrong = "wrong-password-123"
    auth = base64.b64encode(f"{registry_basic.username}:{wrong}".encode()).decode()
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {registry_basic.host: {"auth": auth}}})
    )
    result = kodev.run(
        "build",
        "./cmd/worker",
        check=False,
        env={"KO_DOCKER_REPO": f"{registry_basic.host}/private", "DOCKER_CONFIG": str(config_dir)},
    )
    assert_one_clear_line(result, 4)
    assert wrong not in result.stderr and auth not in result.stderr
