"""Storing and erasing registry credentials the way ``docker login`` / ``docker logout`` do.

Where: the credential helper ``config.json`` names for the registry (``credHelpers``),
else its ``credsStore``, else ``auths[<server>].auth`` = base64(user:password) in
``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``). With a helper, docker leaves an
empty ``auths`` entry behind, and so does kodev. Other keys in the file are kept; the file
is replaced atomically and is private to its owner (0600). Secrets never reach a message.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kodev.errors import ConfigError, RegistryError
from kodev.registry.auth import (
    docker_config_path,
    find_config_entry,
    load_config_file,
    server_url_for,
)

_HELPER_TIMEOUT_SECONDS = 60.0


def helper_for(config: Mapping[str, Any], registry: str) -> str | None:
    """The credential helper docker would use for ``registry`` (credHelpers, credsStore)."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        found = find_config_entry(helpers, registry)
        if found is not None and found[1]:
            return str(found[1])
    store = config.get("credsStore")
    return str(store) if store else None


def store_credentials(registry: str, username: str, password: str,
                      environ: Mapping[str, str]) -> str:
    """Save the credentials; returns where they went (a file path or ``helper <name>``)."""
    path = docker_config_path(environ)
    config = load_config_file(path)
    server = server_url_for(registry)
    auths = _auths(config, path)
    helper = helper_for(config, registry)
    existing = find_config_entry(auths, registry)
    if existing is not None:
        del auths[existing[0]]
    if helper is not None:
        payload = {"ServerURL": server, "Username": username, "Secret": password}
        _call_helper(helper, "store", json.dumps(payload), path)
        auths[server] = {}
        where = f"credential helper docker-credential-{helper}"
    else:
        pair = f"{username}:{password}".encode()
        auths[server] = {"auth": base64.b64encode(pair).decode("ascii")}
        where = str(path)
    config["auths"] = auths
    write_config(path, config)
    return where


def erase_credentials(registry: str, environ: Mapping[str, str]) -> bool:
    """Remove the registry's credentials; False when there were none."""
    path = docker_config_path(environ)
    config = load_config_file(path)
    auths = _auths(config, path)
    existing = find_config_entry(auths, registry)
    helper = helper_for(config, registry)
    erased = False
    if helper is not None:
        erased = _call_helper(helper, "erase", server_url_for(registry), path, missing_ok=True)
    if existing is not None:
        del auths[existing[0]]
        config["auths"] = auths
        write_config(path, config)
        erased = True
    return erased


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with mode 0600, tab-indented like docker writes it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(config, indent="\t") + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _auths(config: dict[str, Any], path: Path) -> dict[str, Any]:
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise ConfigError(f"invalid {path}: \"auths\" is not a JSON object",
                          hint="fix or remove the file")
    return auths


def _call_helper(helper: str, action: str, stdin: str, config_path: Path, *,
                 missing_ok: bool = False) -> bool:
    """``docker-credential-<helper> store|erase`` with docker's stdin protocol."""
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        raise ConfigError(f"credential helper {program} (configured in {config_path}) is "
                          "not on PATH", hint=f"install {program} or remove it from "
                          f"{config_path}")
    try:
        result = subprocess.run([executable, action], input=stdin, capture_output=True,
                                text=True, timeout=_HELPER_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"credential helper {program} did not answer ({action})") from exc
    if result.returncode == 0:
        return True
    first = (result.stdout.strip() or result.stderr.strip() or
             f"exit status {result.returncode}").splitlines()[0][:200]
    if missing_ok and "credentials not found" in first.lower():
        return False
    raise RegistryError(f"credential helper {program} {action} failed: {first}")
