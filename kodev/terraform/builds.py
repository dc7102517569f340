"""What a resource asks kodev's pipeline to do, and how ``plan`` knows nothing changed.

ko's provider builds during every ``plan`` to learn whether the image changed. kodev's
fingerprint (:mod:`kodev.golang.fingerprint`) already answers "would go build make the
same binaries?" without running go: the pipeline's key holds every input that is not a
file of the module, and the record under it the size and mtime of every file in the
binaries' closure plus the binaries' sha256.

After an apply the provider stores a *state record* in KOCACHE, under the digest of what
it wrote into the Terraform state (``image_ref`` or ``manifests``) and of its settings:
the patterns it built, the fingerprint key and the binaries' sha256. A plan finds the
state record of the outputs in the state and asks the fingerprint again: same key, the
record under it still valid (no file changed) and naming the same binaries means the
outputs in the state are still what a build would make, so the plan keeps them. Anything
else (no record: another machine, a cleaned cache; an edit; an error while checking)
makes the outputs unknown, and apply builds.

What the fingerprint cannot see is outside the module: a base image tag that moved in
its registry is noticed by the next build, not by a plan (``kodev build`` alike).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodev import __version__

if TYPE_CHECKING:
    from kodev.publish import Event, Pipeline, Published, PublishOptions
    from kodev.registry.auth import Keychain

STATE_RECORD_KIND = "terraform-state"


@dataclass(frozen=True, repr=False)
class BasicAuth:
    """The provider's ``basic_auth`` ("username:password"), for its repo's registry only."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True)
class BuildSpec:
    """One resource's request: where, what, and every setting that changes the outputs."""

    workdir: Path
    docker_repo: str | None
    naming: str  # kodev's naming mode: "bare" when the resource names its exact repo
    base_image: str | None
    platforms: tuple[str, ...] = ()
    sbom: str = "spdx"
    tags: tuple[str, ...] = ("latest",)
    push: bool = True
    ldflags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. the manifests' digests

    def settings(self) -> dict[str, Any]:
        """Everything but the module's files that decides the outputs (JSON-able)."""
        data = dataclasses.asdict(self)
        data["workdir"] = str(self.workdir)
        data["kodev"] = __version__
        return data

    def options(self) -> PublishOptions:
        from kodev.publish import PublishOptions

        return PublishOptions(docker_repo=self.docker_repo, tags=self.tags, push=self.push,
                              naming=self.naming, sbom=self.sbom, platforms=self.platforms,
                              ldflags=self.ldflags)

    def environ(self) -> dict[str, str]:
        return {**os.environ, **dict(self.env)}


EventSink = Callable[["Event"], None]


def keychain_for(auth: BasicAuth | None, docker_repo: str | None) -> Keychain | None:
    """kodev's keychain (docker config, credential helpers), with ``basic_auth`` answering
    first for the provider repo's registry; None: kodev's default keychain."""
    if auth is None or not docker_repo:
        return None
    from kodev.oci.reference import parse_repository
    from kodev.registry.auth import MultiKeychain, StaticKeychain, default_keychain

    registry = parse_repository(docker_repo)[0]
    return MultiKeychain(StaticKeychain(registry, auth.username, auth.password),
                         default_keychain())


@contextlib.contextmanager
def open_pipeline(spec: BuildSpec, keychain: Keychain | None,
                  on_event: EventSink) -> Iterator[Pipeline]:
    """kodev's one pipeline, configured for ``spec``; closed on exit."""
    from kodev.config import load_config
    from kodev.publish import Pipeline

    environ = spec.environ()
    config = load_config(spec.workdir, environ)
    if spec.base_image:
        config = dataclasses.replace(config, default_base_image=spec.base_image,
                                     base_image_overrides={})
    pipeline = Pipeline(spec.options(), workdir=spec.workdir, environ=environ,
                        on_event=on_event, config=config, keychain=keychain)
    try:
        yield pipeline
    finally:
        pipeline.close()


def _record_key(spec: BuildSpec, outputs: Any) -> str:
    payload = json.dumps([spec.settings(), outputs], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _fingerprint(pipeline: Pipeline, patterns: Sequence[str]) -> dict[str, Any] | None:
    """The fingerprint key of ``patterns`` and the sha256 of the binaries its still-valid
    record names; None when the fingerprint cannot vouch for them (a file changed, a
    template reads the time, no record)."""
    from kodev.golang.fingerprint import FingerprintStore

    if not patterns:
        return {"key": None, "binaries": []}
    key = pipeline.fingerprint_key(list(patterns))
    if key is None:
        return None
    record = FingerprintStore(pipeline.cache).load(key)
    if record is None:
        return None
    return {"key": key, "binaries": sorted(b["sha256"] for b in record["binaries"].values())}


def unchanged(spec: BuildSpec, outputs: Any, keychain: Keychain | None,
              on_event: EventSink) -> bool:
    """Whether ``outputs`` (from the state) are what building ``spec`` would make now,
    proven by the fingerprint alone: no go, no network."""
    with open_pipeline(spec, keychain, on_event) as pipeline:
        record = pipeline.cache.get_meta(STATE_RECORD_KIND, _record_key(spec, outputs))
        if record is None or not isinstance(record.get("patterns"), list):
            return False
        now = _fingerprint(pipeline, record["patterns"])
        return now is not None and now == record.get("fingerprint")


def remember(pipeline: Pipeline, spec: BuildSpec, patterns: Sequence[str],
             published: Sequence[Published], outputs: Any) -> bool:
    """Store the state record of ``outputs``, just built from ``patterns``; only when the
    fingerprint names exactly the binaries that were published (an edit while go build
    ran leaves no record, so the next plan builds again). Returns whether it was stored."""
    now = _fingerprint(pipeline, patterns)
    built = sorted(b.sha256 for result in published for b in result.binaries.values())
    if now is None or now["binaries"] != built:
        return False
    pipeline.cache.put_meta(STATE_RECORD_KIND, _record_key(spec, outputs),
                            {"patterns": list(patterns), "fingerprint": now})
    return True
