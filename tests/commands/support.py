"""Helpers for the command tests: kodev with stdin, and a credential helper that stores."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.fixtures.kodev import Kodev, KodevRun


def run_with_input(kodev: Kodev, *args: str, stdin: str, env: dict[str, str] | None = None,
                   timeout: float = 300) -> KodevRun:
    """``python -m kodev ARGS`` like the kodev fixture, with ``stdin`` as its input."""
    proc = subprocess.run([sys.executable, "-m", "kodev", *args], cwd=kodev.workdir,
                          env={**kodev.env, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    return KodevRun(proc.returncode, proc.stdout, proc.stderr)


_STORE_HELPER = """#!{python}
# A docker credential helper (store/get/erase over stdin) keeping secrets in a JSON file
# and recording every call, as the docker-credential-* contract defines.
import json, sys
store, calls = {store!r}, {calls!r}
action = sys.argv[1]
payload = sys.stdin.read()
with open(calls, "a") as log:
    log.write(json.dumps({{"action": action, "stdin": payload}}) + "\\n")
try:
    with open(store) as f:
        data = json.load(f)
except FileNotFoundError:
    data = {{}}
if action == "store":
    entry = json.loads(payload)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
elif action == "get":
    server = payload.strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = data[server]
    print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
elif action == "erase":
    if data.pop(payload.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
else:
    sys.exit(2)
with open(store, "w") as f:
    json.dump(data, f)
"""


def install_store_helper(bin_dir: Path, name: str) -> Path:
    """``docker-credential-<name>`` in ``bin_dir``; returns its call log (JSON lines)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / f"{name}.calls"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(_STORE_HELPER.format(python=sys.executable, store=str(bin_dir / f"{name}"
                                                                             ".store.json"),
                                           calls=str(calls)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return calls


def helper_calls(calls: Path) -> list[dict[str, str]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]
