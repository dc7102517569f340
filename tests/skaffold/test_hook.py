"""``kodev skaffold build`` run exactly as Skaffold and Tilt run it, against a real registry.

Skaffold's custom builder runs ``sh -c "<buildCommand>"`` with the artifact context as
working directory and IMAGE, PUSH_IMAGE, BUILD_CONTEXT, PLATFORMS and SKIP_TEST in the
environment, then reads the digest of ``$IMAGE`` from the registry. Tilt's custom_build
gives EXPECTED_REF instead, or reads the ref from its ``outputs_image_ref_to`` file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, crane, skopeo_inspect
from tests.support.runimage import run_image

BUILD_COMMAND = "kodev skaffold build ./cmd/web"


def run_hook(
    command: str, context: Path, env: dict[str, str], **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` the way Skaffold's custom builder does (``sh -c`` in the context)."""
    return subprocess.run(
        ["sh", "-c", command],
        cwd=context,
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=300,
    )


def skaffold_variables(
    image: str, context: Path, platforms: str, push: str = "true"
) -> dict[str, str]:
    return {
        "IMAGE": image,
        "PUSH_IMAGE": push,
        "BUILD_CONTEXT": str(context),
        "PLATFORMS": platforms,
        "SKIP_TEST": "false",
    }


@pytest.mark.registry
def test_push_image_true_pushes_exactly_image_by_tag(
    kodev: Kodev, demo_module: Path, hook_env: dict[str, str], registry
) -> None:
    image = f"{registry.host}/demo-web:v1"
    proc = run_hook(
        BUILD_COMMAND, demo_module, hook_env,
        **skaffold_variables(image, demo_module, "linux/amd64"),
    )
    assert proc.returncode == 0, proc.stderr
    digest = crane("digest", image).strip()  # what Skaffold's RemoteDigest($IMAGE) reads
    assert proc.stdout.splitlines() == [f"{image}@{digest}"]

    config = skopeo_inspect(image, config=True)
    assert config["config"]["Entrypoint"] == ["/ko-app/web"]
    assert config["architecture"] == "amd64"
    manifest = skopeo_inspect(image, raw=True)
    assert len(manifest["layers"]) == 3  # kodev://minimal, kodata, binary
    # The hook is the same pipeline as kodev build: the same image, byte for byte.
    built = kodev.run(
        "build", "--bare", "--platform=linux/amd64", "--sbom=none", "./cmd/web",
        env={"KO_DOCKER_REPO": f"{registry.host}/demo-web-by-build"},
    )
    assert built.refs[0].endswith(f"@{digest}")

    ran = run_image(f"{registry.host}/demo-web@{digest}", ["--once"])
    assert ran.returncode == 0, ran.stderr
    assert "hello from web" in ran.stdout
    assert "motd: kodev says hi from kodata" in ran.stdout


@pytest.mark.registry
def test_two_platforms_give_an_index_at_image(
    demo_module: Path, hook_env: dict[str, str], registry
) -> None:
    image = f"{registry.host}/demo-web-multi:v2"
    proc = run_hook(
        BUILD_COMMAND, demo_module, hook_env,
        **skaffold_variables(image, demo_module, "linux/amd64,linux/arm64"),
    )
    assert proc.returncode == 0, proc.stderr
    index = skopeo_inspect(image, raw=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = sorted(
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    )
    assert platforms == ["linux/amd64", "linux/arm64"]
    assert proc.stdout.strip() == f"{image}@{crane('digest', image).strip()}"
    crane("validate", "--remote", image)


@pytest.mark.registry
def test_tilt_expected_ref_is_pushed(
    demo_module: Path, hook_env: dict[str, str], registry
) -> None:
    """Tilt's custom_build with skips_local_docker=True: push exactly $EXPECTED_REF."""
    ref = f"{registry.host}/example.com_kodev-demo_cmd_web:tilt-build-1700000000"
    proc = run_hook(BUILD_COMMAND, demo_module, hook_env, EXPECTED_REF=ref,
                    EXPECTED_IMAGE="example.com_kodev-demo_cmd_web",
                    EXPECTED_TAG="tilt-build-1700000000")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{ref}@{crane('digest', ref).strip()}"


@pytest.mark.registry
def test_tilt_outputs_image_ref_to_gets_a_content_addressed_tag(
    demo_module: Path, hook_env: dict[str, str], registry
) -> None:
    """Tilt's outputs_image_ref_to: kodev picks the tag from the digest and writes
    repo:tag to the file; an unchanged image keeps its ref (Tilt restarts nothing)."""
    command = (f"{BUILD_COMMAND} --image {registry.host}/tilt-web "
               "--image-ref-file ../ref.txt")
    first = run_hook(command, demo_module, hook_env)
    assert first.returncode == 0, first.stderr
    ref = (demo_module.parent / "ref.txt").read_text().strip()
    digest = crane("digest", ref).strip()
    assert ref == f"{registry.host}/tilt-web:kodev-{digest.split(':')[1][:16]}"

    again = run_hook(command, demo_module, hook_env)
    assert again.returncode == 0, again.stderr
    assert (demo_module.parent / "ref.txt").read_text().strip() == ref

    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    greeting.write_text(greeting.read_text().replace("hello from", "hi from"))
    changed = run_hook(command, demo_module, hook_env)
    assert changed.returncode == 0, changed.stderr
    assert (demo_module.parent / "ref.txt").read_text().strip() != ref


def test_push_image_false_without_docker_daemon_is_one_clear_line(
    demo_module: Path, hook_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**hook_env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    proc = run_hook(
        BUILD_COMMAND, demo_module, env,
        **skaffold_variables("127.0.0.1:1/demo-web:v1", demo_module, "linux/amd64", "false"),
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kodev: error: PUSH_IMAGE=false")
    assert "build.local.push: true" in lines[0] and "KEP-1755" in lines[0]
    assert "go build" not in proc.stderr  # refused before building anything


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "IMAGE (Skaffold) and EXPECTED_REF (Tilt) are unset"),
        ({"IMAGE": "ko://example.com/kodev-demo/cmd/web:abc"}, "--default-repo"),
        ({"IMAGE": "127.0.0.1:1/Demo:v1"}, "invalid image reference"),
        ({"IMAGE": "127.0.0.1:1/demo:v1", "PUSH_IMAGE": "maybe"}, "PUSH_IMAGE='maybe'"),
        ({"IMAGE": "127.0.0.1:1/demo:v1", "BUILD_CONTEXT": "/nonexistent"}, "BUILD_CONTEXT"),
    ],
)
def test_bad_hook_environment_is_a_usage_error(
    demo_module: Path, hook_env: dict[str, str], variables: dict[str, str], expected: str
) -> None:
    proc = run_hook(BUILD_COMMAND, demo_module, hook_env, **variables)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_main_package_defaults_to_the_ko_yaml_build(
    demo_module: Path, hook_env: dict[str, str]
) -> None:
    """No argument: the .ko.yaml build in the context (examples/demo: web)."""
    proc = run_hook("kodev skaffold deps", demo_module, hook_env)
    assert proc.returncode == 0, proc.stderr
    assert "cmd/web/main.go" in json.loads(proc.stdout)


def test_check_hook_lets_a_push_through_and_stops_a_load_without_a_daemon(
    demo_module: Path, hook_env: dict[str, str], tmp_path: Path
) -> None:
    """The artifacts' hooks.before as Skaffold runs a build hook (argv, no shell, with
    SKAFFOLD_PUSH_IMAGE and SKAFFOLD_IMAGE set)."""
    from kodev.cli.skaffold import CHECK_HOOK

    env = {**hook_env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
           "SKAFFOLD_IMAGE": "127.0.0.1:1/demo-web:v1"}
    pushed = subprocess.run(list(CHECK_HOOK), cwd=demo_module, capture_output=True,
                            text=True, env={**env, "SKAFFOLD_PUSH_IMAGE": "true"})
    assert (pushed.returncode, pushed.stdout, pushed.stderr) == (0, "", "")
    loaded = subprocess.run(list(CHECK_HOOK), cwd=demo_module, capture_output=True,
                            text=True, env={**env, "SKAFFOLD_PUSH_IMAGE": "false"})
    assert loaded.returncode == 2 and loaded.stdout == ""
    assert loaded.stderr.strip().splitlines() == [loaded.stderr.strip()]
    assert loaded.stderr.startswith("kodev: error: SKAFFOLD_PUSH_IMAGE=false: Skaffold wants "
                                    "127.0.0.1:1/demo-web:v1 in a local Docker daemon")
    assert "build.local.push: true" in loaded.stderr and "--default-repo=" in loaded.stderr
