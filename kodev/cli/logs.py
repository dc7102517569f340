"""``kodev logs [NAME...]``: follow the logs of workloads' Pods (engine: kodev.kube.logs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kodev.console import wants_color
from kodev.errors import UsageError

if TYPE_CHECKING:
    from kodev.kube.tail import LogEvent, LogOptions


def log_options(args: argparse.Namespace) -> LogOptions:
    from kodev.kube.tail import LogOptions

    if args.tail is not None and args.tail < 0:
        args.tail = None  # stern's -1: everything
    return LogOptions(since=args.since, tail=args.tail, timestamps=args.timestamps,
                      container=args.container, follow=args.follow)


def run(args: argparse.Namespace) -> int:
    from kodev.config import load_config
    from kodev.kube.client import KubeOptions, connect
    from kodev.kube.logs import LogFollower, format_line, format_notice, parse_workload_ref
    from kodev.kube.tail import LogLine

    if args.all_namespaces and args.namespace:
        raise UsageError("-A and -n exclude each other", hint="pass one of them")
    from kodev.kube.workloads import project_table

    table = project_table(load_config(Path.cwd()).workload_kinds, args.workload_kind)
    workloads = [parse_workload_ref(name, table) for name in args.names] or None
    options = log_options(args)
    color_out = wants_color(args.color, sys.stdout)
    color_err = wants_color(args.color, sys.stderr)

    def show(event: LogEvent) -> None:
        if isinstance(event, LogLine):
            sys.stdout.write(format_line(event, args.output, color_out, args.timestamps,
                                         namespace=args.all_namespaces) + "\n")
            sys.stdout.flush()
        else:
            sys.stderr.write(format_notice(event, color_err) + "\n")
            sys.stderr.flush()

    cluster = connect(KubeOptions(args.kubeconfig, args.context, args.namespace))
    try:
        namespace = None if args.all_namespaces else cluster.namespace
        LogFollower(cluster, namespace, workloads, args.selector, options, show,
                    table).run()
    finally:
        cluster.close()
    return 0
