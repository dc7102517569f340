"""``kodev build`` (alias ``publish``): build, publish, print one reference per package."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from kodev.errors import UsageError
from kodev.publish import Pipeline, Published, PublishOptions


def split_list(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for item in values for v in item.split(",") if v.strip()))


def key_values(values: list[str], flag: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r} is not KEY=VALUE")
        pairs.append((key, value))
    return tuple(pairs)


def options_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> PublishOptions:
    """Translate ko-style flags into PublishOptions (shared by build, resolve, apply, up)."""
    env = os.environ if environ is None else environ
    if args.local or env.get("KO_DOCKER_REPO", "").startswith("ko.local"):
        raise UsageError(
            "--local / ko.local needs a Docker daemon, and kodev is daemonless",
            hint="push to a registry (a local one: localhost:5000) or use --tarball",
        )
    tags = split_list(args.tags) or ("latest",)
    if args.tag_only and (len(tags) != 1 or tags[0] == "latest"):
        raise UsageError("--tag-only needs exactly one tag, and not 'latest'")
    naming = (
        "preserve"
        if args.preserve_import_paths
        else "base"
        if args.base_import_paths
        else "bare"
        if args.bare
        else "md5"
    )
    return PublishOptions(
        docker_repo=env.get("KO_DOCKER_REPO"),
        tags=tags,
        tag_only=args.tag_only,
        push=args.push,
        naming=naming,
        insecure_registry=args.insecure_registry,
        oci_layout_path=Path(args.oci_layout_path) if args.oci_layout_path else None,
        tarball=Path(args.tarball) if args.tarball else None,
        image_refs=Path(args.image_refs) if args.image_refs else None,
        sbom=args.sbom,
        sbom_dir=Path(args.sbom_dir) if args.sbom_dir else None,
        platforms=split_list(args.platform),
        image_labels=key_values(args.image_label, "--image-label"),
        image_annotations=key_values(args.image_annotation, "--image-annotation"),
        image_user=args.image_user,
        jobs=args.jobs,
        ldflags=tuple(args.ldflags),
        disable_optimizations=args.disable_optimizations,
        use_cache=not args.no_cache,
    )


def result_json(result: Published) -> dict[str, object]:
    return {
        "importpath": result.import_path,
        "reference": result.reference,
        "digest": result.digest,
        "repository": result.repository,
        "platforms": sorted(str(p) for p in result.binaries),
    }


def publish_patterns(args: argparse.Namespace, patterns: list[str],
                     options: PublishOptions | None = None) -> list[Published]:
    """Build and publish ``patterns`` with progress on stderr (build, run)."""
    from kodev.cli.progress import ProgressPrinter

    options = options or options_from_args(args)
    with ProgressPrinter() as printer:
        pipeline = Pipeline(options, on_event=printer)
        try:
            return pipeline.publish(patterns)
        finally:
            pipeline.close()


def run(args: argparse.Namespace) -> int:
    results = publish_patterns(args, args.importpaths or ["."])
    if args.json:
        print(json.dumps([result_json(r) for r in results], indent=2))
    else:
        for result in results:
            print(result.reference)
    return 0
