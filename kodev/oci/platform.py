"""Platforms (``os/arch[/variant]``) and the matching rules ko applies to base indexes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kodev.errors import UsageError

_GOARCH_BY_MACHINE = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
    "i386": "386",
}
KNOWN_OS = {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "plan9", "solaris"}
KNOWN_ARCH = {
    "amd64",
    "arm64",
    "arm",
    "386",
    "ppc64le",
    "ppc64",
    "s390x",
    "riscv64",
    "mips64le",
    "mips64",
    "mipsle",
    "mips",
    "loong64",
    "wasm",
}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f":{self.os_version}"
        return text

    @property
    def slug(self) -> str:
        """File-name friendly form: ``linux-arm64-v8``."""
        return "-".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    def go_env(self) -> dict[str, str]:
        """``GOOS``/``GOARCH`` plus ``GOARM`` or ``GOAMD64`` from the variant, as ko does."""
        env = {"GOOS": self.os, "GOARCH": self.architecture}
        if self.architecture == "arm" and self.variant.startswith("v"):
            level = int(self.variant[1:]) if self.variant[1:].isdigit() else 7
            env["GOARM"] = str(min(max(level, 5), 7))
        elif self.architecture == "amd64" and self.variant.startswith("v"):
            env["GOAMD64"] = self.variant
        return env

    def matches(self, wanted: Platform) -> bool:
        """Does this (base) platform satisfy ``wanted``? Empty fields in ``wanted`` match anything.

        ``os.version`` must be equal, except on Windows where a requested ``X.Y.Z``
        matches a base's ``X.Y.Z.N`` (any build number), as ko does: ``10.0.20348``
        matches ``10.0.20348.2582`` but ``10.0.2`` matches nothing.
        """
        if wanted.os != self.os or wanted.architecture != self.architecture:
            return False
        if wanted.variant and wanted.variant != self._normalized_variant():
            return False
        if not wanted.os_version or wanted.os_version == self.os_version:
            return True
        return (
            self.os == "windows"
            and wanted.os_version.count(".") == 2
            and self.os_version.count(".") == 3
            and self.os_version.rsplit(".", 1)[0] == wanted.os_version
        )

    def _normalized_variant(self) -> str:
        if not self.variant and self.architecture == "arm64":
            return "v8"
        return self.variant


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant][:osversion]``; raises UsageError naming the bad value."""
    raw = text.strip()
    os_version = ""
    if ":" in raw:
        raw, os_version = raw.split(":", 1)
    parts = raw.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(
            f"invalid platform {text!r}",
            hint="use os/arch[/variant], for example linux/amd64 or linux/arm/v7",
        )
    os_name, arch = parts[0], parts[1]
    if os_name not in KNOWN_OS or arch not in KNOWN_ARCH:
        raise UsageError(
            f"unknown platform {text!r}",
            hint="Go knows linux, windows, darwin ... and amd64, arm64, arm, 386, ppc64le ...",
        )
    return Platform(os_name, arch, parts[2] if len(parts) == 3 else "", os_version)


def platform_from_json(data: Mapping[str, Any] | None) -> Platform:
    if not data:
        return Platform("linux", "amd64")
    return Platform(
        str(data.get("os", "linux")),
        str(data.get("architecture", "amd64")),
        str(data.get("variant", "") or ""),
        str(data.get("os.version", "") or ""),
    )


def host_platform_default() -> Platform:
    """``linux/<host arch>``: kodev's default when nothing else is configured (ko uses amd64)."""
    if hasattr(os, "uname"):  # what platform.machine() returns, without its import (~1 ms)
        machine = os.uname().machine.lower()
    else:  # pragma: no cover - Windows hosts
        import platform as host_platform

        machine = host_platform.machine().lower()
    return Platform("linux", _GOARCH_BY_MACHINE.get(machine, "amd64"))


class PlatformSelection:
    """The ``--platform`` request: ``all``, or an explicit list of platforms."""

    def __init__(self, platforms: tuple[Platform, ...], *, all_platforms: bool = False) -> None:
        self.platforms = platforms
        self.all = all_platforms

    @classmethod
    def parse(cls, values: list[str] | tuple[str, ...]) -> PlatformSelection:
        items = [p.strip() for v in values for p in v.split(",") if p.strip()]
        if "all" in items:
            if len(items) > 1:
                raise UsageError("--platform=all cannot be combined with other platforms")
            return cls((), all_platforms=True)
        seen: dict[Platform, None] = {}
        for item in items:
            seen[parse_platform(item)] = None
        return cls(tuple(seen))

    def concrete(self, everything: Sequence[Platform]) -> tuple[Platform, ...]:
        """The platforms named; for ``all``, ``everything`` (what a built-in base offers)."""
        return tuple(everything) if self.all else self.platforms

    def matches(self, candidate: Platform) -> bool:
        if self.all:
            return candidate.os != "unknown" and candidate.architecture != "unknown"
        return any(candidate.matches(wanted) for wanted in self.platforms)

    def __str__(self) -> str:
        return "all" if self.all else ",".join(str(p) for p in self.platforms)


def configured_platforms(
    flag: Sequence[str], config_default: Sequence[str], environ: Mapping[str, str]
) -> PlatformSelection | None:
    """THE decision of what to build for, in order: ``--platform``, ``.ko.yaml``'s
    ``defaultPlatforms``, ``GOOS``/``GOARCH`` (and ``GOARM``). None when none of them says:
    the caller's default applies (``kodev up``: the cluster nodes' platforms; everything
    else: :func:`host_platform_default`). Every command asks here, nowhere else."""
    goos, goarch = environ.get("GOOS"), environ.get("GOARCH")
    if flag and (goos or goarch):
        raise UsageError(
            "GOOS/GOARCH cannot be combined with --platform",
            hint="unset GOOS and GOARCH, or drop --platform",
        )
    requested = flag or config_default
    if requested:
        return PlatformSelection.parse(list(requested))
    if goos or goarch:
        text = f"{goos or 'linux'}/{goarch or host_platform_default().architecture}"
        if environ.get("GOARM"):
            text += f"/v{environ['GOARM']}"
        return PlatformSelection.parse([text])
    return None
