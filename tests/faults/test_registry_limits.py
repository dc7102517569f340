"""Hostile registries cannot make kodev buffer without bound or loop (issue 13, items 12-13).

A tiny local server plays the malicious registry (tests/support/fakeregistry.py); the
large-layer test uses two real registries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from kodev.errors import RegistryError
from kodev.registry.client import MAX_PAGES, RegistryClient
from tests.fixtures.kodev import Kodev, KodevRun
from tests.fixtures.registry import RegistryFactory, RegistryServer, make_test_image
from tests.support.fakeregistry import FakeServer, Reply, Seen, image_reply, not_found

pytestmark = pytest.mark.registry

MiB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def one_error_line(result: KodevRun, code: int = 4) -> str:
    """The one error line on stderr (progress lines may come before it)."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("kodev: ")]
    assert result.returncode == code, result.stderr
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    print(errors[0])  # shown with -s: the line a user reads
    assert errors[0].startswith("kodev: error: ") and "Traceback" not in result.stderr
    return errors[0]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- item 12: caps


def endless(piece: bytes, total: int, sent: list[int]) -> Iterator[bytes]:
    """``total`` bytes in pieces (an "endless" body that still ends if a client reads it
    all); ``sent[0]`` counts what the server handed to the socket."""
    while sent[0] < total:
        yield piece
        sent[0] += len(piece)


def hostile_base(fault: str, sent: list[int]) -> FakeServer:
    """A registry serving ``base:v1`` with one kind of oversized or mis-sized content;
    ``sent[0]`` counts the bytes of oversized bodies it wrote."""
    image = make_test_image(content=b"base\n")
    manifest = json.loads(image.manifest)
    config = image.config
    if fault in ("config-longer-than-descriptor", "config-descriptor-too-big"):
        config = image.config + b" " * (9 * MiB)
        if fault == "config-descriptor-too-big":
            manifest["config"]["size"] = len(config)
        manifest["config"]["digest"] = sha256(config)
    body = json.dumps(manifest).encode()
    blobs = {sha256(config): config, sha256(image.layer): image.layer}
    big = b"{" + b" " * (MiB - 1)

    def handler(seen: Seen, server: FakeServer) -> Reply:
        path = seen.path.split("?", 1)[0]
        if path in ("/v2/base/manifests/v1", f"/v2/base/manifests/{sha256(body)}"):
            if fault == "manifest-size-header-too-big":
                return Reply(200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest":
                                   sha256(body), "Content-Length": str(64 * MiB)},
                             endless(big, 64 * MiB, sent))
            if fault == "endless-manifest":
                if seen.method == "HEAD":  # no digest: kodev has to GET it
                    return Reply(200, {"Content-Type": OCI_MANIFEST})
                return Reply(200, {"Content-Type": OCI_MANIFEST}, endless(big, 256 * MiB, sent))
            if fault == "manifest-longer-than-descriptor":
                longer = body + b" " * 4096
                if seen.method == "HEAD":
                    return Reply(200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest":
                                       sha256(body), "Content-Length": str(len(body))})
                return Reply(200, {"Content-Type": OCI_MANIFEST}, longer)
        reply = image_reply(seen, "base", "v1", body, OCI_MANIFEST, blobs)
        return reply if reply is not None else not_found()

    return FakeServer(handler)


@pytest.mark.parametrize("fault", [
    "manifest-size-header-too-big",
    "endless-manifest",
    "manifest-longer-than-descriptor",
    "config-longer-than-descriptor",
    "config-descriptor-too-big",
])
def test_oversized_base_content_is_refused(kodev: Kodev, registry: RegistryServer,
                                           fault: str) -> None:
    """Fault: the base image's registry serves a manifest or config that is too big
    (a 64 MiB size, an endless body, a 9 MiB config) or longer than its descriptor says.
    User sees: one registry error naming the base's registry (exit 4), read no further
    than the cap (4 MiB for manifests) or the descriptor's size, nothing pushed."""
    sent = [0]
    with hostile_base(fault, sent) as server:
        result = kodev.run("build", "./cmd/worker", check=False, timeout=180,
                           env={"KO_DEFAULTBASEIMAGE": f"{server.host}/base:v1",
                                "KO_DOCKER_REPO": f"{registry.host}/hostile-base"})
        manifest_gets = [s for s in server.requests()
                         if s.method == "GET" and "/manifests/" in s.path]
    line = one_error_line(result)
    assert server.host in line, line
    if fault == "manifest-size-header-too-big":
        assert manifest_gets == [] and "4194304" in line  # refused on its HEAD
    elif fault == "endless-manifest":
        # kodev hung up after the 4 MiB cap (socket buffers hold a few MiB more)
        assert "4194304" in line and sent[0] < 32 * MiB, sent
    else:
        assert "descriptor" in line, line
    assert result.stdout == ""
    tags = httpx.get(f"{registry.url}/v2/hostile-base/worker/tags/list", timeout=10)
    assert tags.status_code == 404 or not tags.json().get("tags")


# --------------------------------------------------------------------------- item 12: streaming

LAYERS = 4
LAYER_BYTES = 64 * MiB


def push_big_base(source: RegistryServer, tmp_path: Path) -> str:
    """Push ``big:v1`` with LAYERS distinct layers of LAYER_BYTES (streamed from files,
    never held by this test either); returns the manifest digest."""
    descriptors = []
    block = os.urandom(MiB)
    with httpx.Client(timeout=120) as client:
        for number in range(LAYERS):
            path = tmp_path / f"layer-{number}"
            hasher = hashlib.sha256()
            with path.open("wb") as out:
                for position in range(LAYER_BYTES // MiB):
                    piece = hashlib.sha256(bytes([number, position % 256])).digest() + block[32:]
                    hasher.update(piece)
                    out.write(piece)
            digest = "sha256:" + hasher.hexdigest()
            start = client.post(f"{source.url}/v2/big/blobs/uploads/")
            location = httpx.URL(source.url).join(start.headers["Location"])
            with path.open("rb") as data:
                done = client.put(location.copy_merge_params({"digest": digest}),
                                  content=pieces_of(data),
                                  headers={"Content-Length": str(LAYER_BYTES),
                                           "Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
            path.unlink()
            descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": digest, "size": LAYER_BYTES})
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [d["digest"] for d in descriptors]}}).encode()
        start = client.post(f"{source.url}/v2/big/blobs/uploads/")
        location = httpx.URL(source.url).join(start.headers["Location"])
        assert client.put(location.copy_merge_params({"digest": sha256(config)}),
                          content=config).status_code == 201
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(config), "size": len(config)},
            "layers": descriptors}).encode()
        put = client.put(f"{source.url}/v2/big/manifests/v1", content=manifest,
                         headers={"Content-Type": OCI_MANIFEST})
        assert put.status_code == 201, put.text
    return sha256(manifest)


def pieces_of(stream: BinaryIO) -> Iterator[bytes]:
    while piece := stream.read(MiB):
        yield piece


# kodev's entry point ends the process itself (exit_process: atexit functions, then
# os._exit), so the peak is written by an atexit function.
_MEASURE = """
import atexit, resource, runpy, sys
sys.argv = ["kodev", *sys.argv[2:]]

def report():
    with open({report!r}, "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))

atexit.register(report)
runpy.run_module("kodev", run_name="__main__")
"""


def test_cross_registry_layers_are_streamed(kodev: Kodev, registry_factory: RegistryFactory,
                                            registry: RegistryServer, tmp_path: Path) -> None:
    """Fault: the base image lives on another registry and has 4 layers of 64 MiB
    (256 MiB) that kodev must copy to the target registry, 4 at a time. User sees: the push
    works and kodev's own peak memory stays far below even one layer (a fraction of
    the 64 MiB layer: under 32 MiB above its baseline), because layers are streamed."""
    source = registry_factory.create("big-base-source")
    push_big_base(source, tmp_path)
    report = tmp_path / "maxrss"
    env = {**kodev.env, "KO_DEFAULTBASEIMAGE": f"{source.host}/big:v1",
           "KO_DOCKER_REPO": f"{registry.host}/streamed"}
    script = _MEASURE.format(report=str(report))
    proc = subprocess.run([sys.executable, "-c", script, "-", "build", "--sbom=none", "-j", "4",
                           "./cmd/worker"], cwd=kodev.workdir, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    pushed = re.search(r"(\d+) new blob\(s\), (\d+) bytes", proc.stderr)
    assert pushed is not None and int(pushed.group(2)) > LAYERS * LAYER_BYTES, proc.stderr
    baseline = measure_baseline(kodev, registry, tmp_path)
    peak_mib = int(report.read_text()) / 1024
    print(f"kodev peak RSS copying {LAYERS}x{LAYER_BYTES // MiB} MiB: {peak_mib:.0f} MiB "
          f"(small base: {baseline:.0f} MiB)")
    # Held whole, 4 parallel copies need > 256 MiB above the baseline; streamed, a few
    # upload chunks (8 MiB each) per copy.
    assert peak_mib - baseline < LAYER_BYTES / MiB / 2, (peak_mib, baseline)


def measure_baseline(kodev: Kodev, registry: RegistryServer, tmp_path: Path) -> float:
    """kodev's peak RSS (MiB) for the same build on the built-in base (no copy)."""
    report = tmp_path / "maxrss-baseline"
    env = {**kodev.env, "KO_DEFAULTBASEIMAGE": "kodev://minimal",
           "KO_DOCKER_REPO": f"{registry.host}/streamed-baseline"}
    proc = subprocess.run([sys.executable, "-c", _MEASURE.format(report=str(report)), "-",
                           "build", "--sbom=none", "./cmd/worker"], cwd=kodev.workdir,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(report.read_text()) / 1024


# --------------------------------------------------------------------------- item 13


def looping_listing(kind: str) -> FakeServer:
    """A registry whose tag list / referrers pages always link to a next page: the same
    page (``self``) or a new one every time (``endless``)."""

    def handler(seen: Seen, server: FakeServer) -> Reply:
        path, _, query = seen.path.partition("?")
        if path == "/v2/":
            return Reply(200, {}, b"{}")
        number = int(query.removeprefix("n=") or 0) if query.startswith("n=") else 0
        link = seen.path if kind == "self" else f"{path}?n={number + 1}"
        headers = {"Link": f'<{link}>; rel="next"'}
        if path.endswith("/tags/list"):
            body = json.dumps({"name": "loop", "tags": [f"t{number}"]}).encode()
            return Reply(200, {**headers, "Content-Type": "application/json"}, body)
        if "/referrers/" in path:
            body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
            return Reply(200, {**headers, "Content-Type": OCI_INDEX}, body)
        return not_found()

    return FakeServer(handler)


@pytest.mark.parametrize("kind", ["self", "endless"])
@pytest.mark.parametrize("listing", ["tags", "referrers"])
def test_pagination_cannot_loop(kind: str, listing: str) -> None:
    """Fault: a registry whose tag list or referrers pages always carry a `Link` to a next
    page: to the page itself, or to a new page every time. User sees: a registry error
    saying the listing loops or passed the page limit (1000 pages), after a bounded number
    of requests."""
    with looping_listing(kind) as server, RegistryClient(server.host, max_attempts=1) as client:
        with pytest.raises(RegistryError) as caught:
            if listing == "tags":
                client.list_tags("loop")
            else:
                client.referrers("loop", "sha256:" + "0" * 64)
        requests = len(server.requests())
    message = str(caught.value)
    assert server.host in message
    if kind == "self":
        assert "loop" in message and requests == 1
    else:
        assert f"{MAX_PAGES} pages" in message and requests == MAX_PAGES


def test_push_to_a_registry_with_looping_referrers_ends(kodev: Kodev, tmp_path: Path) -> None:
    """Fault: the target registry answers the referrers query (made when attaching the
    SBOM) with a `Link` to the same page, forever. User sees: `kodev build` stops with one
    registry error saying the listing loops (exit 4) instead of hanging."""
    image_store: dict[str, tuple[str, bytes]] = {}

    def handler(seen: Seen, server: FakeServer) -> Reply:
        path = seen.path.split("?", 1)[0]
        if "/referrers/" in path:
            return Reply(200, {"Link": f'<{seen.path}>; rel="next"', "Content-Type": OCI_INDEX},
                         b'{"schemaVersion":2,"manifests":[]}')
        return accept_everything(seen, server, image_store)

    with FakeServer(handler) as server:
        result = kodev.run("build", "./cmd/worker", check=False, timeout=180,
                           env={"KO_DOCKER_REPO": f"{server.host}/demo"})
    line = one_error_line(result)
    assert "referrers" in line and "loop" in line, line


def accept_everything(seen: Seen, server: FakeServer,
                      store: dict[str, tuple[str, bytes]]) -> Reply:
    """Just enough of a registry for a push: blobs are "already there", manifests are
    accepted (and remembered for HEAD)."""
    path = seen.path.split("?", 1)[0]
    if path == "/v2/":
        return Reply(200, {}, b"{}")
    if "/blobs/" in path and seen.method == "HEAD":
        return Reply(200, {"Content-Length": "1"})
    if "/manifests/" in path:
        if seen.method == "PUT":
            return Reply(201, {"Docker-Content-Digest": ""}, b"")
        return not_found()
    return not_found()
