"""Base images: fetched from a registry (manifests and configs cached by digest), or built in.

Two bases need no network at all:

- ``scratch``: no layers; the binary is the whole file system.
- ``kodev://minimal``: one reproducible layer that kodev assembles itself, with what a
  static Go binary expects from its environment: ``/etc/passwd`` and ``/etc/group`` with
  the ``nonroot`` user (uid/gid 65532, the image's default user), a CA bundle (from
  ``certifi``) at the path Go looks for, time zone data (from ``tzdata``), ``/tmp`` and
  ``/home/nonroot``. Its bytes depend only on those two package versions.

Base layers from a registry are never downloaded: the publisher mounts or streams them.
Manifests and configs are read with a size cap (the registry client's, 4 MiB for a
manifest) and, when a descriptor gives their size, must have exactly that size and digest;
anything malformed in them is a RegistryError naming the base, never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from kodev.cache import Cache
from kodev.errors import RegistryError, UsageError
from kodev.oci.image import Image, Index
from kodev.oci.layers import BlobLocation, Layer, TarBuilder, layer_from_tar
from kodev.oci.mediatypes import (
    OCI_INDEX,
    OCI_MANIFEST,
    is_index,
)
from kodev.oci.platform import Platform, PlatformSelection, platform_from_json
from kodev.oci.reference import parse_reference

if TYPE_CHECKING:
    from kodev.registry.pool import ClientPool

SCRATCH = "scratch"
MINIMAL = "kodev://minimal"
BUILTIN_BASES = (SCRATCH, MINIMAL)
BUILTIN_PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64"))
NONROOT_UID = 65532
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}")
BUILTIN_CREATED = "1970-01-01T00:00:00Z"


@dataclass
class BaseImage:
    """A resolved base: ``images`` holds the per-platform images that match the request."""

    name: str
    digest: str
    media_type: str
    images: list[Image]
    is_index: bool
    descriptors: list[dict[str, Any]]

    def annotations_for(self, image: Image) -> dict[str, str]:
        """``org.opencontainers.image.base.*`` for one child, as ko writes them."""
        if self.is_index:
            position = self.images.index(image)
            child_digest = str(self.descriptors[position]["digest"])
            return _base_annotations(self.name, child_digest)
        return _base_annotations(self.name, self.digest)

    def index_annotations(self) -> dict[str, str]:
        """The same annotations for the index built on an index base (its own digest)."""
        return _base_annotations(self.name, self.digest)


def _base_annotations(name: str, digest: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.base.name": name,
        "org.opencontainers.image.base.digest": digest,
    }


class BaseLoader:
    """Loads base images once per name, using the cache for anything addressed by digest."""

    def __init__(self, pool: Callable[[], ClientPool], cache: Cache) -> None:
        """``pool`` is called only when a base lives in a registry (built-ins need none)."""
        self.pool = pool
        self.cache = cache
        self._minimal_layers: dict[str, Layer] = {}

    def load(self, name: str, selection: PlatformSelection) -> BaseImage:
        if name == SCRATCH:
            return self._builtin(name, selection, lambda p: [])
        if name == MINIMAL:
            return self._builtin(name, selection, lambda p: [self._minimal_layer()])
        if "://" in name:
            raise UsageError(
                f"unknown base image {name!r}",
                hint=f"use a registry reference, {SCRATCH} or {MINIMAL}",
            )
        return self._remote(name, selection)

    def _builtin(
        self, name: str, selection: PlatformSelection, layers_for: Callable[[Platform], list[Layer]]
    ) -> BaseImage:
        platforms = selection.concrete(BUILTIN_PLATFORMS)
        images = [_builtin_image(p, layers_for(p), minimal=name == MINIMAL) for p in platforms]
        multi = len(images) > 1
        digest = Index(OCI_INDEX, images).digest if multi else images[0].digest
        return BaseImage(
            name=name,
            digest=digest,
            media_type=OCI_INDEX if multi else OCI_MANIFEST,
            images=images,
            is_index=multi,
            descriptors=[image.descriptor() for image in images],
        )

    def _minimal_layer(self) -> Layer:
        """Built once per machine: cached by the versions of the packages it is made from."""
        if "layer" in self._minimal_layers:
            return self._minimal_layers["layer"]
        key = _minimal_base_key()
        meta = self.cache.get_meta("minimal-base", key)
        data = self.cache.get_blob(str(meta["digest"])) if meta else None
        if meta is not None and data is not None:
            layer = Layer(digest=meta["digest"], diff_id=meta["diff_id"], size=len(data), data=data)
        else:
            layer = layer_from_tar(minimal_base_tar())
            self.cache.put_blob(layer.digest, layer.read())
            self.cache.put_meta(
                "minimal-base", key, {"digest": layer.digest, "diff_id": layer.diff_id}
            )
        self._minimal_layers["layer"] = layer
        return layer

    def _remote(self, name: str, selection: PlatformSelection) -> BaseImage:
        ref = parse_reference(name)
        client = self.pool().get(ref.registry)
        digest = ref.digest
        size: int | None = None
        if digest is None:
            head = client.head_manifest(ref.repository, ref.identifier)
            if head is None:
                raise RegistryError(
                    f"base image {name} not found",
                    hint="check defaultBaseImage / baseImageOverrides in .ko.yaml",
                )
            digest, size = head.digest, head.size
        body, media_type = self._manifest(ref.registry, ref.repository, digest, size)
        location = BlobLocation(ref.registry, ref.repository)
        if not is_index(media_type):
            image = self._image(name, location, body, media_type)
            if not selection.matches(image.platform):
                raise UsageError(
                    f"base image {name} is {image.platform}, not {selection}",
                    hint="pick a base that has the platform, or change --platform",
                )
            return BaseImage(name, digest, media_type, [image], False, [])
        return self._index(name, digest, media_type, body, location, selection)

    def _index(
        self,
        name: str,
        digest: str,
        media_type: str,
        body: bytes,
        location: BlobLocation,
        selection: PlatformSelection,
    ) -> BaseImage:
        index = _json_object(body, f"the index of base image {name}")
        chosen: list[dict[str, Any]] = []
        for desc in _descriptor_list(index, "manifests", name):
            if is_index(str(desc.get("mediaType", ""))):
                raise UsageError(f"base image {name} is a nested index, which kodev cannot use")
            if selection.matches(platform_from_json(desc.get("platform"))):
                chosen.append(desc)  # "unknown" entries (attestations) never match
        if not chosen:
            raise UsageError(
                f"base image {name} has no image for platform {selection}",
                hint="list its platforms with: skopeo inspect --raw docker://...",
            )
        images = []
        for desc in chosen:
            child, child_type = self._manifest(
                location.registry, location.repository, desc["digest"], desc["size"]
            )
            # The index's platform (os.version, features) is the one kodev matched.
            images.append(self._image(name, location, child, child_type,
                                      platform_from_json(desc.get("platform"))))
        if len(images) == 1:  # like ko: one matching platform gives an image, not an index
            return BaseImage(name, chosen[0]["digest"], images[0].media_type, images, False, [])
        return BaseImage(name, digest, media_type, images, True, chosen)

    def _manifest(
        self, registry: str, repository: str, digest: str, size: int | None
    ) -> tuple[bytes, str]:
        """A manifest by digest (``size`` from the descriptor naming it, when there is one):
        from the cache, else from the registry, which checks size cap, size and digest."""
        cached = self.cache.get_blob(digest)
        if cached is not None and (size is None or len(cached) == size):
            return cached, _media_type_of(cached)
        manifest = self.pool().get(registry).get_manifest(repository, digest, size=size)
        self.cache.put_blob(manifest.digest, manifest.body)
        return manifest.body, manifest.media_type

    def _blob(self, location: BlobLocation, digest: str, size: int) -> bytes:
        cached = self.cache.get_blob(digest)
        if cached is not None and len(cached) == size:
            return cached
        from kodev.registry.client import MAX_CONFIG_BYTES

        data = self.pool().get(location.registry).get_blob(
            location.repository, digest, size=size, max_size=MAX_CONFIG_BYTES
        )
        self.cache.put_blob(digest, data)
        return data

    def _image(self, name: str, location: BlobLocation, body: bytes, media_type: str,
               platform: Platform | None = None) -> Image:
        manifest = _json_object(body, f"the manifest of base image {name}")
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict) or not _valid_descriptor(config_desc):
            raise _malformed(name, "its manifest has no valid config descriptor")
        config = _json_object(
            self._blob(location, config_desc["digest"], config_desc["size"]),
            f"the config of base image {name}",
        )
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        diff_ids = diff_ids if isinstance(diff_ids, list) else []
        layers = []
        for position, desc in enumerate(_descriptor_list(manifest, "layers", name)):
            layers.append(
                Layer(
                    digest=desc["digest"],
                    diff_id=str(diff_ids[position]) if position < len(diff_ids) else "",
                    size=desc["size"],
                    media_type=str(desc.get("mediaType") or ""),
                    location=location,
                    annotations=desc.get("annotations"),
                    urls=desc.get("urls"),
                )
            )
        return Image(
            media_type=media_type,
            config=config,
            layers=layers,
            platform=platform or platform_from_json(config),
            annotations=dict(manifest.get("annotations") or {}),
            config_media_type=config_desc.get("mediaType"),
        )


def _malformed(name: str, what: str) -> RegistryError:
    return RegistryError(
        f"base image {name} is malformed: {what}",
        hint="check the base image reference in .ko.yaml (defaultBaseImage / "
        "baseImageOverrides) or its registry",
    )


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` parsed as a JSON object; RegistryError otherwise (registry content)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise RegistryError(f"{what} is not a JSON object",
                            hint="check the base image reference in .ko.yaml or its registry")
    return data


def _valid_descriptor(desc: dict[str, Any]) -> bool:
    """A descriptor kodev can fetch by: a well-formed digest and an integer size >= 0."""
    digest, size = desc.get("digest"), desc.get("size")
    return (isinstance(digest, str) and _DIGEST_RE.fullmatch(digest) is not None
            and isinstance(size, int) and not isinstance(size, bool) and size >= 0)


def _descriptor_list(document: dict[str, Any], key: str, name: str) -> list[dict[str, Any]]:
    """The descriptors under ``key`` (``manifests``, ``layers``), each checked."""
    entries = document.get(key) or []
    if not isinstance(entries, list) or not all(
        isinstance(d, dict) and _valid_descriptor(d) for d in entries
    ):
        raise _malformed(name, f"its {key} are not valid descriptors (digest, size)")
    return entries


def _media_type_of(body: bytes) -> str:
    data = json.loads(body)
    media_type = data.get("mediaType")
    if media_type:
        return str(media_type)
    return OCI_INDEX if "manifests" in data else OCI_MANIFEST


def _builtin_image(platform: Platform, layers: list[Layer], *, minimal: bool) -> Image:
    inner: dict[str, Any] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    }
    if minimal:
        inner["Env"].append("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
        inner["User"] = str(NONROOT_UID)
        inner["WorkingDir"] = "/home/nonroot"
    config: dict[str, Any] = {
        "architecture": platform.architecture,
        "created": BUILTIN_CREATED,
        "os": platform.os,
    }
    if platform.variant:
        config["variant"] = platform.variant
    config["config"] = inner
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    config["history"] = [
        {
            "created": BUILTIN_CREATED,
            "created_by": "kodev built-in base",
            "comment": "nonroot user 65532, CA certificates, time zones",
        }
        for _ in layers
    ]
    return Image(media_type=OCI_MANIFEST, config=config, layers=list(layers), platform=platform)


def _minimal_base_key() -> str:
    from importlib.metadata import version

    from kodev.oci.layers import COMPRESSOR

    return "-".join(["v1", version("certifi"), version("tzdata"), COMPRESSOR])


def minimal_base_tar() -> bytes:
    """The single layer of ``kodev://minimal``; entries in a fixed order, all mtime 0."""
    import certifi

    tar = TarBuilder(0)
    for directory, mode in (
        ("etc", 0o755),
        ("etc/ssl", 0o755),
        ("etc/ssl/certs", 0o755),
        ("home", 0o755),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/share", 0o755),
        ("usr/share/zoneinfo", 0o755),
    ):
        tar.add_dir(directory, mode)
    tar.add_dir("home/nonroot", 0o700, uid=NONROOT_UID)
    tar.add_file(
        "etc/passwd",
        (
            "root:x:0:0:root:/root:/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
            f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
        ).encode(),
    )
    tar.add_file("etc/group", (f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT_UID}:\n").encode())
    tar.add_file("etc/nsswitch.conf", b"hosts: files dns\n")
    with open(certifi.where(), "rb") as f:
        tar.add_file("etc/ssl/certs/ca-certificates.crt", f.read())
    _add_zoneinfo(tar)
    return tar.finish()


def _add_zoneinfo(tar: TarBuilder) -> None:
    root = resources.files("tzdata") / "zoneinfo"

    def walk(node: Any, rel: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name.startswith("__") or child.name.endswith(".py"):
                continue
            path = f"{rel}/{child.name}"
            if child.is_dir():
                tar.add_dir(f"usr/share/zoneinfo{path}", 0o755)
                walk(child, path)
            else:
                tar.add_file(f"usr/share/zoneinfo{path}", child.read_bytes())

    walk(root, "")
