"""One RegistryClient per registry host, shared by every step of a command."""

from __future__ import annotations

import threading

from kodev.registry.auth import Keychain
from kodev.registry.client import RegistryClient


class ClientPool:
    """One client per registry (closed at the end), so connections and tokens are reused."""

    def __init__(self, *, insecure: bool = False, keychain: Keychain | None = None) -> None:
        self.insecure = insecure
        self.keychain = keychain or Keychain()
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, registry: str) -> RegistryClient:
        with self._lock:
            client = self._clients.get(registry)
            if client is None:
                client = RegistryClient(registry, insecure=self.insecure, keychain=self.keychain)
                self._clients[registry] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
