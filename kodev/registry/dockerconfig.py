"""Storing and erasing registry credentials the way ``docker login`` / ``docker logout`` do.

Where: the credential helper ``config.json`` names for the registry (``credHelpers``),
else its ``credsStore``, else ``auths[<server>].auth`` = base64(user:password) in
``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``). With a helper, docker leaves an
empty ``auths`` entry behind, and so does kodev. Other keys in the file are kept; the file
is private to its owner (0600). Secrets never reach a message.

Like docker, a symlinked ``config.json`` is written through: the new content replaces the
link's target (dotfile managers keep the file elsewhere) and the link stays. Unlike docker,
concurrent ``kodev login``s lose no entry: each read-modify-write holds an exclusive lock
(``flock`` on ``.<name>.lock`` beside the target) and the target is replaced atomically, so
a reader never sees half a file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kodev.errors import ConfigError
from kodev.registry.auth import (
    call_credential_helper,
    docker_config_path,
    find_config_entry,
    load_config_file,
    server_url_for,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, writes stay atomic
    fcntl = None  # type: ignore[assignment]


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
    with locked_config(path) as target:
        config = load_config_file(target)
        server = server_url_for(registry)
        auths = _auths(config, path)
        helper = helper_for(config, registry)
        existing = find_config_entry(auths, registry)
        if existing is not None:
            del auths[existing[0]]
        if helper is not None:
            payload = {"ServerURL": server, "Username": username, "Secret": password}
            call_credential_helper(helper, "store", json.dumps(payload), path,
                                   subject=f"for {registry}", secrets=(password,))
            auths[server] = {}
            where = f"credential helper docker-credential-{helper}"
        else:
            pair = f"{username}:{password}".encode()
            auths[server] = {"auth": base64.b64encode(pair).decode("ascii")}
            where = str(path)
        config["auths"] = auths
        _replace(target, config, path)
    return where


def erase_credentials(registry: str, environ: Mapping[str, str]) -> bool:
    """Remove the registry's credentials; False when there were none."""
    path = docker_config_path(environ)
    with locked_config(path) as target:
        config = load_config_file(target)
        auths = _auths(config, path)
        existing = find_config_entry(auths, registry)
        helper = helper_for(config, registry)
        erased = False
        if helper is not None:
            answer = call_credential_helper(helper, "erase", server_url_for(registry), path,
                                            subject=f"for {registry}")
            erased = answer is not None
        if existing is not None:
            del auths[existing[0]]
            config["auths"] = auths
            _replace(target, config, path)
            erased = True
    return erased


@contextlib.contextmanager
def locked_config(path: Path) -> Iterator[Path]:
    """Hold the exclusive lock of the docker config at ``path`` and yield the file to read
    and replace: the symlink's target when ``path`` is a symlink (even a dangling one)."""
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}",
                          hint=f"check the permissions of {target.parent}") from exc
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield target
    finally:
        os.close(fd)  # releases the lock


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    """Replace the docker config at ``path`` (through a symlink), under its lock."""
    with locked_config(path) as target:
        _replace(target, config, path)


def _replace(target: Path, config: Mapping[str, Any], shown: Path) -> None:
    """Replace ``target`` atomically with mode 0600, tab-indented like docker writes it;
    a temporary file in the same directory is renamed over it."""
    text = json.dumps(config, indent="\t") + "\n"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {shown}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {shown}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _auths(config: dict[str, Any], path: Path) -> dict[str, Any]:
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise ConfigError(f"invalid {path}: \"auths\" is not a JSON object",
                          hint="fix or remove the file")
    return auths
