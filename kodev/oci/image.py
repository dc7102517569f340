"""Images and indexes as plain data, plus the config rewrite ko applies on top of a base.

Like go-containerregistry's ``mutate`` package, nothing here talks to a registry: an
``Image`` is a config, a list of layers and a manifest media type; serialising it gives
the exact bytes whose digest is the image's identity.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
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


@dataclass
class Image:
    media_type: str
    config: dict[str, Any]
    layers: list[Layer]
    platform: Platform
    annotations: dict[str, str] = field(default_factory=dict)
    subject: dict[str, Any] | None = None
    artifact_type: str | None = None
    config_media_type: str | None = None
    _manifest: bytes | None = field(default=None, repr=False)
    _config: bytes | None = field(default=None, repr=False)

    def config_bytes(self) -> bytes:
        if self._config is None:
            self._config = canonical_json(self.config)
        return self._config

    def config_descriptor(self) -> dict[str, Any]:
        data = self.config_bytes()
        return {
            "mediaType": self.config_media_type or config_type_for(self.media_type),
            "size": len(data),
            "digest": sha256_digest(data),
        }

    def manifest_bytes(self) -> bytes:
        if self._manifest is None:
            manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
            if self.artifact_type:
                manifest["artifactType"] = self.artifact_type
            manifest["config"] = self.config_descriptor()
            manifest["layers"] = [layer.descriptor() for layer in self.layers]
            if self.subject:
                manifest["subject"] = self.subject
            if self.annotations:
                manifest["annotations"] = dict(sorted(self.annotations.items()))
            self._manifest = canonical_json(manifest)
        return self._manifest

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest_bytes())

    def descriptor(self, *, with_platform: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "size": len(self.manifest_bytes()),
            "digest": self.digest,
        }
        if with_platform:
            out["platform"] = self.platform.to_json()
        return out


@dataclass
class Index:
    media_type: str
    images: list[Image]
    annotations: dict[str, str] = field(default_factory=dict)
    descriptor_extras: list[dict[str, Any]] = field(default_factory=list)
    _manifest: bytes | None = field(default=None, repr=False)

    def manifest_bytes(self) -> bytes:
        if self._manifest is None:
            manifests = []
            for position, image in enumerate(self.images):
                desc = image.descriptor()
                if position < len(self.descriptor_extras):
                    desc.update(self.descriptor_extras[position])
                manifests.append(desc)
            body: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": self.media_type,
                "manifests": manifests,
            }
            if self.annotations:
                body["annotations"] = dict(sorted(self.annotations.items()))
            self._manifest = canonical_json(body)
        return self._manifest

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest_bytes())

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "size": len(self.manifest_bytes()),
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
    config = copy.deepcopy(base.config)
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
