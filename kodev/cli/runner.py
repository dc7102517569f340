"""Runs a command: turns KodevError into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable

from kodev.errors import BuildError, KodevError


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    if getattr(args, "chdir", None):
        try:
            os.chdir(args.chdir)
        except OSError as exc:
            return report(KodevError(f"cannot change to directory {args.chdir}: {exc.strerror}"))
    try:
        return func(args)
    except KodevError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("kodev: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only with -v
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"kodev: internal error: {type(exc).__name__}: {exc} "
              "(run with -v for the traceback and please report it)", file=sys.stderr)
        return 1


def report(exc: KodevError) -> int:
    if isinstance(exc, BuildError) and exc.output:
        print(exc.output, file=sys.stderr)
    line = f"kodev: error: {exc.message}"
    if exc.hint:
        line += f" ({exc.hint})"
    print(line, file=sys.stderr)
    return exc.exit_code
