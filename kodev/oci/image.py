"""Images and indexes as plain data, plus the config rewrite ko applies on top of a base.

Like go-containerregistry's ``mutate`` package, nothing here talks to a registry: an
``Image`` is a config, a list of layers and a manifest media type; serialising it gives
the exact bytes whose digest is the image's identity.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kodev.oci.layers import Layer
from kodev.oci.mediatypes import (
    config_type_for,
    sha256_digest,
)
from kodev.oci.platform import Platform


def canonical_json(value: Any) -> bytes:
    """Compact JSON in insertion order: what is hashed is exactly what is pushed."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class _Frozen:
    """Attributes are set once, in ``__init__``; assigning later raises. What is hashed
    (the manifest bytes, hence the digest) is computed from them right then, so no later
    change can leave a stale digest behind: a changed image is a new object."""

    __slots__ = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: build a new one")


class Image(_Frozen):
    """One image manifest: config, layers, platform. Immutable (see ``_Frozen``):
    ``config`` gives a fresh copy each time, so editing it changes nothing here."""

    __slots__ = (
        "_config",
        "_manifest",
        "annotations",
        "artifact_type",
        "config_media_type",
        "layers",
        "media_type",
        "platform",
        "subject",
    )
    media_type: str
    layers: tuple[Layer, ...]
    platform: Platform
    annotations: Mapping[str, str]
    subject: Mapping[str, Any] | None
    artifact_type: str | None
    config_media_type: str | None
    _config: bytes
    _manifest: bytes

    def __init__(
        self,
        media_type: str,
        config: Mapping[str, Any],
        layers: Sequence[Layer],
        platform: Platform,
        annotations: Mapping[str, str] | None = None,
        subject: Mapping[str, Any] | None = None,
        artifact_type: str | None = None,
        config_media_type: str | None = None,
    ) -> None:
        self._set(
            media_type=media_type,
            layers=tuple(layers),
            platform=platform,
            annotations=MappingProxyType(dict(annotations or {})),
            subject=MappingProxyType(dict(subject)) if subject else None,
            artifact_type=artifact_type,
            config_media_type=config_media_type,
            _config=canonical_json(config),
        )
        self._set(_manifest=self._serialise())

    def __repr__(self) -> str:
        return f"Image({self.platform}, {self.digest})"

    @property
    def config(self) -> dict[str, Any]:
        """The image config, as a new dict (changing it does not change the image)."""
        value: dict[str, Any] = json.loads(self._config)
        return value

    def config_bytes(self) -> bytes:
        return self._config

    def config_descriptor(self) -> dict[str, Any]:
        data = self._config
        return {
            "mediaType": self.config_media_type or config_type_for(self.media_type),
            "size": len(data),
            "digest": sha256_digest(data),
        }

    def _serialise(self) -> bytes:
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            manifest["artifactType"] = self.artifact_type
        manifest["config"] = self.config_descriptor()
        manifest["layers"] = [layer.descriptor() for layer in self.layers]
        if self.subject:
            manifest["subject"] = dict(self.subject)
        if self.annotations:
            manifest["annotations"] = dict(sorted(self.annotations.items()))
        return canonical_json(manifest)

    def manifest_bytes(self) -> bytes:
        return self._manifest

    @property
    def digest(self) -> str:
        return sha256_digest(self._manifest)

    def descriptor(self, *, with_platform: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "size": len(self._manifest),
            "digest": self.digest,
        }
        if with_platform:
            out["platform"] = self.platform.to_json()
        return out


class Index(_Frozen):
    """An image index over ``images``; ``descriptor_extras`` (by position) are merged into
    each image's descriptor (a base index's urls, annotations, platform). Immutable."""

    __slots__ = ("_manifest", "annotations", "descriptor_extras", "images", "media_type")
    media_type: str
    images: tuple[Image, ...]
    annotations: Mapping[str, str]
    descriptor_extras: tuple[Mapping[str, Any], ...]
    _manifest: bytes

    def __init__(
        self,
        media_type: str,
        images: Sequence[Image],
        annotations: Mapping[str, str] | None = None,
        descriptor_extras: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._set(
            media_type=media_type,
            images=tuple(images),
            annotations=MappingProxyType(dict(annotations or {})),
            descriptor_extras=tuple(MappingProxyType(copy.deepcopy(dict(extra)))
                                    for extra in descriptor_extras),
        )
        self._set(_manifest=self._serialise())

    def __repr__(self) -> str:
        return f"Index({len(self.images)} image(s), {self.digest})"

    def _serialise(self) -> bytes:
        manifests = []
        for position, image in enumerate(self.images):
            desc = image.descriptor()
            if position < len(self.descriptor_extras):
                desc.update(copy.deepcopy(dict(self.descriptor_extras[position])))
            manifests.append(desc)
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": manifests,
        }
        if self.annotations:
            body["annotations"] = dict(sorted(self.annotations.items()))
        return canonical_json(body)

    def manifest_bytes(self) -> bytes:
        return self._manifest

    @property
    def digest(self) -> str:
        return sha256_digest(self._manifest)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "size": len(self._manifest),
            "digest": self.digest,
        }


@dataclass(frozen=True)
class AppLayers:
    """What kodev puts on top of a base: its layers, their history and the config changes."""

    binary_name: str
    import_path: str
    kodata: Layer
    binary: Layer
    windows: bool = False
    created: str | None = None
    kodata_created: str | None = None
    user: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    live: Layer | None = None  # kodev up --live: the supervisor, which becomes the entrypoint


ZERO_TIME = "0001-01-01T00:00:00Z"


def append_app_layers(base: Image, app: AppLayers, annotations: dict[str, str]) -> Image:
    """The ko config rewrite: entrypoint, cleared Cmd, PATH, KO_DATA_PATH, history, rootfs."""
    config = base.config  # a copy
    inner = config.setdefault("config", {})
    if app.windows:
        inner["Entrypoint"] = [f"C:\\ko-app\\{app.binary_name}"]
        data_path, app_dir = "C:\\var\\run\\ko", "C:\\ko-app"
    else:
        inner["Entrypoint"] = [f"/ko-app/{app.binary_name}"]
        data_path, app_dir = "/var/run/ko", "/ko-app"
        if app.live is not None:
            inner["Entrypoint"] = ["/kodev/live", "run", "--", f"/ko-app/{app.binary_name}"]
    inner.pop("Cmd", None)
    inner["Env"] = _with_path(list(inner.get("Env") or []), app_dir, app.windows)
    inner["Env"].append(f"KO_DATA_PATH={data_path}")
    if app.user is not None:
        inner["User"] = app.user
    if app.labels:
        inner["Labels"] = {**(inner.get("Labels") or {}), **dict(app.labels)}
    config["author"] = "github.com/ko-build/ko"
    if app.created:
        config["created"] = app.created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    live = [app.live] if app.live is not None else []
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), app.kodata.diff_id,
                          *(layer.diff_id for layer in live), app.binary.diff_id]
    created_by = f"ko build ko://{app.import_path}"
    live_history = [{"created": ZERO_TIME, "created_by": "kodev up --live", "author": "kodev",
                     "comment": "the live supervisor, at /kodev/live"}] if live else []
    config["history"] = [
        *(config.get("history") or []),
        {
            "created": app.kodata_created or ZERO_TIME,
            "created_by": created_by,
            "author": "ko",
            "comment": "kodata contents, at $KO_DATA_PATH",
        },
        *live_history,
        {
            "created": app.created or ZERO_TIME,
            "created_by": created_by,
            "author": "ko",
            "comment": f"go build output, at /ko-app/{app.binary_name}",
        },
    ]
    return Image(
        media_type=base.media_type,
        config=config,
        layers=[*base.layers, app.kodata, *live, app.binary],
        platform=base.platform,
        annotations={**base.annotations, **annotations},
        config_media_type=base.config_media_type,
    )


def _with_path(env: list[str], app_dir: str, windows: bool) -> list[str]:
    """Append ``app_dir`` to PATH, or set it. Windows separates entries with ``;`` and its
    variable names are case-insensitive (``Path=``); ko uses ``:`` there, which Windows
    would read as part of the last directory's name."""
    separator = ";" if windows else ":"
    for position, entry in enumerate(env):
        name = entry.split("=", 1)[0]
        if name == "PATH" or (windows and name.upper() == "PATH"):
            env[position] = f"{entry}{separator}{app_dir}"
            return env
    env.append(f"PATH={app_dir}")
    return env
