"""``kodev resolve -f ...``: publish every ``ko://`` reference and print the YAML with digests."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kodev.publish import Published
from kodev.resolve import (
    ResolvedDocument,
    Selection,
    buildable_import_paths,
    collect_files,
    join_output,
    read_streams,
    references_by_path,
    render_documents,
    select_documents,
)
from kodev.yamlsub import KoRef


def load_selections(args: argparse.Namespace) -> list[Selection]:
    """Read the ``-f`` inputs and keep the documents ``-l`` selects."""
    files = collect_files(args.filename, args.recursive)
    return select_documents(read_streams(files), args.selector)


def publish_references(args: argparse.Namespace, refs: Sequence[KoRef]) -> list[Published]:
    """Build and publish every buildable ``ko://`` import path with ONE pipeline call."""
    if not refs:
        return []
    from kodev.cli.build import options_from_args
    from kodev.cli.progress import ProgressPrinter
    from kodev.publish import Pipeline

    options = options_from_args(args)
    with ProgressPrinter() as printer:
        pipeline = Pipeline(options, on_event=printer)
        try:
            paths = buildable_import_paths(pipeline, refs, strict=args.strict,
                                           warn=lambda m: pipeline.emit("warning", m))
            return pipeline.publish(paths) if paths else []
        finally:
            pipeline.close()


def resolve(args: argparse.Namespace
            ) -> tuple[list[Selection], list[list[ResolvedDocument]], list[Published]]:
    selections = load_selections(args)
    published = publish_references(args, [r for s in selections for r in s.refs])
    return selections, render_documents(selections, references_by_path(published)), published


def run(args: argparse.Namespace) -> int:
    selections, rendered, _published = resolve(args)
    output = join_output(selections, rendered)
    sys.stdout.buffer.write(output.encode("utf-8"))
    sys.stdout.buffer.flush()
    return 0
