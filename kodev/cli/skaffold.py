"""``kodev skaffold build|deps|init``: kodev as Skaffold's custom builder (and Tilt's).

* ``build`` is the artifact's ``custom.buildCommand``. Skaffold runs it as
  ``sh -c "<buildCommand>"`` in the artifact's context with ``IMAGE`` (the exact
  ``repo:tag`` it will look up), ``PUSH_IMAGE``, ``BUILD_CONTEXT``, ``PLATFORMS`` and
  ``SKIP_TEST``; Tilt's ``custom_build`` gives ``EXPECTED_REF`` instead. The image is
  built by the one pipeline (``Pipeline`` with ko's ``bare`` naming: repository = the
  ref's, tags = its tag) and pushed under exactly that reference.
* ``deps`` is ``custom.dependencies.command``: the JSON array of the files the image is
  built from, from :mod:`kodev.golang.graph`. Skaffold runs it (no shell) once per loop
  iteration per artifact, so its imports stay light: no httpx, rich or kubernetes.
* ``check`` is the artifact's ``hooks.before`` (a build lifecycle hook, which Skaffold
  runs before its own builder code): with ``SKAFFOLD_PUSH_IMAGE=false`` Skaffold wants the
  image in a Docker daemon and, without one, would stop with a Docker client error before
  ever calling ``build``. ``check`` stops first with one line saying what to set.
* ``init`` writes a ``skaffold.yaml`` with one custom artifact per ``ko://`` reference.
  The artifacts are named ``ko://<importpath>``: Skaffold accepts that prefix in image
  names and replaces ``image:`` values equal to it, so manifests stay unchanged (and keep
  working with ``kodev apply``); it needs a default repo, as Skaffold's ko builder does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodev.errors import UsageError

if TYPE_CHECKING:
    from kodev.cache import Cache
    from kodev.publish import Pipeline, Published

SKAFFOLD_API_VERSION = "skaffold/v4beta13"  # Skaffold >= 2.15 reads it
KO_SCHEME = "ko://"
# Each artifact's hooks.before: when Skaffold pushes (the usual case) only a shell starts;
# otherwise `kodev skaffold check` makes sure a Docker daemon can take the image.
CHECK_HOOK = ("sh", "-c", 'test "$SKAFFOLD_PUSH_IMAGE" = true || exec kodev skaffold check')


def run(args: argparse.Namespace) -> int:
    commands = {"build": run_build, "deps": run_deps, "init": run_init, "check": run_check}
    return commands[args.skaffold_command](args)


# --------------------------------------------------------------------------- main package


def context_dir(environ: Mapping[str, str]) -> Path:
    """``BUILD_CONTEXT`` (Skaffold sets it and runs us there), else the current directory."""
    context = environ.get("BUILD_CONTEXT")
    path = Path(context) if context else Path.cwd()
    if not path.is_dir():
        raise UsageError(f"BUILD_CONTEXT={context} is not a directory")
    return path.resolve()


def main_pattern(argument: str | None, context: Path, environ: Mapping[str, str]) -> str:
    """The argument, else the one ``.ko.yaml`` build whose ``dir`` is the context, else ``.``."""
    if argument:
        return argument
    from kodev.config import load_config

    config = load_config(context, environ)
    here = [b for b in config.builds if (context / b.dir).resolve() == context]
    if len(here) > 1:
        ids = ", ".join(b.id for b in here)
        raise UsageError(
            f"{config.path}: {len(here)} builds ({ids}) could be this artifact's",
            hint="pass the import path: kodev skaffold build ./cmd/<name>",
        )
    if not here:
        return "."
    main = here[0].main
    if main.endswith(".go"):
        main = os.path.dirname(main) or "."
    return main


# --------------------------------------------------------------------------- deps


def run_deps(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    context = context_dir(environ)
    files, changed = dependency_files(args.importpath, context, environ)
    print(json.dumps(files))
    import kodev.warm

    if changed and kodev.warm.SERVED_CALL:
        compile_ahead(args.importpath, context, environ)
    return 0


def compile_ahead(argument: str | None, context: Path, environ: Mapping[str, str]) -> None:
    """After an edit, Skaffold asks for every artifact's dependencies (for its tags, then
    for its cache) before it calls ``buildCommand``: ~0.3 s in which kodev can already
    compile the image's binaries. A detached process (kodev.warm.background) does what
    ``kodev skaffold build`` will do up to the image (Pipeline.compile_ahead, under the
    build lock of the same fingerprint key); that build waits for the lock and finds the
    binaries recorded, as if it had compiled them itself. A wrong guess (other settings,
    Skaffold not building after all) costs one go build in the background, never a wrong
    image: the build checks the fingerprint as always. Only on the warm server, where the
    imports are already loaded; the lock is taken before this call answers."""
    from kodev.warm.background import Ready, detach

    def work(ready: Ready) -> None:
        from kodev.publish import Pipeline, PublishOptions

        pipeline = Pipeline(PublishOptions(push=False, sbom="none",
                                           platforms=hook_platforms(environ)),
                            workdir=context, environ=environ)
        try:
            pipeline.compile_ahead([main_pattern(argument, context, environ)], ready)
        finally:
            pipeline.close()

    detach(work)


def dependency_files(
    argument: str | None, context: Path, environ: Mapping[str, str]
) -> tuple[list[str], bool]:
    """Every file the image of ``argument`` is built from, relative to ``context``, sorted;
    and whether any of them changed since the last answer (an edit: the image will
    likely be built next).

    The answer is cached (``KOCACHE``) with the size and mtime of every file and package
    directory it came from, plus the context directory, and each ``.go`` file's import
    signature: an edit that leaves every file's imports, package name, build constraints
    and embeds as they were keeps the answer (the rule ``kodev build`` uses to skip
    ``go list``: fingerprint.same_package_graph); a new file in a package, any other edit
    or a new ``.ko.yaml`` invalidates it, and then ``go list -deps`` runs again. A hit
    costs a few ``stat`` calls (and reading the edited files) instead of a ``go list``
    (~0.1 s): Skaffold asks twice per artifact per build, the edited one first.
    """
    from kodev.cache import Cache, default_cache_dir
    from kodev.golang.fingerprint import refreshed_graph_record, request_key, still_valid
    from kodev.golang.packages import go_binary

    cache = Cache(default_cache_dir(environ))
    settings = {
        "kind": "skaffold-deps/v1",
        "env": {k: v for k, v in environ.items() if k.startswith(("GO", "CGO_", "KO_CONFIG"))},
    }
    key = request_key(context, [argument or ""], settings, go_binary(environ))
    record = cache.get_meta("skaffold-deps", key)
    if record is not None:
        files = [str(f) for f in record["files"]]
        if still_valid(record.get("stats", {})):
            return files, False
        refreshed = refreshed_graph_record(record.get("stats", {}), record.get("signatures"))
        if refreshed is not None:
            stats, signatures = refreshed
            cache.put_meta("skaffold-deps", key,
                           {"files": files, "stats": stats, "signatures": signatures})
            return files, True
    return listed_and_recorded(cache, key, argument, context, environ), record is not None


def listed_and_recorded(
    cache: Cache, key: str, argument: str | None, context: Path, environ: Mapping[str, str]
) -> list[str]:
    from kodev.golang.fingerprint import signatures_of

    files, stats = list_dependency_files(argument, context, environ)
    cache.put_meta("skaffold-deps", key,
                   {"files": files, "stats": stats, "signatures": signatures_of(stats, None)})
    return files


def list_dependency_files(
    argument: str | None, context: Path, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The answer from ``go list -deps`` (:mod:`kodev.golang.graph`), and what it depends on."""
    from kodev.config import find_config_file
    from kodev.golang.fingerprint import closure_files
    from kodev.golang.graph import load_graph

    pattern = main_pattern(argument, context, environ)
    config_path = find_config_file(context, environ)
    graph = load_graph(
        [pattern],
        workdir=context,
        environ=environ,
        config_path=config_path.resolve() if config_path else None,
    )
    import_path = graph.mains[pattern].import_path
    files = graph.files_of(import_path)
    stats = closure_files(graph.local_closure(import_path), [*files, context])
    return sorted(os.path.relpath(path, context) for path in files), stats


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class HookRequest:
    """What Skaffold (or Tilt) asked for, read from the environment and the flags."""

    repository: str  # as written in the reference, without the tag
    tag: str | None  # None: kodev picks a tag from the image digest (kodev-<hex>)
    push: bool
    platforms: tuple[str, ...]
    context: Path


def hook_request(args: argparse.Namespace, environ: Mapping[str, str]) -> HookRequest:
    image, source = requested_image(args.image, environ)
    repository, tag = split_image(image, source)
    return HookRequest(
        repository=repository,
        tag=tag,
        push=push_wanted(environ),
        platforms=hook_platforms(environ),
        context=context_dir(environ),
    )


def hook_platforms(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Skaffold's ``PLATFORMS`` (comma-separated), or none."""
    return tuple(p.strip() for p in environ.get("PLATFORMS", "").split(",") if p.strip())


def requested_image(flag: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The reference to produce and where it came from: ``--image``, ``IMAGE`` (Skaffold)
    or ``EXPECTED_REF`` (Tilt's ``custom_build``)."""
    if flag:
        return flag, "--image"
    for name in ("IMAGE", "EXPECTED_REF"):
        if environ.get(name, "").strip():
            return environ[name].strip(), name
    raise UsageError(
        "no image to build: IMAGE (Skaffold) and EXPECTED_REF (Tilt) are unset",
        hint="run this as a Skaffold custom buildCommand, or pass --image REGISTRY/REPO[:TAG]",
    )


def split_image(image: str, source: str) -> tuple[str, str | None]:
    """``repo[:tag]`` -> (repo, tag), checked like a registry reference."""
    from kodev.oci.reference import parse_reference

    if image.startswith(KO_SCHEME):
        raise UsageError(
            f"{source}={image} has no registry: Skaffold needs a default repo for ko:// images",
            hint="run skaffold with --default-repo=<registry>[/path] (or skaffold config set "
            "default-repo ...); a local cluster with a KEP-1755 registry sets it by itself",
        )
    if "@" in image:
        raise UsageError(f"{source}={image} names a digest; expected REPOSITORY[:TAG]")
    parse_reference(image)  # raises UsageError with what is wrong
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, None


def push_wanted(environ: Mapping[str, str]) -> bool:
    """``PUSH_IMAGE``: true (the default, also for Tilt) pushes; false means the Docker daemon."""
    from kodev.cli.flags import parse_bool

    value = environ.get("PUSH_IMAGE", "true").strip()
    try:
        return value == "" or parse_bool(value)
    except argparse.ArgumentTypeError:
        raise UsageError(f"PUSH_IMAGE={value!r} is not true or false") from None


def run_build(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    request = hook_request(args, environ)
    if not request.push:
        require_docker_daemon(request, environ)
    pattern = main_pattern(args.importpath, request.context, environ)
    result, tag = build_and_output(request, pattern, args, environ)
    tagged = f"{result.repository}:{tag}"
    if args.image_ref_file:
        from kodev.cache import atomic_write

        atomic_write(Path(args.image_ref_file), f"{tagged}\n".encode())
    print(f"{tagged}@{result.digest}" if request.push else tagged)
    return 0


def build_and_output(
    request: HookRequest, pattern: str, args: argparse.Namespace, environ: dict[str, str]
) -> tuple[Published, str]:
    """Build ``pattern`` and push it (or ``docker load`` it); returns the result and its tag."""
    import tempfile

    from kodev.cli.progress import ProgressPrinter
    from kodev.publish import Pipeline, PublishOptions

    with tempfile.TemporaryDirectory(prefix="kodev-skaffold-") as scratch:
        tarball = None if request.push else Path(scratch) / "image.tar"
        options = PublishOptions(
            docker_repo=request.repository,
            tags=(request.tag,) if request.tag else ("latest",),
            push=request.push,
            naming="bare",
            insecure_registry=args.insecure_registry,
            tarball=tarball,
            sbom=args.sbom,
            platforms=request.platforms,
        )
        with ProgressPrinter() as printer:
            pipeline = Pipeline(
                options, workdir=request.context, environ=environ, on_event=printer
            )
            try:
                result, tag = publish_one(pipeline, pattern, request.tag)
            finally:
                pipeline.close()
        if tarball is not None:
            docker_load(tarball, environ)
    return result, tag


def publish_one(pipeline: Pipeline, pattern: str, tag: str | None) -> tuple[Published, str]:
    """Publish under ``tag``; without one, under ``kodev-<digest hex>`` (content-addressed,
    so an unchanged image keeps its reference and Tilt does not restart anything). Returns
    the result and the tag it got."""
    if tag:
        return pipeline.publish([pattern])[0], tag
    built = pipeline.build([pattern])
    chosen = content_tag(built[0].artifact.digest)
    return pipeline.write(built, tags=(chosen,))[0], chosen


def content_tag(digest: str) -> str:
    return "kodev-" + digest.split(":", 1)[1][:16]


def require_docker_daemon(request: HookRequest, environ: Mapping[str, str]) -> None:
    """``PUSH_IMAGE=false`` means Skaffold reads the image from a Docker daemon; fail before
    building if there is none, and say how to avoid needing one."""
    if len(request.platforms) > 1:
        raise UsageError(
            f"PUSH_IMAGE=false with PLATFORMS={','.join(request.platforms)}: a Docker daemon "
            "holds one platform per tag",
            hint="push to a registry (build.local.push: true) for multi-platform images",
        )
    require_docker_for(request.repository, "PUSH_IMAGE=false", environ)


def require_docker_for(image: str, variable: str, environ: Mapping[str, str]) -> None:
    """One line saying exactly what to set when no Docker daemon can take ``image``."""
    problem = docker_problem(environ)
    if problem:
        raise UsageError(
            f"{variable}: Skaffold wants {image} in a local Docker daemon, but {problem}",
            hint="let Skaffold push to a registry instead: set build.local.push: true in "
            "skaffold.yaml (or pass --push) and a default repo the cluster pulls from "
            "(--default-repo=localhost:5000); a cluster with a KEP-1755 local registry "
            "gets both by itself",
        )


# --------------------------------------------------------------------------- check


def run_check(args: argparse.Namespace) -> int:
    """The artifact's ``hooks.before``: Skaffold's build hooks get ``SKAFFOLD_PUSH_IMAGE``
    and ``SKAFFOLD_IMAGE``. Pushing needs nothing here; loading needs a Docker daemon, and
    without one Skaffold's own daemon check (which runs before the custom builder, so
    before ``kodev skaffold build`` could say anything) would fail with a Docker client
    error. Exit 0 when the build can go ahead."""
    environ = dict(os.environ)
    name = "SKAFFOLD_PUSH_IMAGE" if "SKAFFOLD_PUSH_IMAGE" in environ else "PUSH_IMAGE"
    if push_wanted({"PUSH_IMAGE": environ.get(name, "true")}):
        return 0
    image = environ.get("SKAFFOLD_IMAGE") or environ.get("IMAGE") or "the image"
    require_docker_for(image, f"{name}=false", environ)
    return 0


def docker_problem(environ: Mapping[str, str]) -> str | None:
    """Why ``docker`` cannot be used, or None when ``docker info`` answers."""
    import shutil
    import subprocess

    docker = shutil.which("docker", path=environ.get("PATH"))
    if docker is None:
        return "there is no docker command"
    try:
        proc = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            env=dict(environ),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 20s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return "no Docker daemon answers" + (f": {lines[-1].strip()}" if lines else "")
    return None


def docker_load(tarball: Path, environ: Mapping[str, str]) -> None:
    import subprocess

    proc = subprocess.run(
        ["docker", "load", "-i", str(tarball)],
        env=dict(environ),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise UsageError(
            f"docker load failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}",
            hint="check that the Docker daemon is running (docker info)",
        )
    print(proc.stdout.strip(), file=sys.stderr)


# --------------------------------------------------------------------------- init


def run_init(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.exists() and not args.force:
        raise UsageError(f"{output} already exists", hint="pass --force to overwrite it")
    if "-" in args.filename:
        raise UsageError("-f - (stdin) cannot be listed in skaffold.yaml",
                         hint="pass the manifest files or directories")
    files, import_paths = manifest_import_paths(args)
    config = skaffold_config(files, import_paths, output.resolve().parent, Path.cwd())
    from kodev.cache import atomic_write

    atomic_write(output, render_config(config).encode())
    print(
        f"wrote {output}: {len(import_paths)} artifact(s) named ko://<importpath>, "
        f"{len(files)} manifest file(s). Skaffold needs a default repo for these names: "
        "skaffold dev --default-repo=localhost:5000 (a local cluster's KEP-1755 registry "
        "sets it by itself).",
        file=sys.stderr,
    )
    return 0


def manifest_import_paths(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The manifest files and the distinct main packages their ``ko://`` values name,
    read with the same machinery as ``kodev resolve``."""
    from kodev.publish import Pipeline, PublishOptions
    from kodev.resolve import (
        buildable_import_paths,
        collect_files,
        read_streams,
        select_documents,
    )

    files = collect_files(args.filename, args.recursive)
    selections = select_documents(read_streams(files), args.selector)
    refs = [ref for selection in selections for ref in selection.refs]
    if not refs:
        raise UsageError(
            f"no ko:// references in {', '.join(args.filename)}",
            hint="write image: ko://<import path of a main package> in the manifests",
        )
    pipeline = Pipeline(PublishOptions(push=False))

    def warn(message: str) -> None:
        print(f"kodev: warning: {message}", file=sys.stderr)

    return files, buildable_import_paths(pipeline, refs, strict=False, warn=warn)


def skaffold_config(
    files: Sequence[str], import_paths: Sequence[str], config_dir: Path, context: Path
) -> dict[str, Any]:
    """A ``skaffold.yaml``: one custom artifact per main package, deps from kodev."""
    artifacts = [
        {
            "image": f"{KO_SCHEME}{path}",
            "context": relative_to(context, config_dir),
            "custom": {
                "buildCommand": f"kodev skaffold build {path}",
                "dependencies": {"command": f"kodev skaffold deps {path}"},
            },
            "hooks": {"before": [{"command": list(CHECK_HOOK), "os": ["darwin", "linux"]}]},
        }
        for path in import_paths
    ]
    return {
        "apiVersion": SKAFFOLD_API_VERSION,
        "kind": "Config",
        "metadata": {"name": config_dir.name or "app"},
        "build": {"tagPolicy": {"inputDigest": {}}, "artifacts": artifacts},
        "manifests": {"rawYaml": [relative_to(Path(f).resolve(), config_dir) for f in files]},
        "deploy": {"kubectl": {}},
    }


def relative_to(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base)).as_posix()


def render_config(config: Mapping[str, Any]) -> str:
    import yaml

    header = (
        "# Written by `kodev skaffold init`. Images are built by kodev (no Docker):\n"
        "#   skaffold dev --default-repo=localhost:5000\n"
        "# Artifacts are named ko://<importpath> like the manifests' image: values, which\n"
        "# Skaffold replaces with the built tag@digest. dependencies.command lists exactly\n"
        "# the files each binary is built from (go list -deps), so a change rebuilds only\n"
        "# the images it can affect. hooks.before: when Skaffold does not push (local\n"
        "# cluster, build.local.push: false) it needs a Docker daemon; the check says so.\n"
    )
    return header + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
