"""``kodev run IMPORTPATH [-- ARGS]``: build, push, run once in a Pod, exit with its code."""

from __future__ import annotations

import argparse

from kodev.cli.build import key_values, options_from_args, publish_patterns
from kodev.cli.runner import interrupts
from kodev.errors import UsageError


def run(args: argparse.Namespace) -> int:
    from kodev.kube.client import KubeOptions, connect
    from kodev.kube.run import PodRun, RunSpec, check_pod_name, default_pod_name

    options = options_from_args(args)
    if not options.push:
        raise UsageError("kodev run needs --push: the cluster pulls the image from the registry")
    env = key_values(args.env, "--env")
    name = check_pod_name(args.name) if args.name else None
    cluster = connect(KubeOptions(args.kubeconfig, args.context, args.namespace))
    try:
        (published,) = publish_patterns(args, [args.importpath], options)
        spec = RunSpec(name=name or default_pod_name(published.repository),
                       image=published.reference, import_path=published.import_path,
                       args=tuple(args.args), env=env)
        return PodRun(cluster, spec, start_timeout=args.timeout,
                      at_forced_exit=interrupts.at_forced_exit).run()
    finally:
        cluster.close()
