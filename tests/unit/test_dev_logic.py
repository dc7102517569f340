"""Pure logic of the dev loop: change planning, coalescing, rollout rules, KEP-1755."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kodev.dev.planner import ChangePlanner
from kodev.dev.watcher import ChangeQueue, is_ignored
from kodev.golang.graph import PackageGraph, import_signature
from kodev.golang.packages import GoPackage
from kodev.kube.cluster_info import parse_local_registry
from kodev.kube.rollout import (
    ProblemReport,
    pod_problem,
    problem_key,
)
from kodev.kube.workloads import BUILTIN, RolloutStatus


def _graph(root: Path) -> PackageGraph:
    def pkg(ip: str, rel: str, files: tuple[str, ...], deps: tuple[str, ...] = (),
            name: str = "main") -> GoPackage:
        return GoPackage(ip, name, root / rel, "m", root, go_files=files, deps=deps)

    shared = pkg("m/shared", "shared", ("s.go",), name="shared")
    fmt = GoPackage("fmt", "fmt", Path("/go/src/fmt"), standard=True, go_files=("print.go",))
    a = pkg("m/a", "a", ("a.go",), ("fmt", "m/shared"))
    b = pkg("m/b", "b", ("b.go",), ("m/shared",))
    c = pkg("m/c", "c", ("c.go",), ("fmt",))
    for rel, name in (("shared", "s.go"), ("a", "a.go"), ("b", "b.go"), ("c", "c.go")):
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / name).write_text('package x\n\nimport "fmt"\n')
    (root / "go.mod").write_text("module m\n")
    return PackageGraph({"./a": a, "./b": b, "./c": c},
                        {p.import_path: p for p in (shared, fmt, a, b, c)})


def test_planner_maps_files_to_exactly_the_images_that_use_them(tmp_path: Path) -> None:
    graph = _graph(tmp_path)
    planner = ChangePlanner(graph, [tmp_path / "app.yaml"], tmp_path / ".ko.yaml")
    assert planner.plan([tmp_path / "shared/s.go"]).images == {"m/a", "m/b"}
    assert planner.plan([tmp_path / "c/c.go"]).images == {"m/c"}
    assert planner.plan([tmp_path / "go.mod"]).images == {"m/a", "m/b", "m/c"}
    assert planner.plan([tmp_path / "go.mod"]).refresh_graph
    assert planner.plan([tmp_path / "app.yaml"]).manifests == {tmp_path / "app.yaml"}
    assert planner.plan([tmp_path / ".ko.yaml"]).reload_config
    unrelated = planner.plan([tmp_path / "README.md"])
    assert not unrelated and unrelated.ignored == {tmp_path / "README.md"}


def test_planner_asks_for_go_list_only_when_imports_or_files_change(tmp_path: Path) -> None:
    planner = ChangePlanner(_graph(tmp_path), [], None)
    body = tmp_path / "c/c.go"
    body.write_text('package x\n\nimport "fmt"\n\nfunc f() { fmt.Println(1) }\n')
    assert not planner.plan([body]).refresh_graph
    body.write_text('package x\n\nimport (\n\t"fmt"\n\t"os"\n)\n')
    assert planner.plan([body]).refresh_graph
    new_file = tmp_path / "c/new.go"
    new_file.write_text("package x\n")
    plan = planner.plan([new_file])
    assert plan.refresh_graph and not plan.images
    body.unlink()
    assert planner.plan([body]).refresh_graph


def test_import_signature_sees_imports_build_tags_and_embeds() -> None:
    base = 'package main\n\nimport (\n\t"fmt"\n\tx "os"\n)\n\nfunc main() {}\n'
    assert import_signature(base) == ("main", "fmt", "os")
    assert import_signature(base.replace("func main() {}", "func main() { fmt.Println() }")) \
        == import_signature(base)
    assert import_signature("//go:build linux\n\n" + base) != import_signature(base)
    assert import_signature(base + '//go:embed static\nvar s string\n') \
        != import_signature(base)
    assert import_signature('package p\nimport "strings"\n') == ("p", "strings")


def test_ignored_files() -> None:
    for name in ("a/.git/index", "x/main_test.go", "x/.main.go.swp", "x/main.go~", "x/4913",
                 "x/#main.go#", "x/.#main.go"):
        assert is_ignored(Path(name)), name
    for name in ("x/main.go", "x/kodata/index.html", "go.mod", "config/app.yaml"):
        assert not is_ignored(Path(name)), name


def test_change_queue_coalesces_a_burst_into_one_batch() -> None:
    changes = ChangeQueue(quiet_seconds=0.1)

    def burst() -> None:
        for number in range(20):
            changes.put(Path(f"f{number % 3}.go"))
            time.sleep(0.01)

    thread = threading.Thread(target=burst)
    thread.start()
    batch = changes.next_batch(timeout=5)
    thread.join()
    assert batch.paths == {Path("f0.go"), Path("f1.go"), Path("f2.go")}
    assert not changes.next_batch(timeout=0.05)


def rollout_status(deployment: dict[str, object]) -> RolloutStatus:
    return BUILTIN["Deployment"].rollout_status(deployment, [])


def _deployment(generation: int, observed: int, **status: int) -> dict[str, object]:
    return {"kind": "Deployment", "metadata": {"generation": generation},
            "spec": {"replicas": 2}, "status": {"observedGeneration": observed, **status}}


def test_deployment_rollout_rules() -> None:
    done = _deployment(3, 3, replicas=2, updatedReplicas=2, readyReplicas=2,
                       availableReplicas=2)
    assert rollout_status(done).done
    assert not rollout_status(_deployment(4, 3, replicas=2, updatedReplicas=2,
                                          readyReplicas=2, availableReplicas=2)).done
    old_pod_left = _deployment(3, 3, replicas=3, updatedReplicas=2, readyReplicas=3,
                               availableReplicas=3)
    assert not rollout_status(old_pod_left).done
    stuck = _deployment(3, 3, replicas=2, updatedReplicas=1)
    stuck["status"]["conditions"] = [  # type: ignore[index]
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": "ReplicaSet web-1 has timed out progressing."}]
    assert rollout_status(stuck).problem.startswith("ProgressDeadlineExceeded")  # type: ignore[union-attr]


def test_pod_problems_name_the_pod_and_reason() -> None:
    crashing = {"metadata": {"name": "web-1"}, "status": {"containerStatuses": [
        {"state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]}}
    assert pod_problem([crashing]) == "pod web-1: CrashLoopBackOff: back-off 10s"
    pending = {"metadata": {"name": "web-2"}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available"}]}}
    assert pod_problem([pending]) == "pod web-2: Unschedulable: 0/1 nodes are available"
    assert pod_problem([{"metadata": {"name": "ok"}, "status": {}}]) is None
    leaving = {**crashing, "metadata": {"name": "web-0",
                                        "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert pod_problem([leaving]) is None  # a terminating Pod is not the workload's problem
    crashed = {"metadata": {"name": "web-3"}, "status": {"containerStatuses": [
        {"name": "app", "state": {"terminated": {"reason": "Error", "exitCode": 2}}}]}}
    assert pod_problem([crashed]) == "pod web-3: Error: container app exited with code 2"
    done_init = {"metadata": {"name": "web-4"}, "status": {"initContainerStatuses": [
        {"name": "migrate", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}}
    assert pod_problem([done_init]) is None  # an init container is meant to finish


def test_one_problem_is_reported_once_however_its_message_changes() -> None:
    pull = "pod web-1: ErrImagePull: failed to pull r/x:1"
    backoff = "pod web-1: ImagePullBackOff: Back-off pulling image r/x:1"
    assert problem_key(pull) == problem_key(backoff) == "pod web-1: ImagePull"
    assert problem_key("pod web-1: CrashLoopBackOff: back-off 10s") == \
        problem_key("pod web-1: CrashLoopBackOff: back-off 20s")
    assert problem_key("pod web-1: Error: container app exited with code 2") == \
        problem_key("pod web-1: CrashLoopBackOff: back-off 20s")
    assert problem_key("pod web-2: CrashLoopBackOff: back-off 10s") != problem_key(pull)
    assert problem_key("ProgressDeadlineExceeded: ReplicaSet web-1 has timed out") == \
        "ProgressDeadlineExceeded"


def test_a_crash_then_its_back_off_are_news_and_then_nothing_more() -> None:
    report = ProblemReport()
    crash = "pod web-1: Error: container app exited with code 2"
    assert report.news(crash)
    assert report.news("pod web-1: CrashLoopBackOff: back-off 10s restarting")
    assert not report.news(crash)
    assert not report.news("pod web-1: CrashLoopBackOff: back-off 20s restarting")
    assert report.news("pod web-2: ErrImagePull: failed")  # another problem


def test_image_patch_touches_only_named_containers() -> None:
    _content_type, patch = BUILTIN["Deployment"].image_patch(
        {}, {("app", False): "r/app@sha256:1", ("migrate", True): "r/m@sha256:2"})
    assert patch == {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "r/app@sha256:1"}],
        "initContainers": [{"name": "migrate", "image": "r/m@sha256:2"}]}}}}


def test_local_registry_hosting() -> None:
    kind = parse_local_registry('host: "localhost:5001"\nhostFromContainerRuntime: '
                                '"kind-registry:5000"\nhelp: "https://kind.sigs.k8s.io"\n')
    assert kind is not None and kind.host == "localhost:5001"
    assert kind.runtime_reference("localhost:5001/app@sha256:1") \
        == "kind-registry:5000/app@sha256:1"
    assert kind.runtime_reference("other:5000/app@sha256:1") == "other:5000/app@sha256:1"
    assert parse_local_registry("help: x\n") is None
    assert parse_local_registry(": : :") is None
