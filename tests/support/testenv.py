"""For scripts (make bench, the TUI screenshot): the running test environment as
environment variables, and throwaway namespaces in it."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def testenv_environ() -> dict[str, str]:
    """Start the test environment if needed; ``os.environ`` plus its ``.testenv/env``."""
    subprocess.run([str(REPO / "tests/testenv/up.sh")], check=True, stdout=subprocess.DEVNULL)
    return {**os.environ, **read_env_file(REPO / ".testenv/env")}


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export KEY=VALUE`` lines of a file that ``up.sh`` wrote."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        parts = shlex.split(raw, comments=True)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            key, value = parts[1].split("=", 1)
            env[key] = value
    return env


def namespace(env: dict[str, str], name: str, *, create: bool, wait: bool = False) -> None:
    """Create (or delete) namespace ``name`` in the cluster ``env["KUBECONFIG"]`` names;
    ``wait``: until a deleted one is gone (its Pods stopped), so that a benchmark that
    follows does not share the node with their teardown."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(config_file=env["KUBECONFIG"]))
    if create:
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return
    api.delete_namespace(name)
    deadline = time.monotonic() + 120
    while wait and time.monotonic() < deadline:
        try:
            api.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)


@contextlib.contextmanager
def demo_in_namespace(env: dict[str, str], prefix: str) -> Iterator[tuple[Path, str]]:
    """A scratch copy of examples/demo (a git work tree, as users have) with its own
    ``KOCACHE`` set in ``env``, and a throwaway namespace; yields (module, namespace)."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as scratch:
        module = Path(scratch) / "demo"
        shutil.copytree(REPO / "examples/demo", module)
        subprocess.run(["git", "init", "-q", str(module)], check=True)
        env["KOCACHE"] = str(Path(scratch) / "kocache")
        name = f"{prefix}-{os.getpid()}"
        namespace(env, name, create=True)
        try:
            yield module, name
        finally:
            namespace(env, name, create=False)
