"""``kodev run`` against the real test cluster: the program runs in a real container on
the real node, and what kodev prints and exits with is what that process printed and
exited with.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apply.test_apply_kube import eventually
from tests.fixtures.kodev import Kodev, one_main_module
from tests.fixtures.kube import KubeEnv

pytestmark = pytest.mark.kube

DEADLINE_S = 120.0

# A one-shot program: prints two lines, its arguments and $MODE, then exits with the
# status given as exit=N, or waits for a signal when given "wait".
JOB_MAIN = """package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	fmt.Println("first line")
	fmt.Println("second line")
	fmt.Println("args:", strings.Join(os.Args[1:], " "), "mode:", os.Getenv("MODE"))
	for _, arg := range os.Args[1:] {
		if arg == "wait" {
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM)
			<-sigs
		}
		if code, ok := strings.CutPrefix(arg, "exit="); ok {
			n, _ := strconv.Atoi(code)
			fmt.Fprintln(os.Stderr, "exiting with", n)
			os.Exit(n)
		}
	}
}
"""


@pytest.fixture
def job_module(tmp_path: Path) -> Path:
    return one_main_module(tmp_path / "jobmod", JOB_MAIN)


class Running:
    """A ``kodev run`` subprocess whose stdout is read line by line in a thread."""

    def __init__(self, kodev: Kodev, kube_env: KubeEnv, cwd: Path, *args: str) -> None:
        env = {**kodev.env, "KUBECONFIG": str(kube_env.kubeconfig),
               "KO_DOCKER_REPO": f"{kube_env.registry}/demo"}
        self.proc = subprocess.Popen([sys.executable, "-m", "kodev", "run", *args],
                                     cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self) -> str:
        try:
            return self.lines.get(timeout=DEADLINE_S)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("kodev run printed nothing") from None

    def finish(self) -> tuple[int, str]:
        rc = self.proc.wait(timeout=DEADLINE_S)
        assert self.proc.stderr is not None
        return rc, self.proc.stderr.read()

    def rest(self) -> list[str]:
        """The lines not read yet; after finish(), every one kodev printed."""
        if self.proc.poll() is not None:
            self.reader.join(timeout=10)
        lines = []
        while not self.lines.empty():
            lines.append(self.lines.get())
        return lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def running(kodev: Kodev, kube_env: KubeEnv, job_module: Path
            ) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(*args: str) -> Running:
        started.append(Running(kodev, kube_env, job_module, *args))
        return started[-1]

    yield start
    for item in started:
        item.kill()


def core(kube_api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_api)


def read_pod(kube_api: Any, namespace: str, name: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return core(kube_api).read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def running_pod(kube_api: Any, namespace: str, name: str) -> Any:
    def check() -> Any:
        pod = read_pod(kube_api, namespace, name)
        statuses = (pod.status.container_statuses or []) if pod else []
        return pod if statuses and statuses[0].state.running else None
    return eventually(f"pod {name} running", check)


def gone_or_deleting(kube_api: Any, namespace: str, name: str) -> bool:
    pod = read_pod(kube_api, namespace, name)
    return pod is None or pod.metadata.deletion_timestamp is not None


def test_run_attaches_logs_and_exits_with_the_container_code(
        running: Callable[..., Running], kube_env: KubeEnv, kube_api: Any,
        kube_namespace: str) -> None:
    run = running("./cmd/job", "-n", kube_namespace, "--name", "job-once",
                  "--env", "MODE=test", "--", "-v=2", "exit=3")
    rc, stderr = run.finish()
    assert rc == 3, stderr
    # The Pod log interleaves the container's stdout and stderr; each stream keeps its order.
    printed = run.rest()
    assert [line for line in printed if line != "exiting with 3"] == \
        ["first line", "second line", "args: -v=2 exit=3 mode: test"]
    assert "exiting with 3" in printed
    assert "exited with code 3" in stderr
    assert gone_or_deleting(kube_api, kube_namespace, "job-once")


def test_the_pod_kodev_run_creates(running: Callable[..., Running], kube_env: KubeEnv,
                                   kube_api: Any, kube_namespace: str) -> None:
    run = running("./cmd/job", "-n", kube_namespace, "--name", "job-wait", "--", "wait")
    pod = running_pod(kube_api, kube_namespace, "job-wait")
    spec = pod.spec
    assert spec.restart_policy == "Never"
    (container,) = spec.containers
    assert container.name == "job-wait"
    assert container.args == ["wait"]
    assert container.image.startswith(f"{kube_env.registry}/demo/job-")
    assert "@sha256:" in container.image
    assert pod.metadata.labels["run"] == "job-wait"
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "kodev"
    assert pod.metadata.annotations["kodev.dev/importpaths"] == "example.com/jobmod/cmd/job"
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    run.proc.send_signal(signal.SIGINT)
    rc, _ = run.finish()
    assert rc == 130


def test_run_exit_code_zero_and_default_pod_name(
        running: Callable[..., Running], kube_api: Any, kube_namespace: str) -> None:
    run = running("./cmd/job", "-n", kube_namespace, "--", "exit=0")
    pods = eventually("the run pod", lambda: core(kube_api).list_namespaced_pod(
        kube_namespace, label_selector="run").items)
    name = pods[0].metadata.name
    assert name.startswith("job-") and len(name) == len("job-") + 32  # ko: repo basename
    rc, stderr = run.finish()
    assert rc == 0, stderr
    assert "args: exit=0 mode: " in run.rest()
    assert gone_or_deleting(kube_api, kube_namespace, name)


def test_interrupt_deletes_the_pod(running: Callable[..., Running], kube_api: Any,
                                   kube_namespace: str) -> None:
    """Fault: Ctrl-C while kodev run follows its running Pod. User sees: 'kodev: interrupted',
    exit 130, and the Pod is deleted."""
    run = running("./cmd/job", "-n", kube_namespace, "--name", "job-int", "--", "wait")
    assert run.next_line() == "first line"  # the real process has started
    run.proc.send_signal(signal.SIGINT)
    rc, stderr = run.finish()
    assert rc == 130
    assert stderr.strip().splitlines()[-1] == "kodev: interrupted"
    assert gone_or_deleting(kube_api, kube_namespace, "job-int")


def test_existing_pod_is_an_error_and_is_left_alone(
        kodev: Kodev, kube_env: KubeEnv, kube_api: Any, kube_namespace: str) -> None:
    from kubernetes import client

    core(kube_api).create_namespaced_pod(kube_namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="taken"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image=kube_env.testapp)])))
    result = kodev.run("run", "./cmd/worker", "-n", kube_namespace, "--name", "taken",
                       check=False, env={"KUBECONFIG": str(kube_env.kubeconfig),
                                         "KO_DOCKER_REPO": f"{kube_env.registry}/demo"})
    assert result.returncode == 5
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f'kodev: error: pod "taken" in namespace {kube_namespace} already exists '
                    "(pass --name, or delete the old Pod)")
    pod = read_pod(kube_api, kube_namespace, "taken")
    assert pod is not None and pod.metadata.deletion_timestamp is None


def test_bad_pod_name_is_refused_before_building(kodev: Kodev, kube_env: KubeEnv) -> None:
    result = kodev.run("run", "./cmd/worker", "--name", "Not_Valid", check=False,
                       env={"KUBECONFIG": str(kube_env.kubeconfig)})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("kodev: error: --name 'Not_Valid' is not a valid")
