"""Apply's pure parts: objects from documents, marking, ordering, kubeconfig selection,
and a cluster that cannot be reached (no test cluster needed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from kodev.errors import UsageError
from kodev.kube.apply import (
    IMPORTPATHS_ANNOTATION,
    MANAGED_BY_LABEL,
    KubeObject,
    apply_order,
    container_import_paths,
    kinds_declared_by_crds,
    mark,
    objects_from_documents,
)
from kodev.kube.client import KubeOptions, connect, kubeconfig_paths
from kodev.resolve import ResolvedDocument
from tests.fixtures.kodev import Kodev

WEB_REF = "r/web@sha256:1"
WORKER_REF = "r/worker@sha256:2"
IMPORT_PATHS = {WEB_REF: "example.com/app/cmd/web", WORKER_REF: "example.com/app/cmd/worker"}


def obj(kind: str, name: str, api_version: str = "v1", **extra: object) -> KubeObject:
    return KubeObject("t.yaml:1", {"apiVersion": api_version, "kind": kind,
                                   "metadata": {"name": name}, **extra})


def doc(text: str) -> ResolvedDocument:
    return ResolvedDocument("t.yaml", 3, text)


def test_objects_from_documents_expands_lists_and_skips_empty_documents() -> None:
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}} for n in "ab"]
    documents = [doc(""), doc(yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                                              "items": items})),
                 doc("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")]
    objects = objects_from_documents(documents)
    assert [o.display for o in objects] == ["configmap/a", "configmap/b", "service/s"]
    assert objects[1].source == "t.yaml:3 (item 2)"


@pytest.mark.parametrize(("text", "message"), [
    ("apiVersion: v1\nmetadata: {name: x}\n", "t.yaml:3: the object has no kind"),
    ("kind: Pod\nmetadata: {name: x}\n", "t.yaml:3: the object has no apiVersion"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {generateName: x-}\n", "Pod has no metadata.name"),
    ("- a\n- b\n", "t.yaml:3: not a Kubernetes object"),
])
def test_objects_need_apiversion_kind_and_name(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        objects_from_documents([doc(text)])


def test_display_names_follow_kubectl() -> None:
    assert obj("Deployment", "web", "apps/v1").display == "deployment.apps/web"
    assert obj("Service", "web").display == "service/web"


def deployment(*images: str, init: str | None = None) -> KubeObject:
    spec: dict[str, object] = {"containers": [{"name": f"c{i}", "image": image}
                                              for i, image in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": "init", "image": init}]
    return obj("Deployment", "web", "apps/v1", spec={
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}})


def test_mark_labels_the_object_and_annotates_workloads_with_import_paths() -> None:
    workload = deployment(WEB_REF, "nginx", WORKER_REF, WEB_REF, init=WORKER_REF)
    workload.data["metadata"]["labels"] = {"app": "web", MANAGED_BY_LABEL: "helm"}
    original = yaml.safe_dump(workload.data)
    mark(workload, IMPORT_PATHS)
    metadata = workload.data["metadata"]
    assert metadata["labels"] == {"app": "web", MANAGED_BY_LABEL: "kodev"}
    assert metadata["annotations"] == {
        IMPORTPATHS_ANNOTATION: "example.com/app/cmd/worker,example.com/app/cmd/web"}
    # The pod template is untouched (no new labels: pods are not rolled by marking).
    assert workload.data["spec"]["template"]["metadata"] == {"labels": {"app": "web"}}
    assert yaml.safe_load(original)["metadata"]["labels"][MANAGED_BY_LABEL] == "helm"


def test_mark_adds_no_annotation_without_built_images_or_to_non_workloads() -> None:
    plain = deployment("nginx")
    mark(plain, IMPORT_PATHS)
    assert "annotations" not in plain.data["metadata"]
    config = obj("ConfigMap", "c", data={"image": WEB_REF})
    mark(config, IMPORT_PATHS)
    assert config.data["metadata"] == {"name": "c", "labels": {MANAGED_BY_LABEL: "kodev"}}


@pytest.mark.parametrize(("api_version", "kind", "spec"), [
    ("v1", "Pod", {"containers": [{"name": "a", "image": WEB_REF}]}),
    ("batch/v1", "Job", {"template": {"spec": {"containers": [{"name": "a", "image": WEB_REF}]}}}),
    ("batch/v1", "CronJob", {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": WEB_REF}]}}}}}),
    ("apps/v1", "StatefulSet", {"template": {"spec": {"initContainers": [
        {"name": "a", "image": WEB_REF}]}}}),
    ("apps/v1", "ReplicaSet", {"template": {"spec": {"containers": [
        {"name": "a", "image": WEB_REF}]}}}),
    ("argoproj.io/v1alpha1", "Rollout", {"template": {"spec": {"containers": [
        {"name": "a", "image": WEB_REF}]}}}),
    ("serving.knative.dev/v1", "Service", {"template": {"spec": {"containers": [
        {"name": "a", "image": WEB_REF}]}}}),
])
def test_pod_specs_of_every_workload_kind(api_version: str, kind: str,
                                          spec: dict[str, object]) -> None:
    data = {"apiVersion": api_version, "kind": kind, "spec": spec}
    assert container_import_paths(data, IMPORT_PATHS) == ["example.com/app/cmd/web"]


def test_a_core_service_is_not_a_workload() -> None:
    data = {"apiVersion": "v1", "kind": "Service",
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": WEB_REF}]}}}}
    assert container_import_paths(data, IMPORT_PATHS) == []


def test_apply_order_namespaces_then_crds_then_input_order() -> None:
    crd = obj("CustomResourceDefinition", "widgets.example.com", "apiextensions.k8s.io/v1")
    objects = [obj("ConfigMap", "a"), crd, obj("Namespace", "n"), obj("Service", "b"),
               obj("Namespace", "m")]
    assert [o.name for o in apply_order(objects)] == ["n", "m", "widgets.example.com", "a", "b"]


def test_kinds_declared_by_crds() -> None:
    crd = obj("CustomResourceDefinition", "widgets.example.com", "apiextensions.k8s.io/v1",
              spec={"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"},
                    "versions": [{"name": "v1"}, {"name": "v2"}]})
    declared = kinds_declared_by_crds([crd, obj("ConfigMap", "x")])
    assert set(declared) == {("example.com/v1", "Widget"), ("example.com/v2", "Widget")}
    assert declared[("example.com/v1", "Widget")] is False


# --------------------------------------------------------------------------- kubeconfig


def kubeconfig(path: Path, server: str, namespace: str | None = None,
               context: str = "test") -> Path:
    ctx: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": context, "context": ctx}]}))
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_kubeconfig_paths_follow_kubectl(tmp_path: Path) -> None:
    a = kubeconfig(tmp_path / "a", "https://127.0.0.1:1")
    b = kubeconfig(tmp_path / "b", "https://127.0.0.1:2")
    env = {"KUBECONFIG": f"{a}:{tmp_path / 'missing'}:{b}"}
    assert kubeconfig_paths(KubeOptions(), env) == f"{a}:{b}"
    assert kubeconfig_paths(KubeOptions(kubeconfig=str(b)), env) == str(b)
    with pytest.raises(UsageError, match="no such file"):
        kubeconfig_paths(KubeOptions(), {"KUBECONFIG": str(tmp_path / "missing")})


def test_merged_kubeconfigs_give_contexts_and_namespaces(tmp_path: Path) -> None:
    a = kubeconfig(tmp_path / "a", "https://127.0.0.1:1", namespace="team", context="one")
    b = tmp_path / "b"
    b.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c2", "cluster": {"server": "https://127.0.0.1:2"}}],
        "users": [{"name": "u2", "user": {"token": "t"}}],
        "contexts": [{"name": "two", "context": {"cluster": "c2", "user": "u2"}}]}))
    env = {"KUBECONFIG": f"{a}:{b}"}
    first = connect(KubeOptions(), env)
    assert (first.host, first.namespace, first.namespace_explicit) == (
        "https://127.0.0.1:1", "team", False)
    second = connect(KubeOptions(context="two", namespace="dev"), env)
    assert (second.host, second.namespace, second.namespace_explicit) == (
        "https://127.0.0.1:2", "dev", True)
    with pytest.raises(UsageError, match="context 'three' is not in kubeconfig"):
        connect(KubeOptions(context="three"), env)
    for cluster in (first, second):
        cluster.close()


def test_an_unreachable_cluster_is_one_line_and_exit_5(kodev: Kodev, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig(tmp_path / "kubeconfig", server)
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    for command in ("apply", "delete"):
        result = kodev.run(command, "-f", str(manifest), "--kubeconfig", str(config),
                           check=False, env={"KOCACHE": str(tmp_path / "cache")})
        assert result.returncode == 5, result.stderr
        assert result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"kodev: error: cannot reach the Kubernetes API at {server}")


def test_apply_reports_bad_yaml_before_contacting_anything(kodev: Kodev, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: v1\nkind: [\n")
    result = kodev.run("apply", "-f", str(manifest), "--kubeconfig", str(tmp_path / "none"),
                       check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"kodev: error: {manifest}:3:1: invalid YAML")


def test_nothing_selected_is_an_error_for_apply_and_a_note_for_delete(kodev: Kodev,
                                                                      tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    unused = str(tmp_path / "no-kubeconfig")
    applied = kodev.run("apply", "-f", str(manifest), "-l", "app=none", "--kubeconfig", unused,
                        check=False)
    assert (applied.returncode, applied.stderr) == (
        2, "kodev: error: no objects passed to apply (check -f and -l)\n")
    deleted = kodev.run("delete", "-f", str(manifest), "-l", "app=none", "--kubeconfig", unused)
    assert (deleted.stdout, deleted.stderr) == ("", "No resources found\n")
