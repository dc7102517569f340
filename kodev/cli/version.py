from __future__ import annotations

import argparse

from kodev import __version__


def run(args: argparse.Namespace) -> int:
    print(__version__)
    return 0
