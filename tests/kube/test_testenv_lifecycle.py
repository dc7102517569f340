"""The test environment leaves the machine as it found it, and says why when it cannot run.

A second environment (its own state directory, so its own network namespace, cgroups and
ports) is started and stopped next to the session's; the machine's own network namespace,
firewall, ``ip_forward`` and mount table must be the same before ``up.sh`` and after
``down.sh``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.kube import TESTENV_SCRIPTS, KubeEnv, load_running_env

pytestmark = pytest.mark.kube


def _run(*cmd: str) -> str:
    result = subprocess.run(list(cmd), capture_output=True, text=True)
    return result.stdout + (f"(exit {result.returncode}) {result.stderr}"
                            if result.returncode else "")


def host_state(ignore_under: Path) -> dict[str, str]:
    """What the environment must not change in the machine's own namespaces."""
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines()
              if not line.split()[1].startswith(f"{ignore_under}/")]
    return {
        "ip addr": _run("ip", "addr"),
        "ip route": _run("ip", "route"),
        "ip -6 route": _run("ip", "-6", "route"),
        "iptables-save": "\n".join(line for line in _run("iptables-save").splitlines()
                                   if not line.startswith("#")),
        "ip6tables-save": "\n".join(line for line in _run("ip6tables-save").splitlines()
                                    if not line.startswith("#")),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "mounts": "\n".join(mounts),
        "netns": _run("ip", "netns", "list"),
    }


def cgroups_named(name: str) -> list[str]:
    return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{name}")]


def test_a_second_environment_starts_and_leaves_nothing_behind(
        kube_env: KubeEnv, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "KODEV_TESTENV_DIR": str(state), "KODEV_TESTENV_OWNER": "lifecycle"}
    before = host_state(kube_env.state_dir)
    started = subprocess.run([str(TESTENV_SCRIPTS / "up.sh")], env=env, capture_output=True,
                             text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        second = load_running_env(state)
        assert second is not None and second.netns != kube_env.netns
        assert second.registry != kube_env.registry
        recorded = (state / "netns").read_text().strip()
        assert recorded in _run("ip", "netns", "list")
        node_cgroups = cgroups_named(f"kodev-{recorded.removeprefix('kodev-')}")
        assert node_cgroups, "the node's processes live in their own cgroups"
    finally:
        stopped = subprocess.run([str(TESTENV_SCRIPTS / "down.sh")], env=env,
                                 capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert not state.exists()
    assert cgroups_named(f"kodev-{recorded.removeprefix('kodev-')}") == []
    after = host_state(kube_env.state_dir)
    for key, value in before.items():
        assert after[key] == value, f"{key} changed:\nbefore:\n{value}\nafter:\n{after[key]}"


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory an unprivileged user can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="kodev-noroot-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_without_root_up_says_why_in_one_line(world_readable_dir: Path) -> None:
    # A copy of the scripts where an unprivileged user can read them (the clone may not be).
    scripts = world_readable_dir / "testenv"
    scripts.mkdir(mode=0o755)
    for name in ("up.sh", "lib.sh"):
        shutil.copy2(TESTENV_SCRIPTS / name, scripts / name)
    state = world_readable_dir / "state"
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(scripts / "up.sh")],
        env={"PATH": os.environ["PATH"], "KODEV_TESTENV_DIR": str(state)},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "testenv: cannot start the real node: the real node needs root (network namespace, "
        "cgroups, mounts); run as root"]
    assert not state.exists()
