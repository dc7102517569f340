"""For scripts (make bench, the TUI screenshot): the running test environment as
environment variables, and throwaway namespaces in it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def testenv_environ() -> dict[str, str]:
    """Start the test environment if needed; ``os.environ`` plus its ``.testenv/env``."""
    subprocess.run([str(REPO / "tests/testenv/up.sh")], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    for line in (REPO / ".testenv/env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
    return env


def namespace(env: dict[str, str], name: str, *, create: bool) -> None:
    """Create (or delete) namespace ``name`` in the cluster ``env["KUBECONFIG"]`` names."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=env["KUBECONFIG"]))
    if create:
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    else:
        api.delete_namespace(name)
