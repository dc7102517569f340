"""The CI flow with the real Skaffold CLI and kodev as its custom builder: ``skaffold build
--file-output`` in one step, ``skaffold deploy --build-artifacts`` in another, on the real
node of the test environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kodev import crane
from tests.fixtures.up import NAMES, import_path, pods_of, write_module
from tests.skaffold.conftest import (
    kodev_calls,
    kodev_skaffold_init,
    run_skaffold,
    skaffold_env,
    skaffold_flags,
)

pytestmark = [pytest.mark.kube, pytest.mark.registry, pytest.mark.slow]


def test_build_file_output_then_deploy_build_artifacts_runs_the_built_digests(
    skaffold_bin: str, kube_env: Any, kube_api: Any, kube_namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    module = write_module(tmp_path / "uptest")
    calls = tmp_path / "kodev-calls.log"
    env = skaffold_env(tmp_path, kubeconfig=kube_env.kubeconfig, calls=calls)
    kodev_skaffold_init(module, env)

    # Step 1 (the build job): the test cluster is a remote one for Skaffold, so it pushes.
    out = tmp_path / "artifacts.json"
    run_skaffold(skaffold_bin, module, env, "build", f"--default-repo={kube_env.registry}",
                 f"--file-output={out}", *skaffold_flags(tmp_path))
    builds = {b["imageName"]: b["tag"] for b in json.loads(out.read_text())["builds"]}
    assert set(builds) == {f"ko://{import_path(n)}" for n in NAMES}
    digests = {}
    for name in NAMES:
        tagged, digest = builds[f"ko://{import_path(name)}"].split("@")
        assert tagged.startswith(f"{kube_env.registry}/example_com_uptest_cmd_{name}:")
        assert crane("digest", tagged).strip() == digest  # pushed under the recorded tag
        digests[name] = digest

    # Step 2 (the deploy job): no build, the recorded tag@digest values in the manifests.
    built_before_deploy = len(kodev_calls(calls))
    run_skaffold(skaffold_bin, module, env, "deploy", f"--build-artifacts={out}",
                 f"--namespace={kube_namespace}", *skaffold_flags(tmp_path, cache=False))
    assert kodev_calls(calls, built_before_deploy) == []  # kodev was not called again

    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    for name in NAMES:
        deployment = apps.read_namespaced_deployment(name, kube_namespace)
        assert deployment.spec.template.spec.containers[0].image == \
            builds[f"ko://{import_path(name)}"]
        # skaffold deploy returned after its status check: the Pod runs the built image.
        (pod,) = pods_of(kube_api, kube_namespace, name, ready=True)
        status = core.read_namespaced_pod(pod, kube_namespace).status.container_statuses[0]
        assert status.ready and status.state.running is not None
        assert status.image_id.endswith(f"@{digests[name]}"), status.image_id
        expected = name if name == "gamma" else f"hello {name}"
        assert kube_env.pod_get(kube_namespace, pod).strip() == expected
