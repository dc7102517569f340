"""``linux_capabilities``: the binary's file capabilities, as ko sets them, checked with
Python's tarfile, with umoci + getcap (libcap2-bin) and by runc running the binary as the
image's non-root user, binding port 80 in its own network namespace.

The runtime settings are those Kubernetes gives a non-root container by default
(``allowPrivilegeEscalation`` true, so no ``no_new_privs``; no ambient capabilities;
NET_BIND_SERVICE in the bounding set): umoci's generated config grants ambient
capabilities and sets ``noNewPrivileges``, either of which would hide what the file
capabilities do.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev, tool
from tests.support.runimage import fetch_to_layout

pytestmark = pytest.mark.registry

PROGRAM = Path(__file__).parent / "capsapp" / "main.go"
NET_BIND_SERVICE = 1 << 10
KO_YAML = """\
defaultBaseImage: kodev://minimal
builds:
- id: permitted
  main: ./cmd/permitted
  linux_capabilities: [net_bind_service]
- id: effective
  main: ./cmd/effective
  linux_capabilities: net_bind_service=ep
"""


@pytest.fixture
def caps_module(tmp_path: Path) -> Path:
    root = tmp_path / "capsmod"
    for name in ("permitted", "effective"):
        (root / "cmd" / name).mkdir(parents=True)
        shutil.copy(PROGRAM, root / "cmd" / name / "main.go")
    (root / "go.mod").write_text("module example.com/capsmod\n\ngo 1.22\n")
    (root / ".ko.yaml").write_text(KO_YAML)
    return root


def binary_xattr(layout: Path, name: str) -> bytes:
    """The PAX record on ``ko-app/<name>`` in the image's top layer, read with tarfile."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]))
    with tarfile.open(fileobj=gzip.open(layout / "blobs" / "sha256" /
                                        manifest["layers"][-1]["digest"].split(":")[1])) as tar:
        member = tar.getmember(f"ko-app/{name}")
        value = member.pax_headers["SCHILY.xattr.security.capability"]
    return value.encode("utf-8", "surrogateescape")


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def unpack_and_run(layout: Path, bundle: Path) -> tuple[str, str]:
    """``getcap`` of the unpacked binary, and what it prints when runc runs it."""
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:run", str(bundle)], check=True,
                   capture_output=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    binary = bundle / "rootfs" / config["process"]["args"][0].lstrip("/")
    getcap = subprocess.run([tool("getcap"), str(binary)], check=True, capture_output=True,
                            text=True).stdout
    process = config["process"]
    process["terminal"] = False
    process["noNewPrivileges"] = False
    process["capabilities"]["ambient"] = []
    process["capabilities"]["inheritable"] = []
    assert "CAP_NET_BIND_SERVICE" in process["capabilities"]["bounding"]
    assert process["user"]["uid"] == 65532
    config_path.write_text(json.dumps(config))
    name = f"kodev-caps-{uuid.uuid4().hex[:12]}"
    try:
        run = subprocess.run(["runc", "run", "--bundle", str(bundle), name],
                             capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True)
    assert run.returncode == 0, run.stderr
    return getcap, run.stdout


def test_file_capabilities_reach_the_running_binary(
    caps_module: Path, tmp_path: Path, registry
) -> None:
    kodev = Kodev(caps_module, tmp_path / "kocache")
    refs = kodev.run("build", "./cmd/permitted", "./cmd/effective",
                     env={"KO_DOCKER_REPO": f"{registry.host}/caps"}).refs
    seen = {}
    for name, ref in zip(("permitted", "effective"), refs, strict=True):
        layout = tmp_path / f"layout-{name}"
        fetch_to_layout(ref, layout)
        magic, permitted_lo, inheritable_lo, permitted_hi, inheritable_hi = struct.unpack(
            "<5I", binary_xattr(layout, name))
        assert magic & 0xFF000000 == 0x02000000  # VFS_CAP_REVISION_2
        assert (permitted_lo, inheritable_lo, permitted_hi, inheritable_hi) == (
            NET_BIND_SERVICE, 0, 0, 0)
        seen[name] = (magic & 1, *unpack_and_run(layout, tmp_path / f"bundle-{name}"))

    # A list of names is ko's "=p": permitted, not effective; the program raises it.
    effective_bit, getcap, output = seen["permitted"]
    assert effective_bit == 0
    assert getcap.split()[-1] == "cap_net_bind_service=p"
    assert "uid=65532 unprivileged_port_start=1024" in output  # port 80 needs the capability
    assert "permitted=0x400 effective=0x0" in output
    assert "as started: listen tcp 127.0.0.1:80: bind: permission denied" in output
    assert "raised: bound port 80" in output
    # "=ep": the kernel makes it effective at exec.
    effective_bit, getcap, output = seen["effective"]
    assert effective_bit == 1
    assert getcap.split()[-1] == "cap_net_bind_service=ep"
    assert "permitted=0x400 effective=0x400" in output
    assert "as started: bound port 80" in output


def test_an_unknown_capability_is_one_line_and_exit_2(caps_module: Path, tmp_path: Path) -> None:
    (caps_module / ".ko.yaml").write_text(KO_YAML.replace("[net_bind_service]",
                                                          "[net_bind_servise]"))
    kodev = Kodev(caps_module, tmp_path / "kocache")
    result = kodev.run("build", "./cmd/permitted", "--push=false", check=False)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ".ko.yaml: builds[0].linux_capabilities: unknown capability 'net_bind_servise'" \
        in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "kocache" / "bin").exists()  # nothing was built
