"""Images and indexes are values: nothing can change one after its digest is known."""

from __future__ import annotations

import json

import pytest

from kodev.oci.artifact import artifact_manifest
from kodev.oci.image import Image, Index
from kodev.oci.layers import Layer
from kodev.oci.mediatypes import OCI_INDEX, OCI_MANIFEST, sha256_digest
from kodev.oci.platform import Platform


def _image(arch: str = "amd64") -> Image:
    return Image(OCI_MANIFEST, {"architecture": arch, "os": "linux", "config": {"Env": []}},
                 [Layer("sha256:aa", "sha256:bb", 3)], Platform("linux", arch),
                 annotations={"a": "1"})


def test_an_image_cannot_be_changed_after_its_digest_is_known() -> None:
    image = _image()
    digest = image.digest
    with pytest.raises(AttributeError, match="immutable"):
        image.platform = Platform("linux", "arm64")
    with pytest.raises(AttributeError, match="immutable"):
        image.layers = ()
    with pytest.raises(TypeError):
        image.annotations["a"] = "2"  # type: ignore[index]
    config = image.config
    config["config"]["Env"].append("X=1")  # a copy: the image keeps its own
    assert image.config["config"]["Env"] == []
    assert image.digest == digest == sha256_digest(image.manifest_bytes())
    manifest = json.loads(image.manifest_bytes())
    assert manifest["config"]["digest"] == sha256_digest(image.config_bytes())


def test_an_index_is_fixed_too() -> None:
    extras = [{"platform": {"os": "linux", "architecture": "amd64", "os.version": "x"}}]
    index = Index(OCI_INDEX, [_image()], descriptor_extras=extras)
    digest = index.digest
    extras[0]["platform"]["os.version"] = "changed"  # the caller's dict, not the index's
    with pytest.raises(AttributeError, match="immutable"):
        index.images = ()
    assert index.digest == digest
    assert json.loads(index.manifest_bytes())["manifests"][0]["platform"]["os.version"] == "x"


def test_an_artifact_has_the_empty_config() -> None:
    artifact = artifact_manifest(_image().descriptor(), "application/spdx+json", b"{}")
    assert artifact.config_bytes() == b"{}"
    assert json.loads(artifact.manifest_bytes())["config"]["digest"] == sha256_digest(b"{}")
