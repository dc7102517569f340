"""The dev loop never ends on an error (issue 13, item 14).

``kodev up --json`` runs against the real test environment (API server, a real node,
the real registry); each test breaks one thing the loop depends on, checks that the
error is shown as an event while the process keeps running, then repairs it and waits
for the positive event that proves the loop recovered (the new code rolled out, or the
images pushed and applied).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kodev import tool
from tests.fixtures.up import answers, deployment_images, gamma_main, import_path

pytestmark = pytest.mark.kube

GOOD_CONFIG = "defaultBaseImage: kodev://minimal\n"


def test_ko_yaml_syntax_error_is_shown_and_the_next_good_save_recovers(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any,
        kube_namespace: str) -> None:
    """Fault: ``.ko.yaml`` is saved with a YAML syntax error while ``kodev up`` runs.
    User sees: an "error" event naming .ko.yaml; the loop keeps watching, builds nothing
    with the old configuration meanwhile, and the next good save of .ko.yaml rolls out
    the code saved in between."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    before = deployment_images(kube_api, kube_namespace)
    (up_module / ".ko.yaml").write_text("defaultBaseImage: [kodev://minimal\n")
    error = up.wait_for(lambda e: e["event"] == "error", since)
    assert ".ko.yaml" in error["message"], error
    assert up.process.poll() is None

    since = up.mark()
    (up_module / "cmd/gamma/main.go").write_text(gamma_main("gamma after the fix"))
    up.wait_for(lambda e: e["event"] == "error" and ".ko.yaml" in e["message"], since)
    assert not up.of_kind("build", since), "nothing is built from a broken .ko.yaml"
    assert deployment_images(kube_api, kube_namespace) == before

    since = up.mark()
    (up_module / ".ko.yaml").write_text(GOOD_CONFIG)
    up.wait_ready({"gamma"}, since)
    assert answers(kube_env, kube_api, kube_namespace, "gamma") == {"gamma after the fix"}
    assert up.process.poll() is None


def test_registry_error_while_reloading_the_base_is_retried(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any,
        kube_namespace: str, registry_factory: Any) -> None:
    """Fault: ``.ko.yaml`` switches to a base image on a registry that is down. User sees:
    a "retry" event with the registry error; the loop keeps running and retries; once
    the registry is back every image is rebuilt on the new base and rolled out."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    before = deployment_images(kube_api, kube_namespace)
    base_registry = registry_factory.create("up-base")
    base = f"{base_registry.host}/base:latest"
    subprocess.run([tool("crane"), "copy", "--insecure", before["gamma"], base], check=True,
                   capture_output=True)
    base_registry.stop()

    (up_module / ".ko.yaml").write_text(f"defaultBaseImage: {base}\n")
    retry = up.wait_for(lambda e: e["event"] == "retry", since)
    assert base_registry.host in retry["message"], retry
    assert up.process.poll() is None
    assert deployment_images(kube_api, kube_namespace) == before

    base_registry.start()
    up.wait_ready({"alpha", "beta", "gamma"}, up.mark())
    after = deployment_images(kube_api, kube_namespace)
    assert all(after[name] != before[name] for name in before), (before, after)
    assert answers(kube_env, kube_api, kube_namespace, "gamma") == {"gamma"}


def test_unwritable_cache_is_shown_and_retried(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any,
        kube_namespace: str, tmp_path: Path) -> None:
    """Fault: the cache cannot be written while ``kodev up`` builds (its metadata
    directory is replaced by a file: every write there fails with an OSError, as on a
    full disk). User sees: a "retry" event with the error; the loop keeps running, and
    once the cache can be written again the saved change rolls out."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    meta = tmp_path / "kocache" / "meta"
    assert meta.is_dir()
    meta.rename(meta.with_name("meta.saved"))
    meta.write_text("not a directory\n")
    try:
        (up_module / "cmd/gamma/main.go").write_text(gamma_main("gamma v2"))
        retry = up.wait_for(lambda e: e["event"] == "retry", since)
        assert import_path("gamma") in retry["images"], retry
        assert up.process.poll() is None
    finally:
        meta.unlink()
        meta.with_name("meta.saved").rename(meta)
    up.wait_ready({"gamma"}, since)
    assert answers(kube_env, kube_api, kube_namespace, "gamma") == {"gamma v2"}


def test_registry_down_at_start_up_is_retried(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        registry_factory: Any) -> None:
    """Fault: the registry ``kodev up`` pushes to is down when it starts. User sees: a
    "retry" event with the registry error and a "waiting" event; once the registry is
    back the images are pushed and the manifests applied. (This registry is on the
    machine's 127.0.0.1, which the node cannot pull from: the test follows the push and
    the apply, not the rollout.)"""
    registry = registry_factory.create("up-down-at-start")
    registry.stop()
    up = start_up(up_module, registry.host)
    retry = up.wait_for(lambda e: e["event"] == "retry")
    assert registry.host in retry["message"], retry
    up.wait_for(lambda e: e["event"] == "waiting")
    assert up.process.poll() is None
    assert deployment_images(kube_api, kube_namespace) == {}

    registry.start()
    up.wait_for(lambda e: e["event"] == "watching")
    images = deployment_images(kube_api, kube_namespace)
    assert sorted(images) == ["alpha", "beta", "gamma"]
    for image in images.values():
        repository, digest = image.split("@")
        listed = subprocess.run([tool("crane"), "digest", "--insecure", f"{repository}:latest"],
                                check=True, capture_output=True, text=True).stdout.strip()
        assert listed == digest
