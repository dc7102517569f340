"""One RegistryClient per registry host, shared by every step of a command."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from kodev.registry.auth import Keychain, default_keychain
from kodev.registry.client import RegistryClient


class ClientPool:
    """One client per registry (closed at the end), so connections and tokens are reused.

    ``insecure_registries`` names the registries that may be reached without certificate
    checks or over plain http (``--insecure-registry`` names the target repository's
    registry, as in go-containerregistry); every other registry (base images, a registry a
    blob is copied from) keeps https with certificate checks (loopback: plain http).
    """

    def __init__(
        self,
        *,
        insecure_registries: Iterable[str] = (),
        keychain: Keychain | None = None,
    ) -> None:
        self.insecure_registries = frozenset(r.lower() for r in insecure_registries)
        self.keychain = keychain if keychain is not None else default_keychain()
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def is_insecure(self, registry: str) -> bool:
        return registry.lower() in self.insecure_registries

    def get(self, registry: str) -> RegistryClient:
        with self._lock:
            client = self._clients.get(registry)
            if client is None:
                client = RegistryClient(registry, insecure=self.is_insecure(registry),
                                        keychain=self.keychain)
                self._clients[registry] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
