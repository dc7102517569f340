"""``kodev apply -f ...``: resolve, then server-side apply through the Kubernetes API."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodev.cache import default_cache_dir
from kodev.cli.resolve import load_selections, publish_references
from kodev.errors import UsageError
from kodev.resolve import references_by_path, render_documents

if TYPE_CHECKING:
    from kodev.kube.apply import Kube, Outcome


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[Kube]:
    """The cluster the kubectl-style flags name, with a discovery-backed client."""
    from kodev.kube.apply import Kube
    from kodev.kube.client import KubeOptions, connect, dynamic_client

    cluster = connect(KubeOptions(args.kubeconfig, args.context, args.namespace))
    try:
        dynamic = dynamic_client(cluster, default_cache_dir(os.environ) / "kube")
        yield Kube(cluster, dynamic, timeout=args.timeout)
    finally:
        cluster.close()


def reporter(as_json: bool) -> tuple[list[dict[str, Any]], Callable[[Outcome], None]]:
    """One kubectl-like line per object as it happens, or JSON records kept for the end."""
    records: list[dict[str, Any]] = []

    def report(outcome: Outcome) -> None:
        if as_json:
            records.append(outcome.json())
        else:
            print(outcome.line(), flush=True)

    return records, report


def run(args: argparse.Namespace) -> int:
    return resolve_and_apply(args, create=False)


def resolve_and_apply(args: argparse.Namespace, *, create: bool) -> int:
    """``kodev apply`` (server-side apply) and ``kodev create`` (every object must be new)."""
    from kodev.kube.apply import apply_objects, mark, objects_from_documents, refuse_existing

    selections = load_selections(args)
    unresolved = objects_from_documents(d for docs in render_documents(selections, {})
                                        for d in docs)
    if not unresolved:
        verb = "create" if create else "apply"
        raise UsageError(f"no objects passed to {verb}", hint="check -f and -l")
    records, report = reporter(args.json)
    with connected(args) as kube:
        # Kinds are checked before the (slow) build, and again on the resolved objects.
        kube.validate(unresolved)
        if create:  # fail before the build, and again just before creating
            refuse_existing(kube, unresolved)
        published = publish_references(args, [r for s in selections for r in s.refs])
        rendered = render_documents(selections, references_by_path(published))
        objects = objects_from_documents(d for docs in rendered for d in docs)
        kube.validate(objects)
        import_path_of = {result.reference: result.import_path for result in published}
        from kodev.config import load_config
        from kodev.kube.workloads import project_table

        table = project_table(load_config(Path.cwd()).workload_kinds)
        for obj in objects:
            mark(obj, import_path_of, table)
        apply_objects(kube, objects, report, create=create)
    if args.json:
        print(json.dumps(records, indent=2))
    return 0
