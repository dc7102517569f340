"""``kodev run``: one Pod running one image once, attached to its logs, removed after.

What ``kubectl run --rm --attach --restart=Never`` does for ``ko run``, through the API:

1. create the Pod (``restartPolicy: Never``; label ``run=<name>`` like kubectl, plus
   kodev's managed-by label and import path annotation);
2. watch it until its container runs (or ends); a container that cannot start (image
   pull, bad config) is an error, and so is not starting within ``--timeout``;
3. follow the container's log to stdout while watching until the container terminates;
4. delete the Pod, also after an error or Ctrl-C / SIGTERM (which kodev's runner turns
   into KeyboardInterrupt), and return the container's exit code. The deletion has a
   short timeout of its own: an unresponsive API server cannot hold the exit up.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO, Any

from kodev.errors import KubeError, UsageError
from kodev.kube.apply import KubeObject, mark
from kodev.kube.client import Cluster, api_errors, is_not_found, status_message
from kodev.kube.watch import ApiHttp, ListWatch
from kodev.kube.workloads import BUILTIN, POD_PROBLEMS

LOG_DRAIN_SECONDS = 2.0  # after the container ended, how long the log stream may still talk
LOG_CHUNK_BYTES = 4096
# Deleting the Pod on the way out (also on Ctrl-C/SIGTERM, whose exit kodev's runner
# forces 1.4 s after the signal) may wait this long for an answer, twice (the API
# client retries a read timeout once), before it is given up with a warning.
DELETE_TIMEOUT_S = 0.6
# Registers a last word for a process cut off before this step ends; returns its remover
# (kodev.cli.runner.Interrupts.at_forced_exit).
AtForcedExit = Callable[[Callable[[], None]], Callable[[], None]]
_DNS_LABEL_MAX = 63


@dataclass(frozen=True)
class RunSpec:
    """What to run: the Pod (and container) name, the image, its arguments and env."""

    name: str
    image: str
    import_path: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def default_pod_name(repository: str) -> str:
    """ko's Pod name, the repository's last element (``web-<md5>``), as a DNS label."""
    base = repository.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", base).strip("-")[:_DNS_LABEL_MAX].rstrip("-")
    return name or "kodev-run"


def check_pod_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > _DNS_LABEL_MAX:
        raise UsageError(f"--name {name!r} is not a valid Pod name",
                         hint="use lower-case letters, digits and '-', at most 63 characters")
    return name


def pod_manifest(spec: RunSpec, namespace: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": spec.name, "image": spec.image}
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env:
        container["env"] = [{"name": k, "value": v} for k, v in spec.env]
    pod = KubeObject("kodev run", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": {"run": spec.name}},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    })
    mark(pod, {spec.image: spec.import_path})
    return pod.data


@dataclass(frozen=True)
class ContainerState:
    """The one container's state as the watch reports it."""

    started: bool
    exit_code: int | None  # set once it terminated
    failure: str | None  # why it will never start


def container_state(pod: dict[str, Any], container: str) -> ContainerState:
    """Read the run container's state from a Pod (a JSON dict) of a watch event."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    for item in status.get("containerStatuses") or []:
        if item.get("name") != container:
            continue
        state = item.get("state") or {}
        if state.get("terminated"):
            return ContainerState(True, int(state["terminated"].get("exitCode", 1)), None)
        if state.get("running"):
            return ContainerState(True, None, None)
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in POD_PROBLEMS:
            detail = waiting.get("message") or waiting["reason"]
            return ContainerState(False, None, f"{waiting['reason']}: {detail}")
    if phase in ("Succeeded", "Failed"):
        return ContainerState(True, 0 if phase == "Succeeded" else 1, None)
    return ContainerState(False, None, None)


class PodRun:
    """Runs one ``RunSpec`` in ``cluster.namespace``; ``run()`` returns the exit code."""

    def __init__(self, cluster: Cluster, spec: RunSpec, *, start_timeout: float,
                 out: IO[bytes] | None = None, say: Callable[[str], None] | None = None,
                 at_forced_exit: AtForcedExit | None = None) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.spec = spec
        self.namespace = cluster.namespace
        self.core: Any = client.CoreV1Api(cluster.api)  # untyped: bodies are plain dicts
        self.http = ApiHttp(cluster)
        self.start_timeout = start_timeout
        self.out = out if out is not None else sys.stdout.buffer
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.at_forced_exit = at_forced_exit

    @property
    def where(self) -> str:
        return f'pod "{self.spec.name}" in namespace {self.namespace}'

    def run(self) -> int:
        created = False
        try:
            self._create()
            created = True
            return self._attach()
        except KeyboardInterrupt:
            if not created:  # interrupted while creating: the create may have gone through
                self._delete(quiet=True)
            raise
        finally:
            if created:
                self._delete()
            self.http.close()

    # ---------------------------------------------------------------- steps

    def _create(self) -> None:
        from kubernetes.client.exceptions import ApiException

        body = pod_manifest(self.spec, self.namespace)
        with api_errors(self.cluster, f"create {self.where}"):
            try:
                self.core.create_namespaced_pod(self.namespace, body)
            except ApiException as exc:
                if exc.status == 409:
                    raise KubeError(f"{self.where} already exists",
                                    hint="pass --name, or delete the old Pod") from exc
                if exc.status in (400, 422):
                    raise UsageError(f"the API server rejected {self.where}: "
                                     f"{status_message(exc)}") from exc
                if is_not_found(exc):
                    raise KubeError(f"cannot create {self.where}: {status_message(exc)}",
                                    hint="does the namespace exist?") from exc
                raise
        self.say(f"{self.where} created")

    def _attach(self) -> int:
        state = self._watch(lambda s: s.started, deadline=time.monotonic() + self.start_timeout,
                            waiting_for="its container to start")
        logs = threading.Thread(target=self._copy_logs, name="kodev-run-logs", daemon=True)
        logs.start()
        if state.exit_code is None:
            state = self._watch(lambda s: s.exit_code is not None, deadline=None,
                                waiting_for="its container to finish")
        # A real kubelet ends the log stream when the container ends; give it time to.
        logs.join(LOG_DRAIN_SECONDS)
        assert state.exit_code is not None
        self.say(f"{self.where} exited with code {state.exit_code}")
        return state.exit_code

    def _watch(self, done: Callable[[ContainerState], bool], *, deadline: float | None,
               waiting_for: str) -> ContainerState:
        """Watch the Pod (a :class:`ListWatch`, so an outage is waited out) until
        ``done(state)``; a deletion, a container that cannot start or the deadline end it."""
        outcome: queue.Queue[ContainerState | BaseException] = queue.Queue()

        def consider(pods: list[dict[str, Any]]) -> None:
            for pod in pods:
                try:
                    state = self._pod_state(pod)
                except KubeError as exc:
                    outcome.put(exc)
                    return
                if done(state):
                    outcome.put(state)

        def on_event(event: str, pod: dict[str, Any]) -> None:
            if event == "DELETED":
                outcome.put(KubeError(f"{self.where} was deleted while kodev was waiting "
                                      "for it"))
            else:
                consider([pod])

        watch = ListWatch(self.http, BUILTIN["Pod"].collection_path(self.namespace),
                          [("fieldSelector", f"metadata.name={self.spec.name}")],
                          on_list=consider, on_event=on_event, on_fatal=outcome.put)
        with api_errors(self.cluster, f"watch {self.where}"):
            watch.list()
        threading.Thread(target=watch.run, name="kodev-run-watch", daemon=True).start()
        try:
            result = outcome.get(timeout=None if deadline is None
                                 else max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise KubeError(f"timed out waiting for {self.where}: {waiting_for}",
                            hint="raise --timeout, or check the Pod's events") from None
        finally:
            watch.close()
        if isinstance(result, BaseException):
            raise result
        return result

    def _pod_state(self, pod: dict[str, Any]) -> ContainerState:
        state = container_state(pod, self.spec.name)
        if state.failure:
            raise KubeError(f"{self.where} cannot start: {state.failure}",
                            hint="check that the cluster can pull the image")
        return state

    def _copy_logs(self) -> None:
        """Follow the container's log to ``out``; errors end the copy quietly (the exit
        code is still reported from the Pod's status)."""
        try:
            response = self.core.read_namespaced_pod_log(
                self.spec.name, self.namespace, container=self.spec.name, follow=True,
                _preload_content=False)
            for chunk in response.stream(LOG_CHUNK_BYTES, decode_content=True):
                self.out.write(chunk)
                self.out.flush()
        except Exception as exc:  # the Pod may be gone; logs are best effort
            self.say(f"{self.where}: log stream ended: {type(exc).__name__}")

    def _delete(self, *, quiet: bool = False) -> None:
        """Delete the Pod, within 2 x DELETE_TIMEOUT_S; a failure is a warning. ``quiet``: say
        nothing unless a Pod was there (the create was interrupted)."""
        from kubernetes.client.exceptions import ApiException

        left = f"kodev: warning: {self.where} may still exist: delete it yourself\n"
        forgotten = self.at_forced_exit(lambda: _write_stderr(left)) \
            if self.at_forced_exit is not None else None
        try:
            # (the error message names the timeout this request had)
            with api_errors(replace(self.cluster, request_timeout=DELETE_TIMEOUT_S),
                            f"delete {self.where}"):
                try:
                    self.core.delete_namespaced_pod(self.spec.name, self.namespace,
                                                    grace_period_seconds=0,
                                                    _request_timeout=DELETE_TIMEOUT_S)
                except ApiException as exc:
                    if not is_not_found(exc):
                        raise
                    if quiet:
                        return
        except KubeError as exc:
            self.say(f"kodev: warning: {exc.message}; delete {self.where} yourself")
            return
        finally:
            if forgotten is not None:
                forgotten()
        self.say(f"{self.where} deleted")


def _write_stderr(text: str) -> None:
    """For a process being cut off: no Python-level lock that another thread may hold."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
