"""The custom-resource fixtures (tests/fixtures/crds.py) against the real test environment:
an Argo Rollout rolled by the real Argo Rollouts controller on the real node, and a
Knative Service stored and validated by the API server with the Knative CRDs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.crds import ArgoRollouts, argo_sh, install_crds
from tests.fixtures.kodev import crane
from tests.fixtures.kube import KubeEnv

pytestmark = pytest.mark.kube

ROLLOUT_TIMEOUT_S = 120.0
ARGO = ("argoproj.io", "v1alpha1", "rollouts")
KNATIVE = ("serving.knative.dev", "v1", "services")
HASH_LABEL = "rollouts-pod-template-hash"
MERGE_PATCH = "application/merge-patch+json"
# What Argo Rollouts v1.10 reports once a canary without steps has fully rolled out.
HEALTHY_CONDITIONS = {
    "Available": ("True", "AvailableReason"),
    "Completed": ("True", "RolloutCompleted"),
    "Healthy": ("True", "RolloutHealthy"),
    "Progressing": ("True", "NewReplicaSetAvailable"),
}


def rollout_manifest(name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    """Two replicas of ``image``, canary strategy without steps (straight to 100%)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {"canary": {}},
        },
    }


def healthy(rollout: dict[str, Any]) -> bool:
    """The controller has seen the latest spec and every replica runs it, stable.
    (Argo's ``status.observedGeneration`` is a string.)"""
    status = rollout.get("status") or {}
    want = rollout["spec"]["replicas"]
    return bool(
        status.get("phase") == "Healthy"
        and str(status.get("observedGeneration")) == str(rollout["metadata"]["generation"])
        and status.get("updatedReplicas") == want
        and status.get("availableReplicas") == want
        and status.get("replicas") == want
        and status.get("stableRS") == status.get("currentPodHash")
    )


def wait_rollout(custom: Any, ns: str, name: str, done: Callable[[dict[str, Any]], bool],
                 argo: ArgoRollouts) -> dict[str, Any]:
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    while True:
        rollout: dict[str, Any] = custom.get_namespaced_custom_object(*ARGO[:2], ns, ARGO[2],
                                                                      name)
        if done(rollout):
            return rollout
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout {ns}/{name} not done in {ROLLOUT_TIMEOUT_S}s: "
                                 f"{rollout.get('status')}\n{argo.log_text()[-3000:]}")
        time.sleep(0.2)


def running_pods(core: Any, ns: str, pod_hash: str, count: int) -> list[Any]:
    """The ``count`` Pods of one ReplicaSet (by template hash), once all run and are Ready
    and no other Pod of the Rollout is left."""
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    while True:
        pods = [p for p in core.list_namespaced_pod(ns).items
                if p.metadata.deletion_timestamp is None]
        ours = [p for p in pods if (p.metadata.labels or {}).get(HASH_LABEL) == pod_hash]
        ready = [p for p in ours if p.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        if len(ready) == count == len(pods):
            return ready
        assert time.monotonic() < deadline, [
            (p.metadata.name, (p.metadata.labels or {}).get(HASH_LABEL), p.status.phase)
            for p in pods]
        time.sleep(0.2)


def conditions(rollout: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""))
            for c in rollout["status"].get("conditions", [])}


def second_image(kube_env: KubeEnv) -> str:
    """The testapp image with ``ANSWER=rollout-v2`` in its config (a new digest): its
    containers answer ``GET /`` with that instead of ``testapp``."""
    tag = f"{kube_env.registry}/testenv/rollout-app:v2"
    crane("mutate", kube_env.testapp, "--env", "ANSWER=rollout-v2", "--tag", tag)
    digest = crane("digest", tag).strip()
    return f"{kube_env.registry}/testenv/rollout-app@{digest}"


def assert_pods_run(kube_env: KubeEnv, ns: str, pods: list[Any], image: str,
                    answer: str) -> None:
    for pod in pods:
        status = pod.status.container_statuses[0]
        assert status.state.running is not None
        assert status.image_id.endswith(image.split("@")[1])
        assert kube_env.pod_get(ns, pod.metadata.name).strip() == answer


def test_rollout_rolls_on_the_real_node(argo_rollouts: ArgoRollouts, kube_api: Any,
                                        kube_env: KubeEnv, kube_namespace: str) -> None:
    custom: Any = client.CustomObjectsApi(kube_api)
    core: Any = client.CoreV1Api(kube_api)
    apps: Any = client.AppsV1Api(kube_api)
    ns, name = kube_namespace, "web"
    group, version, plural = ARGO

    custom.create_namespaced_custom_object(
        group, version, ns, plural, rollout_manifest(name, kube_env.testapp, argo_rollouts.labels))
    first = wait_rollout(custom, ns, name, healthy, argo_rollouts)
    first_hash = first["status"]["currentPodHash"]
    assert conditions(first) == HEALTHY_CONDITIONS
    pods = running_pods(core, ns, first_hash, 2)
    assert_pods_run(kube_env, ns, pods, kube_env.testapp, "testapp")

    # The Pods belong to a ReplicaSet the Rollout owns (the controller made it).
    rs = apps.read_namespaced_replica_set(f"{name}-{first_hash}", ns)
    assert [o.kind for o in rs.metadata.owner_references] == ["Rollout"]

    # A custom resource refuses strategic merge: patch the template's image with a JSON
    # merge patch (it replaces the containers list, so the whole container is given).
    image = second_image(kube_env)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object(
            group, version, ns, plural, name, patch,
            _content_type="application/strategic-merge-patch+json")
    assert refused.value.status == 415
    custom.patch_namespaced_custom_object(group, version, ns, plural, name, patch,
                                          _content_type=MERGE_PATCH)
    second = wait_rollout(
        custom, ns, name,
        lambda r: healthy(r) and r["status"]["currentPodHash"] != first_hash, argo_rollouts)
    second_hash = second["status"]["currentPodHash"]
    pods = running_pods(core, ns, second_hash, 2)
    assert_pods_run(kube_env, ns, pods, image, "rollout-v2")
    assert conditions(second) == HEALTHY_CONDITIONS


def knative_service(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": image, "notAField": "pruned by the schema"}]}}},
    }


def test_knative_service_is_validated_and_stored(knative_crds: tuple[str, ...],
                                                 kube_api: Any, kube_env: KubeEnv,
                                                 kube_namespace: str) -> None:
    """No Knative controller runs: the API server stores the Service as the CRD's schema
    allows (unknown fields pruned, wrong types refused) and nothing sets its status."""
    assert "services.serving.knative.dev" in knative_crds
    # Installing again (another session, a newer CRD) is harmless: server-side apply.
    assert install_crds(kube_api, argo_sh("crds", "knative")) == knative_crds
    custom: Any = client.CustomObjectsApi(kube_api)
    group, version, plural = KNATIVE
    custom.create_namespaced_custom_object(group, version, kube_namespace, plural,
                                           knative_service("hello", kube_env.testapp))
    stored = custom.get_namespaced_custom_object(group, version, kube_namespace, plural,
                                                 "hello")
    assert stored["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": kube_env.testapp}]

    bad = knative_service("bad", kube_env.testapp)
    bad["spec"]["template"]["spec"]["containers"] = "not a list"
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(group, version, kube_namespace, plural, bad)
    assert refused.value.status == 422
    assert "spec.template.spec.containers" in str(refused.value.body)
