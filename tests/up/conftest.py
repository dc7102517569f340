"""Fixtures for ``kodev up``: a Go module with three images (two share a package), and a
running ``kodev up --json`` subprocess whose events the tests wait for."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kodev import TOOLS_BIN

EVENT_TIMEOUT = 90.0

# Each binary prints its greeting when it starts and answers it over HTTP on :8080, so
# the tests can tell which code a real container runs (its log and its HTTP answer).
SERVE = ('\thttp.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) '
         '{{ fmt.Fprintln(w, {expr}) }})\n'
         '\t_ = http.ListenAndServe(":8080", nil)\n')


def shared_main(name: str) -> str:
    expr = f'shared.Greeting("{name}")'
    return ("package main\n\n"
            'import (\n\t"fmt"\n\t"net/http"\n\n\t"example.com/uptest/internal/shared"\n)\n\n'
            f"func main() {{\n\tfmt.Println({expr})\n" + SERVE.format(expr=expr) + "}\n")


def crashing_gamma_main() -> str:
    """gamma's main that panics as it starts (exit code 2)."""
    return gamma_main().replace("func main() {\n", 'func main() {\n\tpanic("boom")\n')


def gamma_main(text: str = "gamma") -> str:
    """gamma imports nothing of the module; ``name`` is what it prints and answers."""
    return ("package main\n\n"
            'import (\n\t"fmt"\n\t"net/http"\n)\n\n'
            "// main prints its name.\n"
            f'const name = "{text}"\n\n'
            "func main() {\n\tfmt.Println(name)\n" + SERVE.format(expr="name") + "}\n")


MODULE = {
    "go.mod": "module example.com/uptest\n\ngo 1.22\n",
    ".ko.yaml": "defaultBaseImage: kodev://minimal\n",
    "internal/shared/shared.go": (
        "// Package shared is used by alpha and beta, not by gamma.\n"
        "package shared\n\n"
        "// Greeting is what alpha and beta print.\n"
        'func Greeting(who string) string { return "hello " + who }\n'
    ),
    "cmd/alpha/main.go": shared_main("alpha"),
    "cmd/beta/main.go": shared_main("beta"),
    "cmd/gamma/main.go": gamma_main(),
    "cmd/gamma/main_test.go": "package main\n",
    "README.md": "not a dependency of anything\n",
}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: {name}
        image: ko://example.com/uptest/cmd/{name}
        ports:
        - containerPort: 8080
"""

NAMES = ("alpha", "beta", "gamma")


def import_path(name: str) -> str:
    return f"example.com/uptest/cmd/{name}"


def write_module(root: Path) -> Path:
    for rel, text in MODULE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "config").mkdir()
    for name in NAMES:
        (root / "config" / f"{name}.yaml").write_text(DEPLOYMENT.format(name=name))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


class UpProcess:
    """``kodev up --json`` in the background; every event parsed into ``events``."""

    def __init__(self, workdir: Path, namespace: str, env: dict[str, str],
                 extra: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.events: list[dict[str, Any]] = []
        self._new: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_path = workdir.parent / f"up-{secrets.token_hex(3)}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kodev", "up", "-f", "config", "-n", namespace,
                 "--json", "--logs=false", *extra],
                cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "non-json", "message": line}
            self.events.append(event)
            self._new.put(event)

    def mark(self) -> int:
        """An index into ``events``: later waits look only at what comes after it."""
        return len(self.events)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], since: int = 0,
                 timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[since:]:
                if predicate(event):
                    return event
            if self.process.poll() is not None and self._new.empty():
                raise AssertionError(f"kodev up exited ({self.process.returncode}):\n"
                                     f"{self.stderr()}\n{self.dump(since)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events since {since}:\n{self.dump(since)}"
                                     f"\nstderr:\n{self.stderr()}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=0.2)

    def wait_ready(self, names: set[str], since: int) -> dict[str, dict[str, Any]]:
        """Wait until each named Deployment reported its rollout complete."""
        found: dict[str, dict[str, Any]] = {}
        for name in sorted(names):
            found[name] = self.wait_for(
                lambda e, n=name: e["event"] == "ready" and e.get("workload") == f"deployment/{n}",
                since)
        return found

    def started(self, *, rollout: bool = True) -> int:
        """Wait for the initial deploy: the watcher running and (``rollout``) all three
        Deployments rolled out on the node. Returns a mark for later waits."""
        self.wait_for(lambda e: e["event"] == "watching")
        if rollout:
            self.wait_ready(set(NAMES), 0)
        return self.mark()

    def of_kind(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e["event"] == kind]

    def dump(self, since: int = 0) -> str:
        return "\n".join(json.dumps(e)[:400] for e in self.events[since:])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def up_env(kube_env: Any, cache: Path, docker_repo: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KO_", "KOCACHE"))}
    env.update(KOCACHE=str(cache), KUBECONFIG=str(kube_env.kubeconfig), NO_COLOR="1",
               PATH=f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}")
    if docker_repo:
        env["KO_DOCKER_REPO"] = docker_repo
    return env


@pytest.fixture
def up_module(tmp_path: Path) -> Path:
    return write_module(tmp_path / "uptest")


@pytest.fixture
def start_up(kube_env: Any, kube_namespace: str, tmp_path: Path
             ) -> Iterator[Callable[..., UpProcess]]:
    """Start ``kodev up`` on a module; stopped at the end of the test."""
    started: list[UpProcess] = []

    def start(workdir: Path, docker_repo: str | None = None, extra: tuple[str, ...] = (),
              kubeconfig: Path | None = None) -> UpProcess:
        env = up_env(kube_env, tmp_path / "kocache", docker_repo)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        process = UpProcess(workdir, kube_namespace, env, extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def deployment_images(kube_api: Any, namespace: str) -> dict[str, str]:
    from kubernetes import client

    apps = client.AppsV1Api(kube_api)
    return {d.metadata.name: d.spec.template.spec.containers[0].image
            for d in apps.list_namespaced_deployment(namespace).items}


def answers(kube_env: Any, kube_api: Any, namespace: str, app: str) -> set[str]:
    """What the live Pods of ``app`` answer over HTTP right now (through pods/proxy).

    A Pod listed as Ready may be stopped by the time it is asked (the old Pod of a rollout
    that just completed): then the Pods are listed and asked again, for up to 20 s."""
    import urllib.error

    deadline = time.monotonic() + 20
    while True:
        try:
            return {kube_env.pod_get(namespace, pod).strip()
                    for pod in pods_of(kube_api, namespace, app, ready=True)}
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def pods_of(kube_api: Any, namespace: str, app: str, *, ready: bool = False) -> set[str]:
    """Names of the live (not terminating) Pods labelled app=<app>."""
    from kubernetes import client

    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=f"app={app}")
    return {p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None
            and (not ready or any(c.type == "Ready" and c.status == "True"
                                  for c in p.status.conditions or []))}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
