"""``kodev create`` against the real test cluster: everything new, or nothing at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kodev import Kodev, KodevRun
from tests.fixtures.kube import KubeEnv

pytestmark = pytest.mark.kube

WORKER = "example.com/kodev-demo/cmd/worker"
DEPLOYMENT = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  replicas: 1
  selector:
    matchLabels: {{app: worker}}
  template:
    metadata:
      labels: {{app: worker}}
    spec:
      containers:
      - name: worker
        image: ko://{WORKER}
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data: {{k: v}}
"""


def kube_run(kodev: Kodev, kube_env: KubeEnv, *args: str) -> KodevRun:
    env = {"KUBECONFIG": str(kube_env.kubeconfig), "KO_DOCKER_REPO": f"{kube_env.registry}/demo"}
    return kodev.run(*args, check=False, env=env)


def configmap_names(kube_api: Any, namespace: str) -> set[str]:
    from kubernetes import client

    items = client.CoreV1Api(kube_api).list_namespaced_config_map(namespace).items
    return {c.metadata.name for c in items} - {"kube-root-ca.crt"}


def test_create_builds_and_creates_then_refuses_to_create_twice(
        kodev: Kodev, kube_env: KubeEnv, kube_api: Any, kube_namespace: str,
        tmp_path: Path) -> None:
    from kubernetes import client

    first = tmp_path / "first.yaml"
    first.write_text(DEPLOYMENT + "---\n" + CONFIGMAP.format(name="settings"))
    created = kube_run(kodev, kube_env, "create", "-f", str(first), "-n", kube_namespace)
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == ["deployment.apps/worker created",
                                           "configmap/settings created"]
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment("worker", kube_namespace)
    image = deployment.spec.template.spec.containers[0].image
    assert image.startswith(f"{kube_env.registry}/demo/worker-") and "@sha256:" in image
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "kodev"
    assert deployment.metadata.annotations["kodev.dev/importpaths"] == WORKER

    # A new ConfigMap plus the existing objects: nothing is created, both are named.
    second = tmp_path / "second.yaml"
    second.write_text(CONFIGMAP.format(name="brand-new") + "---\n" + first.read_text())
    again = kube_run(kodev, kube_env, "create", "-f", str(second), "-n", kube_namespace)
    assert again.returncode == 5
    assert again.stdout == ""
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("kodev: error: 2 object(s) already exist: ")
    assert f"deployment.apps/worker in namespace {kube_namespace}" in lines[0]
    assert f"configmap/settings in namespace {kube_namespace}" in lines[0]
    assert "nothing was created" in lines[0]
    assert configmap_names(kube_api, kube_namespace) == {"settings"}


def test_create_json_output(kodev: Kodev, kube_env: KubeEnv, kube_namespace: str,
                            tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text(CONFIGMAP.format(name="one"))
    result = kube_run(kodev, kube_env, "create", "-f", str(path), "-n", kube_namespace, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"apiVersion": "v1", "kind": "ConfigMap", "name": "one",
                                          "namespace": kube_namespace, "action": "created"}]


def test_create_rejected_object_creates_nothing(kodev: Kodev, kube_env: KubeEnv, kube_api: Any,
                                                kube_namespace: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIGMAP.format(name="fine") + "---\n" + CONFIGMAP.format(name="Not_Valid"))
    result = kube_run(kodev, kube_env, "create", "-f", str(path), "-n", kube_namespace)
    assert result.returncode == 2
    assert "the API server rejected it" in result.stderr.strip().splitlines()[-1]
    assert configmap_names(kube_api, kube_namespace) == set()
