"""``kodev up`` on the real node: why a rollout is stuck, as the kubelet, the scheduler and
the Deployment controller report it, and port forwarding through the API server.

Every reason here is produced by the real system (a process that exits, a registry the
node cannot reach, a nodeSelector no node has, a readiness probe that never passes), and
each is recovered by a save or an edit, as a developer would.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.apply.test_apply_kube import eventually
from tests.fixtures.up import NAMES, crashing_gamma_main, edit, gamma_main

pytestmark = pytest.mark.kube


def _failed(up: Any, workload: str, reason: str, since: int) -> dict[str, Any]:
    return up.wait_for(lambda e: e["event"] == "failed" and e["workload"] == workload
                       and reason in e["reason"], since, timeout=120)


def test_stuck_rollouts_report_the_real_reason_and_recover(
        up_module: Path, start_up: Any, kube_env: Any) -> None:
    """Fault: under kodev up, new code that exits at start, a sidecar from a registry the node
    cannot reach, and a nodeSelector no node has. User sees: failed rows with the kubelet's
    and scheduler's own reasons (CrashLoopBackOff, ImagePull, Unschedulable) and the Pod's
    name; the loop keeps running, and the fixes roll every workload out."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()

    # gamma's new code exits at start; beta gains a sidecar from a registry the node cannot
    # reach; alpha asks for a node that does not exist.
    (up_module / "cmd/gamma/main.go").write_text(crashing_gamma_main())
    edit(up_module / "config/beta.yaml", "      containers:\n",
         "      containers:\n      - name: sidecar\n        image: 127.0.0.1:9/nowhere:1\n")
    edit(up_module / "config/alpha.yaml", "      containers:\n",
         "      nodeSelector: {disktype: none}\n      containers:\n")
    crash = _failed(up, "deployment/gamma", "CrashLoopBackOff", since)
    pull = _failed(up, "deployment/beta", "ImagePull", since)
    unschedulable = _failed(up, "deployment/alpha", "Unschedulable", since)
    assert "back-off" in crash["reason"] and "gamma-" in crash["reason"]
    assert "127.0.0.1:9/nowhere:1" in pull["reason"]
    assert "didn't match Pod's node affinity/selector" in unschedulable["reason"]
    assert up.process.poll() is None

    # The fixes: a save, and two edits of the manifests.
    since = up.mark()
    (up_module / "cmd/gamma/main.go").write_text(gamma_main("gamma fixed"))
    edit(up_module / "config/beta.yaml",
         "      - name: sidecar\n        image: 127.0.0.1:9/nowhere:1\n", "")
    edit(up_module / "config/alpha.yaml", "      nodeSelector: {disktype: none}\n", "")
    up.wait_ready(set(NAMES), since)


def test_a_readiness_probe_that_never_passes_hits_the_progress_deadline(
        up_module: Path, start_up: Any, kube_env: Any) -> None:
    """Fault: a readiness probe that never passes, with a 4 s progress deadline. User sees:
    ProgressDeadlineExceeded with the Deployment's own message; the fixing edit rolls it
    out."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    edit(up_module / "config/gamma.yaml", "  replicas: 1\n",
         "  replicas: 1\n  progressDeadlineSeconds: 4\n")
    edit(up_module / "config/gamma.yaml", "        ports:\n",
         "        readinessProbe:\n          httpGet: {path: /, port: 8081}\n"
         "          periodSeconds: 1\n        ports:\n")
    stuck = _failed(up, "deployment/gamma", "ProgressDeadlineExceeded", since)
    assert "has timed out progressing" in stuck["reason"]

    since = up.mark()
    edit(up_module / "config/gamma.yaml", "port: 8081}", "port: 8080}")
    up.wait_ready({"gamma"}, since)


def _get(url: str, timeout: float = 15.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode().strip())


def _listening(url: str) -> str:
    """The answer once the program in the Pod listens: a Pod without a readiness probe is
    Ready as soon as its container starts, a moment before its program binds the port, and
    a connection forwarded in that moment is closed (as kubectl port-forward's is)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return _get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_port_forward_follows_the_rollout(up_module: Path, start_up: Any,
                                          kube_env: Any) -> None:
    up = start_up(up_module, kube_env.registry, extra=("--port-forward",))
    up.wait_for(lambda e: e["event"] == "watching")
    forwards = {e["workload"]: e for e in
                (up.wait_for(lambda e, n=n: e["event"] == "forward"
                             and e["workload"] == f"deployment/{n}") for n in NAMES)}
    ports = {f["local_port"] for f in forwards.values()}
    assert len(ports) == 3 and min(ports) >= 8080  # 8080 if free, else the next free one
    assert all(f["port"] == 8080 and f["url"] == f"http://127.0.0.1:{f['local_port']}"
               for f in forwards.values())
    gamma = forwards["deployment/gamma"]["url"]
    up.wait_ready(set(NAMES), 0)
    assert _listening(gamma) == "gamma"
    assert _listening(forwards["deployment/alpha"]["url"]) == "hello alpha"

    # While the new Pod rolls out, keep asking: every answer is the old or the new code,
    # none hangs, and once the rollout is done the new code answers.
    answers: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                answers.append(_get(gamma, timeout=20))
            except OSError as exc:  # a connection cut as the old Pod goes: never a hang
                answers.append(f"error: {exc}")
            time.sleep(0.05)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma v2"')
    up.wait_ready({"gamma"}, since)
    eventually("the new answer through the forward", lambda: _listening(gamma) == "gamma v2")
    stop.set()
    asker.join(timeout=30)
    assert not asker.is_alive()
    assert set(answers) - {"gamma", "gamma v2"} <= {a for a in answers if a.startswith("error")}
    assert "gamma" in answers
