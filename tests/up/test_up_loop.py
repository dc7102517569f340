"""``kodev up`` against the real test environment (API server, a real node) and a real
registry.

Each test runs ``kodev up --json`` as a subprocess on a module with three images: alpha
and beta share ``internal/shared``, gamma shares nothing. Each binary prints its greeting
and answers it over HTTP. Edits are real file writes seen through inotify; results are
checked in the API server, the registry, and in what the running containers answer.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.apply.test_apply_kube import eventually
from tests.fixtures.kodev import tool
from tests.fixtures.up import (
    NAMES,
    answers,
    deployment_images,
    edit,
    gamma_main,
    import_path,
    pods_of,
    shared_main,
    up_env,
)
from tests.support.proxy import proxied_api_server

pytestmark = pytest.mark.kube
TESTENV = Path(__file__).resolve().parents[1] / "testenv"


def _digest_in_registry(reference: str) -> str:
    repository = reference.split("@", 1)[0]
    out = subprocess.run([tool("crane"), "digest", f"{repository}:latest"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_changes_rebuild_and_roll_exactly_the_affected_images(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    before = deployment_images(kube_api, kube_namespace)
    assert all("@sha256:" in before[n] for n in NAMES), before
    for name in NAMES:
        assert answers(kube_env, kube_api, kube_namespace, name) == {
            "gamma" if name == "gamma" else f"hello {name}"}

    # A change to the shared package: alpha and beta, not gamma.
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hi "')
    up.wait_ready({"alpha", "beta"}, since)
    # The running containers serve the edited code.
    assert answers(kube_env, kube_api, kube_namespace, "alpha") == {"hi alpha"}
    assert answers(kube_env, kube_api, kube_namespace, "beta") == {"hi beta"}
    assert answers(kube_env, kube_api, kube_namespace, "gamma") == {"gamma"}
    builds = up.of_kind("build", since)
    assert [sorted(b["images"]) for b in builds] == [[import_path("alpha"), import_path("beta")]]
    after = deployment_images(kube_api, kube_namespace)
    assert after["gamma"] == before["gamma"]
    for name in ("alpha", "beta"):
        assert after[name] != before[name]
        assert after[name].split("@")[1] == _digest_in_registry(after[name])
    assert not [e for e in up.of_kind("patched", since) if "gamma" in e["workload"]]

    # A change to one main package: only that one.
    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma v2"')
    up.wait_ready({"gamma"}, since)
    assert [b["images"] for b in up.of_kind("build", since)] == [[import_path("gamma")]]
    latest = deployment_images(kube_api, kube_namespace)
    assert latest["gamma"] != after["gamma"]
    assert answers(kube_env, kube_api, kube_namespace, "gamma") == {"gamma v2"}
    assert (latest["alpha"], latest["beta"]) == (after["alpha"], after["beta"])

    # A comment-only change (same lines): the binary is byte-identical; nothing rolls.
    since = up.mark()
    edit(up_module / "internal/shared/shared.go", "is what alpha and beta print",
         "is what both print")
    unchanged = [up.wait_for(lambda e, n=n: e["event"] == "unchanged"
                             and e.get("importpath") == import_path(n), since)
                 for n in ("alpha", "beta")]
    assert all("byte-identical" in e["message"] for e in unchanged)
    assert not up.of_kind("patched", since) and not up.of_kind("pushed", since)
    assert deployment_images(kube_api, kube_namespace) == latest
    assert answers(kube_env, kube_api, kube_namespace, "alpha") == {"hi alpha"}

    # Files no binary depends on: a README, a _test.go file.
    since = up.mark()
    (up_module / "README.md").write_text("still not a dependency\n")
    edit(up_module / "cmd/gamma/main_test.go", "package main", "package main // edited")
    up.wait_for(lambda e: e["event"] == "ignored", since)
    time.sleep(1.0)
    assert not up.of_kind("build", since)


def test_new_import_refreshes_the_graph(up_module: Path, start_up: Any, kube_env: Any,
                                        kube_api: Any, kube_namespace: str) -> None:
    """gamma starts importing the shared package: after that, a shared change rolls it."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    (up_module / "cmd/gamma/main.go").write_text(shared_main("gamma"))
    up.wait_ready({"gamma"}, since)
    assert up.of_kind("graph", since), "an import change must re-read the package graph"
    since = up.mark()
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hey "')
    up.wait_ready({"alpha", "beta", "gamma"}, since)
    assert sorted(up.of_kind("build", since)[0]["images"]) == [import_path(n) for n in NAMES]
    assert answers(kube_env, kube_api, kube_namespace, "gamma") == {"hey gamma"}


def test_compile_error_is_reported_and_a_fix_recovers(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """Fault: a save that does not compile while kodev up runs. User sees: a compile-error
    event with the compiler's file:line; the last good image stays deployed and the loop
    keeps watching; the fixing save rolls out."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    before = deployment_images(kube_api, kube_namespace)
    edit(up_module / "cmd/gamma/main.go", "fmt.Println(name)", "fmt.Println(undefinedName)")
    error = up.wait_for(lambda e: e["event"] == "compile-error", since)
    assert "main.go:12" in error["output"] and "undefinedName" in error["output"]
    assert deployment_images(kube_api, kube_namespace) == before  # last good image stays
    assert up.process.poll() is None
    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", "fmt.Println(undefinedName)",
         'fmt.Println(name, "fixed")')
    up.wait_ready({"gamma"}, since)
    assert deployment_images(kube_api, kube_namespace)["gamma"] != before["gamma"]


def test_a_burst_of_saves_gives_at_most_two_builds_and_the_last_save_runs(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    main = up_module / "cmd/gamma/main.go"
    for number in range(20):
        main.write_text(gamma_main(f"gamma {number}"))
        time.sleep(0.01)
    # What runs in the end is the content of the LAST save, whatever the batching.
    eventually("gamma to answer the last save",
               lambda: answers(kube_env, kube_api, kube_namespace, "gamma") == {"gamma 19"})
    builds = up.of_kind("build", since)
    assert 1 <= len(builds) <= 2, up.dump(since)


def _gamma_change_survives(up: Any, kube_api: Any, namespace: str, *, break_: Any,
                           repair: Any, rollout: bool = True
                           ) -> tuple[dict[str, str], dict[str, str]]:
    """Break something, save a change to gamma: a retry is reported and the last good
    images stay; repair it: gamma is patched (and, with ``rollout``, rolls out).
    Returns the images before and after."""
    since = up.started(rollout=rollout)
    before = deployment_images(kube_api, namespace)
    break_()
    edit(up.workdir / "cmd/gamma/main.go", '"gamma"', '"gamma during the outage"')
    retry = up.wait_for(lambda e: e["event"] == "retry", since)
    assert import_path("gamma") in retry["images"]
    assert deployment_images(kube_api, namespace) == before
    repair()
    if rollout:
        up.wait_ready({"gamma"}, since)
    else:
        up.wait_for(lambda e: e["event"] == "patched" and e["workload"] == "deployment/gamma",
                    since)
    after = deployment_images(kube_api, namespace)
    assert after["gamma"] != before["gamma"]
    return before, after


def test_registry_restart_mid_loop_is_survived(
        up_module: Path, start_up: Any, registry_factory: Any, kube_api: Any,
        kube_namespace: str) -> None:
    """Fault: the registry kodev up pushes to is stopped while a change is saved, then started
    again. User sees: retry events while it is down, then the push and the patch land. This
    registry is a separate one on the machine's 127.0.0.1, which the node (in its own
    network namespace) cannot pull from: so this test follows the push and the patch, not
    the rollout."""
    registry = registry_factory.create("up-restart")
    up = start_up(up_module, registry.host)
    _, after = _gamma_change_survives(up, kube_api, kube_namespace, break_=registry.stop,
                                      repair=registry.start, rollout=False)
    assert after["gamma"].split("@")[1] == _digest_in_registry(after["gamma"])


def test_api_server_outage_mid_loop_is_survived(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any, tmp_path: Path) -> None:
    """Fault: every connection to the API server dies and new ones are refused for a while
    (what a restart looks like) while a change is saved. User sees: retry events; the patch
    lands once the server is back, and only the changed workload rolls."""
    kubeconfig = tmp_path / "kubeconfig-proxied"
    proxy = proxied_api_server(kube_env, kubeconfig)
    try:
        up = start_up(up_module, kube_env.registry, kubeconfig=kubeconfig)
        before, after = _gamma_change_survives(up, kube_api, kube_namespace,
                                               break_=proxy.cut, repair=proxy.restore)
        assert (after["alpha"], after["beta"]) == (before["alpha"], before["beta"])
    finally:
        proxy.close()


def test_logs_are_interleaved_with_events_across_a_rollout(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    up = start_up(up_module, kube_env.registry, extra=("--logs=true",))
    since = up.started()
    (old_pod,) = pods_of(kube_api, kube_namespace, "gamma")
    # The line gamma's real process printed when it started.
    line = up.wait_for(lambda e: e["event"] == "log" and e.get("pod") == old_pod, 0)
    assert line["message"] == f"{old_pod}/gamma gamma" and line["container"] == "gamma"

    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma two"')
    up.wait_ready({"gamma"}, since)
    (new_pod,) = pods_of(kube_api, kube_namespace, "gamma") - {old_pod}
    line = up.wait_for(lambda e: e["event"] == "log" and e.get("line") == "gamma two", since)
    assert line["pod"] == new_pod


def test_deleted_deployment_is_applied_again(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """Fault: a Deployment kodev up deployed is deleted by hand. User sees: a deleted event,
    then the Deployment is created again with the same image and becomes ready."""
    from kubernetes import client

    up = start_up(up_module, kube_env.registry)
    since = up.started()
    image = deployment_images(kube_api, kube_namespace)["beta"]
    client.AppsV1Api(kube_api).delete_namespaced_deployment("beta", kube_namespace)
    up.wait_for(lambda e: e["event"] == "deleted" and "beta" in e.get("workload", ""), since)
    up.wait_for(lambda e: e["event"] == "applied" and e.get("name") == "beta"
                and e.get("action") == "created", since)
    up.wait_ready({"beta"}, since)
    assert deployment_images(kube_api, kube_namespace)["beta"] == image


def test_yaml_change_reapplies_only_that_file(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    from kubernetes import client

    up = start_up(up_module, kube_env.registry)
    since = up.started()
    edit(up_module / "config/beta.yaml", "replicas: 1", "replicas: 2")
    up.wait_for(lambda e: e["event"] == "applied" and e.get("name") == "beta", since)
    applied = {e["name"] for e in up.of_kind("applied", since)}
    assert applied == {"beta"}
    assert not up.of_kind("build", since)
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment("beta", kube_namespace)
    assert deployment.spec.replicas == 2
    assert "@sha256:" in deployment.spec.template.spec.containers[0].image


def test_cleanup_deletes_what_up_applied(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    up = start_up(up_module, kube_env.registry, extra=("--cleanup",))
    up.started()
    assert up.stop() == 0
    assert deployment_images(kube_api, kube_namespace) == {}


def test_local_registry_and_platforms_come_from_the_cluster(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """No KO_DOCKER_REPO: the KEP-1755 ConfigMap's host; no --platform: the nodes'."""
    up = start_up(up_module, None)
    up.started()
    cluster = up.of_kind("cluster")
    assert {"registry": kube_env.registry} == {k: v for e in cluster for k, v in e.items()
                                               if k == "registry"}
    assert [e["platforms"] for e in cluster if "platforms" in e] == [["linux/amd64"]]
    images = deployment_images(kube_api, kube_namespace)
    assert all(image.startswith(kube_env.registry + "/") for image in images.values())


def test_plain_lines_without_a_terminal(up_module: Path, kube_env: Any, kube_namespace: str,
                                        tmp_path: Path) -> None:
    env = up_env(kube_env, tmp_path / "kocache", kube_env.registry)
    process = subprocess.Popen(
        [sys.executable, "-m", "kodev", "up", "-f", "config", "-n", kube_namespace,
         "--logs=false"], cwd=up_module, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 90
        while sum("rollout complete" in line for line in lines) < 3:
            assert time.monotonic() < deadline, "\n".join(lines)
            lines.append(process.stdout.readline().rstrip("\n"))
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    lines += rest.splitlines()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "\033[" not in "".join(lines)
    ready = [line for line in lines if " ready " in line]
    assert len(ready) == 3 and all(re.match(r"\d\d:\d\d:\d\d ready +deployment/", line)
                                   for line in ready), lines
    assert any(line.split()[1] == "stopped" for line in lines[-3:]), lines


@pytest.mark.parametrize(("args", "expected"), [
    (("-f", "missing.yaml"), "missing.yaml"),
    (("-f", "README.md"), "README.md"),
    (("-f", "-"), "stdin"),
])
def test_bad_input_is_one_line(up_module: Path, kube_env: Any, kube_namespace: str,
                               tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    env = up_env(kube_env, tmp_path / "kocache", kube_env.registry)
    result = subprocess.run([sys.executable, "-m", "kodev", "up", *args, "-n", kube_namespace,
                             "--no-tui"], cwd=up_module, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("kodev:")]
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_tree_that_does_not_compile_yet_is_deployed_once_fixed(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """Fault: kodev up starts on a tree that does not compile. User sees: a compile-error event
    and a waiting event, nothing half-deployed; the fixing save deploys everything."""
    main = up_module / "cmd/beta/main.go"
    edit(main, 'shared.Greeting("beta")', "shared.Greeting(missing)")
    up = start_up(up_module, kube_env.registry)
    error = up.wait_for(lambda e: e["event"] == "compile-error")
    assert "missing" in error["output"]
    up.wait_for(lambda e: e["event"] == "waiting")
    assert deployment_images(kube_api, kube_namespace) == {}  # nothing half-deployed
    edit(main, "shared.Greeting(missing)", 'shared.Greeting("beta")')
    up.started()
    assert set(deployment_images(kube_api, kube_namespace)) == set(NAMES)


def test_configured_platforms_win_over_the_nodes(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """.ko.yaml's defaultPlatforms (here arm64 on an amd64 cluster) is what gets built."""
    (up_module / ".ko.yaml").write_text(
        "defaultBaseImage: kodev://minimal\ndefaultPlatforms: [linux/arm64]\n")
    up = start_up(up_module, kube_env.registry)
    up.started(rollout=False)  # an arm64 binary cannot run on this amd64 node
    assert not [e for e in up.of_kind("cluster") if "platforms" in e]
    image = deployment_images(kube_api, kube_namespace)["gamma"]
    config = subprocess.run([tool("crane"), "config", image], check=True,
                            capture_output=True, text=True).stdout
    assert json.loads(config)["architecture"] == "arm64"


def test_host_from_container_runtime_is_what_the_node_pulls(
        up_module: Path, start_up: Any, kube_api: Any, kube_namespace: str,
        kube_env: Any) -> None:
    """KEP-1755 with two hosts: kodev pushes to ``host`` (here another 127.0.0.1 port that
    leads to the same registry) and writes ``hostFromContainerRuntime`` into the workloads;
    the node could not pull from ``host`` (in its namespace nothing listens there)."""
    from kubernetes import client

    port = free_port()
    forward = subprocess.Popen(
        [sys.executable, str(TESTENV / "forward.py"), f"/run/netns/{kube_env.netns}",
         f"{port}:{kube_env.registry.rsplit(':', 1)[1]}"], stderr=subprocess.PIPE, text=True)
    core = client.CoreV1Api(kube_api)
    original = core.read_namespaced_config_map("local-registry-hosting", "kube-public").data
    hosting = (f'host: "127.0.0.1:{port}"\n'
               f'hostFromContainerRuntime: "{kube_env.registry}"\n')
    try:
        assert forward.stderr is not None and "forward:" in forward.stderr.readline()
        core.patch_namespaced_config_map("local-registry-hosting", "kube-public",
                                         {"data": {"localRegistryHosting.v1": hosting}})
        up = start_up(up_module, None)
        up.started()  # every image pulled and running
        assert {"registry": f"127.0.0.1:{port}"} in [
            {"registry": e["registry"]} for e in up.of_kind("cluster") if "registry" in e]
        images = deployment_images(kube_api, kube_namespace)
        assert all(image.startswith(kube_env.registry + "/") for image in images.values())
    finally:
        core.patch_namespaced_config_map("local-registry-hosting", "kube-public",
                                         {"data": original})
        forward.terminate()
        forward.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_kodata_edit_rolls_out(demo_module: Path, start_up: Any, kube_api: Any,
                                 kube_namespace: str, kube_env: Any) -> None:
    """kodata/ is read again on every build of a long-running kodev up (it was once read
    only on the first), and what the new Pod serves is the edited file."""
    up = start_up(demo_module, f"{kube_env.registry}/kodata")
    up.wait_for(lambda e: e["event"] == "watching")
    up.wait_ready({"web", "worker"}, 0)
    since = up.mark()
    (demo_module / "cmd/web/kodata/motd.txt").write_text("edited kodata\n")
    up.wait_ready({"web"}, since)
    assert not up.of_kind("unchanged", since)
    assert answers(kube_env, kube_api, kube_namespace, "web") == {
        "hello from web - edited kodata"}
