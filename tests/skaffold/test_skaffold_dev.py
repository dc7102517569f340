"""``skaffold dev`` (the real Skaffold CLI) with kodev as its custom builder, on the real
node of the test environment: the app comes up, a save to one binary's own package
rebuilds and redeploys that binary alone, the new code answers through Skaffold's own
port-forward, and Ctrl-C cleans up."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.up import NAMES, gamma_main, import_path, pods_of, write_module
from tests.skaffold.conftest import (
    SkaffoldProcess,
    kodev_calls,
    kodev_skaffold_init,
    skaffold_env,
    skaffold_flags,
)

pytestmark = [pytest.mark.kube, pytest.mark.registry, pytest.mark.slow]

# Generous: three go builds, pushes and rollouts on a shared, loaded 2-core machine.
FIRST_DEPLOY_TIMEOUT = 900.0
REDEPLOY_TIMEOUT = 600.0
WATCHING = r"Watching for changes\.\.\."


def port_forward_pattern(app: str) -> str:
    """Skaffold's line for a Pod port it forwards (``--port-forward=pods``)."""
    return (rf"Port forwarding pod/({app}-[a-z0-9-]+) in namespace \S+, remote port 8080 "
            r"-> (?:http://)?(?:127\.0\.0\.1|localhost):(\d+)")


def answer_through_forward(dev: SkaffoldProcess, app: str, expected: str,
                           timeout: float) -> str:
    """Poll the latest local port Skaffold announced for ``app`` until the Pod behind it
    answers ``expected`` (an old Pod may answer, or the forward move, meanwhile)."""
    deadline = time.monotonic() + timeout
    last = "nothing yet"
    while True:
        forwards = dev.matches(port_forward_pattern(app))
        if forwards:
            port = forwards[-1].group(2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    last = resp.read().decode().strip()
            except (urllib.error.URLError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if last == expected:
                return port
        if time.monotonic() > deadline:
            raise AssertionError(f"{app} did not answer {expected!r} through Skaffold's "
                                 f"port-forward (last: {last}):\n{dev.output()}")
        time.sleep(0.5)


def deployments(kube_api: Any, namespace: str) -> dict[str, tuple[str, int]]:
    """Each Deployment's image and generation."""
    from kubernetes import client

    items = client.AppsV1Api(kube_api).list_namespaced_deployment(namespace).items
    return {d.metadata.name: (d.spec.template.spec.containers[0].image, d.metadata.generation)
            for d in items}


def built_artifacts(calls: list[str]) -> list[str]:
    """The import paths of the ``kodev skaffold build`` calls among ``calls``."""
    return sorted(c.split()[2] for c in calls if c.startswith("skaffold build "))


def test_skaffold_dev_rebuilds_and_redeploys_only_the_edited_binary(
    start_skaffold: Callable[..., SkaffoldProcess], kube_env: Any, kube_api: Any,
    kube_namespace: str, tmp_path: Path,
) -> None:
    module = write_module(tmp_path / "uptest")  # alpha and beta share a package; gamma not
    calls = tmp_path / "kodev-calls.log"
    env = skaffold_env(tmp_path, kubeconfig=kube_env.kubeconfig, calls=calls)
    kodev_skaffold_init(module, env)

    dev = start_skaffold(
        ["dev", f"--default-repo={kube_env.registry}", f"--namespace={kube_namespace}",
         "--port-forward=pods", *skaffold_flags(tmp_path)], module, env)

    # The app comes up: all three built by kodev, deployed, Running on the node.
    dev.wait_for(WATCHING, timeout=FIRST_DEPLOY_TIMEOUT)
    assert built_artifacts(kodev_calls(calls)) == sorted(import_path(n) for n in NAMES)
    for name in NAMES:
        assert len(pods_of(kube_api, kube_namespace, name, ready=True)) == 1, name
        answer_through_forward(dev, name, name if name == "gamma" else f"hello {name}",
                               timeout=120)
    before = deployments(kube_api, kube_namespace)
    untouched_pods = {n: pods_of(kube_api, kube_namespace, n) for n in ("alpha", "beta")}

    # A save to gamma's own package.
    mark, calls_mark = dev.mark(), len(kodev_calls(calls))
    (module / "cmd" / "gamma" / "main.go").write_text(gamma_main("gamma v2"))
    dev.wait_for(r"Building \[", since=mark, timeout=REDEPLOY_TIMEOUT)
    dev.wait_for(WATCHING, since=mark, timeout=REDEPLOY_TIMEOUT)
    answer_through_forward(dev, "gamma", "gamma v2", timeout=REDEPLOY_TIMEOUT)

    # Only gamma was rebuilt (kodev's calls and Skaffold's own output agree) and redeployed.
    since = kodev_calls(calls, calls_mark)
    assert built_artifacts(since) == [import_path("gamma")], since
    assert f"skaffold deps {import_path('gamma')}" in since
    building = [m.group(1) for m in dev.matches(r"Building \[(\S+)\]", since=mark)]
    assert building == [f"ko://{import_path('gamma')}"], dev.output(mark)
    after = deployments(kube_api, kube_namespace)
    assert after["gamma"][0] != before["gamma"][0]
    assert {n: after[n] for n in ("alpha", "beta")} == {n: before[n] for n in ("alpha", "beta")}
    assert {n: pods_of(kube_api, kube_namespace, n) for n in ("alpha", "beta")} == untouched_pods

    # Ctrl-C: Skaffold stops its port-forwards, deletes what it deployed and exits 0.
    port = dev.matches(port_forward_pattern("gamma"))[-1].group(2)
    mark = dev.mark()
    code = dev.interrupt()
    assert code == 0, dev.output(mark)
    dev_output = dev.output(mark)
    assert "Cleaning up..." in dev_output, dev_output
    assert "panic:" not in dev.output() and "goroutine " not in dev.output()
    assert deployments(kube_api, kube_namespace) == {}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
