"""kodev's command line: argument parsing and dispatch, nothing else.

Start-up stays light: only ``argparse`` and the flag definitions load here; a command's
module (and the heavy libraries it needs) is imported when that command runs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from kodev import __version__
from kodev.cli import flags
from kodev.warm.protocol import GLOBAL_FLAGS

EXIT_CODES = """\
exit codes:
  0  success
  1  unexpected failure
  2  bad usage or configuration (flags, environment, .ko.yaml, YAML input)
  3  go build / go list failed (the compiler's output is shown)
  4  registry error (unreachable, unauthorized, not found)
  5  Kubernetes API error
  130 interrupted (Ctrl-C, SIGINT); kodev up exits 0 when Ctrl-C stops it cleanly
  143 terminated (SIGTERM); kodev up: as for Ctrl-C
"""

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module under kodev.cli, one-line help)
    "build": ("build", "Build Go main packages into images and publish them"),
    "version": ("version", "Print kodev's version"),
    "resolve": ("resolve", "Build ko:// references in YAML and print it with image digests"),
    "apply": ("apply", "Resolve YAML, then server-side apply it to a Kubernetes cluster"),
    "delete": ("delete", "Delete the objects described in YAML from a Kubernetes cluster"),
    "create": ("create", "Resolve YAML, then create it in a cluster (fails if an object exists)"),
    "run": ("run", "Build an import path and run it once in a Pod, attached to its logs"),
    "login": ("login", "Log in to a registry (writes docker's config.json)"),
    "logout": ("login", "Remove a registry's credentials from docker's config.json"),
    "completion": ("completion", "Print a shell completion script (bash, zsh or fish)"),
    "up": ("up", "Deploy, then rebuild and hot-swap only what each saved change affects"),
    "skaffold": ("skaffold", "Skaffold custom builder hook: skaffold build, deps and init"),
    "logs": ("logs", "Follow the logs of the workloads kodev deployed, across rollouts"),
    "server": ("server", "Show or stop the warm servers that speed up one-shot builds"),
}
ALIASES = {"publish": "build"}


def requested_command(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (after the global flags), if it names a command."""
    for arg in argv:
        if arg in GLOBAL_FLAGS:
            continue
        return arg if arg in COMMANDS or arg in ALIASES else None
    return None


def make_parser(only: str | None = None) -> argparse.ArgumentParser:
    """kodev's parser. ``only``: the command being run; the other commands' parsers are
    left out (building all of them, with their flags and help formatters, costs ~70 ms,
    more than a cached ``kodev skaffold deps`` itself)."""
    parser = argparse.ArgumentParser(
        prog="kodev",
        description="Build Go services into OCI images without Docker, and run a fast "
        "Kubernetes inner loop. Reads ko's .ko.yaml and KO_* variables.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  KO_DOCKER_REPO=localhost:5000 kodev build ./cmd/app\n"
        "  kodev build --platform=linux/amd64,linux/arm64 ./cmd/...\n\n" + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"kodev {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log registry traffic")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = ALIASES.get(only, only) if only else None
    for name, (_module, help_text) in COMMANDS.items():
        if wanted is not None and name != wanted:
            continue
        aliases = [a for a, target in ALIASES.items() if target == name]
        command = sub.add_parser(
            name,
            aliases=aliases,
            help=help_text,
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        flags.add_command_flags(name, command)
    return parser


def parse_with_passthrough(parser: argparse.ArgumentParser, argv: list[str]
                           ) -> argparse.Namespace:
    """Everything after the first ``--`` goes to ``args.args`` (``kodev run IP -- ARGS``);
    argparse itself rejects ``--`` after a subcommand's options (Python 3.11)."""
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    if passthrough:
        if not isinstance(getattr(args, "args", None), list):
            command = f"kodev {args.command}" if args.command else "kodev"
            parser.error(f"{command} takes no arguments after --")
        args.args = [*args.args, *passthrough]
    return args


def import_command(name: str) -> ModuleType:
    """Import a command's module with the cyclic GC paused, then freeze what the imports
    made: those objects live as long as the process, so no collection (during the command
    or at exit) walks them again: ~40-50 ms less CPU per one-shot command."""
    gc.disable()
    try:
        return importlib.import_module(f"kodev.cli.{name}")
    finally:
        gc.freeze()
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    from kodev.cache import remove_temporaries
    from kodev.cli.runner import interrupts, run_command

    interrupts.install()  # Ctrl-C and SIGTERM end every command within 2 s
    # first thing on a forced exit, before the (time-bounded) atexit functions
    interrupts.at_forced_exit(remove_temporaries)
    try:
        arguments = list(sys.argv[1:] if argv is None else argv)
        parser = make_parser(requested_command(arguments))
        args = parse_with_passthrough(parser, arguments)
        if not args.command:
            parser.print_help(sys.stderr)
            return 2
        name = ALIASES.get(args.command, args.command)
        module = import_command(COMMANDS[name][0])
        code = run_command(module.run, args)
    except KeyboardInterrupt as exc:  # before the command ran (parsing, imports)
        code = interrupts.interrupted(exc)
    return interrupts.finish(code)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
