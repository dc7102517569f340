"""Shared fixtures: real registries (tests.fixtures.registry), the real Kubernetes test
environment (tests.fixtures.kube) and kodev-specific helpers (tests.fixtures.kodev)."""

pytest_plugins = ["tests.fixtures.registry", "tests.fixtures.kube", "tests.fixtures.kodev"]
