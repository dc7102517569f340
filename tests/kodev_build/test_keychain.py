"""A caller's keychain (Terraform's basic_auth) reaches every registry request of a build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kodev.publish import Pipeline, PublishOptions
from kodev.registry.auth import MultiKeychain, StaticKeychain, default_keychain
from kodev.registry.errors import RegistryUnauthorized
from tests.fixtures.kodev import crane, one_main_module
from tests.fixtures.registry import DockerConfig, RegistryServer

pytestmark = pytest.mark.registry

MAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("keychain") }\n'


def publish(module: Path, tmp_path: Path, registry: RegistryServer,
            keychain: MultiKeychain | None) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KO_", "KOCACHE"))}
    environ["KOCACHE"] = str(tmp_path / "kocache")
    options = PublishOptions(docker_repo=f"{registry.host}/keychain", sbom="none")
    pipeline = Pipeline(options, workdir=module, environ=environ, keychain=keychain)
    try:
        return pipeline.publish(["./cmd/job"])[0].reference
    finally:
        pipeline.close()


def test_an_injected_keychain_pushes_where_the_docker_config_has_nothing(
    tmp_path: Path, registry_basic: RegistryServer, docker_config: DockerConfig
) -> None:
    assert registry_basic.username and registry_basic.password
    docker_config.write({})
    module = one_main_module(tmp_path / "keychainmod", MAIN)
    with pytest.raises(RegistryUnauthorized):
        publish(module, tmp_path, registry_basic, None)  # the default keychain: anonymous

    keychain = MultiKeychain(
        StaticKeychain(registry_basic.host, registry_basic.username, registry_basic.password),
        default_keychain())
    reference = publish(module, tmp_path, registry_basic, keychain)

    assert reference.startswith(f"{registry_basic.host}/keychain/job-")
    docker_config.write_auth(registry_basic.host, registry_basic.username,
                             registry_basic.password)  # for crane only
    crane("validate", "--remote", reference)
