"""Real Skaffold (built from its Go module by tests/skaffold/build.sh, `make skaffold`)
driving kodev as its custom builder on the example app, against a real registry."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.kodev import REPO_ROOT, crane
from tests.skaffold.conftest import (
    kodev_calls,
    run_skaffold,
    skaffold_env,
    skaffold_flags,
    wait_for_a_warm_server,
    warm_calls,
)

EXAMPLE = REPO_ROOT / "skaffold-plugin" / "skaffold.yaml"
WEB = "example.com/kodev-demo/cmd/web"
WORKER = "example.com/kodev-demo/cmd/worker"

pytestmark = [pytest.mark.registry, pytest.mark.slow]


def skaffold(skaffold_bin: str, cwd: Path, env: dict[str, str], *args: str
             ) -> subprocess.CompletedProcess[str]:
    return run_skaffold(skaffold_bin, cwd, env, *args)


def test_skaffold_build_pushes_what_it_records(
    skaffold_bin: str, demo_module: Path, hook_env: dict[str, str], registry, tmp_path: Path
) -> None:
    shutil.copy(EXAMPLE, demo_module / "skaffold.yaml")
    env = {**hook_env, "SKAFFOLD_UPDATE_CHECK": "false",
           "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    out = tmp_path / "out.json"
    default_repo = f"{registry.host}/sk"
    skaffold(skaffold_bin, demo_module, env, "build", "--push", f"--default-repo={default_repo}",
             "--cache-artifacts=false", f"--file-output={out}", "--interactive=false")

    builds = {b["imageName"]: b["tag"] for b in json.loads(out.read_text())["builds"]}
    assert set(builds) == {f"ko://{WEB}", f"ko://{WORKER}"}
    for name, recorded in builds.items():
        tagged, digest = recorded.split("@")
        # Skaffold's default-repo rewrite of ko://example.com/kodev-demo/cmd/<name>
        assert tagged.startswith(f"{default_repo}/{name[5:].replace('.', '_').replace('/', '_')}:")
        assert crane("digest", tagged).strip() == digest  # the tag Skaffold recorded
        crane("validate", "--remote", tagged)
    web_config = json.loads(crane("config", builds[f"ko://{WEB}"].split("@")[0]))
    assert web_config["config"]["Entrypoint"] == ["/ko-app/web"]

    # The manifests keep image: ko://...; Skaffold replaces them with what it built.
    rendered = tmp_path / "rendered.yaml"
    skaffold(skaffold_bin, demo_module, env, "render", "--offline", f"--build-artifacts={out}",
             "--digest-source=none", f"--output={rendered}")
    images = [doc["spec"]["template"]["spec"]["containers"][0]["image"]
              for doc in yaml.safe_load_all(rendered.read_text()) if doc]
    assert sorted(images) == sorted(builds.values())



def test_skaffold_rebuilds_only_the_image_an_edit_can_change(
    skaffold_bin: str, demo_module: Path, hook_env: dict[str, str], registry, tmp_path: Path
) -> None:
    """kodev's deps feed Skaffold's artifact cache key: after an edit to the worker's
    main.go only the worker is built again; the web image is found in the cache."""
    shutil.copy(EXAMPLE, demo_module / "skaffold.yaml")
    env = {**hook_env, "SKAFFOLD_UPDATE_CHECK": "false",
           "KUBECONFIG": str(tmp_path / "no-kubeconfig")}

    def build(name: str) -> tuple[dict[str, str], str]:
        out = tmp_path / f"{name}.json"
        proc = skaffold(skaffold_bin, demo_module, env, "build", "--push",
                        f"--default-repo={registry.host}/loop", f"--file-output={out}",
                        f"--cache-file={tmp_path / 'skaffold-cache'}", "--interactive=false")
        tags = {b["imageName"]: b["tag"] for b in json.loads(out.read_text())["builds"]}
        return tags, proc.stdout + proc.stderr

    first, _ = build("first")
    (demo_module / "NOTES.md").write_text("not a dependency of any image\n")
    unchanged, log = build("unchanged")
    assert unchanged == first
    assert "Building [" not in log, log  # everything came from Skaffold's cache

    worker = demo_module / "cmd" / "worker" / "main.go"
    worker.write_text(worker.read_text().replace("worker", "worker (edited)", 1))
    wait_for_a_warm_server()
    served = warm_calls()
    second, log = build("second")
    assert warm_calls() > served  # Skaffold's calls ran on kodev's warm server
    assert second[f"ko://{WEB}"] == first[f"ko://{WEB}"]
    assert second[f"ko://{WORKER}"] != first[f"ko://{WORKER}"]
    assert f"Building [ko://{WORKER}]" in log and f"Building [ko://{WEB}]" not in log, log


def test_push_false_without_a_docker_daemon_fails_with_what_to_set(
    skaffold_bin: str, demo_module: Path, tmp_path: Path
) -> None:
    """Skaffold with push off (what it picks for a local cluster without a KEP-1755
    registry) wants the images in a Docker daemon and checks for one before it runs a
    custom builder. The artifacts' hooks.before (kodev skaffold check) runs earlier: the
    build stops, nothing is built, and the output says what to set."""
    shutil.copy(EXAMPLE, demo_module / "skaffold.yaml")
    calls = tmp_path / "kodev-calls.log"
    env = skaffold_env(tmp_path, calls=calls)
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"  # no daemon answers there
    proc = run_skaffold(skaffold_bin, demo_module, env, "build", "--push=false",
                        "--default-repo=127.0.0.1:1/sk", *skaffold_flags(tmp_path),
                        check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    ours = [line for line in output.splitlines() if line.startswith("kodev: error:")]
    assert len(ours) == 1, output
    assert ours[0].startswith("kodev: error: SKAFFOLD_PUSH_IMAGE=false: Skaffold wants "
                              "127.0.0.1:1/sk/example_com_kodev-demo_cmd_"), output
    assert "no Docker daemon answers" in ours[0]
    assert "build.local.push: true" in ours[0] and "--default-repo=" in ours[0]
    assert "goroutine " not in output and "panic:" not in output and "Traceback" not in output
    assert not [c for c in kodev_calls(calls) if c.startswith("skaffold build")]

