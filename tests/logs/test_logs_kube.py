"""``kodev logs`` against the real test cluster: every line is printed by a real process
in a container on the real node (the testenv's ``testapp``, told what to print over HTTP
through the API server), and reaches kodev through the kubelet.

Workloads are created through the API with the label ``kodev apply`` sets
(``app.kubernetes.io/managed-by=kodev``); that label is all ``kodev logs`` looks at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.apply.test_apply_kube import apps, core, eventually
from tests.fixtures.kodev import Kodev
from tests.fixtures.kube import KubeEnv
from tests.support.proxy import proxied_api_server

pytestmark = pytest.mark.kube

DEADLINE_S = 90.0
SINCE_GAP_S = 10
MANAGED = {"app.kubernetes.io/managed-by": "kodev"}


# --------------------------------------------------------------------------- cluster helpers


def deploy(kube_env: KubeEnv, kube_api: Any, ns: str, name: str,
           containers: tuple[str, ...] = ("app",), *, managed: bool = True,
           kind: str = "Deployment", args: tuple[str, ...] = ()) -> None:
    """A workload of testapp containers; the i-th container listens on 8080 + i."""
    template = {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 5,
                         "containers": [{"name": c, "image": kube_env.testapp, "args": list(args),
                                         "env": [{"name": "PORT", "value": str(8080 + i)}]}
                                        for i, c in enumerate(containers)]}}
    body = {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "labels": {"app": name, **(MANAGED if managed else {})}},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}}
    if kind == "Deployment":
        apps(kube_api).create_namespaced_deployment(ns, body)
    else:
        body["spec"] |= {"serviceName": name, "replicas": 1}
        apps(kube_api).create_namespaced_stateful_set(ns, body)


def ready_pods(kube_api: Any, ns: str, app: str) -> list[str]:
    pods = core(kube_api).list_namespaced_pod(ns, label_selector=f"app={app}").items
    return sorted(p.metadata.name for p in pods
                  if not p.metadata.deletion_timestamp and p.status.container_statuses
                  and all(c.ready for c in p.status.container_statuses))


def one_pod(kube_api: Any, ns: str, app: str, *, other_than: str = "") -> str:
    pods = eventually(f"a ready pod of {app}",
                      lambda: [p for p in ready_pods(kube_api, ns, app) if p != other_than])
    return str(pods[0])


def roll_out(kube_api: Any, ns: str, name: str) -> None:
    """Change the pod template (as kodev up does with a new digest): new ReplicaSet."""
    stamp = {"metadata": {"annotations": {"kodev.test/rollout": str(time.monotonic_ns())}}}
    apps(kube_api).patch_namespaced_deployment(name, ns, {"spec": {"template": stamp}})


def without_goodbye(lines: list[str]) -> list[str]:
    """The lines minus the one testapp prints on SIGTERM (a Pod replaced by a rollout
    says it, if its stream is still open)."""
    return [line for line in lines if line != "testapp: terminating"]


# --------------------------------------------------------------------------- running kodev


def kodev_env(kubeconfig: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KO_", "FORCE_COLOR"))}
    return env | {"KUBECONFIG": str(kubeconfig), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}


class LogsProcess:
    """``kodev logs`` running in the background; its output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kodev", "logs", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=cwd)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_until(self, what: str, check: Callable[[], bool],
                   timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not check()):
                    raise AssertionError(f"timed out waiting for {what}; stdout={self.stdout} "
                                         f"stderr={self.stderr}")
                self._changed.wait(min(left, 0.5))

    def wait_for_lines(self, *lines: str) -> None:
        self.wait_until(f"lines {lines}", lambda: all(line in self.stdout for line in lines))

    def wait_for_notice(self, text: str) -> None:
        self.wait_until(f"notice {text!r}", lambda: any(text in e for e in self.stderr))

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=30)
        time.sleep(0.1)  # let the readers drain
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def logs_run(kube_env: KubeEnv, tmp_path: Path) -> Iterator[Callable[..., LogsProcess]]:
    started: list[LogsProcess] = []

    def start(*args: str, kubeconfig: Path | None = None) -> LogsProcess:
        process = LogsProcess(list(args), kodev_env(kubeconfig or kube_env.kubeconfig),
                              tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def run_logs(kube_env: KubeEnv, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kodev", "logs", *args], capture_output=True,
                          text=True, env=kodev_env(kube_env.kubeconfig), cwd=tmp_path,
                          timeout=120)


def lines_of(stdout: list[str], prefix: str) -> list[str]:
    return [line.removeprefix(prefix) for line in stdout if line.startswith(prefix)]


# --------------------------------------------------------------------------- tests


def test_follows_workloads_across_a_rollout_and_new_workloads(
        kube_env: KubeEnv, kube_api: Any, kube_namespace: str,
        logs_run: Callable[..., LogsProcess]) -> None:
    ns = kube_namespace
    deploy(kube_env, kube_api, ns, "web", ("app", "sidecar"))
    deploy(kube_env, kube_api, ns, "other", managed=False)  # not kodev's: never shown
    web = one_pod(kube_api, ns, "web")
    other = one_pod(kube_api, ns, "other")
    kube_env.say(ns, web, "early 1", "early 2")
    kube_env.say(ns, other, "not kodev's")

    logs = logs_run("-n", ns)
    logs.wait_for_lines(f"{web}/app early 1", f"{web}/app early 2")
    kube_env.say(ns, web, *[f"app {i}" for i in range(20)])
    kube_env.say(ns, web, "side 1", stream="stderr", port=8081)
    logs.wait_for_lines(f"{web}/app app 19", f"{web}/sidecar side 1")

    roll_out(kube_api, ns, "web")
    rolled = one_pod(kube_api, ns, "web", other_than=web)
    kube_env.say(ns, rolled, "from the new pod")
    logs.wait_for_lines(f"{rolled}/app from the new pod")
    logs.wait_for_notice(f"- {web}/app")  # the old Pod's stream ended with the Pod

    deploy(kube_env, kube_api, ns, "later")  # applied after kodev logs started
    later = one_pod(kube_api, ns, "later")
    kube_env.say(ns, later, "later line")
    logs.wait_for_lines(f"{later}/app later line")

    assert logs.interrupt() == 130
    assert without_goodbye(lines_of(logs.stdout, f"{web}/app ")) == \
        ["early 1", "early 2", *[f"app {i}" for i in range(20)]]
    assert without_goodbye(lines_of(logs.stdout, f"{web}/sidecar ")) == ["side 1"]
    assert lines_of(logs.stdout, f"{rolled}/app ") == ["from the new pod"]
    assert not [line for line in logs.stdout if other in line]
    assert f"+ {rolled}/app" in logs.stderr
    assert logs.stderr[-1] == "kodev: interrupted"
    assert not any("Traceback" in line for line in logs.stderr)


def test_since_tail_container_json_and_timestamps(kube_env: KubeEnv, kube_api: Any,
                                                  kube_namespace: str, tmp_path: Path) -> None:
    ns = kube_namespace
    deploy(kube_env, kube_api, ns, "web", ("app", "sidecar"))
    web = one_pod(kube_api, ns, "web")
    said_old = datetime.now(UTC)
    kube_env.say(ns, web, "old 1", "old 2")
    kube_env.say(ns, web, "side 1", "side 2", port=8081)
    time.sleep(SINCE_GAP_S)  # the real clock separates old from new for --since
    kube_env.say(ns, web, "new 1", "new 2", "new 3")
    said_new = time.monotonic()

    def stdout(*args: str) -> list[str]:
        result = run_logs(kube_env, tmp_path, "-n", ns, "--no-follow", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    # --since first: a window that covers the new lines (said `elapsed` seconds ago, plus
    # half the gap for kodev's start-up on a loaded machine) and not the old ones.
    recent = f"{int(time.monotonic() - said_new) + SINCE_GAP_S // 2}s"
    assert lines_of(stdout("--since", recent), f"{web}/app ") == ["new 1", "new 2", "new 3"]
    everything = stdout()
    assert lines_of(everything, f"{web}/app ") == ["old 1", "old 2", "new 1", "new 2", "new 3"]
    assert lines_of(everything, f"{web}/sidecar ") == ["side 1", "side 2"]
    tailed = stdout("--tail", "2")
    assert lines_of(tailed, f"{web}/app ") == ["new 2", "new 3"]
    assert lines_of(tailed, f"{web}/sidecar ") == ["side 1", "side 2"]
    assert stdout("-c", "^app$", "--tail", "1") == [f"{web}/app new 3"]
    assert stdout("web", "-c", "side", "-o", "raw") == ["side 1", "side 2"]

    records = [json.loads(line) for line in stdout("deployment/web", "-c", "app", "-o", "json")]
    assert [r["message"] for r in records] == ["old 1", "old 2", "new 1", "new 2", "new 3"]
    assert {(r["namespace"], r["pod"], r["container"]) for r in records} == {(ns, web, "app")}
    stamp = datetime.fromisoformat(records[0]["timestamp"][:26] + "+00:00")
    assert abs(stamp - said_old) < timedelta(seconds=2)  # the kubelet's time of the line

    stamped = stdout("-t", "-c", "app", "--tail", "1")
    assert stamped == [f"{web}/app {records[-1]['timestamp']} new 3"]


def test_resumes_after_all_connections_are_cut(kube_env: KubeEnv, kube_api: Any,
                                               kube_namespace: str, tmp_path: Path,
                                               logs_run: Callable[..., LogsProcess]) -> None:
    """Fault: every API connection under a running kodev logs is cut mid-stream and new ones are
    refused for a while (an API server restart, through a proxy). User sees: the stream resumes;
    no line lost, none repeated, the Pod watch carries on."""
    ns = kube_namespace
    deploy(kube_env, kube_api, ns, "web")
    web = one_pod(kube_api, ns, "web")
    kubeconfig = tmp_path / "kubeconfig"
    proxy = proxied_api_server(kube_env, kubeconfig)
    try:
        logs = logs_run("-n", ns, kubeconfig=kubeconfig)
        before = [f"before {i}" for i in range(50)]
        kube_env.say(ns, web, *before)  # through the API server itself, not the proxy
        logs.wait_for_lines(f"{web}/app before 49")
        # Has shown nothing when the cut comes: --tail 0 must not be applied again.
        new_only = logs_run("-n", ns, "--tail", "0", kubeconfig=kubeconfig)
        new_only.wait_for_notice(f"+ {web}/app")

        proxy.cut()
        during = [f"during {i}" for i in range(50)]
        kube_env.say(ns, web, *during)
        refused_at = proxy.accepted
        time.sleep(1.0)  # outage: kodev retries against a refusing "server"
        proxy.restore()
        after = [f"after {i}" for i in range(50)]
        kube_env.say(ns, web, *after)
        logs.wait_for_lines(f"{web}/app after 49")
        new_only.wait_for_lines(f"{web}/app after 49")
        logs.wait_for_notice(f"~ {web}/app stream resumed")
        logs.wait_for_notice("~ reconnected to the API")
        assert proxy.accepted > refused_at

        roll_out(kube_api, ns, "web")  # the watch must have reconnected to see this
        rolled = one_pod(kube_api, ns, "web", other_than=web)
        kube_env.say(ns, rolled, "new pod")
        logs.wait_for_lines(f"{rolled}/app new pod")
        logs.wait_until("the old pod's stream to end",
                        lambda: f"- {web}/app" in logs.stderr)
        assert logs.interrupt() == 130
        assert without_goodbye(lines_of(logs.stdout, f"{web}/app ")) == \
            [*before, *during, *after]
        assert new_only.interrupt() == 130
        assert without_goodbye(lines_of(new_only.stdout, f"{web}/app ")) == [*during, *after]
    finally:
        proxy.close()


def test_restarted_container_is_followed(kube_env: KubeEnv, kube_api: Any,
                                         kube_namespace: str,
                                         logs_run: Callable[..., LogsProcess]) -> None:
    """Fault: the container exits non-zero and the kubelet restarts it. User sees: the old
    instance's last lines, then the new instance from its first line, each once."""
    ns = kube_namespace
    deploy(kube_env, kube_api, ns, "web", args=("--say", "started"))
    web = one_pod(kube_api, ns, "web")
    kube_env.say(ns, web, "first life 1")
    logs = logs_run("-n", ns)
    logs.wait_for_lines(f"{web}/app first life 1")

    kube_env.say(ns, web, "first life 2 (its last words)")
    assert kube_env.pod_get(ns, web, "/exit?code=3").strip() == "exiting 3"
    logs.wait_for_notice(f"~ {web}/app restarted (1)")
    pod = core(kube_api).read_namespaced_pod(web, ns)
    last = pod.status.container_statuses[0].last_state.terminated
    assert last.exit_code == 3  # the kubelet's record of the real exit
    eventually("the new instance to be ready", lambda: web in ready_pods(kube_api, ns, "web"))
    kube_env.say(ns, web, "second life 1")
    logs.wait_for_lines(f"{web}/app second life 1")
    assert logs.interrupt() == 130
    assert lines_of(logs.stdout, f"{web}/app ") == \
        ["started", "first life 1", "first life 2 (its last words)", "started", "second life 1"]


def test_statefulset_by_kind_and_name(kube_env: KubeEnv, kube_api: Any, kube_namespace: str,
                                      tmp_path: Path) -> None:
    ns = kube_namespace
    deploy(kube_env, kube_api, ns, "db", kind="StatefulSet", managed=False)
    deploy(kube_env, kube_api, ns, "web")
    eventually("db-0 ready", lambda: ready_pods(kube_api, ns, "db") == ["db-0"])
    web = one_pod(kube_api, ns, "web")
    kube_env.say(ns, "db-0", "db line")
    kube_env.say(ns, web, "web line")
    named = run_logs(kube_env, tmp_path, "-n", ns, "--no-follow", "sts/db")
    assert (named.returncode, named.stdout) == (0, "db-0/app db line\n"), named.stderr
    default = run_logs(kube_env, tmp_path, "-n", ns, "--no-follow")
    assert default.stdout == f"{web}/app web line\n"  # the StatefulSet is not kodev's


@pytest.mark.parametrize(("args", "code", "text"), [
    (["-n", "kodev-no-such-namespace"], 5, "namespace 'kodev-no-such-namespace' not found"),
    (["nosuch"], 5, "no workload 'nosuch' in namespace"),
    (["deployment/nosuch"], 5, "Deployment 'nosuch' not found in namespace"),
    (["service/web"], 2, "'service' in 'service/web' is not a workload kind"),
    (["-c", "("], 2, "-c '(' is not a valid regular expression"),
    (["-l", "a=b=c"], 2, "a=b=c"),
    (["-A", "-n", "x"], 2, "-A and -n exclude each other"),
])
def test_bad_input_is_one_line_and_an_exit_code(kube_env: KubeEnv, kube_namespace: str,
                                                tmp_path: Path, args: list[str], code: int,
                                                text: str) -> None:
    namespace = [] if "-n" in args or "-A" in args else ["-n", kube_namespace]
    result = run_logs(kube_env, tmp_path, *namespace, *args)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("kodev: error: ") and text in line, line


def test_default_selection_is_what_kodev_apply_deployed(
        kodev: Kodev, kube_env: KubeEnv, kube_api: Any, kube_namespace: str,
        logs_run: Callable[..., LogsProcess]) -> None:
    """End to end with the demo: `kodev apply`, then `kodev logs` with no names."""
    ns = kube_namespace
    kodev.env |= {"KUBECONFIG": str(kube_env.kubeconfig),
                  "KO_DOCKER_REPO": f"{kube_env.registry}/logs"}
    kodev.run("apply", "-f", "config", "-n", ns, "--sbom=none")
    web, worker = one_pod(kube_api, ns, "web"), one_pod(kube_api, ns, "worker")
    logs = logs_run("-n", ns)
    # What the demo's binaries print when they start, and the worker's first tick.
    logs.wait_for_lines(f"{web}/web hello from web", f"{worker}/worker hello from worker")
    logs.wait_for_lines(f"{worker}/worker hello from worker: tick 1")
    assert logs.interrupt() == 130
