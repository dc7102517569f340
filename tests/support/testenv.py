"""For scripts (make bench, the TUI screenshot): the running test environment as
environment variables, and throwaway namespaces in it."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
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
