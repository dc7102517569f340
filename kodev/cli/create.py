"""``kodev create -f ...``: like apply, but every object must be new (ko's ``create``)."""

from __future__ import annotations

import argparse

from kodev.cli.apply import resolve_and_apply


def run(args: argparse.Namespace) -> int:
    return resolve_and_apply(args, create=True)
