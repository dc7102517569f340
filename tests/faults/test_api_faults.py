"""A Kubernetes API server that never answers, and one that says no (issue 13, item 10).

* **Silence.** A proxy that accepts connections and never answers
  (tests/support/stall.py) sits in front of the real API server; ``kodev apply``,
  ``kodev logs`` and the rollout's image swap must fail with a timeout error instead of
  waiting forever. A slow admission webhook (the real API server calling a listener that
  accepts and never answers) holds the ``PATCH`` of ``kodev apply`` itself. The tests set
  ``KODEV_REQUEST_TIMEOUT`` (seconds) short so that nothing waits minutes.
* **Refusal.** A watch that the real API server answers with 403 (RBAC allows ``list``
  but not ``watch``) or 401 (the ServiceAccount behind the token was deleted, and the
  connections cut so that kodev has to ask again) ends ``kodev logs`` with one error
  line and exit 5, where it used to reconnect forever.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.apply.test_apply_kube import core, exists
from tests.fixtures.kodev import Kodev
from tests.fixtures.kube import KubeEnv
from tests.logs.test_logs_kube import LogsProcess, kodev_env
from tests.support.proxy import proxied_api_server
from tests.support.stall import stalling_api_server

pytestmark = pytest.mark.kube

TIMEOUT_S = 2  # KODEV_REQUEST_TIMEOUT in these tests
HANG_S = 90.0  # a command still running after this has hung: the test fails
EXIT_S = 60.0  # kodev logs must end within this after its watch is refused
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n"


def kodev_cmd(kodev: Kodev, *args: str, kubeconfig: Path) -> tuple[subprocess.CompletedProcess[str],
                                                                    float]:
    env = {**kodev.env, "KUBECONFIG": str(kubeconfig), "KODEV_REQUEST_TIMEOUT": str(TIMEOUT_S)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kodev", *args], cwd=kodev.workdir, env=env,
                          capture_output=True, text=True, timeout=HANG_S)
    return proc, time.monotonic() - started


def one_error(stderr: str) -> str:
    """The single ``kodev: error:`` line (notices may come before it), no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("kodev: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def assert_timed_out(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 5, proc.stderr
    line = one_error(proc.stderr)
    assert f"{what}: the Kubernetes API at https://127.0.0.1:" in line, line
    assert f"did not answer within {TIMEOUT_S}s" in line, line
    assert "KODEV_REQUEST_TIMEOUT sets the limit" in line, line


# --------------------------------------------------------------------------- silence


def test_apply_and_logs_time_out_on_a_silent_api_server(kodev: Kodev, kube_env: KubeEnv,
                                                        kube_namespace: str,
                                                        tmp_path: Path) -> None:
    """Fault: the API server accepts connections and never answers (a stalling proxy in
    front of the real one) under `kodev apply` and `kodev logs`.
    User sees: after KODEV_REQUEST_TIMEOUT seconds (default 70; 2 here), one line "cannot
    ...: the Kubernetes API at ... did not answer within 2s" and exit 5; nothing hangs."""
    kubeconfig = tmp_path / "stalled"
    proxy = stalling_api_server(kube_env, kubeconfig, stalled=True)
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(CONFIG_MAP)
    try:
        proc, _ = kodev_cmd(kodev, "apply", "-f", str(manifest), "-n", kube_namespace,
                            kubeconfig=kubeconfig)
        assert_timed_out(proc, "cannot discover the API")
        assert proc.stdout == ""
        proc, _ = kodev_cmd(kodev, "logs", "-n", kube_namespace, kubeconfig=kubeconfig)
        assert_timed_out(proc, f"cannot get namespace {kube_namespace}")
        assert proxy.stalled_hits >= 2  # both really were stuck on the silent server
    finally:
        proxy.close()


def test_rollout_image_swap_times_out_on_a_silent_api_server(kube_env: KubeEnv,
                                                             kube_namespace: str,
                                                             tmp_path: Path) -> None:
    """Fault: the API server stops answering (connections accepted, nothing sent back)
    when `kodev up` patches a new image into a workload.
    User sees: the patch fails after KODEV_REQUEST_TIMEOUT seconds with "did not answer
    within ..." (exit 5 as a command), instead of a dev loop stuck forever."""
    from kodev.errors import KubeError
    from kodev.kube.client import KubeOptions, connect
    from kodev.kube.rollout import ContainerSlot, WorkloadRef, swap_images

    kubeconfig = tmp_path / "stalled"
    proxy = stalling_api_server(kube_env, kubeconfig, stalled=True)
    cluster = connect(KubeOptions(kubeconfig=str(kubeconfig)),
                      {"KODEV_REQUEST_TIMEOUT": str(TIMEOUT_S)})
    workload = WorkloadRef("Deployment", kube_namespace, "web")
    try:
        with pytest.raises(KubeError) as info:
            swap_images(cluster, workload, {ContainerSlot(workload, "web"): "example/web:v2"})
        assert info.value.exit_code == 5
        assert f"did not answer within {TIMEOUT_S}s" in info.value.message
        assert proxy.stalled_hits >= 1
    finally:
        cluster.close()
        proxy.close()


@contextlib.contextmanager
def silent_listener_in_cluster_network(kube_env: KubeEnv) -> Iterator[int]:
    """A TCP listener that accepts and never answers, inside the test environment's
    network namespace (where the API server runs): its port."""
    script = ("import socket, sys\n"
              "server = socket.create_server(('127.0.0.1', 0))\n"
              "print(server.getsockname()[1], flush=True)\n"
              "held = []\n"
              "while True:\n"
              "    held.append(server.accept()[0])\n")
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{kube_env.netns}", "--",
                             sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def test_apply_times_out_when_an_admission_webhook_never_answers(kodev: Kodev,
                                                                 kube_env: KubeEnv,
                                                                 kube_api: Any,
                                                                 kube_namespace: str,
                                                                 tmp_path: Path) -> None:
    """Fault: the real API server holds `kodev apply`'s PATCH: a validating admission
    webhook for the namespace points at a listener that accepts and never answers.
    User sees: the apply request fails after KODEV_REQUEST_TIMEOUT seconds: "cannot apply
    configmaps first in namespace ...: ... did not answer within 2s", exit 5, nothing
    applied (before, kodev waited for whatever the API server decided)."""
    from kubernetes import client

    admission: Any = client.AdmissionregistrationV1Api(kube_api)
    name = f"kodev-test-silent-{secrets.token_hex(3)}"
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(CONFIG_MAP)
    with silent_listener_in_cluster_network(kube_env) as port:
        admission.create_validating_webhook_configuration({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "silent.kodev.test", "admissionReviewVersions": ["v1"],
                "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 30,
                "clientConfig": {"url": f"https://127.0.0.1:{port}/validate"},
                "namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": kube_namespace}},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}],
            }]})
        try:
            proc, _ = kodev_cmd(kodev, "apply", "-f", str(manifest), "-n", kube_namespace,
                                kubeconfig=kube_env.kubeconfig)
        finally:
            admission.delete_validating_webhook_configuration(name)
    assert_timed_out(proc, f"cannot apply configmaps first in namespace {kube_namespace}")
    assert not exists(kube_api, core(kube_api).read_namespaced_config_map, "first",
                      kube_namespace)


# --------------------------------------------------------------------------- refusal


def service_account_kubeconfig(kube_env: KubeEnv, kube_api: Any, namespace: str,
                               name: str, verbs: list[str], path: Path,
                               server: str | None = None) -> str:
    """A ServiceAccount whose Role allows ``verbs`` on Pods and workloads in
    ``namespace``, and a kubeconfig at ``path`` that uses its token; returns the token."""
    from kubernetes import client

    rbac: Any = client.RbacAuthorizationV1Api(kube_api)
    core(kube_api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": verbs},
                  {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets",
                                                        "daemonsets"], "verbs": verbs}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    token = str(core(kube_api).create_namespaced_service_account_token(
        name, namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token)
    config = yaml.safe_load(kube_env.kubeconfig.read_text())
    config["users"] = [{"name": name, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = name
    if server is not None:
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return token


def token_status(kube_env: KubeEnv, namespace: str, token: str) -> int:
    """The HTTP status the real API server gives a request with ``token``."""
    context = ssl.create_default_context(cafile=str(kube_env.state_dir / "pki" / "ca.crt"))
    request = urllib.request.Request(f"{kube_env.apiserver}/api/v1/namespaces/{namespace}/pods",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_for_exit(logs: LogsProcess) -> int:
    try:
        return logs.proc.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"kodev logs still running {EXIT_S}s after its watch was "
                             f"refused (a reconnect loop?); stderr={logs.stderr[-5:]}") from None


def test_a_forbidden_watch_is_an_error_not_a_reconnect_loop(kube_env: KubeEnv, kube_api: Any,
                                                            kube_namespace: str,
                                                            tmp_path: Path) -> None:
    """Fault: RBAC lets kodev's user list Pods and workloads but not watch them (the real
    API server answers the watch with 403).
    User sees: `kodev logs` stops at once with one line "forbidden: cannot watch ... in
    namespace ...: <the API's reason> (the user of context ... needs RBAC permission)"
    and exit 5, instead of reconnecting forever."""
    ns = kube_namespace
    kubeconfig = tmp_path / "list-only"
    service_account_kubeconfig(kube_env, kube_api, ns, "list-only", ["get", "list"],
                               kubeconfig)
    logs = LogsProcess(["-n", ns], kodev_env(kubeconfig), tmp_path)
    try:
        assert wait_for_exit(logs) == 5
        time.sleep(0.1)  # let the readers drain
        line = one_error("\n".join(logs.stderr))
        assert line.startswith("kodev: error: forbidden: cannot watch "), line
        assert f"in namespace {ns}: " in line and "cannot watch resource" in line, line
        assert "needs RBAC permission" in line, line
    finally:
        logs.kill()


def test_a_watch_with_a_revoked_token_is_an_error_not_a_reconnect_loop(
        kube_env: KubeEnv, kube_api: Any, kube_namespace: str, tmp_path: Path) -> None:
    """Fault: while `kodev logs` follows, the ServiceAccount behind its token is deleted
    (the real API server now answers 401) and every API connection is cut, so kodev
    must ask again.
    User sees: one line "unauthorized: cannot ...: the API at ... rejected the credentials
    of context ... (renew them ...)" and exit 5, instead of reconnecting forever."""
    ns = kube_namespace
    kubeconfig = tmp_path / "revoked"
    proxy = proxied_api_server(kube_env, tmp_path / "unused")
    token = service_account_kubeconfig(kube_env, kube_api, ns, "revoked",
                                       ["get", "list", "watch"], kubeconfig,
                                       server=f"https://127.0.0.1:{proxy.port}")
    logs = LogsProcess(["-n", ns], kodev_env(kubeconfig), tmp_path)
    try:
        logs.wait_for_notice("waiting")  # listed: following with the token
        core(kube_api).delete_namespaced_service_account("revoked", ns)
        deadline = time.monotonic() + EXIT_S
        while token_status(kube_env, ns, token) != 401:
            assert time.monotonic() < deadline, "the deleted account's token still works"
            time.sleep(0.2)
        proxy.cut()
        proxy.restore()
        assert wait_for_exit(logs) == 5
        time.sleep(0.1)  # let the readers drain
        line = one_error("\n".join(logs.stderr))
        assert line.startswith("kodev: error: unauthorized: cannot "), line
        assert "rejected the credentials of context" in line and "renew them" in line, line
        assert token not in "\n".join(logs.stderr)
    finally:
        logs.kill()
        proxy.close()

