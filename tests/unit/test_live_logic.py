"""The pure decisions of ``kodev up --live`` (kodev/dev/live.py): which volume, which
containers, whether a new image may go live."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from kodev.dev.live import (
    PodContainer,
    add_live_volume,
    frame,
    kodata_digest,
    live_blocker,
    running_targets,
)
from kodev.golang.builder import BuiltBinary
from kodev.oci.image import Image
from kodev.oci.layers import Layer, kodata_tar
from kodev.oci.platform import Platform

LINUX = Platform("linux", "amd64")
LIVE_ENTRY = ["/kodev/live", "run", "--", "/ko-app/web"]


def _image(*layers: str, entrypoint: list[str] = LIVE_ENTRY, os: str = "linux",
           env: tuple[str, ...] = ()) -> Image:
    return Image("application/vnd.oci.image.manifest.v1+json",
                 {"config": {"Entrypoint": entrypoint, "Env": list(env)}},
                 [Layer(f"sha256:{name}", f"sha256:{name}", 1) for name in layers],
                 Platform(os, "amd64"))


def _binary(sha: str = "b1") -> dict[Platform, BuiltBinary]:
    return {LINUX: BuiltBinary("example.com/web", LINUX, Path("/x"), sha, 1)}


def test_the_volume_goes_to_the_containers_that_run_kodev_images() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {
        "initContainers": [{"name": "migrate", "image": "r/web@sha256:1"}],
        "containers": [{"name": "web", "image": "r/web@sha256:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                       {"name": "proxy", "image": "envoy:1"}],
        "volumes": [{"name": "data", "emptyDir": {}}]}}}}
    result = add_live_volume(deployment, {"r/web@sha256:1"}.__contains__)
    spec = result["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "data", "emptyDir": {}},
                               {"name": "kodev-live", "emptyDir": {}}]
    web, proxy = spec["containers"]
    assert web["volumeMounts"] == [{"name": "data", "mountPath": "/data"},
                                   {"name": "kodev-live", "mountPath": "/kodev-live"}]
    assert "volumeMounts" not in proxy
    assert spec["initContainers"][0]["volumeMounts"][0]["name"] == "kodev-live"
    assert "volumeMounts" not in deployment["spec"]["template"]["spec"]["initContainers"][0]
    again = add_live_volume(result, {"r/web@sha256:1"}.__contains__)
    assert again == result  # applying twice adds nothing twice


def test_a_new_binary_or_new_kodata_may_go_live_anything_else_rolls() -> None:
    old = _image("base", "kodata1", "live", "bin1")
    assert live_blocker(frame(old), _image("base", "kodata1", "live", "bin2"), _binary()) is None
    new_kodata = _image("base", "kodata2", "live", "bin1")
    assert live_blocker(frame(old), new_kodata, _binary()) is None
    assert kodata_digest(new_kodata) != kodata_digest(old)
    assert "base image or config" in str(live_blocker(
        frame(old), _image("base2", "kodata1", "live", "bin2"), _binary()))
    assert "base image or config" in str(live_blocker(
        frame(old), _image("base", "kodata1", "live", "bin2", env=("A=1",)), _binary()))
    assert "no live supervisor" in str(live_blocker(
        frame(old), _image("base", "kodata1", "bin2", entrypoint=["/ko-app/web"]), _binary()))
    assert "Linux" in str(live_blocker(frame(old), _image("b", "k", "l", "x", os="windows"),
                                       _binary()))
    two = {**_binary(), Platform("linux", "arm64"): next(iter(_binary().values()))}
    assert "several platforms" in str(live_blocker(frame(old), old, two))
    assert live_blocker(None, old, _binary()) == "nothing of it runs yet"


def test_only_running_containers_of_live_pods_are_targets() -> None:
    pods = [
        {"metadata": {"name": "web-1", "uid": "u1"}, "spec": {"terminationGracePeriodSeconds": 5},
         "status": {"containerStatuses": [
             {"name": "web", "state": {"running": {}}},
             {"name": "proxy", "state": {"running": {}}}]}},
        {"metadata": {"name": "web-2", "uid": "u2"},
         "status": {"containerStatuses": [{"name": "web", "state": {"waiting": {}}}]}},
        {"metadata": {"name": "web-0", "uid": "u0", "deletionTimestamp": "x"},
         "status": {"containerStatuses": [{"name": "web", "state": {"running": {}}}]}},
    ]
    assert running_targets(pods, ["web"]) == [PodContainer("web-1", "u1", "web", 5)]


def test_kodata_travels_as_a_plain_tar_of_relative_names(tmp_path: Path) -> None:
    (tmp_path / "kodata" / "sub").mkdir(parents=True)
    (tmp_path / "kodata" / "motd.txt").write_text("hi\n")
    (tmp_path / "kodata" / "sub" / "x.txt").write_text("x\n")
    data = kodata_tar(tmp_path / "kodata", allowed_root=tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["motd.txt", "sub", "sub/x.txt"]
        member = tar.extractfile("motd.txt")
        assert member is not None and member.read() == b"hi\n"
