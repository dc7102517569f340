"""``kodev up --live`` on the real node: the new binary runs in the existing container (same
Pod UID, same IP, no container restart by the kubelet), in a distroless image with a
read-only root filesystem; a Pod created later gets the newest binary; without
``pods/exec`` it rolls out instead and says why; a transfer cut half-way changes nothing;
stopping ``up`` leaves the Deployment at the last build's digest.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.apply.test_apply_kube import eventually
from tests.fixtures.up import deployment_images, edit, pods_of

pytestmark = pytest.mark.kube

LIVE = ("--live", "--logs=true")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=15) as response:
        return str(response.read().decode().strip())


def _answers(ask: Any, expected: str) -> bool:
    """The "live" event means the new process runs; it may not listen yet for a moment."""
    try:
        return bool(ask().strip() == expected)
    except OSError:  # refused (503 through pods/proxy): not listening yet
        return False


def _pod(kube_api: Any, namespace: str, name: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_api).read_namespaced_pod(name, namespace)


def _read_only_root(module: Path, name: str) -> None:
    edit(module / f"config/{name}.yaml", "        ports:\n",
         "        securityContext: {readOnlyRootFilesystem: true, runAsNonRoot: true}\n"
         "        ports:\n")


def test_a_save_runs_the_new_binary_in_the_same_pod(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    _read_only_root(up_module, "gamma")
    up = start_up(up_module, kube_env.registry, extra=(*LIVE, "--port-forward"))
    url = up.wait_for(lambda e: e["event"] == "forward"
                      and e["workload"] == "deployment/gamma")["url"]
    up.started()
    (pod,) = pods_of(kube_api, kube_namespace, "gamma")
    before = _pod(kube_api, kube_namespace, pod)
    spec_image = deployment_images(kube_api, kube_namespace)["gamma"]
    eventually("gamma to answer", lambda: _answers(lambda: _get(url), "gamma"))

    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma v2"')
    live = up.wait_for(lambda e: e["event"] == "live" and e["workload"] == "deployment/gamma",
                       since)
    assert live["mode"] == "live" and live["pods"] == [pod]
    assert live["save_to_running_seconds"] > 0
    built = next(e for e in up.of_kind("built", since) if e["importpath"].endswith("gamma"))
    eventually("the new code through the port-forward", lambda: _answers(
        lambda: _get(url), "gamma v2"))

    after = _pod(kube_api, kube_namespace, pod)
    assert after.metadata.uid == before.metadata.uid
    assert after.status.pod_ip == before.status.pod_ip
    assert after.status.container_statuses[0].restart_count == 0  # no kubelet restart
    assert pods_of(kube_api, kube_namespace, "gamma") == {pod}
    assert not [e for e in up.of_kind("patched", since) if "gamma" in e["workload"]]
    assert deployment_images(kube_api, kube_namespace)["gamma"] == spec_image  # not rolled
    # The container's log goes on: the old process's line, then the new one's.
    eventually("the new process's first line",
               lambda: "gamma v2" in [e["line"] for e in up.of_kind("log")
                                      if e.get("pod") == pod])
    lines = [e["line"] for e in up.of_kind("log") if e.get("pod") == pod]
    assert lines.index("gamma") < lines.index("gamma v2")

    # A Pod created later (here: the old one deleted) gets the newest binary swapped in.
    from kubernetes import client

    since = up.mark()
    client.CoreV1Api(kube_api).delete_namespaced_pod(pod, kube_namespace)
    fresh = up.wait_for(lambda e: e["event"] == "live" and e.get("new_pod"), since)
    assert fresh["pods"] != [pod]
    eventually("the new Pod to answer the newest code",
               lambda: _answers(lambda: _get(url), "gamma v2"))

    # Stopping converges: the Deployment names the last build's digest.
    assert up.stop() == 0
    assert any(e["event"] == "converged" and e["workload"] == "deployment/gamma"
               for e in up.events)
    assert deployment_images(kube_api, kube_namespace)["gamma"].endswith(built["digest"])


def _limited_kubeconfig(kube_api: Any, kube_env: Any, namespace: str, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount that may read everything and manage Deployments,
    but not create pods/exec."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    name = f"kodev-noexec-{secrets.token_hex(3)}"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    ca = base64.b64encode((kube_env.state_dir / "pki" / "ca.crt").read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "limited",
        "clusters": [{"name": "c", "cluster": {"server": kube_env.apiserver,
                                               "certificate-authority-data": ca}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "c", "user": "u",
                                                     "namespace": namespace}}]}))
    return path


def test_without_pods_exec_it_rolls_out_and_says_why(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str, kube_env: Any,
        tmp_path: Path) -> None:
    """Fault: kodev up --live runs as a ServiceAccount whose RBAC lacks pods/exec. User sees: a
    live-fallback event saying pods/exec is forbidden; the change rolls out instead and the
    new Pod answers."""
    kubeconfig = _limited_kubeconfig(kube_api, kube_env, kube_namespace,
                                     tmp_path / "limited.kubeconfig")
    up = start_up(up_module, kube_env.registry, extra=LIVE, kubeconfig=kubeconfig)
    up.started()
    (old_pod,) = pods_of(kube_api, kube_namespace, "gamma")
    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma rolled"')
    fallback = up.wait_for(lambda e: e["event"] == "live-fallback", since)
    assert "forbidden" in fallback["reason"] and "pods/exec" in fallback["message"]
    ready = up.wait_for(lambda e: e["event"] == "ready" and e["workload"] == "deployment/gamma",
                        since)
    assert ready["mode"] == "rolled"
    assert not up.of_kind("live", since)
    (new_pod,) = pods_of(kube_api, kube_namespace, "gamma", ready=True) - {old_pod}
    eventually("the rolled Pod to answer", lambda: _answers(
        lambda: kube_env.pod_get(kube_namespace, new_pod), "gamma rolled"))


def test_a_transfer_cut_half_way_leaves_the_old_process_serving(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """Fault: a live transfer is cut half-way, then a whole transfer arrives whose sha256 does
    not match. User sees: the supervisor refuses both and the old process goes on serving.
    The swap is driven here with the kubernetes client's own exec stream (not kodev's),
    which sends half of what it announces and hangs up."""
    from kubernetes import client
    from kubernetes.stream import stream

    up = start_up(up_module, kube_env.registry, extra=LIVE)
    up.wait_for(lambda e: e["event"] == "watching")
    up.wait_ready({"gamma"}, 0)
    (pod,) = pods_of(kube_api, kube_namespace, "gamma")
    core = client.CoreV1Api(kube_api)
    payload = secrets.token_bytes(1 << 20)
    digest = hashlib.sha256(payload).hexdigest()

    def swap(size: int, send: bytes, sha: str) -> tuple[int | None, str]:
        resp = stream(core.connect_get_namespaced_pod_exec, pod, kube_namespace,
                      container="gamma", stdin=True, stdout=True, stderr=True, tty=False,
                      command=["/kodev/live", "swap", "--sha256", sha, "--size", str(size)],
                      _preload_content=False)
        resp.write_stdin(send)
        if len(send) < size:
            resp.update(timeout=1)
            resp.close()  # cut: the supervisor's stdin ends early
            return None, ""
        resp.run_forever(timeout=30)
        code = resp.returncode
        return code, resp.read_stderr()

    swap(2 * len(payload), payload, digest)
    code, stderr = swap(len(payload), payload, "0" * 64)
    assert code == 5 and "nothing changed" in stderr
    assert kube_env.pod_get(kube_namespace, pod) == "gamma\n"
    status = core.read_namespaced_pod(pod, kube_namespace).status.container_statuses[0]
    assert status.restart_count == 0 and status.ready
    starts = [e for e in up.of_kind("log") if e.get("pod") == pod and e["line"] == "gamma"]
    assert len(starts) == 1  # the program was never restarted


def test_kodata_goes_live_too(demo_module: Path, start_up: Any, kube_api: Any,
                              kube_namespace: str, kube_env: Any) -> None:
    """The demo's web answers with a file from its kodata (KO_DATA_PATH): a new file
    content reaches the running process without a new Pod, and so does a code change."""
    up = start_up(demo_module, f"{kube_env.registry}/live", extra=LIVE)
    up.wait_for(lambda e: e["event"] == "watching")
    up.wait_ready({"web", "worker"}, 0)
    (pod,) = pods_of(kube_api, kube_namespace, "web")
    eventually("web to answer", lambda: _answers(
        lambda: kube_env.pod_get(kube_namespace, pod),
        "hello from web - kodev says hi from kodata"))

    since = up.mark()
    (demo_module / "cmd/web/kodata/motd.txt").write_text("fresh kodata\n")
    up.wait_for(lambda e: e["event"] == "live" and e["workload"] == "deployment/web", since)
    eventually("the new kodata", lambda: _answers(
        lambda: kube_env.pod_get(kube_namespace, pod), "hello from web - fresh kodata"))

    since = up.mark()
    edit(demo_module / "internal/greeting/greeting.go", "hello from", "hi from")
    for name in ("web", "worker"):
        up.wait_for(lambda e, n=name: e["event"] == "live"
                    and e["workload"] == f"deployment/{n}", since)
    eventually("the new code", lambda: _answers(
        lambda: kube_env.pod_get(kube_namespace, pod), "hi from web - fresh kodata"))
    assert pods_of(kube_api, kube_namespace, "web") == {pod}
    assert _pod(kube_api, kube_namespace, pod).status.container_statuses[0].restart_count == 0
