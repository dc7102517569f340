"""``kodev up -f ...``: the dev loop (see kodev/dev/loop.py), with a view chosen by flags."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from kodev.cli.build import options_from_args
from kodev.kube.client import KubeOptions


def run(args: argparse.Namespace) -> int:
    from kodev.dev.dashboard import Dashboard
    from kodev.dev.loop import DevLoop, UpSettings

    settings = UpSettings(
        files=args.filename,
        recursive=args.recursive,
        selector=args.selector,
        strict=args.strict,
        kube=KubeOptions(args.kubeconfig, args.context, args.namespace),
        timeout=args.timeout,
        options=replace(options_from_args(args), live=args.live),
        quiet_seconds=args.quiet_period,
        cleanup=args.cleanup,
        logs=args.logs,
        port_forward=args.port_forward,
        live=args.live,
        run_cronjobs=args.run_cronjobs,
        rerun_jobs=args.rerun_jobs,
        workload_kinds=tuple(args.workload_kind),
        workdir=Path.cwd(),
    )
    dashboard = Dashboard()
    loop = DevLoop(settings, dashboard)
    use_tui = not (args.no_tui or args.json) and sys.stdout.isatty() and sys.stdin.isatty()
    if args.json:
        from kodev.dev.views import JsonView

        dashboard.subscribe(JsonView())
    elif not use_tui:
        from kodev.dev.views import LineView

        dashboard.subscribe(LineView())
    try:
        if use_tui:
            from kodev.cli.runner import interrupts
            from kodev.dev.tui import Tui

            keys = {b"c": ("c roll out live changes", loop.converge)} if args.live else {}
            tui = Tui(dashboard, "kodev up", loop.stop, keys)
            interrupts.at_forced_exit(tui.restore_terminal)
            code = tui.run(loop.run)
        else:
            code = loop.run()
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM, raised as its subclass) is how a dev loop ends: exit 0 once
        # loop.run's shutdown ran; the runner cuts a shutdown that takes too long.
        code = 0
    return code
