"""``kodev apply`` / ``kodev delete`` against the real test cluster (the real node pulls
and runs the images)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kodev import Kodev
from tests.fixtures.kube import KubeEnv

pytestmark = pytest.mark.kube

WEB = "example.com/kodev-demo/cmd/web"
WORKER = "example.com/kodev-demo/cmd/worker"
DEADLINE_S = 90.0


@pytest.fixture
def kube_kodev(kodev: Kodev, kube_env: KubeEnv) -> Kodev:
    """kodev with KUBECONFIG and KO_DOCKER_REPO pointing at the test environment."""
    kodev.env["KUBECONFIG"] = str(kube_env.kubeconfig)
    kodev.env["KO_DOCKER_REPO"] = f"{kube_env.registry}/demo"
    return kodev


def eventually(what: str, check: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def apps(kube_api: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(kube_api)


def core(kube_api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_api)


def ready(kube_api: Any, namespace: str, name: str) -> bool:
    status = apps(kube_api).read_namespaced_deployment_status(name, namespace).status
    return bool(status.ready_replicas == status.replicas == 1
                and status.updated_replicas == 1)


def replica_sets(kube_api: Any, namespace: str) -> list[str]:
    items = apps(kube_api).list_namespaced_replica_set(namespace).items
    return sorted(rs.metadata.name for rs in items)


def exists(kube_api: Any, read: Callable[..., Any], *args: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        read(*args)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


# --------------------------------------------------------------------------- the demo app


def test_apply_is_idempotent_and_delete_cleans_up(kube_kodev: Kodev, kube_api: Any,
                                                  kube_namespace: str) -> None:
    ns = kube_namespace
    first = kube_kodev.run("apply", "-f", "config", "-n", ns)
    assert first.stdout.splitlines() == ["deployment.apps/web created",
                                         "deployment.apps/worker created"]
    refs = dict(zip([WEB, WORKER], kube_kodev.run("build", WEB, WORKER).refs, strict=True))

    for name, path in (("web", WEB), ("worker", WORKER)):
        deployment = apps(kube_api).read_namespaced_deployment(name, ns)
        assert deployment.spec.template.spec.containers[0].image == refs[path]
        assert deployment.metadata.labels == {"app": name,
                                              "app.kubernetes.io/managed-by": "kodev"}
        assert deployment.metadata.annotations["kodev.dev/importpaths"] == path
        assert deployment.spec.template.metadata.labels == {"app": name}
        managers = {m.manager for m in deployment.metadata.managed_fields}
        assert "kodev" in managers
        eventually(f"{name} to be Ready", lambda n=name: ready(kube_api, ns, n))

    before = replica_sets(kube_api, ns)
    assert len(before) == 2
    again = kube_kodev.run("apply", "-f", "config", "-n", ns, "--json")
    records = json.loads(again.stdout)
    assert [(r["kind"], r["name"], r["namespace"], r["action"]) for r in records] == [
        ("Deployment", "web", ns, "unchanged"), ("Deployment", "worker", ns, "unchanged")]
    assert records[0]["importpaths"] == [WEB]
    assert replica_sets(kube_api, ns) == before

    app = kube_kodev.workdir / "config" / "app.yaml"
    app.write_text(app.read_text().replace("replicas: 1", "replicas: 2", 1))
    changed = kube_kodev.run("apply", "-f", "config", "-n", ns)
    assert changed.stdout.splitlines() == ["deployment.apps/web configured",
                                           "deployment.apps/worker unchanged"]
    assert replica_sets(kube_api, ns) == before  # scaling makes no new ReplicaSet

    deleted = kube_kodev.run("delete", "-f", "config", "-n", ns)
    assert deleted.stdout.splitlines() == ['deployment.apps "worker" deleted',
                                           'deployment.apps "web" deleted']
    for name in ("web", "worker"):
        assert not exists(kube_api, apps(kube_api).read_namespaced_deployment, name, ns)
    gone = kube_kodev.run("delete", "-f", "config", "-n", ns, "--wait=false")
    assert gone.stdout.splitlines() == ['deployment.apps "worker" not found',
                                        'deployment.apps "web" not found']


def test_a_code_change_rolls_out_a_new_image(kube_kodev: Kodev, kube_api: Any,
                                             kube_namespace: str) -> None:
    ns = kube_namespace
    kube_kodev.run("apply", "-f", "config/app.yaml", "-n", ns, "-l", "app=web")
    assert not exists(kube_api, apps(kube_api).read_namespaced_deployment, "worker", ns)
    old = apps(kube_api).read_namespaced_deployment("web", ns).spec.template.spec
    main = kube_kodev.workdir / "cmd" / "web" / "main.go"
    # A change that reaches the binary (an unused variable would not: identical code
    # gives an identical binary).
    main.write_text(main.read_text().replace('"motd:"', '"message of the day:"'))
    result = kube_kodev.run("apply", "-f", "config/app.yaml", "-n", ns, "-l", "app=web")
    assert result.stdout == "deployment.apps/web configured\n"
    new = apps(kube_api).read_namespaced_deployment("web", ns).spec.template.spec
    assert new.containers[0].image != old.containers[0].image
    eventually("two ReplicaSets", lambda: len(replica_sets(kube_api, ns)) == 2)
    eventually("the new pods to be Ready", lambda: ready(kube_api, ns, "web"))


# --------------------------------------------------------------------------- ordering


def widget_crd(group: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]},
    }


@pytest.fixture
def fresh_names(kube_api: Any) -> Iterator[tuple[str, str]]:
    """A namespace name and a CRD group nobody uses yet; both removed afterwards."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    suffix = secrets.token_hex(4)
    namespace, group = f"kodev-order-{suffix}", f"t{suffix}.kodev.dev"
    yield namespace, group
    for delete in (lambda: core(kube_api).delete_namespace(namespace),
                   lambda: client.ApiextensionsV1Api(kube_api)
                   .delete_custom_resource_definition(f"widgets.{group}")):
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_namespaces_and_crds_are_applied_first(kube_kodev: Kodev, kube_api: Any,
                                               fresh_names: tuple[str, str],
                                               tmp_path: Path) -> None:
    namespace, group = fresh_names
    documents = [
        {"apiVersion": f"{group}/v1", "kind": "Widget",
         "metadata": {"name": "w", "namespace": namespace}, "spec": {"size": 3}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "settings", "namespace": namespace}, "data": {"a": "b"}},
        widget_crd(group),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    ]
    manifest = tmp_path / "all.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    result = kube_kodev.run("apply", "-f", str(manifest))
    assert result.stdout.splitlines() == [
        f"namespace/{namespace} created",
        f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created",
        f"widget.{group}/w created",
        "configmap/settings created",
    ]
    config_map = core(kube_api).read_namespaced_config_map("settings", namespace)
    assert config_map.metadata.labels == {"app.kubernetes.io/managed-by": "kodev"}

    again = kube_kodev.run("apply", "-f", str(manifest))
    assert again.stdout.splitlines()[2:] == [f"widget.{group}/w unchanged",
                                             "configmap/settings unchanged"]

    deleted = kube_kodev.run("delete", "-f", str(manifest))
    assert deleted.stdout.splitlines() == [
        'configmap "settings" deleted', f'widget.{group} "w" deleted',
        f'customresourcedefinition.apiextensions.k8s.io "widgets.{group}" deleted',
        f'namespace "{namespace}" deleted',
    ]
    assert not exists(kube_api, core(kube_api).read_namespace, namespace)
    after = kube_kodev.run("delete", "-f", str(manifest))
    assert set(after.stdout.splitlines()) == {
        'configmap "settings" not found', f'widget.{group} "w" not found',
        f'customresourcedefinition.apiextensions.k8s.io "widgets.{group}" not found',
        f'namespace "{namespace}" not found'}


# --------------------------------------------------------------------------- kubeconfig


def test_a_custom_kind_from_ko_yaml_is_marked_as_a_workload(
        kube_kodev: Kodev, fresh_names: tuple[str, str], tmp_path: Path) -> None:
    """A CRD kind declared in .ko.yaml's kodev.workloadKinds is a workload for kodev apply
    too: its object gets the import-paths annotation that kodev logs and up read."""
    namespace, group = fresh_names
    config = kube_kodev.workdir / ".ko.yaml"
    config.write_text(config.read_text() + (
        "kodev:\n  workloadKinds:\n"
        f"  - {{apiVersion: {group}/v1, kind: Widget, "
        "containers: '{.spec.template.spec.containers}'}\n"))
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        widget_crd(group),
        {"apiVersion": f"{group}/v1", "kind": "Widget",
         "metadata": {"name": "w", "namespace": namespace},
         "spec": {"template": {"spec": {"containers": [
             {"name": "app", "image": f"ko://{WEB}"}]}}}},
    ]
    manifest = tmp_path / "widget.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    records = json.loads(kube_kodev.run("apply", "-f", str(manifest), "--json").stdout)
    widget = next(r for r in records if r["kind"] == "Widget")
    assert widget["importpaths"] == [WEB]


def test_kubeconfig_list_context_and_context_namespace(kube_kodev: Kodev, kube_api: Any,
                                                       kube_env: KubeEnv, kube_namespace: str,
                                                       tmp_path: Path) -> None:
    real = yaml.safe_load(kube_env.kubeconfig.read_text())
    (context,) = real["contexts"]
    context["context"]["namespace"] = kube_namespace
    mine = tmp_path / "mine"
    mine.write_text(yaml.safe_dump(real))
    decoy = tmp_path / "decoy"
    decoy.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "decoy",
        "clusters": [{"name": "decoy", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "decoy", "user": {"token": "x"}}],
        "contexts": [{"name": "decoy", "context": {"cluster": "decoy", "user": "decoy"}}]}))
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-context}\n")
    env = {"KUBECONFIG": f"{decoy}:{mine}"}
    decoyed = kube_kodev.run("apply", "-f", str(manifest), env=env, check=False)
    assert decoyed.returncode == 5 and "https://127.0.0.1:1" in decoyed.stderr
    result = kube_kodev.run("apply", "-f", str(manifest), "--context", context["name"], env=env)
    assert result.stdout == "configmap/from-context created\n"
    assert exists(kube_api, core(kube_api).read_namespaced_config_map, "from-context",
                  kube_namespace)


# --------------------------------------------------------------------------- bad input


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n---\n"


@pytest.mark.parametrize(("second", "code", "message"), [
    ("apiVersion: apps/v1\nkind: Deploymint\nmetadata: {name: x}\n", 2,
     "bad.yaml:6: the cluster serves no kind Deploymint in apiVersion apps/v1"),
    ("apiVersion: apps/v9\nkind: Deployment\nmetadata: {name: x}\n", 2,
     "bad.yaml:6: the cluster serves no kind Deployment in apiVersion apps/v9"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1}\n", 2,
     "bad.yaml:6: deployment.apps/x: the API server rejected it: "),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: elsewhere}\n", 2,
     "bad.yaml:6: configmap/x is in namespace 'elsewhere', not"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n"
     "  - {name: x, image: 'ko://example.com/kodev-demo/cmd/missing'}\n", 2,
     "bad.yaml:11:22: ko://example.com/kodev-demo/cmd/missing: cannot load package"),
    ("kind: ConfigMap\nmetadata: {name: x}\n", 2, "bad.yaml:6: the object has no apiVersion"),
])
def test_bad_input_applies_nothing(kube_kodev: Kodev, kube_api: Any, kube_namespace: str,
                                   tmp_path: Path, second: str, code: int,
                                   message: str) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(CONFIG_MAP + second)
    result = kube_kodev.run("apply", "-f", str(manifest), "-n", kube_namespace, check=False)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kodev: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith(f"kodev: error: {manifest.parent}/{message}"), errors[0]
    assert result.stdout == ""
    assert not exists(kube_api, core(kube_api).read_namespaced_config_map, "first",
                      kube_namespace)


def test_a_forbidden_request_names_verb_and_resource(kube_kodev: Kodev, kube_api: Any,
                                                     kube_env: KubeEnv, kube_namespace: str,
                                                     tmp_path: Path) -> None:
    from kubernetes import client

    ns = kube_namespace
    core(kube_api).create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    token = core(kube_api).create_namespaced_service_account_token(
        "nobody", ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    config = yaml.safe_load(kube_env.kubeconfig.read_text())
    config["users"] = [{"name": "nobody", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "nobody"
    restricted = tmp_path / "restricted"
    restricted.write_text(yaml.safe_dump(config))
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(CONFIG_MAP)
    result = kube_kodev.run("apply", "-f", str(manifest), "-n", ns,
                            "--kubeconfig", str(restricted), check=False)
    assert result.returncode == 5, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"kodev: error: forbidden: cannot apply configmaps first in namespace "
                           f"{ns}: "), line
    assert f"system:serviceaccount:{ns}:nobody" in line


def test_a_missing_namespace_is_reported_before_anything_changes(
        kube_kodev: Kodev, kube_api: Any, kube_namespace: str, tmp_path: Path) -> None:
    missing = f"nowhere-{secrets.token_hex(3)}"
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(CONFIG_MAP.replace("{name: first}", f"{{name: first, namespace: "
                                                            f"{kube_namespace}}}")
                        + f"apiVersion: v1\nkind: ConfigMap\n"
                          f"metadata: {{name: x, namespace: {missing}}}\n")
    result = kube_kodev.run("apply", "-f", str(manifest), check=False)
    assert result.returncode == 5
    assert result.stderr.startswith(f"kodev: error: {manifest}:6: cannot apply configmap/x: "
                                    f'namespaces "{missing}" not found')
    assert not exists(kube_api, core(kube_api).read_namespaced_config_map, "first",
                      kube_namespace)


def test_delete_checks_every_kind_before_deleting(kube_kodev: Kodev, kube_api: Any,
                                                  kube_namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(CONFIG_MAP)
    kube_kodev.run("apply", "-f", str(manifest), "-n", kube_namespace)
    manifest.write_text(CONFIG_MAP + "apiVersion: v1\nkind: Sekret\nmetadata: {name: s}\n")
    result = kube_kodev.run("delete", "-f", str(manifest), "-n", kube_namespace, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"kodev: error: {manifest}:6: the cluster serves no kind "
                                    "Sekret in apiVersion v1")
    assert exists(kube_api, core(kube_api).read_namespaced_config_map, "first", kube_namespace)
