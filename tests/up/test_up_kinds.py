"""``kodev up`` and ``kodev logs`` with every kind of workload of the table
(kodev/kube/workloads.py), on the real API server and the real node.

Built-in kinds run for real: a Job (replaced on change: its pod template is immutable), a
bare Pod (its container restarts in place with the new image: same Pod, same UID), a
ReplicaSet (its Pods are recreated), a CronJob (the next run uses the new image;
``--run-cronjobs`` starts one at once), an Argo Rollout rolled by the real Argo Rollouts
controller (built from its Go module, tests/fixtures/crds.py). Knative Serving and a
project's own CRD have their CRDs installed but no controller here (Knative's needs its
networking layer and webhooks; the custom one has none by design): for them the tests
check what kodev does (the patch of exactly the image, through a JSON patch, with the rest
of the object unchanged) and say that their status is not followed to "ready".
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.apply.test_apply_kube import eventually
from tests.fixtures.up import edit, up_env

pytestmark = [pytest.mark.kube, pytest.mark.slow]

TEMPLATE = """\
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
{extra}      containers:
      - name: app
        image: ko://example.com/uptest/cmd/{binary}
"""

JOB = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  template:\n" + \
    TEMPLATE.replace("{extra}", "      restartPolicy: Never\n")
REPLICASET = ("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\nspec:\n"
              "  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
              + TEMPLATE.replace("{extra}", ""))
CRONJOB = ("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\nspec:\n"
           "  schedule: '0 0 1 1 *'\n  jobTemplate:\n    spec:\n      template:\n"
           + "\n".join("    " + line if line else line for line in TEMPLATE.replace(
               "{extra}", "      restartPolicy: Never\n").split("\n")))
POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ko://example.com/uptest/cmd/{binary}
"""
ROLLOUT = ("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\n"
           "  labels: {labels}\n"
           "spec:\n  replicas: 1\n  strategy:\n    canary: {{}}\n"
           "  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
           + TEMPLATE.replace("{extra}", ""))


def _write(module: Path, manifests: dict[str, str]) -> None:
    config = module / "config"
    for old in config.iterdir():
        old.unlink()
    for name, text in manifests.items():
        (config / f"{name}.yaml").write_text(text)


def _ready(up: Any, workload: str, since: int) -> dict[str, Any]:
    return dict(up.wait_for(lambda e: e["event"] == "ready" and e.get("workload") == workload,
                            since, timeout=180))


def _pods(kube_api: Any, namespace: str, app: str) -> list[Any]:
    from kubernetes import client

    return [p for p in client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector=f"app={app}").items if p.metadata.deletion_timestamp is None]


def _answer(kube_env: Any, kube_api: Any, namespace: str, app: str) -> set[str]:
    found = set()
    for pod in _pods(kube_api, namespace, app):
        if pod.status.phase == "Running":
            with contextlib.suppress(OSError):  # not listening yet
                found.add(kube_env.pod_get(namespace, pod.metadata.name).strip())
    return found


def _logs(kube_env: Any, namespace: str, *args: str) -> list[dict[str, Any]]:
    env = up_env(kube_env, Path("/nonexistent"), None)
    result = subprocess.run(
        [sys.executable, "-m", "kodev", "logs", "-n", namespace, "--no-follow", "-o", "json",
         *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_jobs_pods_replicasets_and_cronjobs_get_the_new_code(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any,
        kube_namespace: str) -> None:
    """alpha runs as a Job, beta as a bare Pod (both share internal/shared), gamma as a
    ReplicaSet and as a CronJob. A save to the shared package replaces the Job (a new
    one, with the new code) and restarts the Pod's container in place (the same Pod);
    a save to gamma recreates the ReplicaSet's Pod and, with --run-cronjobs, runs the
    CronJob once at once. kodev logs then follows every one of them by KIND/NAME."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    _write(up_module, {
        "alpha": JOB.format(name="alpha", binary="alpha"),
        "beta": POD.format(name="beta", binary="beta"),
        "gamma": REPLICASET.format(name="gamma", binary="gamma"),
        "report": CRONJOB.format(name="report", binary="gamma"),
    })
    up = start_up(up_module, kube_env.registry, extra=("--run-cronjobs",))
    up.wait_for(lambda e: e["event"] == "watching")
    for workload in ("job/alpha", "pod/beta", "replicaset/gamma", "cronjob/report"):
        _ready(up, workload, 0)
    eventually("the Job's Pod answers",
               lambda: _answer(kube_env, kube_api, kube_namespace, "alpha") == {"hello alpha"})
    eventually("the bare Pod answers",
               lambda: _answer(kube_env, kube_api, kube_namespace, "beta") == {"hello beta"})
    batch = client.BatchV1Api(kube_api)
    old_job = batch.read_namespaced_job("alpha", kube_namespace).metadata.uid
    old_pod = core.read_namespaced_pod("beta", kube_namespace).metadata.uid
    old_rs_pods = {p.metadata.uid for p in _pods(kube_api, kube_namespace, "gamma")}

    since = up.mark()
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hi "')
    job = up.wait_for(lambda e: e["event"] == "patched" and e.get("workload") == "job/alpha",
                      since)
    assert job["update"] == "replace" and "immutable" in job["message"]
    pod = up.wait_for(lambda e: e["event"] == "patched" and e.get("workload") == "pod/beta",
                      since)
    assert pod["update"] == "in-place"
    _ready(up, "job/alpha", since)
    _ready(up, "pod/beta", since)
    eventually("the new Job's Pod answers the new code",
               lambda: _answer(kube_env, kube_api, kube_namespace, "alpha") == {"hi alpha"})
    assert batch.read_namespaced_job("alpha", kube_namespace).metadata.uid != old_job
    eventually("the restarted container answers the new code",
               lambda: _answer(kube_env, kube_api, kube_namespace, "beta") == {"hi beta"})
    beta = core.read_namespaced_pod("beta", kube_namespace)
    assert beta.metadata.uid == old_pod  # the same Pod, its container restarted
    assert beta.status.container_statuses[0].restart_count >= 1

    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", 'const name = "gamma"', 'const name = "gamma v2"')
    _ready(up, "replicaset/gamma", since)
    eventually("the ReplicaSet's recreated Pod answers the new code",
               lambda: _answer(kube_env, kube_api, kube_namespace, "gamma") == {"gamma v2"})
    assert not old_rs_pods & {p.metadata.uid for p in _pods(kube_api, kube_namespace,
                                                            "gamma")}
    cron = _ready(up, "cronjob/report", since)
    assert "the next scheduled run uses the new image" in cron["message"]
    started = up.wait_for(lambda e: e["event"] == "job" and
                          e.get("workload") == "cronjob/report", since)
    cron_job = batch.read_namespaced_job(started["job"], kube_namespace)
    assert cron_job.metadata.owner_references[0].kind == "CronJob"
    assert cron_job.spec.template.spec.containers[0].image == \
        batch.read_namespaced_cron_job("report", kube_namespace) \
        .spec.job_template.spec.template.spec.containers[0].image

    # kodev logs finds each kind's Pods: the Job's own, the bare Pod, the ReplicaSet's
    # and the CronJob's Job's (through owner references).
    def printed() -> set[tuple[str, str]]:
        lines = _logs(kube_env, kube_namespace, "job/alpha", "pod/beta", "rs/gamma",
                      "cronjob/report")
        return {(line["pod"].split("-")[0], line["message"]) for line in lines}
    eventually("kodev logs prints the lines of every kind's Pods",
               lambda: {("alpha", "hi alpha"), ("beta", "hi beta"), ("gamma", "gamma v2"),
                        ("report", "gamma v2")} <= printed())
    assert up.process.poll() is None


STATEFULSET = ("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\nspec:\n"
               "  replicas: 1\n  serviceName: {name}\n"
               "  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
               + TEMPLATE.replace("{extra}", ""))
DAEMONSET = ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\nspec:\n"
             "  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
             + TEMPLATE.replace("{extra}", ""))
ONCE = """package main

import "fmt"

func main() { fmt.Println("once v1") }
"""


def test_statefulsets_daemonsets_and_a_completed_job(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any,
        kube_namespace: str) -> None:
    """alpha as a StatefulSet and beta as a DaemonSet roll to the new code on a save to
    their shared package; a Job that has completed is not run again when its code
    changes (it says so; --rerun-jobs would replace it)."""
    from kubernetes import client

    (up_module / "cmd/once").mkdir()
    (up_module / "cmd/once/main.go").write_text(ONCE)
    _write(up_module, {
        "alpha": STATEFULSET.format(name="alpha", binary="alpha"),
        "beta": DAEMONSET.format(name="beta", binary="beta"),
        "once": JOB.format(name="once", binary="once"),
    })
    up = start_up(up_module, kube_env.registry)
    up.wait_for(lambda e: e["event"] == "watching")
    for workload in ("statefulset/alpha", "daemonset/beta", "job/once"):
        _ready(up, workload, 0)
    batch = client.BatchV1Api(kube_api)
    eventually("the Job completes", lambda: any(
        c.type == "Complete" and c.status == "True"
        for c in batch.read_namespaced_job("once", kube_namespace).status.conditions or []))
    job_uid = batch.read_namespaced_job("once", kube_namespace).metadata.uid

    since = up.mark()
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hi "')
    edit(up_module / "cmd/once/main.go", "once v1", "once v2")
    for workload in ("statefulset/alpha", "daemonset/beta"):
        _ready(up, workload, since)
    kept = up.wait_for(lambda e: e["event"] == "kept" and e.get("workload") == "job/once",
                       since)
    assert "--rerun-jobs" in kept["message"]
    eventually("the StatefulSet's new Pod answers the new code",
               lambda: _answer(kube_env, kube_api, kube_namespace, "alpha") == {"hi alpha"})
    eventually("the DaemonSet's new Pod answers the new code",
               lambda: _answer(kube_env, kube_api, kube_namespace, "beta") == {"hi beta"})
    assert batch.read_namespaced_job("once", kube_namespace).metadata.uid == job_uid


def test_argo_rollout_rolls_on_the_real_controller(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any, kube_namespace: str,
        argo_rollouts: Any) -> None:
    """An Argo Rollout: kodev up patches its template (JSON patch: custom resources reject
    strategic merge), the real controller rolls it, kodev follows the Rollout's own phase
    to Healthy, and the new code answers; kodev logs rollout/NAME follows its Pods."""
    labels = json.dumps(argo_rollouts.labels)  # this session's controller acts on it
    _write(up_module, {"alpha": ROLLOUT.format(name="alpha", binary="alpha", labels=labels)})
    up = start_up(up_module, kube_env.registry)
    up.wait_for(lambda e: e["event"] == "watching")
    _ready(up, "rollout.argoproj.io/alpha", 0)
    eventually("the Rollout's Pod answers",
               lambda: _answer(kube_env, kube_api, kube_namespace, "alpha") == {"hello alpha"})
    since = up.mark()
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hi "')
    up.wait_for(lambda e: e["event"] == "patched"
                and e.get("workload") == "rollout.argoproj.io/alpha", since)
    _ready(up, "rollout.argoproj.io/alpha", since)
    eventually("the rolled-out Pod answers the new code",
               lambda: _answer(kube_env, kube_api, kube_namespace, "alpha") == {"hi alpha"})
    eventually("kodev logs rollout/alpha prints the new Pod's line",
               lambda: any(line["message"] == "hi alpha" for line in
                           _logs(kube_env, kube_namespace, "rollout/alpha")))


KSVC = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/min-scale: "1"}
    spec:
      containers:
      - name: app
        image: ko://example.com/uptest/cmd/gamma
        env: [{name: TARGET, value: kodev}]
"""

WORKER_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: workers.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: workers, singular: worker, kind: Worker}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""

WORKER = """\
apiVersion: example.com/v1
kind: Worker
metadata:
  name: crunch
spec:
  pools:
  - name: fast
    template:
      spec:
        containers:
        - name: side
          image: busybox:1.36
        - name: app
          image: ko://example.com/uptest/cmd/gamma
"""


def test_knative_and_custom_kinds_are_patched_exactly(
        up_module: Path, start_up: Any, kube_env: Any, kube_api: Any, kube_namespace: str,
        knative_crds: Any) -> None:
    """A Knative Service (built in) and a CRD of the project's own declared with
    --workload-kind: a save patches exactly their app container's image to the new
    digest (a JSON patch guarded by the container's name), and nothing else in the
    objects changes. No controller runs for either here, so no Pods exist: "ready" is
    not expected (kodev follows Knative's Ready condition and, for a custom kind, its
    Pods by the template's labels; neither appears without a controller)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kube_api)
    _write(up_module, {"hello": KSVC, "crd": WORKER_CRD, "worker": WORKER})
    up = start_up(up_module, kube_env.registry, extra=(
        "--workload-kind", "example.com/v1/Worker={.spec.pools[*].template.spec.containers}"))
    up.wait_for(lambda e: e["event"] == "watching")

    def read() -> tuple[dict[str, Any], dict[str, Any]]:
        ksvc = custom.get_namespaced_custom_object("serving.knative.dev", "v1",
                                                   kube_namespace, "services", "hello")
        worker = custom.get_namespaced_custom_object("example.com", "v1", kube_namespace,
                                                     "workers", "crunch")
        return ksvc, worker

    ksvc, worker = read()
    first = ksvc["spec"]["template"]["spec"]["containers"][0]["image"]
    assert first.startswith(kube_env.registry) and "@sha256:" in first
    assert worker["spec"]["pools"][0]["template"]["spec"]["containers"][1]["image"] == first

    since = up.mark()
    edit(up_module / "cmd/gamma/main.go", 'const name = "gamma"', 'const name = "gamma v2"')
    for workload in ("service.serving.knative.dev/hello", "worker.example.com/crunch"):
        up.wait_for(lambda e, w=workload: e["event"] == "patched" and e.get("workload") == w,
                    since)
    new_ksvc, new_worker = read()
    new_image = new_ksvc["spec"]["template"]["spec"]["containers"][0]["image"]
    assert new_image != first and new_image.startswith(kube_env.registry)
    for before, after in ((ksvc, new_ksvc), (worker, new_worker)):
        for obj in (before, after):
            obj.pop("metadata")
            obj.pop("status", None)
    ksvc["spec"]["template"]["spec"]["containers"][0]["image"] = new_image
    worker["spec"]["pools"][0]["template"]["spec"]["containers"][1]["image"] = new_image
    assert new_ksvc == ksvc
    assert new_worker == worker  # the sidecar keeps busybox
