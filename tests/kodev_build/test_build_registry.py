"""kodev build against a real registry, checked with skopeo, crane, umoci and runc."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, crane, skopeo_inspect
from tests.support.runimage import run_image

pytestmark = pytest.mark.registry

WEB = "example.com/kodev-demo/cmd/web"
WORKER = "example.com/kodev-demo/cmd/worker"


def build(kodev: Kodev, registry_host: str, *args: str, **env: str) -> list[str]:
    result = kodev.run("build", *args, env={"KO_DOCKER_REPO": f"{registry_host}/demo", **env})
    return result.refs


def test_two_binaries_are_valid_images_that_run_as_nonroot(kodev: Kodev, registry) -> None:
    refs = build(kodev, registry.host, "./cmd/web", "./cmd/worker")
    assert len(refs) == 2
    web_ref, worker_ref = refs
    assert web_ref.startswith(f"{registry.host}/demo/web-") and "@sha256:" in web_ref
    for ref in refs:
        crane("validate", "--remote", ref)

    config = skopeo_inspect(web_ref, config=True)
    inner = config["config"]
    assert inner["Entrypoint"] == ["/ko-app/web"]
    assert "Cmd" not in inner
    assert inner["User"] == "65532"
    assert "KO_DATA_PATH=/var/run/ko" in inner["Env"]
    path = next(e for e in inner["Env"] if e.startswith("PATH="))
    assert path.endswith(":/ko-app")

    manifest = skopeo_inspect(web_ref, raw=True)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == "kodev://minimal"

    run = run_image(web_ref, ["--once"])
    assert run.returncode == 0, run.stderr
    assert "hello from web" in run.stdout
    assert "motd: kodev says hi from kodata" in run.stdout
    assert "uid: 65532" in run.stdout
    assert "built with: go1." in run.stdout  # the .ko.yaml ldflags template was applied

    worker = run_image(worker_ref, ["--once"])
    assert worker.returncode == 0 and "hello from worker" in worker.stdout


def test_same_source_gives_same_digest(kodev: Kodev, registry, tmp_path: Path) -> None:
    first = build(kodev, registry.host, "./cmd/web")
    other_cache = Kodev(kodev.workdir, tmp_path / "other-cache")
    second = build(other_cache, registry.host, "./cmd/web", "--no-cache")
    assert first == second


def test_unchanged_rebuild_pushes_nothing(kodev: Kodev, registry) -> None:
    env = {"KO_DOCKER_REPO": f"{registry.host}/demo"}
    kodev.run("build", "./cmd/web", env=env)
    again = kodev.run("build", "./cmd/web", env=env)
    assert "already there" in again.stderr


def test_multi_platform_index_has_a_real_arm64_binary(
    kodev: Kodev, registry, tmp_path: Path
) -> None:
    (ref,) = build(kodev, registry.host, "--platform=linux/amd64,linux/arm64", "./cmd/web")
    index = skopeo_inspect(ref, raw=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    crane("validate", "--remote", ref)
    fs = tmp_path / "arm64.tar"
    crane("export", "--platform", "linux/arm64", ref, str(fs))
    listing = subprocess.run(
        ["tar", "-xOf", str(fs), "ko-app/web"], check=True, capture_output=True
    ).stdout
    assert listing[:4] == b"\x7fELF"
    assert int.from_bytes(listing[18:20], "little") == 183  # EM_AARCH64


def test_spdx_sbom_is_attached_with_the_cosign_tag(kodev: Kodev, registry) -> None:
    (ref,) = build(kodev, registry.host, "./cmd/web")
    repo, digest = ref.split("@")
    sbom_tag = f"{repo}:{digest.replace(':', '-')}.sbom"
    manifest = json.loads(crane("manifest", sbom_tag))
    assert manifest["subject"]["digest"] == digest
    layer = manifest["layers"][0]
    assert layer["mediaType"] == "text/spdx+json"
    document = json.loads(crane("blob", f"{repo}@{layer['digest']}"))
    assert document["spdxVersion"] == "SPDX-2.3"
    names = {p["name"] for p in document["packages"]}
    assert "example.com/kodev-demo" in names


def test_tarball_without_registry_is_readable_by_skopeo(kodev: Kodev, tmp_path: Path) -> None:
    tarball = tmp_path / "images.tar"
    result = kodev.run(
        "build",
        "--push=false",
        f"--tarball={tarball}",
        "--platform=linux/amd64,linux/arm64",
        "./cmd/web",
    )
    assert len(result.refs) == 1
    oci = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{tarball}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(oci.stdout)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    docker = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{tarball}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(docker.stdout)["Architecture"] == "amd64"


def test_push_with_basic_auth_from_docker_config(
    kodev: Kodev, registry_basic, tmp_path: Path
) -> None:
    import base64

    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(f"{registry_basic.username}:{registry_basic.password}".encode())
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {registry_basic.host: {"auth": auth.decode()}}})
    )
    result = kodev.run(
        "build",
        "./cmd/worker",
        env={"KO_DOCKER_REPO": f"{registry_basic.host}/private", "DOCKER_CONFIG": str(config_dir)},
    )
    assert result.refs[0].startswith(f"{registry_basic.host}/private/worker-")
    assert registry_basic.password not in result.stderr + result.stdout


def test_docker_v2_base_on_same_registry_is_mounted_not_uploaded(kodev: Kodev, registry) -> None:
    (worker,) = build(kodev, registry.host, "./cmd/worker")
    base = f"{registry.host}/bases/docker-base:v1"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            f"docker://{worker}",
            f"docker://{base}",
        ],
        check=True,
    )
    result = kodev.run(
        "build",
        "./cmd/web",
        env={"KO_DOCKER_REPO": f"{registry.host}/demo", "KO_DEFAULTBASEIMAGE": base},
    )
    assert " mounted)" in result.stderr and "0 mounted" not in result.stderr
    (ref,) = result.refs
    manifest = skopeo_inspect(ref, raw=True)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == base
    crane("validate", "--remote", ref)
    run = run_image(ref, ["--once"])
    assert "hello from web" in run.stdout


def test_index_base_is_filtered_by_platform(kodev: Kodev, registry) -> None:
    (multi,) = build(kodev, registry.host, "--platform=linux/amd64,linux/arm64", "./cmd/worker")
    base = f"{registry.host}/bases/multi:v1"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{multi}",
            f"docker://{base}",
        ],
        check=True,
    )
    env = {"KO_DOCKER_REPO": f"{registry.host}/demo", "KO_DEFAULTBASEIMAGE": base}
    (both,) = kodev.run("build", "--platform=all", "./cmd/web", env=env).refs
    assert len(skopeo_inspect(both, raw=True)["manifests"]) == 2
    (one,) = kodev.run("build", "--platform=linux/arm64", "./cmd/web", env=env).refs
    single = skopeo_inspect(one, raw=True)
    assert single["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert skopeo_inspect(one, config=True)["architecture"] == "arm64"


def test_cyclonedx_sbom_file_and_no_sbom(kodev: Kodev, registry, tmp_path: Path) -> None:
    sboms = tmp_path / "sboms"
    build(kodev, registry.host, "--sbom=cyclonedx", f"--sbom-dir={sboms}", "./cmd/web")
    (document,) = sboms.glob("web-linux-*.cdx.json")
    assert json.loads(document.read_text())["bomFormat"] == "CycloneDX"
    # A label only this test uses gives a digest no earlier test pushed an SBOM for.
    (ref,) = build(kodev, registry.host, "--sbom=none", "-t", "nosbom",
                   "--image-label=test=no-sbom", "./cmd/worker")
    repo, digest = ref.split("@")
    repo = repo.split(":nosbom")[0]
    tags = crane("ls", repo)
    assert f"{digest.replace(':', '-')}.sbom" not in tags


def test_no_change_skips_go_build_but_any_change_rebuilds(kodev: Kodev, registry,
                                                          demo_module: Path) -> None:
    env = {"KO_DOCKER_REPO": f"{registry.host}/demo"}
    (first,) = kodev.run("build", "./cmd/web", env=env).refs
    again = kodev.run("build", "./cmd/web", env=env)
    assert "go build skipped" in again.stderr and again.refs == [first]
    (demo_module / "cmd" / "web" / "extra.go").write_text(
        'package main\n\nfunc init() { println("extra file") }\n')
    added = kodev.run("build", "./cmd/web", env=env)
    assert "go build skipped" not in added.stderr and added.refs != [first]
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    greeting.write_text(greeting.read_text().replace("hello from", "hi from"))
    changed = kodev.run("build", "./cmd/web", env=env)
    assert "go build skipped" not in changed.stderr
    assert "hi from web" in run_image(changed.refs[0], ["--once"]).stdout
