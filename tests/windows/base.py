"""A synthetic Windows base image pushed to a real registry (no Windows image is needed).

The base is an OCI index with three children: ``linux/amd64``, ``windows/amd64`` with
``os.version`` ``10.0.20348.2582`` (Server 2022) and ``windows/amd64`` ``10.0.17763.5936``
(Server 2019, with ``os.features``). Each child has one small layer and a config with the
platform fields Windows bases carry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

import httpx

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
RAWSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="

LINUX = {"architecture": "amd64", "os": "linux"}
WIN2022 = {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2582"}
WIN2019 = {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.5936",
           "os.features": ["win32k"]}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, bytes], dirs: tuple[str, ...] = (), pax: bool = False
           ) -> tuple[bytes, str]:
    """A gzipped tar layer and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = {"MSWINDOWS.rawsd": RAWSD}
            tar.addfile(info, io.BytesIO(data))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), digest_of(uncompressed)


@dataclass
class PushedBase:
    reference: str  # registry/repo:tag of the index
    index_digest: str
    child_digests: dict[str, str]  # "linux", "win2022", "win2019" -> manifest digest
    descriptors: list[dict[str, Any]]


class _Pusher:
    def __init__(self, host: str, repo: str) -> None:
        self.base = f"http://{host}/v2/{repo}"
        self.http = httpx.Client(timeout=30)

    def blob(self, data: bytes) -> str:
        digest = digest_of(data)
        start = self.http.post(f"{self.base}/blobs/uploads/")
        start.raise_for_status()
        location = httpx.URL(self.base).join(start.headers["Location"])
        put = self.http.put(location.copy_merge_params({"digest": digest}), content=data,
                            headers={"Content-Type": "application/octet-stream"})
        put.raise_for_status()
        return digest

    def manifest(self, reference: str, body: bytes, media_type: str) -> str:
        response = self.http.put(f"{self.base}/manifests/{reference}", content=body,
                                 headers={"Content-Type": media_type})
        response.raise_for_status()
        return digest_of(body)

    def image(self, platform: dict[str, Any], config_extra: dict[str, Any],
              layer: tuple[bytes, str]) -> tuple[str, int]:
        compressed, diff_id = layer
        config = {**{k: v for k, v in platform.items()}, "config": config_extra,
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created_by": "kodev test windows base"}]}
        config_bytes = json.dumps(config).encode()
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.blob(config_bytes),
                       "size": len(config_bytes)},
            "layers": [{"mediaType": OCI_LAYER, "digest": self.blob(compressed),
                        "size": len(compressed)}],
        }
        body = json.dumps(manifest).encode()
        return self.manifest(digest_of(body), body, OCI_MANIFEST), len(body)


def push_windows_base(host: str, repo: str = "bases/windows", tag: str = "v1") -> PushedBase:
    pusher = _Pusher(host, repo)
    try:
        children = {
            "linux": (LINUX, {"Env": ["PATH=/usr/bin:/bin"]},
                      _layer({"etc/hello": b"linux base\n"}, ("etc",))),
            "win2022": (WIN2022, {"Env": ["PATH=C:\\Windows\\system32;C:\\Windows"],
                                  "User": "ContainerUser"},
                        _layer({"Files/Windows/System32/hello.txt": b"windows base\n"},
                               ("Hives", "Files", "Files/Windows", "Files/Windows/System32"),
                               pax=True)),
            "win2019": (WIN2019, {"User": "ContainerUser"},
                        _layer({"Files/License.txt": b"windows 2019 base\n"},
                               ("Hives", "Files"), pax=True)),
        }
        digests: dict[str, str] = {}
        descriptors = []
        for key, (platform, config_extra, layer) in children.items():
            digest, size = pusher.image(platform, config_extra, layer)
            digests[key] = digest
            descriptors.append({"mediaType": OCI_MANIFEST, "size": size, "digest": digest,
                                "platform": platform})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": descriptors}).encode()
        index_digest = pusher.manifest(tag, index, OCI_INDEX)
    finally:
        pusher.http.close()
    return PushedBase(f"{host}/{repo}:{tag}", index_digest, digests, descriptors)
