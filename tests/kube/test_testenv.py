"""Smoke tests for the local Kubernetes test environment (tests/testenv)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from kubernetes import client
from kubernetes import watch as _watch

from tests.fixtures.kube import KubeEnv

pytestmark = pytest.mark.kube

DEADLINE_S = 60.0
# The kubernetes client is only partly typed; treat its API objects as Any here.
kwatch: Any = _watch


def wait_for_deployment(
    apps: Any, namespace: str, name: str, done: Callable[[Any], bool], timeout: float = DEADLINE_S
) -> Any:
    """Watch a Deployment until ``done(deployment)`` holds; return it."""
    deadline = time.monotonic() + timeout
    current = apps.read_namespaced_deployment(name, namespace)
    if done(current):
        return current
    while (remaining := deadline - time.monotonic()) > 0:
        w = kwatch.Watch()
        for event in w.stream(
            apps.list_namespaced_deployment,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=current.metadata.resource_version,
            timeout_seconds=max(1, int(remaining)),
        ):
            current = event["object"]
            if done(current):
                w.stop()
                return current
        current = apps.read_namespaced_deployment(name, namespace)
        if done(current):
            return current
    raise AssertionError(f"deployment {namespace}/{name} not done in {timeout}s: {current.status}")


def rollout_complete(dep: Any) -> bool:
    s, want = dep.status, dep.spec.replicas
    return bool(
        s is not None
        and (s.observed_generation or 0) >= dep.metadata.generation
        and s.updated_replicas == want
        and s.replicas == want
        and s.available_replicas == want
        and not s.unavailable_replicas
    )


def make_deployment(name: str, image: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image=image)]),
            ),
        ),
    )


def wait_pods(
    core: Any, namespace: str, selector: str, done: Callable[[list[Any]], bool]
) -> list[Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        if done(pods):
            return list(pods)
        assert time.monotonic() < deadline, [
            (p.metadata.name, p.status.phase, p.metadata.deletion_timestamp) for p in pods
        ]
        time.sleep(0.2)


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def ready_pod(core: Any, namespace: str, name: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        pod = core.read_namespaced_pod(name, namespace)
        if is_ready(pod):
            return pod
        assert time.monotonic() < deadline, pod.status
        time.sleep(0.1)


def app_container(name: str, image: str, *args: str, port: int = 8080) -> Any:
    return client.V1Container(name=name, image=image, args=list(args),
                              env=[client.V1EnvVar(name="PORT", value=str(port))])


@pytest.fixture
def log_pod(kube_api: Any, kube_env: KubeEnv, kube_namespace: str) -> str:
    """A running Pod of two real testapp containers (ports 8080 and 8081)."""
    core: Any = client.CoreV1Api(kube_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="talker"),
        spec=client.V1PodSpec(
            containers=[
                app_container("main", kube_env.testapp, "--say", "started"),
                app_container("sidecar", kube_env.testapp, port=8081),
            ]
        ),
    )
    core.create_namespaced_pod(kube_namespace, pod)
    ready_pod(core, kube_namespace, "talker")
    return "talker"


class LineReader:
    """Reads a streaming HTTP response line by line in a thread, with timeouts."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = b""
        try:
            for chunk in self.resp.stream(1024, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.lines.put(line.decode())
        except Exception:
            pass
        finally:
            self.lines.put(None)

    def read(self, n: int, timeout: float = 20.0) -> list[str]:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"got only {out!r} within {timeout}s") from None
            assert line is not None, f"stream ended after {out!r}"
            out.append(line)
        return out

    def close(self) -> None:
        # shutdown() interrupts the reader thread's blocking read; close() alone does not.
        self.resp.shutdown()
        self.thread.join(timeout=5)
        self.resp.close()


def test_node_is_a_real_kubelet_with_containerd(kube_api: Any, kube_env: KubeEnv) -> None:
    core: Any = client.CoreV1Api(kube_api)
    node = core.read_node(kube_env.node)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert not node.spec.taints
    info = node.status.node_info
    assert info.kubelet_version == "v1.37.2"
    assert info.container_runtime_version.startswith("containerd://2.4.")
    assert info.operating_system == "linux"
    assert info.architecture == subprocess.run(["go", "env", "GOARCH"], capture_output=True,
                                               text=True, check=True).stdout.strip()
    assert node.metadata.labels["kubernetes.io/os"] == "linux"
    assert [n.metadata.name for n in core.list_node().items] == [kube_env.node]


def test_default_serviceaccount_and_registry_configmap(kube_api: Any, kube_env: KubeEnv) -> None:
    core: Any = client.CoreV1Api(kube_api)
    assert core.read_namespaced_service_account("default", "default").metadata.name == "default"
    cm = core.read_namespaced_config_map("local-registry-hosting", "kube-public")
    hosting = yaml.safe_load(cm.data["localRegistryHosting.v1"])
    # The forwarder uses the same port outside and inside the node's namespace, so the
    # runtime pulls from the very host the developer pushes to.
    assert hosting["host"] == kube_env.registry
    assert "hostFromContainerRuntime" not in hosting
    assert hosting["help"]


def test_deployment_rollout_runs_real_containers(kube_api: Any, kube_env: KubeEnv,
                                                 kube_namespace: str) -> None:
    apps: Any = client.AppsV1Api(kube_api)
    core: Any = client.CoreV1Api(kube_api)
    ns, name = kube_namespace, "web"
    dep = make_deployment(name, kube_env.testapp, 2)
    dep.spec.template.spec.containers[0].args = ["--answer", "v1"]
    apps.create_namespaced_deployment(ns, dep)
    dep = wait_for_deployment(apps, ns, name, rollout_complete)
    listed = core.list_namespaced_pod(ns, label_selector="app=web").items
    old_pods = {p.metadata.name for p in listed}
    assert len(old_pods) == 2
    assert {kube_env.pod_get(ns, pod).strip() for pod in old_pods} == {"v1"}

    container = {"name": "app", "args": ["--answer", "v2"]}
    patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
    apps.patch_namespaced_deployment(name, ns, patch)
    dep = wait_for_deployment(apps, ns, name, rollout_complete)
    assert dep.status.available_replicas == 2

    pods = wait_pods(core, ns, "app=web",
                     lambda ps: len(ps) == 2 and not old_pods & {p.metadata.name for p in ps})
    assert all(is_ready(p) and p.status.phase == "Running" for p in pods)
    for pod in pods:
        status = pod.status.container_statuses[0]
        assert status.state.running is not None and status.container_id.startswith("containerd://")
        assert status.image_id.startswith(kube_env.testapp.split("@")[0])
        assert pod.status.pod_ip.startswith("10.88.0.")
        assert kube_env.pod_get(ns, pod.metadata.name).strip() == "v2"


def test_followed_log_stream(
    kube_api: Any, kube_env: KubeEnv, kube_namespace: str, log_pod: str
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    kube_env.say(kube_namespace, log_pod, "hello", "world")
    kube_env.say(kube_namespace, log_pod, "sidecar line", port=8081)
    resp = core.read_namespaced_pod_log(
        log_pod,
        kube_namespace,
        container="main",
        follow=True,
        _preload_content=False,
        _request_timeout=(10, 60),
    )
    reader = LineReader(resp)
    try:
        assert reader.read(3) == ["started", "hello", "world"]
        kube_env.say(kube_namespace, log_pod, "appended 1")
        assert reader.read(1) == ["appended 1"]
        kube_env.say(kube_namespace, log_pod, "appended 2", "appended 3")
        assert reader.read(2) == ["appended 2", "appended 3"]
    finally:
        reader.close()


def test_log_options(kube_api: Any, kube_env: KubeEnv, kube_namespace: str, log_pod: str) -> None:
    core: Any = client.CoreV1Api(kube_api)
    ns = kube_namespace
    kube_env.say(ns, log_pod, "first")
    time.sleep(1.1)  # sinceTime has one-second resolution in the query below
    cut = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(1.1)
    kube_env.say(ns, log_pod, "new 1", "new 2", stream="stderr")

    full = core.read_namespaced_pod_log(log_pod, ns, container="main")
    assert full.splitlines() == ["started", "first", "new 1", "new 2"]
    assert core.read_namespaced_pod_log(log_pod, ns, container="main", tail_lines=1) == "new 2\n"
    stamped = core.read_namespaced_pod_log(log_pod, ns, container="main", timestamps=True)
    stamp, text = stamped.splitlines()[0].split(" ", 1)
    assert text == "started"
    assert stamp.endswith("Z") and stamp.startswith(str(datetime.now(UTC).year))

    url = f"{kube_api.configuration.host}/api/v1/namespaces/{ns}/pods/{log_pod}/log"
    query = urlencode({"container": "main", "sinceTime": cut.strftime("%Y-%m-%dT%H:%M:%SZ")})
    resp = kube_api.rest_client.request("GET", f"{url}?{query}")
    assert resp.status == 200
    assert resp.read().decode().splitlines() == ["new 1", "new 2"]

    assert core.read_namespaced_pod_log(log_pod, ns, container="sidecar") == ""


def test_the_node_network_lives_in_its_own_namespace(kube_env: KubeEnv) -> None:
    netns = f"/run/netns/{kube_env.netns}"
    inside = subprocess.run(["nsenter", f"--net={netns}", "--", "ip", "-o", "addr"],
                            capture_output=True, text=True, check=True).stdout
    assert "10.250.255.1/32" in inside
    outside = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True,
                             check=True).stdout
    assert "10.250.255.1" not in outside and "10.88.0." not in outside
    # No route out of the namespace: a lookup (no packet is sent) finds none.
    lookup = subprocess.run(["nsenter", f"--net={netns}", "--", "ip", "route", "get", "192.0.2.1"],
                            capture_output=True, text=True)
    assert lookup.returncode != 0 and "unreachable" in lookup.stderr
