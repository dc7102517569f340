"""Windows images on a synthetic Windows base index in a real registry, checked with
skopeo, crane and Python's tarfile (nothing here reuses kodev's own readers)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import tarfile

import pytest

from tests.fixtures.kodev import Kodev, crane, skopeo_inspect, tool
from tests.windows.base import LINUX, RAWSD, WIN2019, WIN2022, PushedBase, push_windows_base

pytestmark = pytest.mark.registry

WEB = "./cmd/web"  # has kodata/motd.txt
PE_MACHINE_AMD64 = 0x8664


@pytest.fixture
def windows_base(registry) -> PushedBase:
    return push_windows_base(registry.host)


def build(kodev: Kodev, registry, base: PushedBase, *args: str) -> str:
    env = {"KO_DOCKER_REPO": f"{registry.host}/win", "KO_DEFAULTBASEIMAGE": base.reference}
    (ref,) = kodev.run("build", *args, WEB, env=env).refs
    return ref


def layer_tar(ref: str, descriptor: dict[str, object]) -> tarfile.TarFile:
    """A layer blob fetched with crane (bytes, not text), opened with Python's tarfile."""
    repo = ref.split("@", 1)[0]
    blob = subprocess.run([tool("crane"), "blob", f"{repo}@{descriptor['digest']}"],
                          check=True, capture_output=True).stdout
    return tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")


def assert_pe_amd64(data: bytes) -> None:
    assert data[:2] == b"MZ"
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    assert data[pe_offset:pe_offset + 4] == b"PE\0\0"
    (machine,) = struct.unpack_from("<H", data, pe_offset + 4)
    assert machine == PE_MACHINE_AMD64


def test_windows_image_layers_config_and_pe_binary(kodev: Kodev, registry,
                                                   windows_base: PushedBase) -> None:
    # X.Y.Z picks the X.Y.Z.N base (ko's rule): one match gives a single image.
    ref = build(kodev, registry, windows_base, "--platform=windows/amd64:10.0.20348")
    crane("validate", "--remote", ref)
    manifest = skopeo_inspect(ref, raw=True)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    annotations = manifest["annotations"]
    assert isinstance(annotations, dict)
    assert annotations["org.opencontainers.image.base.digest"] == \
        windows_base.child_digests["win2022"]

    config = json.loads(crane("config", ref))
    assert (config["os"], config["architecture"], config["os.version"]) == \
        ("windows", "amd64", "10.0.20348.2582")
    inner = config["config"]
    assert inner["Entrypoint"] == ["C:\\ko-app\\web.exe"]
    assert "Cmd" not in inner
    assert inner["User"] == "ContainerUser"
    assert inner["Env"] == ["PATH=C:\\Windows\\system32;C:\\Windows;C:\\ko-app",
                            "KO_DATA_PATH=C:\\var\\run\\ko"]

    layers = manifest["layers"]
    assert isinstance(layers, list) and len(layers) == 3  # base, kodata, binary
    with layer_tar(ref, layers[1]) as kodata:
        members = kodata.getmembers()
        assert [m.name for m in members] == [
            "Hives", "Files", "Files/var", "Files/var/run", "Files/var/run/ko",
            "Files/var/run/ko/motd.txt"]
        for member in members:
            assert member.mode == 0o555 and member.uid == 0 and member.mtime == 0
            if member.isdir():
                assert "MSWINDOWS.rawsd" not in member.pax_headers
            else:
                assert member.pax_headers["MSWINDOWS.rawsd"] == RAWSD
    with layer_tar(ref, layers[2]) as binary:
        members = binary.getmembers()
        assert [(m.name, m.isdir()) for m in members] == [
            ("Hives", True), ("Files", True), ("Files/ko-app", True),
            ("Files/ko-app/web.exe", False)]
        exe = members[-1]
        assert exe.mode == 0o555
        assert exe.pax_headers["MSWINDOWS.rawsd"] == RAWSD
        handle = binary.extractfile(exe)
        assert handle is not None
        assert_pe_amd64(handle.read())


def test_all_platforms_keep_each_base_descriptor_platform(kodev: Kodev, registry,
                                                          windows_base: PushedBase) -> None:
    ref = build(kodev, registry, windows_base, "--platform=all")
    crane("validate", "--remote", ref)
    index = skopeo_inspect(ref, raw=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    # Same order and the same platform objects as the base (os.version, os.features).
    assert [m["platform"] for m in manifests] == [LINUX, WIN2022, WIN2019]
    repo = ref.split("@", 1)[0]
    linux, win2022, win2019 = (json.loads(crane("config", f"{repo}@{m['digest']}"))
                               for m in manifests)
    assert linux["config"]["Entrypoint"] == ["/ko-app/web"]
    assert "KO_DATA_PATH=/var/run/ko" in linux["config"]["Env"]
    assert win2022["os.version"] == "10.0.20348.2582"
    assert win2019["os.version"] == "10.0.17763.5936"
    # A base without PATH gets PATH set to the app directory.
    assert win2019["config"]["Env"] == ["PATH=C:\\ko-app", "KO_DATA_PATH=C:\\var\\run\\ko"]
    # Both Windows images hold the same binary: Go has no OS version, one build serves both.
    assert win2022["rootfs"]["diff_ids"][-1] == win2019["rootfs"]["diff_ids"][-1]


def test_windows_without_version_matches_every_windows_child(kodev: Kodev, registry,
                                                             windows_base: PushedBase) -> None:
    ref = build(kodev, registry, windows_base, "--platform=windows/amd64")
    manifests = skopeo_inspect(ref, raw=True)["manifests"]
    assert isinstance(manifests, list)
    assert [m["platform"] for m in manifests] == [WIN2022, WIN2019]


def test_partial_os_version_is_not_a_prefix_match(kodev: Kodev, registry,
                                                  windows_base: PushedBase) -> None:
    env = {"KO_DOCKER_REPO": f"{registry.host}/win", "KO_DEFAULTBASEIMAGE": windows_base.reference}
    result = kodev.run("build", "--platform=windows/amd64:10.0.2", WEB, env=env, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("kodev: error: base image ") and "has no image for platform" \
        in lines[-1]
    assert "Traceback" not in result.stderr
