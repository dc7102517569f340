"""``go build`` for many main packages and platforms, with as few invocations as possible.

ko runs one ``go build`` per import path, one after another. kodev groups every
package that shares the same build settings (directory, env, flags, ldflags) into ONE
invocation per platform (the compiler then shares work across binaries, ko#314) and
runs platforms in parallel. Output goes to a stable directory in the cache so that an
up-to-date binary is not even re-linked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from kodev.config import BuildConfig, KoConfig
from kodev.errors import BuildError, ConfigError
from kodev.golang.packages import GoPackage, go_binary
from kodev.golang.template import Lookup, has_template, render
from kodev.oci.platform import Platform


@dataclass(frozen=True)
class BuildSettings:
    """Everything that decides how one package is compiled; equal settings share a build."""

    dir: Path
    env: tuple[tuple[str, str], ...]  # the complete environment go build runs with
    build_keys: frozenset[str]  # variables the .ko.yaml build sets itself
    flags: tuple[str, ...]
    ldflags: tuple[str, ...]

    def output_key_env(self) -> list[str]:
        """The variables that pick the output directory: an unrelated one must not relink."""
        return [f"{k}={v}" for k, v in self.env if _affects_build(k, self.build_keys)]


@dataclass(frozen=True)
class BuiltBinary:
    import_path: str
    platform: Platform
    path: Path
    sha256: str
    size: int


@dataclass
class BuildOptions:
    ldflags_override: tuple[str, ...] = ()
    disable_optimizations: bool = False
    jobs: int = 0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


class GoBuilder:
    """Compiles main packages; see the module docstring for the grouping rules."""

    def __init__(self, config: KoConfig, out_root: Path, options: BuildOptions) -> None:
        self.config = config
        self.out_root = out_root
        self.options = options
        self.go = go_binary(options.environ)

    def settings_for(
        self, package: GoPackage, build: BuildConfig | None, workdir: Path
    ) -> tuple[Path, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The un-templated (dir, env, flags, ldflags) of a package, with ko's precedence."""
        cfg = self.config
        env = build.env if build and build.env is not None else cfg.default_env
        flags = build.flags if build and build.flags is not None else cfg.default_flags
        ldflags: tuple[str, ...]
        if self.options.ldflags_override:
            ldflags = self.options.ldflags_override
        elif build and build.ldflags is not None:
            ldflags = build.ldflags
        else:
            ldflags = cfg.default_ldflags
        build_dir = (workdir / build.dir).resolve() if build else workdir.resolve()
        return build_dir, env, flags, ldflags

    def build_for(
        self,
        requests: Sequence[tuple[GoPackage, BuildConfig | None, Sequence[Platform]]],
        workdir: Path,
    ) -> dict[tuple[str, Platform], BuiltBinary]:
        """Build each package for its platforms; returns binaries keyed by (path, platform).

        Platforms that differ only in ``os.version`` (Windows Server 2019 and 2022 bases)
        share one binary: Go knows no OS version, so they are compiled once.
        """
        compiled = [(pkg, build, {replace(p, os_version="") for p in platforms})
                    for pkg, build, platforms in requests]
        jobs = []
        for platform in sorted({p for _, _, platforms in compiled for p in platforms}):
            wanted = [(pkg, build) for pkg, build, platforms in compiled if platform in platforms]
            for settings, group in self._groups(wanted, platform, workdir).items():
                jobs.append((settings, platform, group))
        workers = self.options.jobs or min(len(jobs), os.cpu_count() or 1) or 1
        built: dict[tuple[str, Platform], BuiltBinary] = {}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(self._run_group, s, p, g) for s, p, g in jobs]
            for future in futures:
                built.update(future.result())
        return {
            (pkg.import_path, p): replace(
                built[(pkg.import_path, replace(p, os_version=""))], platform=p)
            for pkg, _, platforms in requests
            for p in platforms
        }

    def _groups(
        self,
        packages: Sequence[tuple[GoPackage, BuildConfig | None]],
        platform: Platform,
        workdir: Path,
    ) -> dict[BuildSettings, list[list[GoPackage]]]:
        groups: dict[BuildSettings, list[list[GoPackage]]] = {}
        for package, build in packages:
            settings = self._templated_settings(package, build, platform, workdir)
            buckets = groups.setdefault(settings, [])
            # go build -o dir/ names each binary after its last path element, so two
            # packages with the same name need separate invocations.
            for bucket in buckets:
                if all(p.binary_name != package.binary_name for p in bucket):
                    bucket.append(package)
                    break
            else:
                buckets.append([package])
        return groups

    def _templated_settings(
        self, package: GoPackage, build: BuildConfig | None, platform: Platform, workdir: Path
    ) -> BuildSettings:
        build_dir, env_list, flags, ldflags = self.settings_for(package, build, workdir)
        env = build_environment(platform, self.options.environ, env_list)
        where = f"{self.config.path or '.ko.yaml'} (build for {package.import_path})"
        data = TemplateData(env, self.go, build_dir, self.options.environ)
        lookups = data.lookups()
        flags = tuple(render(f, lookups, where=where) if has_template(f) else f for f in flags)
        ldflags = tuple(render(f, lookups, where=where) if has_template(f) else f for f in ldflags)
        _reject_toolexec(flags, ldflags, env)
        own = frozenset(item.split("=", 1)[0] for item in env_list)
        return BuildSettings(build_dir, tuple(sorted(env.items())), own, flags, ldflags)

    def _run_group(
        self, settings: BuildSettings, platform: Platform, groups: list[list[GoPackage]]
    ) -> dict[tuple[str, Platform], BuiltBinary]:
        out: dict[tuple[str, Platform], BuiltBinary] = {}
        for group in groups:
            out.update(self._run_go_build(settings, platform, group))
        return out

    def _run_go_build(
        self, settings: BuildSettings, platform: Platform, group: list[GoPackage]
    ) -> dict[tuple[str, Platform], BuiltBinary]:
        out_dir = self._output_dir(settings, platform, group)
        out_dir.mkdir(parents=True, exist_ok=True)
        args = [self.go, "build", *settings.flags, "-trimpath"]
        if self.options.disable_optimizations:
            args += ["-gcflags", "all=-N -l"]
        if settings.ldflags:
            args.append("-ldflags=" + " ".join(settings.ldflags))
        args += ["-o", str(out_dir) + os.sep, *[p.import_path for p in group]]
        proc = subprocess.run(
            args,
            cwd=settings.dir,
            env=dict(settings.env),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            names = ", ".join(p.import_path for p in group)
            raise BuildError(
                f"go build failed for {names} ({platform})",
                output=(proc.stderr or proc.stdout).strip(),
                hint="fix the compile error above and run the command again",
            )
        suffix = ".exe" if platform.os == "windows" else ""
        return {
            (p.import_path, platform): describe_binary(
                p.import_path, platform, out_dir / (p.binary_name + suffix)
            )
            for p in group
        }

    def _output_dir(
        self, settings: BuildSettings, platform: Platform, group: list[GoPackage]
    ) -> Path:
        key = hashlib.sha256(
            json.dumps(
                [
                    str(settings.dir),
                    settings.output_key_env(),
                    settings.flags,
                    settings.ldflags,
                    sorted(p.import_path for p in group),
                    self.options.disable_optimizations,
                ]
            ).encode()
        ).hexdigest()[:16]
        return self.out_root / platform.slug / key


def _affects_build(key: str, build_keys: frozenset[str]) -> bool:
    return key in build_keys or key.startswith(("GO", "CGO_")) or key in ("CC", "CXX", "PATH")


def build_environment(
    platform: Platform, environ: Mapping[str, str], build_env: Sequence[str]
) -> dict[str, str]:
    """ko's precedence: ``CGO_ENABLED=0`` < process env < platform < the build's ``env``."""
    env = {"CGO_ENABLED": "0"}
    env.update(environ)
    for key in ("GOARM", "GOAMD64"):
        env.pop(key, None)
    env.update(platform.go_env())
    for item in build_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"build env entry {item!r} is not KEY=VALUE")
        env[key] = value
    return env


def _reject_toolexec(flags: Sequence[str], ldflags: Sequence[str], env: Mapping[str, str]) -> None:
    if any("-toolexec" in f for f in (*flags, *ldflags)) or "-toolexec" in env.get("GOFLAGS", ""):
        raise ConfigError(
            "-toolexec is not allowed in build flags or GOFLAGS",
            hint="ko rejects it too: it would run arbitrary programs inside the build",
        )


def describe_binary(import_path: str, platform: Platform, path: Path) -> BuiltBinary:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return BuiltBinary(import_path, platform, path, digest.hexdigest(), size)


class TemplateData:
    """ko's template data; ``go env`` and ``git`` run only if a template asks for them."""

    def __init__(
        self, env: Mapping[str, str], go: str, build_dir: Path, environ: Mapping[str, str]
    ) -> None:
        self.env = env
        self.go = go
        self.build_dir = build_dir
        self.epoch = source_date_epoch(environ)

    def lookups(self) -> dict[str, Lookup]:
        stamp = self.epoch if self.epoch is not None else int(time.time())
        return {
            "Env": lambda: {"LDFLAGS": "", **self.env},
            "GoEnv": lambda: {**_go_env(self.go, str(self.build_dir)), **_go_keys(self.env)},
            "Date": lambda: datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Timestamp": lambda: str(stamp),
            "Git": lambda: git_info(self.build_dir),
        }


def _go_keys(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("GO") or k == "CGO_ENABLED"}


@cache
def _go_env(go: str, cwd: str) -> dict[str, str]:
    proc = subprocess.run([go, "env", "-json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError("go env failed", output=proc.stderr)
    data: dict[str, str] = json.loads(proc.stdout)
    return data


def source_date_epoch(environ: Mapping[str, str], name: str = "SOURCE_DATE_EPOCH") -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} is not a whole number of seconds") from exc


@cache
def git_info(directory: Path) -> dict[str, str]:
    """The ``.Git`` template fields, from the git CLI; empty values outside a repository."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, check=False
            )
        except FileNotFoundError:
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""

    dirty = bool(git("status", "--porcelain"))
    commit_ts = git("log", "-1", "--format=%ct")
    return {
        "Branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "Tag": git("describe", "--tags", "--abbrev=0") or "v0.0.0",
        "ShortCommit": git("rev-parse", "--short", "HEAD"),
        "FullCommit": git("rev-parse", "HEAD"),
        "CommitDate": git("log", "-1", "--format=%cI"),
        "CommitTimestamp": commit_ts,
        "IsDirty": str(dirty).lower(),
        "IsClean": str(not dirty).lower(),
        "TreeState": "dirty" if dirty else "clean",
    }
