"""The provider: schemas and lifecycle of ``kodev_build`` and ``kodev_resolve``.

The tfprotov6 mapping (gRPC messages, msgpack values, create/update/delete dispatch) is
the ``tf`` package's: it maps Terraform's calls onto plain classes
(``create``/``read``/``update``/``delete``/``plan``); :mod:`kodev.terraform.server` serves
it (go-plugin handshake, TLS). Everything kodev does here goes
through kodev's own pipeline (:mod:`kodev.terraform.builds`).

Lifecycle:

- ``plan`` of an existing resource whose inputs did not change asks the fingerprint
  (:func:`kodev.terraform.builds.unchanged`): no change when it vouches for the outputs
  in the state, else the outputs are "known after apply". It never builds, and an error
  while checking only means "known after apply": a broken build never blocks a plan.
- ``apply`` (create/update) builds and publishes; a failure is kodev's one line
  (``kodev: error: <message> (<hint>)``), with the compiler's output as the detail.
- ``read`` keeps the state as it is (no registry round trip); ``delete`` forgets the
  resource and leaves the images in the registry, as ko's provider does.

Messages go to stderr as JSON lines in go-plugin's (hclog's) format, so Terraform logs
them as the provider's (``TF_LOG_PROVIDER=INFO``); stdout carries only the handshake.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kodev.errors import BuildError, KodevError
from kodev.terraform.builds import BasicAuth, BuildSpec, keychain_for

if TYPE_CHECKING:
    from kodev.publish import Event
    from kodev.registry.auth import Keychain

PROVIDER_ADDRESS = "registry.opentofu.org/kodev/kodev"
# go-plugin's handshake for Terraform and OpenTofu providers (protocol 6).
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
SBOM_CHOICES = ("spdx", "cyclonedx", "none")

_log_lock = threading.Lock()


def log(level: str, message: str, **fields: Any) -> None:
    """One hclog JSON line on stderr: go-plugin relays it at ``level`` in Terraform's log."""
    entry = {"@level": level, "@message": message, "@module": "kodev",
             **{k: v for k, v in fields.items() if v is not None}}
    with _log_lock:
        sys.stderr.write(json.dumps(entry, default=str) + "\n")
        sys.stderr.flush()


def log_event(event: Event) -> None:
    log("info", f"kodev: {event.kind}: {event.message}", import_path=event.import_path)


def error_line(exc: KodevError) -> str:
    """The line the kodev CLI prints for ``exc``."""
    line = f"kodev: error: {exc.message}"
    return f"{line} ({exc.hint})" if exc.hint else line


def _unknown() -> Any:
    from tf.types import Unknown

    return Unknown


def has_unknown(value: Any) -> bool:
    unknown = _unknown()
    if value is unknown:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _directory(value: Any) -> Path:
    """``working_dir`` (relative to Terraform's working directory), else that directory."""
    return (Path(value) if value else Path.cwd()).resolve()


# --------------------------------------------------------------------------- provider


class KodevProvider:
    """The ``kodev`` provider: ``repo``, ``base_image`` and ``basic_auth``, as ko's."""

    def __init__(self) -> None:
        self.repo: str | None = None
        self.base_image: str | None = None
        self.basic_auth: BasicAuth | None = None

    def get_model_prefix(self) -> str:
        return "kodev_"

    def full_name(self) -> str:
        return PROVIDER_ADDRESS

    def get_provider_schema(self, diags: Any) -> Any:
        from tf.schema import Attribute, Schema
        from tf.types import String

        return Schema(attributes=[
            Attribute("repo", String(), optional=True,
                      description="Container repository to publish images to "
                                  "(default: KO_DOCKER_REPO)"),
            Attribute("base_image", String(), optional=True,
                      description="Default base image for builds (over .ko.yaml's)"),
            Attribute("basic_auth", String(), optional=True, sensitive=True,
                      description="username:password for the registry of repo (other "
                                  "registries: docker config and credential helpers)"),
        ])

    def validate_config(self, diags: Any, config: Mapping[str, Any]) -> None:
        auth = config.get("basic_auth")
        if isinstance(auth, str) and ":" not in auth:
            diags.add_error("kodev: error: basic_auth is not username:password",
                            "set basic_auth = \"<username>:<password>\"", path=["basic_auth"])

    def configure_provider(self, diags: Any, config: Mapping[str, Any]) -> None:
        self.repo = config.get("repo") or os.environ.get("KO_DOCKER_REPO") or None
        self.base_image = config.get("base_image") or None
        auth = config.get("basic_auth")
        if isinstance(auth, str) and ":" in auth:
            username, _, password = auth.partition(":")
            self.basic_auth = BasicAuth(username, password)

    def keychain(self, docker_repo: str | None) -> Keychain | None:
        """``basic_auth`` answers for the provider repo's registry only."""
        return keychain_for(self.basic_auth, self.repo) if docker_repo else None

    def get_data_sources(self) -> list[Any]:
        return []

    def get_resources(self) -> list[Any]:
        return [BuildResource, ResolveResource]

    def get_functions(self) -> list[Any]:
        return []

    def new_resource(self, klass: Callable[[KodevProvider], Any]) -> Any:
        return klass(self)

    def new_data_source(self, klass: Callable[[KodevProvider], Any]) -> Any:
        return klass(self)

    def new_function(self, klass: Callable[[KodevProvider], Any]) -> Any:
        return klass(self)


# --------------------------------------------------------------------------- resources


class _KodevResource:
    """Shared lifecycle; subclasses name their inputs and outputs and do the work."""

    NAME: ClassVar[str]  # the resource type without the provider's prefix
    OUTPUTS: ClassVar[tuple[str, ...]]

    def __init__(self, provider: KodevProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.NAME

    @classmethod
    def attributes(cls) -> list[Any]:
        raise NotImplementedError

    @classmethod
    def get_schema(cls) -> Any:
        from tf.schema import Schema

        return Schema(version=0, attributes=cls.attributes())

    def spec(self, state: Mapping[str, Any]) -> BuildSpec:
        raise NotImplementedError

    def outputs(self, state: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def build(self, state: dict[str, Any]) -> dict[str, Any]:
        """Build and publish; the state with its outputs set."""
        raise NotImplementedError

    def validate(self, diags: Any, type_name: str, config: Mapping[str, Any]) -> None:
        sbom = config.get("sbom")
        if isinstance(sbom, str) and sbom not in SBOM_CHOICES:
            diags.add_error(f"kodev: error: {type_name}: sbom {sbom!r} is not one of "
                            f"{', '.join(SBOM_CHOICES)}", path=["sbom"])

    # The tf package calls these.

    def create(self, ctx: Any, planned: dict[str, Any]) -> dict[str, Any] | None:
        return self._apply(ctx, planned)

    def update(self, ctx: Any, current: dict[str, Any],
               planned: dict[str, Any]) -> dict[str, Any] | None:
        return self._apply(ctx, planned)

    def read(self, ctx: Any, current: dict[str, Any]) -> dict[str, Any]:
        return current

    def delete(self, ctx: Any, current: dict[str, Any]) -> None:
        return None

    def upgrade(self, ctx: Any, version: int, old: dict[str, Any]) -> dict[str, Any]:
        return old

    def plan(self, ctx: Any, current: dict[str, Any] | None,
             planned: dict[str, Any]) -> dict[str, Any]:
        """No diff when the fingerprint vouches for the outputs in the state; else the
        outputs become unknown and apply builds."""
        if current is None or self._fresh(ctx.changed_fields, current, planned):
            return planned
        return {**planned, **dict.fromkeys(self.OUTPUTS, _unknown())}

    def _fresh(self, changed: set[str], current: Mapping[str, Any],
               planned: Mapping[str, Any]) -> bool:
        from kodev.terraform.builds import unchanged

        if changed - set(self.OUTPUTS) or has_unknown(planned):
            return False
        try:
            spec = self.spec(planned)
            fresh = unchanged(spec, self.outputs(current),
                              self.provider.keychain(spec.docker_repo), log_event)
        except Exception as exc:  # plan never fails for what apply will report
            log("info", f"kodev: plan: cannot vouch for the state ({exc}); "
                        "build at apply")
            return False
        log("info", "kodev: plan: up to date (fingerprint): nothing to build"
            if fresh else "kodev: plan: inputs changed since the last build: build at apply",
            outputs=self.outputs(current))
        return fresh

    def _apply(self, ctx: Any, planned: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.build(dict(planned))
        except KodevError as exc:
            log("error", error_line(exc))
            detail = exc.output if isinstance(exc, BuildError) else ""
            ctx.diagnostics.add_error(error_line(exc), detail)
        except Exception as exc:  # a bug: still one line, never a traceback
            line = (f"kodev: internal error: {type(exc).__name__}: {exc} "
                    "(please report it)")
            log("error", line)
            ctx.diagnostics.add_error(line, "")
        return None

    def _spec(self, state: Mapping[str, Any], **specific: Any) -> BuildSpec:
        """The spec from the attributes both resources have, plus ``specific``. A
        resource's ``repo`` is the exact repository (ko's provider); else the provider's
        repo, with the import path appended."""
        own = state.get("repo")
        return BuildSpec(
            workdir=_directory(state.get("working_dir")),
            docker_repo=str(own) if own else self.provider.repo,
            naming="bare" if own else "md5",
            base_image=state.get("base_image") or self.provider.base_image,
            platforms=_strings(state.get("platforms")),
            sbom=state.get("sbom") or "spdx",
            **specific,
        )


def _common_attributes() -> list[Any]:
    from tf.schema import Attribute
    from tf.types import List, String

    return [
        Attribute("id", String(), computed=True),
        Attribute("working_dir", String(), optional=True,
                  description="Go module directory to build in (default: Terraform's "
                              "working directory)"),
        Attribute("base_image", String(), optional=True, description="Base image"),
        Attribute("platforms", List(String()), optional=True,
                  description="Platforms: all | <os>[/<arch>[/<variant>]]"),
        Attribute("sbom", String(), optional=True,
                  description="SBOM format: spdx (default), cyclonedx or none"),
    ]


class BuildResource(_KodevResource):
    """``kodev_build``: one import path, built and published; ``image_ref`` by digest."""

    NAME = "build"
    OUTPUTS = ("image_ref", "id")

    @classmethod
    def attributes(cls) -> list[Any]:
        from tf.schema import Attribute
        from tf.types import List, Map, String

        return [
            *_common_attributes(),
            Attribute("importpath", String(), required=True, description="Import path"),
            Attribute("repo", String(), optional=True,
                      description="Exact repository to publish to (import path not "
                                  "appended); overrides the provider's repo"),
            Attribute("env", Map(String()), optional=True,
                      description="Environment variables for go build"),
            Attribute("ldflags", List(String()), optional=True,
                      description="Extra -ldflags for go build"),
            Attribute("image_ref", String(), computed=True,
                      description="The built image's reference, by digest"),
        ]

    def spec(self, state: Mapping[str, Any]) -> BuildSpec:
        return self._spec(
            state,
            ldflags=_strings(state.get("ldflags")),
            env=tuple(sorted((str(k), str(v)) for k, v in (state.get("env") or {}).items())),
            extra={"importpath": state.get("importpath")},
        )

    def outputs(self, state: Mapping[str, Any]) -> Any:
        return state.get("image_ref")

    def build(self, state: dict[str, Any]) -> dict[str, Any]:
        from kodev.terraform.builds import open_pipeline, remember

        spec = self.spec(state)
        patterns = [str(state["importpath"])]
        with open_pipeline(spec, self.provider.keychain(spec.docker_repo),
                           log_event) as pipeline:
            published = pipeline.publish(patterns)
            reference = published[0].reference
            remember(pipeline, spec, patterns, published, reference)
        log("info", f"kodev: built {patterns[0]}: {reference}")
        return {**state, "image_ref": reference, "id": reference}


class ResolveResource(_KodevResource):
    """``kodev_resolve``: YAML files with every ``ko://`` reference built, published and
    replaced by its digest; ``manifests`` holds one YAML document per item."""

    NAME = "resolve"
    OUTPUTS = ("manifests", "id")

    @classmethod
    def attributes(cls) -> list[Any]:
        from tf.schema import Attribute
        from tf.types import Bool, List, String

        return [
            *_common_attributes(),
            Attribute("filenames", List(String()), required=True,
                      description="Files or directories of YAML to resolve"),
            Attribute("recursive", Bool(), optional=True,
                      description="Read the directories in filenames recursively"),
            Attribute("selector", String(), optional=True,
                      description="Label selector: only the documents it matches"),
            Attribute("push", Bool(), optional=True,
                      description="Push the images (default true)"),
            Attribute("tags", List(String()), optional=True,
                      description="Tags for the images (default: latest)"),
            Attribute("manifests", List(String()), computed=True,
                      description="The resolved YAML documents"),
        ]

    def _files(self, state: Mapping[str, Any]) -> list[str]:
        from kodev.resolve import collect_files

        return collect_files(list(_strings(state.get("filenames"))),
                             bool(state.get("recursive")))

    def spec(self, state: Mapping[str, Any]) -> BuildSpec:
        from kodev.resolve import read_streams

        files = self._files(state)
        texts = {s.source: hashlib.sha256(s.text.encode()).hexdigest()
                 for s in read_streams(files)}
        return self._spec(
            state,
            tags=_strings(state.get("tags")) or ("latest",),
            push=state.get("push") is not False,
            extra={"files": texts, "selector": state.get("selector")},
        )

    def outputs(self, state: Mapping[str, Any]) -> Any:
        return state.get("manifests")

    def build(self, state: dict[str, Any]) -> dict[str, Any]:
        from kodev.resolve import (
            buildable_import_paths,
            read_streams,
            references_by_path,
            render_documents,
            select_documents,
        )
        from kodev.terraform.builds import open_pipeline, remember

        spec = self.spec(state)
        selections = select_documents(read_streams(self._files(state)), state.get("selector"))
        refs = [ref for selection in selections for ref in selection.refs]
        with open_pipeline(spec, self.provider.keychain(spec.docker_repo),
                           log_event) as pipeline:
            paths = buildable_import_paths(
                pipeline, refs, strict=False,
                warn=lambda message: log("warn", f"kodev: warning: {message}"),
            ) if refs else []
            published = pipeline.publish(paths) if paths else []
            rendered = render_documents(selections, references_by_path(published))
            manifests = documents_text([d.text for docs in rendered for d in docs])
            remember(pipeline, spec, paths, published, manifests)
        digest = hashlib.sha256("\n---\n".join(manifests).encode()).hexdigest()
        return {**state, "manifests": manifests, "id": f"sha256:{digest}"}


def documents_text(texts: Sequence[str]) -> list[str]:
    """Each document's text without its ``---`` marker and surrounding blank lines; empty
    documents dropped (as ko's provider)."""
    out = []
    for text in texts:
        body = text.strip("\n")
        if body.startswith("---"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.strip("\n")
        if body.strip():
            out.append(body + "\n")
    return out


# --------------------------------------------------------------------------- main


def _go_platform() -> str:
    import platform

    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return f"{sys.platform.removesuffix('2').replace('win32', 'windows')}_{arch}"


def write_mirror(directory: Path, host: str = PROVIDER_ADDRESS.split("/")[0]) -> Path:
    """A filesystem mirror (unpacked layout) holding this provider: an executable that
    runs this Python's kodev. Returns the executable's path."""
    from kodev import __version__
    from kodev.cache import atomic_write

    target = directory / host / "kodev" / "kodev" / __version__ / _go_platform()
    target.mkdir(parents=True, exist_ok=True)
    script = target / f"terraform-provider-kodev_v{__version__}"
    atomic_write(script, f"#!/bin/sh\nexec '{sys.executable}' -m kodev.terraform \"$@\"\n"
                 .encode())
    script.chmod(0o755)
    return script


USAGE = ("usage: terraform-provider-kodev mirror DIR [--host HOST]: write a filesystem "
         "mirror for `provider_installation { filesystem_mirror { path = DIR } }`; "
         "otherwise Terraform/OpenTofu starts this plugin itself")


def _run_mirror(args: Sequence[str]) -> int:
    if len(args) not in (1, 3) or (len(args) == 3 and args[1] != "--host"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        script = write_mirror(Path(args[0]), *args[2:])
    except OSError as exc:
        print(f"terraform-provider-kodev: error: cannot write the mirror in {args[0]}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    print(script)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``terraform-provider-kodev``: Terraform or OpenTofu starts it (go-plugin handshake
    on stdout); ``mirror DIR`` writes a filesystem mirror; anything else: one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["mirror"]:
        return _run_mirror(args[1:])
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print("terraform-provider-kodev: this is a Terraform/OpenTofu provider plugin, "
              "started by `tofu` or `terraform` (see README: dev_overrides or a "
              "filesystem mirror)", file=sys.stderr)
        return 1
    if args:
        print(USAGE, file=sys.stderr)
        return 2
    import importlib.util

    if importlib.util.find_spec("tf") is None:  # installed without the extra
        print("terraform-provider-kodev: the plugin protocol package is missing: "
              "pip install 'kodev[terraform]'", file=sys.stderr)
        return 1
    from kodev.terraform.server import serve

    serve(KodevProvider())
    return 0
