"""Flag definitions (ko-compatible names), kept import-light for a fast ``--help``."""

from __future__ import annotations

import argparse


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_build_flags(parser: argparse.ArgumentParser) -> None:
    """The flags ko's build, resolve, apply, create and run share."""
    group = parser.add_argument_group("build and publish")
    group.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="PLATFORMS",
        help="os/arch[/variant], comma-separated or repeated, or 'all' "
        "(default: defaultPlatforms, else linux/<host arch>)",
    )
    group.add_argument(
        "-t",
        "--tags",
        action="append",
        default=[],
        metavar="TAGS",
        help="tags to publish (comma-separated or repeated; default latest)",
    )
    group.add_argument(
        "--tag-only", action="store_true", help="print repo:tag instead of a digest reference"
    )
    group.add_argument(
        "--push",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="push to KO_DOCKER_REPO (default true)",
    )
    group.add_argument(
        "-L",
        "--local",
        action="store_true",
        help="load into a local Docker daemon (not supported: no daemon)",
    )
    group.add_argument(
        "--insecure-registry",
        action="store_true",
        help="allow plain http and unverified TLS to the KO_DOCKER_REPO registry only "
        "(base images stay verified https)",
    )
    group.add_argument("--oci-layout-path", metavar="DIR", help="also write an OCI layout")
    group.add_argument(
        "--tarball",
        metavar="FILE",
        help="also write a tarball (docker load / oci-archive; multi-platform ok)",
    )
    group.add_argument("--image-refs", metavar="FILE", help="write published references here")
    naming = group.add_mutually_exclusive_group()
    naming.add_argument(
        "-P",
        "--preserve-import-paths",
        action="store_true",
        help="name images after the full import path",
    )
    naming.add_argument(
        "-B",
        "--base-import-paths",
        action="store_true",
        help="name images after the last import path element",
    )
    naming.add_argument("--bare", action="store_true", help="use KO_DOCKER_REPO as the name")
    group.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=0,
        help="parallel builds and uploads (default: number of CPUs)",
    )
    group.add_argument(
        "--disable-optimizations",
        action="store_true",
        help="build with -gcflags='all=-N -l' for debuggers",
    )
    group.add_argument(
        "--ldflags",
        action="append",
        default=[],
        metavar="FLAGS",
        help="ldflags, overriding .ko.yaml (repeatable)",
    )
    group.add_argument(
        "--sbom",
        choices=("spdx", "cyclonedx", "none"),
        default="spdx",
        help="SBOM format to attach (default spdx)",
    )
    group.add_argument("--sbom-dir", metavar="DIR", help="also write SBOMs to this directory")
    group.add_argument(
        "--image-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add a label to the image config (repeatable)",
    )
    group.add_argument(
        "--image-annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add a manifest annotation (repeatable)",
    )
    group.add_argument("--image-user", metavar="USER", help="set the image's user")
    group.add_argument("--no-cache", action="store_true", help="do not read or write KOCACHE")
    group.add_argument(
        "-C", "--chdir", metavar="DIR", default=None, help="run as if started in DIR"
    )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print results as JSON on stdout (for scripts)"
    )


BUILD_EPILOG = """\
examples:
  export KO_DOCKER_REPO=localhost:5000
  kodev build ./cmd/app                       # prints localhost:5000/app-<md5>@sha256:...
  kodev build -B ./cmd/app ./cmd/worker       # one go build for both binaries
  kodev build --platform=linux/amd64,linux/arm64 ./cmd/app    # an OCI index
  kodev build --push=false --tarball=app.tar ./cmd/app        # no registry needed
  kodev build --sbom=cyclonedx --sbom-dir=sboms ./cmd/app

References go to stdout, progress to stderr. Environment: KO_DOCKER_REPO, KO_CONFIG_PATH,
KO_DEFAULTBASEIMAGE, KO_DEFAULTPLATFORMS, KOCACHE, SOURCE_DATE_EPOCH, KO_DATA_DATE_EPOCH.
"""


def add_build_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``build`` (alias ``publish``)."""
    parser.epilog = BUILD_EPILOG
    parser.add_argument(
        "importpaths",
        nargs="*",
        metavar="IMPORTPATH",
        help="import paths or ./relative packages (default .)",
    )
    add_build_flags(parser)
    add_output_flags(parser)


def add_no_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Commands without flags of their own."""


def add_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Give command ``name`` its flags; see ``COMMAND_FLAGS`` at the end of this module."""
    COMMAND_FLAGS.get(name, add_no_flags)(name, parser)


RESOLVE_EPILOG = """\
examples:
  export KO_DOCKER_REPO=localhost:5000
  kodev resolve -f config/ > release.yaml     # every ko://IMPORTPATH becomes repo@sha256:...
  kodev resolve -f app.yaml -f extra.yaml -l app=web
  cat app.yaml | kodev resolve -f - --platform=linux/amd64,linux/arm64

Only the ko:// values change: comments, quoting, key order and documents without
references come out byte-for-byte. Files are joined with '---'. Every distinct import
path is built once (one go build per platform for all of them), then published.
"""

APPLY_EPILOG = """\
examples:
  export KO_DOCKER_REPO=localhost:5000
  kodev apply -f config/                      # build, push, server-side apply
  kodev apply -f config/ -n dev --context kind-dev
  kodev apply -f config/app.yaml --json

Everything is built and every kind is checked against the cluster before anything is
applied. Namespaces and CRDs go first. Objects get the label
app.kubernetes.io/managed-by=kodev; workloads also get the annotation
kodev.dev/importpaths. Field manager: kodev (conflicts are forced).
"""

DELETE_EPILOG = """\
examples:
  kodev delete -f config/                     # delete and wait until gone
  kodev delete -f config/app.yaml --wait=false
  kodev delete -f config/ -l app=web -n dev

Nothing is built: ko:// values do not matter for delete. Objects that are already gone
are reported as "not found" (exit code 0).
"""


def parse_duration(text: str) -> float:
    """kubectl-style durations: ``90``, ``90s``, ``2m``, ``1h``, ``1m30s``."""
    import re

    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s or 2m, got {text!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def add_manifest_flags(parser: argparse.ArgumentParser) -> None:
    """kubectl's -f/-R/-l, shared by resolve, apply and delete."""
    group = parser.add_argument_group("input")
    group.add_argument("-f", "--filename", action="append", default=[], required=True,
                       metavar="FILE", help="a file, a directory of .yaml/.yml/.json files, "
                       "or - for stdin (repeatable)")
    group.add_argument("-R", "--recursive", action="store_true",
                       help="also read the subdirectories of -f directories")
    group.add_argument("-l", "--selector", metavar="SELECTOR",
                       help="keep only documents whose labels match (e.g. app=web,tier!=db)")


def add_kube_flags(parser: argparse.ArgumentParser, *, timeout: bool = True) -> None:
    """kubectl's cluster selection flags (``timeout``: also --timeout)."""
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", metavar="FILE",
                       help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    group.add_argument("-n", "--namespace", metavar="NAME",
                       help="namespace for objects that name none (default: the context's)")
    if timeout:
        group.add_argument("--timeout", type=parse_duration, default=120.0, metavar="DURATION",
                           help="how long to wait for CRDs and deletions (default 2m)")


def add_manifest_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``resolve``, ``apply``, ``create`` and ``delete``."""
    parser.epilog = {"resolve": RESOLVE_EPILOG, "apply": APPLY_EPILOG,
                     "delete": DELETE_EPILOG, "create": CREATE_EPILOG}[name]
    add_manifest_flags(parser)
    if name in ("resolve", "apply", "create"):
        parser.add_argument("--strict", action="store_true",
                            help="a ko:// value that is not a main package is an error "
                            "(default: warn and leave it)")
        add_build_flags(parser)
    else:
        parser.add_argument("-C", "--chdir", metavar="DIR", default=None,
                            help="run as if started in DIR")
        parser.add_argument("--wait", type=parse_bool, nargs="?", const=True, default=True,
                            metavar="BOOL", help="wait until the objects are gone (default true)")
    if name in ("apply", "delete", "create"):
        add_kube_flags(parser)
        add_output_flags(parser)


SKAFFOLD_EPILOG = """\
examples (skaffold.yaml, see skaffold-plugin/README.md):
  custom:
    buildCommand: kodev skaffold build ./cmd/web     # Skaffold runs it via sh -c
    dependencies:
      command: kodev skaffold deps ./cmd/web       # prints a JSON array of files
    hooks:                                         # init writes it: no Docker daemon
      before: [{command: [kodev, skaffold, check]}]  # -> say to push to a registry
  kodev skaffold init -f config/                   # writes skaffold.yaml
"""

SKAFFOLD_BUILD_EPILOG = """\
environment (set by Skaffold's custom builder):
  IMAGE          the exact repo:tag to produce (Tilt: EXPECTED_REF; or --image)
  PUSH_IMAGE     true: push $IMAGE; false: docker load it (needs a Docker daemon)
  BUILD_CONTEXT  the artifact context (also the working directory)
  PLATFORMS      os/arch list; several give a multi-platform index
  SKIP_TEST      ignored: a Go image has no test step
examples:
  IMAGE=localhost:5000/web:v1 kodev skaffold build ./cmd/web
  kodev skaffold build ./cmd/web --image localhost:5000/web --image-ref-file ref.txt   # Tilt

Progress goes to stderr; stdout gets one line, repo:tag@digest.
"""


def add_skaffold_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """``skaffold build|deps|init``: the Skaffold custom builder hook."""
    parser.epilog = SKAFFOLD_EPILOG
    sub = parser.add_subparsers(dest="skaffold_command", metavar="SUBCOMMAND", required=True)
    build = sub.add_parser(
        "build", help="the buildCommand: build and push exactly $IMAGE",
        description="Build IMPORTPATH and push it as $IMAGE (Skaffold) or $EXPECTED_REF (Tilt).",
        epilog=SKAFFOLD_BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    deps = sub.add_parser(
        "deps", help="the dependencies.command: print the files the image is built from",
        description="Print a JSON array of the files (relative to the context) whose change "
        "can change the image: module-local Go sources of the binary's packages, embedded "
        "files, kodata/, go.mod, go.sum, go.work, .ko.yaml.")
    sub.add_parser(
        "check", help="the artifacts' hooks.before: stop early when Skaffold wants the image "
        "in a Docker daemon and none answers",
        description="Exit 0 unless SKAFFOLD_PUSH_IMAGE (Skaffold's build hooks) or "
        "PUSH_IMAGE is false and no Docker daemon answers; then one line saying what to set "
        "(build.local.push: true and a default repo).")
    for command in (build, deps):
        command.add_argument("importpath", nargs="?", metavar="IMPORTPATH",
                             help="main package (default: the .ko.yaml build in the context, "
                             "else .)")
        command.add_argument("-C", "--chdir", metavar="DIR", default=None,
                             help="run as if started in DIR")
    build.add_argument("--image", metavar="REF",
                       help="repo[:tag] to produce instead of $IMAGE/$EXPECTED_REF; without a "
                       "tag, kodev-<digest> (content-addressed)")
    build.add_argument("--image-ref-file", metavar="FILE",
                       help="write the pushed repo:tag here (Tilt's outputs_image_ref_to)")
    build.add_argument("--sbom", choices=("spdx", "cyclonedx", "none"), default="none",
                       help="SBOM to attach (default none, like Skaffold's ko builder)")
    build.add_argument("--insecure-registry", action="store_true",
                       help="allow plain http and unverified TLS to the target registry "
                       "only (base images stay verified https)")
    init = sub.add_parser(
        "init", help="write a skaffold.yaml for the ko:// references in YAML files",
        description="Write skaffold.yaml with one kodev custom artifact per distinct "
        "ko:// reference in the manifests.",
        epilog="examples:\n  kodev skaffold init -f config/\n"
        "  kodev skaffold init -f config/app.yaml -o skaffold.yaml --force\n\n"
        "Artifacts are named ko://<importpath>, like the manifests' image: values, which "
        "Skaffold\nreplaces; run skaffold with --default-repo (e.g. localhost:5000).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_manifest_flags(init)
    init.add_argument("-o", "--output", default="skaffold.yaml", metavar="FILE",
                      help="where to write (default skaffold.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("-C", "--chdir", metavar="DIR", default=None,
                      help="run as if started in DIR")


UP_EPILOG = """\
examples:
  kodev up -f config/                         # deploy, then rebuild and hot-swap on save
  kodev up -f config/app.yaml -n dev --no-tui # one line per event (logs interleaved)
  kodev up -f config/ --json | jq .           # one JSON object per event, for editors
  kodev up -f config/ --cleanup               # delete what up applied when it stops
  kodev up -f config/ --port-forward          # container ports on http://127.0.0.1:PORT
  kodev up -f config/ --live                  # new binary into running containers, no new Pod
  kodev up -f config/ --run-cronjobs          # a changed CronJob also runs once, now
  kodev up -f config/ --workload-kind 'example.com/v1/Worker={.spec.template.spec.containers}'

Workloads of every kind are followed: Deployment, StatefulSet, DaemonSet, ReplicaSet
(its Pods are recreated), Job (replaced: its pod template is immutable), CronJob (the
next run uses the new image), Pod (the container restarts in place), Argo Rollout and
Knative Service; a custom resource with a pod template takes one --workload-kind, or an
entry in .ko.yaml's kodev.workloadKinds.

Only the images a change affects are rebuilt (from go list -deps), in one go build;
an identical binary is not pushed; new digests are patched into the containers that
run them and the rollout is followed until the new Pods are Ready. Platforms default
to the cluster nodes' platforms; without KO_DOCKER_REPO the cluster's local registry
(KEP-1755 ConfigMap kube-public/local-registry-hosting) is used. SBOMs are off by
default here (--sbom=spdx attaches them). Keys in the TUI: q quits, l toggles logs.
Stopping (q, Ctrl-C) leaves the workloads running and exits 0.
"""


def add_up_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``up``: apply's, plus the loop's own."""
    parser.epilog = UP_EPILOG
    add_manifest_flags(parser)
    parser.add_argument("--strict", action="store_true",
                        help="a ko:// value that is not a main package is an error")
    add_build_flags(parser)
    add_kube_flags(parser)
    group = parser.add_argument_group("dev loop")
    group.add_argument("--no-tui", action="store_true",
                       help="one plain line per event instead of the full-screen view")
    group.add_argument("--json", action="store_true",
                       help="one JSON object per event on stdout (implies --no-tui)")
    group.add_argument("--cleanup", action="store_true",
                       help="delete what up applied when it stops")
    group.add_argument("--quiet-period", type=parse_duration, default=0.1, metavar="DURATION",
                       help="wait this long after the last save before building (default 100ms)")
    group.add_argument("--logs", type=parse_bool, nargs="?", const=True, default=True,
                       metavar="BOOL", help="follow the workloads' logs (default true)")
    group.add_argument("--port-forward", type=parse_bool, nargs="?", const=True, default=None,
                       metavar="BOOL",
                       help="forward every declared container port to 127.0.0.1 (same port "
                            "if free, else the next), following rollouts (default: .ko.yaml "
                            "kodev.portForward, else false)")
    group.add_argument("--live", action="store_true",
                       help="run each new binary in the running containers (no new Pod): "
                            "images get a small supervisor as entrypoint and an emptyDir at "
                            "/kodev-live; falls back to a rollout, saying why, when a swap "
                            "cannot be done; on stop the workloads are patched to the last "
                            "build's digest")
    group.add_argument("--run-cronjobs", action="store_true",
                       help="after a CronJob's image changes, start a Job from it at once "
                            "(as kubectl create job --from=cronjob/NAME)")
    group.add_argument("--rerun-jobs", action="store_true",
                       help="replace a Job that has completed when its image changes (by "
                            "default only running and failed Jobs are replaced)")
    add_workload_kind_flag(group)
    parser.set_defaults(sbom="none")


def add_workload_kind_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--workload-kind", action="append", default=[],
                        metavar="GROUP/VERSION/KIND=JSONPATH",
                        help="a custom resource kind to treat as a workload, with a JSONPath "
                             "to its containers (repeatable; .ko.yaml: kodev.workloadKinds)")


CREATE_EPILOG = """\
examples:
  export KO_DOCKER_REPO=localhost:5000
  kodev create -f config/                     # build, push, create every object
  kodev create -f config/app.yaml -n dev --json

Like apply, but every object must be new: all of them are checked before anything is
built and again before the first is created; if one exists, nothing is created.
"""

RUN_EPILOG = """\
examples:
  export KO_DOCKER_REPO=localhost:5000
  kodev run ./cmd/migrate                     # build, push, run once, print its output
  kodev run ./cmd/tool -n dev -- --dry-run -v=2   # arguments after -- go to the program
  kodev run ./cmd/tool --name tool-test --env LOG=debug

The Pod (restartPolicy Never) is deleted afterwards, also on Ctrl-C; kodev exits with
the container's exit code. Default Pod name: the image repository's last element.
"""

LOGIN_EPILOG = """\
examples:
  echo "$TOKEN" | kodev login ghcr.io -u octocat --password-stdin
  kodev login localhost:5000 -u admin         # prompts for the password on a terminal
  kodev logout ghcr.io

The credentials are checked against the registry first; then they go where docker puts
them: the credsStore / credHelpers helper if config.json names one, else "auths" in
$DOCKER_CONFIG/config.json (default ~/.docker/config.json, mode 0600).
"""

COMPLETION_EPILOG = """\
examples:
  source <(kodev completion bash)                                  # bash, this shell
  kodev completion bash > /etc/bash_completion.d/kodev             # bash, everywhere
  kodev completion zsh > "${fpath[1]}/_kodev"                      # zsh
  kodev completion fish > ~/.config/fish/completions/kodev.fish    # fish
"""


def add_run_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``run``: one import path, Pod settings, build and cluster flags."""
    parser.epilog = RUN_EPILOG
    parser.add_argument("importpath", metavar="IMPORTPATH",
                        help="import path or ./relative package to build and run")
    parser.add_argument("args", nargs="*", metavar="ARG",
                        help="arguments for the program (put them after --)")
    pod = parser.add_argument_group("pod")
    pod.add_argument("--name", metavar="NAME",
                     help="Pod name (default: the image repository's last element)")
    pod.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                     help="environment variable for the container (repeatable)")
    add_build_flags(parser)
    add_kube_flags(parser)


def add_login_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``login`` and ``logout`` (docker's names)."""
    parser.epilog = LOGIN_EPILOG
    parser.add_argument("registry", metavar="REGISTRY",
                        help="registry host (docker.io, ghcr.io, localhost:5000, ...)")
    if name == "logout":
        return
    parser.add_argument("-u", "--username", metavar="USER", help="user name")
    parser.add_argument("-p", "--password", metavar="PASSWORD",
                        help="password (insecure: other users can see it; prefer "
                        "--password-stdin)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password (or token) from stdin")
    parser.add_argument("--insecure-registry", action="store_true",
                        help="allow plain http and unverified TLS to the registry")


def add_version_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    add_output_flags(parser)


def add_completion_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    parser.epilog = COMPLETION_EPILOG
    parser.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")


LOGS_EPILOG = """\
examples:
  kodev logs                       # every workload kodev applied in the namespace
  kodev logs web deployment/worker -n dev
  kodev logs cronjob/report job/migrate rollout/api
  kodev logs -A -l app=web --since 10m
  kodev logs web -c '^app$' --tail 20 -t
  kodev logs -o json --no-follow | jq -r .message

Pods are watched: a rollout's new Pods are followed as soon as their containers run, deleted
Pods end, restarted containers continue. A dropped connection resumes where it stopped, with
no line lost or repeated. Lines go to stdout as pod/container message (colour per container
on a terminal; NO_COLOR turns it off); + / - / ~ notices go to stderr. An unknown name or
namespace exits with 5. Ctrl-C exits with 130.
"""


def add_logs_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``logs`` (stern's names where they exist)."""
    parser.epilog = LOGS_EPILOG
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="a workload's name, or KIND/NAME (deploy, sts, ds, rs, job, cj, "
                        "pod, rollout, ksvc, or a --workload-kind; default: every workload "
                        "labelled app.kubernetes.io/managed-by=kodev)")
    parser.add_argument("-l", "--selector", metavar="SELECTOR",
                        help="only Pods whose labels match (e.g. app=web,tier!=db)")
    add_kube_flags(parser, timeout=False)
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="follow workloads in every namespace")
    group = parser.add_argument_group("output")
    group.add_argument("-c", "--container", metavar="REGEX",
                       help="only containers whose name matches this regex (searched, as stern)")
    group.add_argument("--since", type=parse_duration, metavar="DURATION",
                       help="only lines newer than this, e.g. 5m (default: all)")
    group.add_argument("--tail", type=int, metavar="N",
                       help="only the last N lines of each running container (default: all)")
    group.add_argument("-t", "--timestamps", action="store_true",
                       help="show each line's timestamp")
    group.add_argument("-o", "--output", choices=("default", "raw", "json"), default="default",
                       help="default: pod/container message; raw: message; json: one object "
                       "per line (timestamp, namespace, pod, container, message)")
    group.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                       help="colour the prefixes (auto: on a terminal, unless NO_COLOR is set)")
    group.add_argument("--no-follow", dest="follow", action="store_false",
                       help="print what is there and exit")
    add_workload_kind_flag(parser)


SERVER_EPILOG = """\
The first `kodev build` or `kodev skaffold build|deps` starts a warm server in the
background; later calls fork it instead of starting Python and importing kodev again
(same code, same environment, same result). It exits after KODEV_SERVER_IDLE seconds
without a call (default 600), or when kodev's files change.

examples:
  kodev server status            # the servers that run, with their pid and socket
  kodev server stop              # stop them (running builds finish first)
  KODEV_SERVER=off kodev build ./cmd/app   # run without a server, start none
"""


def add_server_flags(name: str, parser: argparse.ArgumentParser) -> None:
    parser.epilog = SERVER_EPILOG
    sub = parser.add_subparsers(dest="server_command", metavar="SUBCOMMAND", required=True)
    for command, text in (("status", "list the warm servers that run"),
                          ("stop", "stop every warm server of this user")):
        child = sub.add_parser(command, help=text, description=text, epilog=SERVER_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        add_output_flags(child)


# One entry per command that has flags: name -> function(name, parser).
COMMAND_FLAGS = {
    "build": add_build_command_flags,
    "resolve": add_manifest_command_flags,
    "apply": add_manifest_command_flags,
    "delete": add_manifest_command_flags,
    "create": add_manifest_command_flags,
    "run": add_run_command_flags,
    "login": add_login_command_flags,
    "logout": add_login_command_flags,
    "version": add_version_command_flags,
    "completion": add_completion_command_flags,
    "skaffold": add_skaffold_flags,
    "up": add_up_flags,
    "logs": add_logs_flags,
    "server": add_server_flags,
}
