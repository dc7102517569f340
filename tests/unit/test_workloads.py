"""The workload table (kodev/kube/workloads.py): pure logic, no cluster.

The same kinds are exercised against the real API server and node in
tests/up/test_up_kinds.py and tests/logs/test_logs_kinds.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kodev.config import load_config
from kodev.errors import ConfigError, UsageError
from kodev.kube.workloads import (
    BUILTIN,
    BUILTIN_TABLE,
    PodsBy,
    Update,
    custom_kind,
    parse_json_path,
    parse_kind_flag,
    project_table,
)

REF = "registry.local/web@sha256:" + "a" * 64


def _templated(api_version: str, kind: str, template_path: tuple[str, ...],
               containers: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": {"containers": containers}}
    for key in reversed(template_path):
        body = {key: body}
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "generation": 2},
            **body}


def test_every_builtin_kind_has_its_containers_and_a_status_rule() -> None:
    for kind in BUILTIN_TABLE:
        path = ("spec",) if kind.template is None else kind.template
        obj = _templated(kind.api_version, kind.kind, path[:-1] if kind.template is None
                         else path, [{"name": "app", "image": REF}])
        if kind.template is None:
            obj["spec"] = {"containers": [{"name": "app", "image": REF}]}
        assert [(c.name, c.image) for c in kind.containers_of(obj)] == [("app", REF)], kind.key
        assert BUILTIN_TABLE.of_object(obj) is kind
        status = kind.rollout_status(obj, [])  # no status yet: never "done" by accident
        assert status.done is (kind.update is Update.NEXT_RUN), kind.key


def test_strategic_patch_nests_at_the_kind_template() -> None:
    cronjob = BUILTIN["CronJob"]
    content_type, body = cronjob.image_patch({}, {("app", False): REF, ("init", True): REF})
    assert content_type == "application/strategic-merge-patch+json"
    assert body == {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": REF}],
        "initContainers": [{"name": "init", "image": REF}]}}}}}}
    content_type, body = BUILTIN["Pod"].image_patch({}, {("app", False): REF})
    assert body == {"spec": {"containers": [{"name": "app", "image": REF}]}}


def test_custom_resources_get_a_guarded_json_patch() -> None:
    rollout = BUILTIN["Rollout.argoproj.io"]
    obj = _templated("argoproj.io/v1alpha1", "Rollout", ("spec", "template"),
                     [{"name": "side", "image": "busybox"}, {"name": "app", "image": "old"}])
    content_type, body = rollout.image_patch(obj, {("app", False): REF})
    assert content_type == "application/json-patch+json"
    assert body == [
        {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "app"},
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": REF}]


def test_json_path_parsing() -> None:
    assert parse_json_path("{.spec.template.spec.containers}") == (
        "spec", "template", "spec", "containers")
    assert parse_json_path(".spec.workers[*].containers") == ("spec", "workers", "*",
                                                              "containers")
    assert parse_json_path("{.spec.pools[0].containers}") == ("spec", "pools", 0, "containers")
    for bad in ("", "{}", ".spec..x", ".spec[x]", "spec containers"):
        with pytest.raises(UsageError):
            parse_json_path(bad)


def test_a_custom_kind_with_wildcards_patches_every_match() -> None:
    kind = parse_kind_flag("example.com/v1/Worker={.spec.pools[*].template.spec.containers}")
    assert kind.key == "Worker.example.com" and kind.plural is None
    obj = {"apiVersion": "example.com/v1", "kind": "Worker", "metadata": {"name": "w"},
           "spec": {"pools": [
               {"template": {"metadata": {"labels": {"pool": "a"}},
                             "spec": {"containers": [{"name": "app", "image": "x"}]}}},
               {"template": {"spec": {"containers": [{"name": "app", "image": "y"}]}}}]}}
    _content_type, body = kind.image_patch(obj, {("app", False): REF})
    assert [op["path"] for op in body if op["op"] == "replace"] == [
        "/spec/pools/0/template/spec/containers/0/image",
        "/spec/pools/1/template/spec/containers/0/image"]
    # its Pods: the labels of the (first) pod template
    assert kind.selects(obj, {"metadata": {"labels": {"pool": "a"}}}, {})
    assert not kind.selects(obj, {"metadata": {"labels": {"pool": "b"}}}, {})


def test_bad_custom_kinds_are_one_line_errors() -> None:
    for text in ("Worker={.spec.containers}", "example.com/v1/Worker", "/v1/Worker=.a"):
        with pytest.raises((UsageError, ConfigError)):
            parse_kind_flag(text)
    with pytest.raises(ConfigError, match="not a custom kind"):
        custom_kind("v1", "worker", ".spec.containers", "here")
    with pytest.raises(ConfigError, match="invalid JSONPath"):
        custom_kind("example.com/v1", "Worker", ".spec[", "here")


def test_ko_yaml_declares_custom_kinds(tmp_path: Path) -> None:
    (tmp_path / ".ko.yaml").write_text(
        "defaultBaseImage: example/base\n"
        "kodev:\n  workloadKinds:\n"
        "    - apiVersion: example.com/v1\n      kind: Worker\n"
        "      containers: '{.spec.template.spec.containers}'\n")
    config = load_config(tmp_path, {})
    table = project_table(config.workload_kinds, ["example.com/v2/Job=.spec.containers"])
    worker = table.of("example.com/v1", "Worker")
    assert worker is not None and worker.pods is PodsBy.TEMPLATE_LABELS
    assert table.of("example.com/v2", "Job") is not None  # not batch's Job
    assert table.of("batch/v1", "Job") is BUILTIN["Job"]
    (tmp_path / ".ko.yaml").write_text("kodev:\n  workloadKinds:\n    - kind: Worker\n")
    with pytest.raises(ConfigError,
                       match=r"\.ko\.yaml(:\d+)?: kodev\.workloadKinds\[0\]: expected a mapping"):
        load_config(tmp_path, {})


def test_kubectl_names_of_kinds() -> None:
    named = BUILTIN_TABLE.named
    assert named("deploy") is BUILTIN["Deployment"]
    assert named("cronjobs.batch") is BUILTIN["CronJob"]
    assert named("rollouts.argoproj.io") is named("rollout") is BUILTIN["Rollout.argoproj.io"]
    assert named("ksvc") is BUILTIN["Service.serving.knative.dev"]
    assert named("service") is None  # the core Service is no workload
    assert named("services.serving.knative.dev") is BUILTIN["Service.serving.knative.dev"]


def _pod(name: str, *, owner: str | None = None, labels: dict[str, str] | None = None
         ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True}]
    return {"metadata": meta}


def test_which_pods_are_a_workloads() -> None:
    job = {"metadata": {"name": "j", "uid": "job-uid"}, "spec": {}}
    assert BUILTIN["Job"].selects(job, _pod("p", owner="job-uid"), {})
    assert not BUILTIN["Job"].selects(job, _pod("p", owner="other"), {})
    cronjob = {"metadata": {"name": "c", "uid": "cj-uid"}, "spec": {}}
    owners = {"job-uid": "cj-uid"}
    assert BUILTIN["CronJob"].selects(cronjob, _pod("p", owner="job-uid"), owners)
    assert not BUILTIN["CronJob"].selects(cronjob, _pod("p", owner="job-uid"), {})
    ksvc = {"metadata": {"name": "hello"}, "spec": {}}
    knative = BUILTIN["Service.serving.knative.dev"]
    assert knative.selects(ksvc, _pod("p", labels={"serving.knative.dev/service": "hello"}), {})
    assert not knative.selects(ksvc, _pod("p", labels={"app": "hello"}), {})
    pod = {"metadata": {"name": "solo"}, "spec": {}}
    assert BUILTIN["Pod"].selects(pod, _pod("solo"), {})


def _job(**status: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"containers": []}}}, "status": status}


def test_job_status() -> None:
    job = BUILTIN["Job"]
    assert not job.rollout_status(_job(), []).done
    assert job.rollout_status(_job(ready=1), []).done
    assert job.rollout_status(_job(conditions=[{"type": "Complete", "status": "True"}]),
                              []).done
    failed = job.rollout_status(_job(conditions=[{
        "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit"}]), [])
    assert not failed.done and failed.problem is not None
    assert failed.problem.startswith("Job failed: BackoffLimitExceeded")


def test_argo_rollout_status() -> None:
    kind = BUILTIN["Rollout.argoproj.io"]

    def rollout(generation: int, observed: str, phase: str, message: str = "") -> Any:
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"generation": generation}, "spec": {"replicas": 1},
                "status": {"observedGeneration": observed, "phase": phase,
                           "message": message, "readyReplicas": 1, "updatedReplicas": 1}}
    assert kind.rollout_status(rollout(3, "3", "Healthy"), []).done
    assert not kind.rollout_status(rollout(3, "2", "Healthy"), []).done  # not seen yet
    degraded = kind.rollout_status(rollout(3, "3", "Degraded", "ProgressDeadlineExceeded"), [])
    assert not degraded.done and degraded.problem == "Degraded: ProgressDeadlineExceeded"


def test_knative_status_follows_ready() -> None:
    kind = BUILTIN["Service.serving.knative.dev"]
    service: dict[str, Any] = {"metadata": {"generation": 2}, "status": {
        "observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}}
    assert kind.rollout_status(service, []).done
    service["status"]["conditions"] = [{"type": "Ready", "status": "False",
                                        "reason": "RevisionFailed", "message": "boom"}]
    assert kind.rollout_status(service, []).problem == "RevisionFailed: boom"


def test_bare_pod_is_done_when_the_new_image_runs_ready() -> None:
    kind = BUILTIN["Pod"]
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
        "spec": {"containers": [{"name": "app", "image": REF}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "imageID": "registry.local/web@sha256:"
                                          + "b" * 64}]}}
    assert not kind.rollout_status(pod, [pod]).done  # still the old image
    pod["status"]["containerStatuses"][0]["imageID"] = REF
    assert kind.rollout_status(pod, [pod]).done


def test_no_other_list_of_kinds_in_kodev() -> None:
    """The table is the only place that names workload kinds (issue 14)."""
    root = Path(__file__).resolve().parents[2] / "kodev"
    pattern = re.compile(r'"(StatefulSet|DaemonSet|ReplicaSet)"')
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "workloads.py" and pattern.search(p.read_text())]
    assert offenders == []
