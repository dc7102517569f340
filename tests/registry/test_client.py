"""RegistryClient against a real distribution 2.8 registry (Debian's docker-registry)."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import pytest

from kodev.errors import RegistryError
from kodev.oci.mediatypes import DOCKER_MANIFEST, OCI_MANIFEST
from kodev.registry.auth import DockerConfigKeychain
from kodev.registry.client import Descriptor, RegistryClient
from kodev.registry.errors import (
    BlobUnknown,
    DigestMismatch,
    ManifestUnknown,
    RegistryServerError,
    RegistryUnreachable,
)
from tests.fixtures.registry import (
    DockerConfig,
    FlakyProxy,
    RegistryFactory,
    RegistryServer,
    TestImage,
    blob_digest,
    free_port,
    make_test_image,
    opener_for,
)

pytestmark = pytest.mark.registry



def make_client(host: str, **options: Any) -> RegistryClient:
    """A client with a tiny backoff so retry tests stay fast."""
    return RegistryClient(host, backoff_base=0.01, backoff_cap=0.05, **options)


def unique_repo(prefix: str) -> str:
    return f"kodev-test/{prefix}-{secrets.token_hex(4)}"


class RecordingReader(io.BytesIO):
    """A blob stream that remembers the largest single read, to prove uploads stream."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.largest_read = max(self.largest_read, len(piece))
        return piece


class CountingOpener:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.readers: list[RecordingReader] = []

    def __call__(self) -> BinaryIO:
        reader = RecordingReader(self.data)
        self.readers.append(reader)
        return reader


def refuse_to_open() -> BinaryIO:
    raise AssertionError("the blob should not have been read")


def request_lines(caplog: pytest.LogCaptureFixture, method: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "kodev.registry" and r.getMessage().startswith(f"{method} ")]


def push_image(client: RegistryClient, repo: str, image: TestImage, tag: str) -> str:
    for blob in image.blobs():
        client.push_blob(repo, blob_digest(blob), len(blob), opener_for(blob))
    return client.put_manifest(repo, tag, image.manifest, image.media_type)


@pytest.fixture
def client(registry: RegistryServer, docker_config: DockerConfig) -> Iterator[RegistryClient]:
    with make_client(registry.host) as c:
        yield c


# ------------------------------------------------------------------ blobs


def test_loopback_registry_uses_plain_http(registry: RegistryServer) -> None:
    with RegistryClient(registry.host) as client:
        assert client.scheme == "http"
    with RegistryClient("registry.example.com") as client:
        assert client.scheme == "https"
    with RegistryClient("registry.example.com:5000", insecure=True) as client:
        assert client.scheme == "http"


def test_monolithic_upload_round_trip(
    client: RegistryClient, caplog: pytest.LogCaptureFixture
) -> None:
    repo, data = unique_repo("mono"), os.urandom(100_000)
    digest = blob_digest(data)
    caplog.set_level(logging.DEBUG, logger="kodev.registry")

    client.upload_blob(repo, digest, len(data), opener_for(data))

    assert len(request_lines(caplog, "PUT")) == 1
    assert request_lines(caplog, "PATCH") == []
    assert client.blob_exists(repo, digest)
    assert client.get_blob(repo, digest) == data
    assert b"".join(client.open_blob(repo, digest)) == data


def test_empty_blob(client: RegistryClient) -> None:
    repo, digest = unique_repo("empty"), blob_digest(b"")

    assert client.push_blob(repo, digest, 0, opener_for(b"")) == "uploaded"
    assert client.get_blob(repo, digest) == b""


def test_chunked_upload_streams_chunks(
    registry: RegistryServer, docker_config: DockerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    repo, data = unique_repo("chunked"), os.urandom(300_001)
    digest, opener = blob_digest(data), CountingOpener(data)
    caplog.set_level(logging.DEBUG, logger="kodev.registry")

    with RegistryClient(registry.host, chunk_size=64 * 1024) as client:
        assert client.push_blob(repo, digest, len(data), opener) == "uploaded"
        assert client.get_blob(repo, digest) == data

    assert len(request_lines(caplog, "PATCH")) == 5  # 4 full chunks + 1 partial
    assert len(opener.readers) == 1
    assert opener.readers[0].largest_read <= 64 * 1024


def test_push_blob_skips_existing_blob(client: RegistryClient) -> None:
    repo, data = unique_repo("exists"), os.urandom(1000)
    digest = blob_digest(data)

    assert client.push_blob(repo, digest, len(data), opener_for(data)) == "uploaded"
    assert client.push_blob(repo, digest, len(data), refuse_to_open) == "exists"


def test_cross_repo_mount(client: RegistryClient) -> None:
    source, target, data = unique_repo("src"), unique_repo("dst"), os.urandom(2000)
    digest = blob_digest(data)
    client.push_blob(source, digest, len(data), opener_for(data))

    assert client.push_blob(target, digest, len(data), refuse_to_open,
                            mount_from=source) == "mounted"
    assert client.get_blob(target, digest) == data


def test_mount_of_missing_blob_falls_back(client: RegistryClient) -> None:
    source, target, data = unique_repo("src"), unique_repo("dst"), os.urandom(2000)
    digest = blob_digest(data)

    assert client.mount_blob(target, digest, source) is False
    assert not client.blob_exists(target, digest)
    assert client.push_blob(target, digest, len(data), opener_for(data),
                            mount_from=source) == "uploaded"
    assert client.get_blob(target, digest) == data


def test_missing_blob_and_manifest(client: RegistryClient) -> None:
    repo, digest = unique_repo("missing"), blob_digest(b"nothing here")

    assert client.blob_exists(repo, digest) is False
    assert client.head_manifest(repo, "latest") is None
    with pytest.raises(BlobUnknown):
        client.get_blob(repo, digest)
    with pytest.raises(ManifestUnknown):
        client.get_manifest(repo, "latest")
    assert client.list_tags(repo) == []


def test_get_blob_detects_tampered_content(
    client: RegistryClient, registry: RegistryServer
) -> None:
    """Fault: a blob's bytes are changed in the registry's storage (same size). User sees: a digest
    mismatch error naming the digest; the bytes are never used."""
    repo, data = unique_repo("tamper"), os.urandom(4096)
    digest = blob_digest(data)
    client.upload_blob(repo, digest, len(data), opener_for(data))
    stored = registry.blob_path(digest)
    stored.write_bytes(bytes(b ^ 0xFF for b in data))  # same size, different bytes

    with pytest.raises(DigestMismatch, match=digest):
        client.get_blob(repo, digest)


def test_upload_with_wrong_digest_is_rejected(client: RegistryClient) -> None:
    repo, data = unique_repo("baddigest"), os.urandom(512)

    with pytest.raises(DigestMismatch):
        client.upload_blob(repo, blob_digest(b"other"), len(data), opener_for(data))


def test_parallel_pushes_share_one_client(client: RegistryClient) -> None:
    repo = unique_repo("parallel")
    blobs = [os.urandom(50_000 + i) for i in range(12)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(
            lambda b: client.push_blob(repo, blob_digest(b), len(b), opener_for(b)), blobs))

    assert results == ["uploaded"] * len(blobs)
    assert all(client.get_blob(repo, blob_digest(b)) == b for b in blobs)


# ------------------------------------------------------------------ manifests


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_manifest_round_trip(client: RegistryClient, docker: bool) -> None:
    repo, image = unique_repo("manifest"), make_test_image(docker=docker)
    expected_type = DOCKER_MANIFEST if docker else OCI_MANIFEST

    digest = push_image(client, repo, image, "v1")

    assert digest == image.manifest_digest
    by_tag = client.get_manifest(repo, "v1")
    assert (by_tag.body, by_tag.media_type, by_tag.digest) == (
        image.manifest, expected_type, digest)
    assert client.get_manifest(repo, digest).body == image.manifest
    assert client.head_manifest(repo, "v1") == Descriptor(
        expected_type, digest, len(image.manifest))
    assert client.list_tags(repo) == ["v1"]


def test_put_manifest_by_digest_and_delete(client: RegistryClient) -> None:
    repo, image = unique_repo("bydigest"), make_test_image(annotation="by-digest")
    push_image(client, repo, image, "tmp")

    assert client.put_manifest(repo, image.manifest_digest, image.manifest,
                               image.media_type) == image.manifest_digest
    with pytest.raises(DigestMismatch):
        client.put_manifest(repo, blob_digest(b"x"), image.manifest, image.media_type)

    client.delete_manifest(repo, image.manifest_digest)
    assert client.head_manifest(repo, image.manifest_digest) is None


def test_get_manifest_by_digest_detects_tampering(
    client: RegistryClient, registry: RegistryServer
) -> None:
    """Fault: a manifest is changed in the registry's storage after it was pushed. User sees: a
    digest mismatch error; the tampered manifest is never used."""
    repo, image = unique_repo("tampered"), make_test_image(annotation="original")
    digest = push_image(client, repo, image, "v1")
    stored = registry.blob_path(digest)
    stored.write_bytes(stored.read_bytes().replace(b"original", b"modified"))

    with pytest.raises(DigestMismatch, match="has digest"):
        client.get_manifest(repo, digest)


def test_manifest_referencing_missing_blobs_is_refused(client: RegistryClient) -> None:
    repo, image = unique_repo("incomplete"), make_test_image()

    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
        client.put_manifest(repo, "v1", image.manifest, image.media_type)


def test_referrers_unsupported_on_distribution_2_8(client: RegistryClient) -> None:
    repo, image = unique_repo("referrers"), make_test_image()
    digest = push_image(client, repo, image, "v1")

    assert client.referrers(repo, digest) is None


def test_skopeo_inspects_pushed_image(
    client: RegistryClient, registry: RegistryServer, skopeo: str, tmp_path: os.PathLike[str]
) -> None:
    repo, image = unique_repo("skopeo"), make_test_image(annotation="for-skopeo")
    digest = push_image(client, repo, image, "v1")

    result = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1"],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )

    inspected = json.loads(result.stdout)
    assert inspected["Digest"] == digest
    assert inspected["Architecture"] == "amd64"
    assert inspected["Layers"] == [blob_digest(image.layer)]


def test_relative_upload_locations(
    registry_factory: RegistryFactory, docker_config: DockerConfig
) -> None:
    server = registry_factory.create("relative-urls", http_options={"relativeurls": True})
    repo, data = unique_repo("relative"), os.urandom(200_000)

    with RegistryClient(server.host, chunk_size=50_000) as client:
        client.upload_blob(repo, blob_digest(data), len(data), opener_for(data))
        client.upload_blob(repo, blob_digest(data[:100]), 100, opener_for(data[:100]))
        assert client.get_blob(repo, blob_digest(data)) == data


# ------------------------------------------------------------------ failures and retries


def test_unreachable_registry_fails_fast(docker_config: DockerConfig) -> None:
    """Fault: nothing listens on the registry's port. User sees: 'cannot reach registry HOST
    (connection refused)' with a hint, within 2 s."""
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()

    with (
        make_client(host, max_attempts=2) as client,
        pytest.raises(RegistryUnreachable) as caught,
    ):
        client.blob_exists("x", blob_digest(b""))

    assert time.monotonic() - started < 2.0
    assert str(caught.value) == f"cannot reach registry {host} (connection refused)"
    assert caught.value.hint


def proxied_client(proxy: FlakyProxy, **options: Any) -> RegistryClient:
    return make_client(proxy.host, **options)


def outcomes(proxy: FlakyProxy) -> list[str]:
    return [outcome for _method, _path, outcome in proxy.log]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retries_transient_statuses(
    flaky_proxy: FlakyProxy, docker_config: DockerConfig, status: int
) -> None:
    """Fault: the registry answers 500, 502, 503, 504 or 429 twice. User sees: nothing; the push is
    retried and succeeds."""
    repo, image = unique_repo("retry"), make_test_image(annotation=f"retry-{status}")
    flaky_proxy.fail(2, status=status)

    with proxied_client(flaky_proxy) as client:
        digest = push_image(client, repo, image, "v1")
        assert client.get_manifest(repo, "v1").digest == digest

    assert outcomes(flaky_proxy)[:3] == [str(status), str(status), "forwarded"]


def test_honours_retry_after(flaky_proxy: FlakyProxy, docker_config: DockerConfig) -> None:
    """Fault: the registry answers 429 with Retry-After: 1. User sees: nothing; kodev waits as told
    and goes on."""
    flaky_proxy.fail(1, status=429, retry_after="1")
    started = time.monotonic()

    with proxied_client(flaky_proxy) as client:
        assert client.blob_exists(unique_repo("ra"), blob_digest(b"x")) is False

    assert time.monotonic() - started >= 0.9


def test_retries_connection_resets(flaky_proxy: FlakyProxy, docker_config: DockerConfig) -> None:
    """Fault: the registry resets the connection twice. User sees: nothing; the upload is retried
    and succeeds."""
    repo, data = unique_repo("reset"), os.urandom(3000)
    flaky_proxy.fail(2, reset=True)

    with proxied_client(flaky_proxy) as client:
        assert client.push_blob(repo, blob_digest(data), len(data), opener_for(data)) == (
            "uploaded")

    assert outcomes(flaky_proxy)[:2] == ["reset", "reset"]


def test_gives_up_after_max_attempts(flaky_proxy: FlakyProxy, docker_config: DockerConfig) -> None:
    """Fault: the registry answers 503 to every request. User sees: a registry error naming the
    status after a bounded number of attempts (3 here)."""
    flaky_proxy.fail(10, status=503)

    with (
        proxied_client(flaky_proxy, max_attempts=3) as client,
        pytest.raises(RegistryServerError, match="503") as caught,
    ):
        client.get_manifest(unique_repo("giveup"), "latest")

    assert caught.value.status_code == 503
    assert outcomes(flaky_proxy) == ["503"] * 3


def test_no_retry_on_client_errors(flaky_proxy: FlakyProxy, docker_config: DockerConfig) -> None:
    with (
        proxied_client(flaky_proxy) as client,
        pytest.raises(RegistryError, match="400"),
    ):
        client.put_manifest(unique_repo("bad"), "v1", b"{not json", OCI_MANIFEST)

    assert [method for method, _path, _ in flaky_proxy.log] == ["PUT"]


def test_chunked_upload_restarts_after_failed_chunk(
    flaky_proxy: FlakyProxy, docker_config: DockerConfig
) -> None:
    """Fault: one chunk of a chunked upload fails with 502. User sees: nothing; the upload restarts
    from a reopened source and the blob arrives intact."""
    repo, data = unique_repo("restart-upload"), os.urandom(200_000)
    opener = CountingOpener(data)
    flaky_proxy.fail(1, status=502, methods={"PATCH"})

    with proxied_client(flaky_proxy, chunk_size=64 * 1024) as client:
        client.upload_blob(repo, blob_digest(data), len(data), opener)
        assert client.get_blob(repo, blob_digest(data)) == data

    assert len(opener.readers) == 2  # reopened for the second attempt
    assert outcomes(flaky_proxy).count("502") == 1


def test_survives_registry_restart(
    registry_factory: RegistryFactory, docker_config: DockerConfig
) -> None:
    """Fault: the registry process is stopped and started again under a client with pooled
    connections. User sees: 'cannot reach registry' while it is down, then pushes and pulls work
    again with no restart of kodev."""
    server = registry_factory.create("restarting")
    repo, first, second = unique_repo("restart"), os.urandom(5000), os.urandom(6000)

    with make_client(server.host) as client:
        client.push_blob(repo, blob_digest(first), len(first), opener_for(first))
        server.stop()
        with pytest.raises(RegistryUnreachable):
            client.blob_exists(repo, blob_digest(first))
        server.start()
        # Pooled keep-alive connections died with the old process.
        assert client.get_blob(repo, blob_digest(first)) == first
        assert client.push_blob(repo, blob_digest(second), len(second),
                                opener_for(second)) == "uploaded"


def test_default_keychain_is_used(registry: RegistryServer, docker_config: DockerConfig) -> None:
    """An anonymous registry never makes the client read credentials."""
    docker_config.write("{ this is not json")  # would raise ConfigError if it were read

    with RegistryClient(registry.host, keychain=DockerConfigKeychain()) as client:
        assert client.list_tags(unique_repo("anon")) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_blob_reader_streams_across_registries_and_refuses_tampered_content(
    client: RegistryClient, registry: RegistryServer, registry_factory: RegistryFactory,
    chunked: bool,
) -> None:
    """A blob copied from another registry through ``blob_reader`` arrives intact; when
    the source's bytes were tampered with, the copy fails before the upload is finished,
    so the target never holds the blob."""
    source = registry_factory.create(f"copy-source-{'chunked' if chunked else 'whole'}")
    repo, data = unique_repo("copy"), os.urandom(3 * 1024 * 1024 + 17)
    digest = blob_digest(data)
    options = {"chunk_size": 1024 * 1024} if chunked else {}
    with make_client(source.host) as src, make_client(registry.host, **options) as dst:
        src.upload_blob(repo, digest, len(data), opener_for(data))
        assert dst.push_blob(repo, digest, len(data),
                             lambda: src.blob_reader(repo, digest, len(data))) == "uploaded"
        assert dst.get_blob(repo, digest, size=len(data)) == data

        other = unique_repo("copy-tampered")
        source.blob_path(digest).write_bytes(bytes(b ^ 0xFF for b in data))
        with pytest.raises(DigestMismatch, match=digest):
            dst.push_blob(other, digest, len(data),
                          lambda: src.blob_reader(repo, digest, len(data)))
        assert dst.blob_exists(other, digest) is False


def test_get_manifest_checks_the_descriptor_size(client: RegistryClient) -> None:
    repo, image = unique_repo("manifest-size"), make_test_image()
    for blob in image.blobs():
        client.upload_blob(repo, blob_digest(blob), len(blob), opener_for(blob))
    digest = client.put_manifest(repo, "v1", image.manifest, image.media_type)

    size = len(image.manifest)
    assert client.get_manifest(repo, digest, size=size).body == image.manifest
    with pytest.raises(DigestMismatch, match="descriptor"):
        client.get_manifest(repo, digest, size=size - 1)
    with pytest.raises(DigestMismatch, match="descriptor"):
        client.get_manifest(repo, digest, size=size + 1)
    with pytest.raises(RegistryError, match="at most"):
        client.get_manifest(repo, digest, size=64 * 1024 * 1024)
