"""Pushing against the real registry when another push races with this one."""

from __future__ import annotations

import io
import tarfile

import httpx
import pytest

from kodev.oci.image import Image
from kodev.oci.layers import layer_from_tar
from kodev.oci.mediatypes import OCI_MANIFEST
from kodev.oci.platform import Platform
from kodev.oci.reference import parse_reference
from kodev.registry.pool import ClientPool
from kodev.registry.push import Pusher
from tests.fixtures.kodev import crane
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.registry


def _tar(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def test_a_blob_gone_before_the_manifest_is_pushed_again(registry: RegistryServer) -> None:
    """Fault: between the check of a blob and the manifest PUT, the blob leaves the
    repository (another push of the same blobs was still committing it: distribution then
    answers the manifest MANIFEST_BLOB_UNKNOWN; here the blob is deleted through the
    registry's API at that moment, so the real registry gives the real answer).
    User sees: the push succeeds: kodev checks the blobs again, uploads the missing one
    and PUTs the manifest once more; the image is complete in the registry."""
    layer = layer_from_tar(_tar("app", b"hello " * 1000))
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    image = Image(OCI_MANIFEST, config, [layer], Platform("linux", "amd64"))
    target = parse_reference(f"{registry.host}/race/app:v1")
    deleted: list[str] = []

    def delete_once(digest: str, _outcome: str, _size: int) -> None:
        if digest == layer.digest and not deleted:
            url = f"http://{registry.host}/v2/race/app/blobs/{digest}"
            assert httpx.delete(url).status_code == 202
            deleted.append(digest)

    pool = ClientPool(insecure_registries=[registry.host])
    try:
        pushed = Pusher(pool, target, on_blob=delete_once).push(image, ["v1"])
    finally:
        pool.close()
    assert deleted == [layer.digest]  # the race happened: the registry lost the blob
    assert pushed == image.digest
    base = f"http://{registry.host}/v2/race/app"
    assert httpx.head(f"{base}/blobs/{layer.digest}").status_code == 200
    assert crane("digest", f"{registry.host}/race/app:v1").strip() == image.digest
    crane("validate", "--remote", f"{registry.host}/race/app:v1")  # every blob is there
