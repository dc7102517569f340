"""``kodev resolve`` end to end: the demo module, a real registry, real go builds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, crane

WEB = "example.com/kodev-demo/cmd/web"
WORKER = "example.com/kodev-demo/cmd/worker"
LIBRARY = "example.com/kodev-demo/internal/greeting"

EXTRA = """\
# a second file: a Service (no references) and a Job reusing the web image
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  labels: {app: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: migrate, image: 'ko://example.com/kodev-demo/cmd/web', args: [--once]}
"""


def repo_env(registry_host: str) -> dict[str, str]:
    return {"KO_DOCKER_REPO": f"{registry_host}/demo"}


def expected_output(text: str, refs: dict[str, str]) -> str:
    for path, ref in refs.items():
        text = text.replace(f"ko://{path}", ref)
    return text


@pytest.mark.registry
def test_resolve_changes_only_the_ko_values(kodev: Kodev, registry) -> None:
    env = repo_env(registry.host)
    (kodev.workdir / "config" / "extra.yaml").write_text(EXTRA)
    resolved = kodev.run("resolve", "-f", "config", env=env)
    built = kodev.run("build", WEB, WORKER, env=env).refs
    refs = dict(zip([WEB, WORKER], built, strict=True))
    app = (kodev.workdir / "config" / "app.yaml").read_text()
    # Files in name order (app.yaml, extra.yaml) joined by '---'; nothing else differs.
    assert resolved.stdout == expected_output(f"{app}---\n{EXTRA}", refs)
    assert resolved.stdout.count("@sha256:") == 3
    # One planning go list and ONE go build for both binaries.
    assert len(re.findall(r"go build \d+ package", resolved.stderr)) == 1, resolved.stderr
    for ref in built:
        crane("validate", "--remote", ref)


@pytest.mark.registry
def test_resolve_reads_stdin_and_applies_the_selector(kodev: Kodev, registry) -> None:
    env = repo_env(registry.host)
    app = (kodev.workdir / "config" / "app.yaml").read_text()
    proc = subprocess.run([sys.executable, "-m", "kodev", "resolve", "-f", "-", "-l", "app=worker"],
                          input=app, text=True, capture_output=True, cwd=kodev.workdir,
                          env={**kodev.env, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (worker_ref,) = kodev.run("build", WORKER, env=env).refs
    second = app[app.index("---\n"):]
    assert proc.stdout == expected_output(second, {WORKER: worker_ref})
    assert "cmd/web" not in proc.stderr  # the dropped document was not built


@pytest.mark.registry
def test_resolve_takes_build_flags(kodev: Kodev, registry) -> None:
    env = repo_env(registry.host)
    out = kodev.run("resolve", "-f", "config/app.yaml", "-B", "--platform=linux/amd64,linux/arm64",
                    "--sbom=none", env=env).stdout
    images = re.findall(r"image: \"?([^\s\"]+)", out)
    assert [i.split("@")[0] for i in images] == [f"{registry.host}/demo/web",
                                                f"{registry.host}/demo/worker"]
    index = crane("manifest", images[0])
    assert "linux" in index and "arm64" in index


def test_references_are_not_needed_to_resolve(kodev: Kodev, tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("kind: ConfigMap  # nothing to build\napiVersion: v1\n")
    result = kodev.run("resolve", "-f", str(plain))  # no KO_DOCKER_REPO, no go needed
    assert result.stdout == plain.read_text()


def test_a_library_package_warns_by_default_and_fails_with_strict(kodev: Kodev,
                                                                  tmp_path: Path) -> None:
    manifest = tmp_path / "lib.yaml"
    manifest.write_text(f"image: ko://{LIBRARY}\n")
    env = {"KO_DOCKER_REPO": "127.0.0.1:1/unused"}
    result = kodev.run("resolve", "-f", str(manifest), env=env)
    assert result.stdout == manifest.read_text()
    assert f"{manifest}:1:8: ko://{LIBRARY} is package 'greeting', not a main package" \
        in result.stderr
    strict = kodev.run("resolve", "--strict", "-f", str(manifest), env=env, check=False)
    assert strict.returncode == 2
    assert strict.stdout == ""
    assert strict.stderr.strip().splitlines()[-1].startswith(
        f"kodev: error: {manifest}:1:8: ko://{LIBRARY}: package 'greeting'")


@pytest.mark.parametrize("path", ["example.com/elsewhere/cmd/x", "example.com/kodev-demo/cmd/nope"])
def test_a_path_outside_the_module_is_one_clear_error(kodev: Kodev, tmp_path: Path,
                                                      path: str) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(f"a: 1\nimage: \"ko://{path}\"\n")
    result = kodev.run("resolve", "-f", str(manifest), env={"KO_DOCKER_REPO": "127.0.0.1:1/x"},
                       check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("kodev: error:")]
    assert line.startswith(f"kodev: error: {manifest}:2:8: ko://{path}: cannot load package")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("a: [1,\n", "bad.yaml:2:1: invalid YAML"),
    ("image: ko://\n", "bad.yaml:1:8: 'ko://' names no import path"),
])
def test_bad_yaml_is_one_clear_line(kodev: Kodev, tmp_path: Path, text: str,
                                    message: str) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text)
    result = kodev.run("resolve", "-f", str(manifest), check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"kodev: error: {tmp_path}/{message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_ordinary_anchors_still_work(kodev: Kodev, tmp_path: Path) -> None:
    """Anchors, aliases and merge keys as real manifests use them (one map shared by
    twenty objects) are not mistaken for a bomb: the output is the input."""
    common = ", ".join(f"k{i}: v{i}" for i in range(200))
    items = "".join(f"- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c{i}, labels: *l}},"
                    f" data: {{<<: *common, own: x{i}}}}}\n" for i in range(20))
    manifest = tmp_path / "anchors.yaml"
    manifest.write_text("apiVersion: v1\nkind: List\nitems:\n"
                        "- apiVersion: v1\n  kind: ConfigMap\n"
                        "  metadata: {name: a, labels: &l {app: a}}\n"
                        f"  data: &common {{{common}}}\n" + items)
    assert kodev.run("resolve", "-f", str(manifest)).stdout == manifest.read_text()
