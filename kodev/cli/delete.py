"""``kodev delete -f ...``: delete what the files describe (nothing is built) and wait."""

from __future__ import annotations

import argparse
import json
import sys

from kodev.cli.apply import connected, reporter
from kodev.cli.resolve import load_selections
from kodev.resolve import render_documents


def run(args: argparse.Namespace) -> int:
    from kodev.kube.apply import delete_objects, objects_from_documents

    selections = load_selections(args)
    documents = render_documents(selections, {})  # ko:// values do not matter here
    objects = objects_from_documents(d for docs in documents for d in docs)
    if not objects:
        print("No resources found", file=sys.stderr)
        return 0
    records, report = reporter(args.json)
    with connected(args) as kube:
        kube.validate(objects)
        delete_objects(kube, objects, report, wait=args.wait)
    if args.json:
        print(json.dumps(records, indent=2))
    return 0
