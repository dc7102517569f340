"""Registry layer: OCI distribution HTTP client (httpx), authentication, retries.

Public surface (what the rest of kodev calls):

- ``kodev.registry.client.RegistryClient(registry, *, insecure=False, keychain=None,
  user_agent=..., max_attempts=5, jobs=4)``: one per registry host; thread-safe.
- ``kodev.registry.auth.Keychain``: the protocol ``resolve(registry) -> Credentials | None``;
  ``DockerConfigKeychain`` (the default, ``default_keychain()``) reads
  ``DOCKER_CONFIG``/``~/.docker/config.json``/``REGISTRY_AUTH_FILE`` (auths, credHelpers,
  credsStore through ``docker-credential-*``); ``StaticKeychain(registry, username,
  password)`` answers for one registry; ``MultiKeychain(*keychains)`` asks in order.
  ``RegistryClient``/``ClientPool``/``Pipeline`` take a ``keychain=``.
- ``kodev.registry.errors``: RegistryError subclasses (unauthorized, not found, unreachable).
"""

import sys

# ``import httpx`` also imports httpx's own command line (``httpx._main``) whenever click,
# rich and pygments are installed (they are here: rich draws kodev's terminal UI), which
# is more than half of httpx's import time (~0.1 s of CPU) on every registry-talking run.
# kodev never uses that command line: a None entry makes its import fail, and httpx then
# falls back to a stub ``httpx.main``. Only if httpx is not loaded yet.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
