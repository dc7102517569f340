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
        help="allow plain http and unverified TLS to the registry",
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


def add_kube_flags(parser: argparse.ArgumentParser) -> None:
    """kubectl's cluster selection flags."""
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", metavar="FILE",
                       help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    group.add_argument("-n", "--namespace", metavar="NAME",
                       help="namespace for objects that name none (default: the context's)")
    group.add_argument("--timeout", type=parse_duration, default=120.0, metavar="DURATION",
                       help="how long to wait for CRDs and deletions (default 2m)")


def add_manifest_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of ``resolve``, ``apply`` and ``delete``."""
    parser.epilog = {"resolve": RESOLVE_EPILOG, "apply": APPLY_EPILOG,
                     "delete": DELETE_EPILOG}[name]
    add_manifest_flags(parser)
    if name in ("resolve", "apply"):
        parser.add_argument("--strict", action="store_true",
                            help="a ko:// value that is not a main package is an error "
                            "(default: warn and leave it)")
        add_build_flags(parser)
    else:
        parser.add_argument("-C", "--chdir", metavar="DIR", default=None,
                            help="run as if started in DIR")
        parser.add_argument("--wait", type=parse_bool, nargs="?", const=True, default=True,
                            metavar="BOOL", help="wait until the objects are gone (default true)")
    if name in ("apply", "delete"):
        add_kube_flags(parser)
        add_output_flags(parser)


# One entry per command that has flags: name -> function(name, parser).
COMMAND_FLAGS = {
    "build": add_build_command_flags,
    "resolve": add_manifest_command_flags,
    "apply": add_manifest_command_flags,
    "delete": add_manifest_command_flags,
}
