"""Registry layer: OCI distribution HTTP client (httpx), authentication, retries.

Public surface (what the rest of kodev calls):

- ``kodev.registry.client.RegistryClient(registry, *, insecure=False, keychain=None,
  user_agent=..., max_attempts=5, jobs=4)``: one per registry host; thread-safe.
- ``kodev.registry.auth.Keychain``: resolves credentials for a registry from
  ``DOCKER_CONFIG``/``~/.docker/config.json``/``REGISTRY_AUTH_FILE`` (auths, credHelpers,
  credsStore through ``docker-credential-*``).
- ``kodev.registry.errors``: RegistryError subclasses (unauthorized, not found, unreachable).
"""
