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


def add_command_flags(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "build":
        parser.epilog = BUILD_EPILOG
        parser.add_argument(
            "importpaths",
            nargs="*",
            metavar="IMPORTPATH",
            help="import paths or ./relative packages (default .)",
        )
        add_build_flags(parser)
        add_output_flags(parser)
