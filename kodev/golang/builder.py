"""``go build`` for many main packages and platforms, with as few invocations as possible.

ko runs one ``go build`` per import path, one after another. kodev groups every
package that shares the same build settings (directory, env, flags, ldflags) into ONE
invocation per platform (the compiler then shares work across binaries, ko#314) and
runs platforms in parallel.

Every binary is linked with an empty Go build ID (``-ldflags=-buildid=``, merged with the
build's own ldflags): Go's build ID hashes the source files, comments included, so
without this a comment edit would change the binary and the image digest. Identical code
and flags give an identical binary. (An edit that moves code to other lines still changes
the binary: its line table is what stack traces print.)

``go build`` writes into a private directory (its own temporary files too, through
``GOTMPDIR``); each binary is then moved into the cache under its content hash, so
several kodev processes sharing a cache never see a half-written or replaced binary, and
an interrupted build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from kodev.cache import private_dir
from kodev.config import BuildConfig, KoConfig
from kodev.errors import BuildError, ConfigError
from kodev.golang.packages import GoPackage, go_binary
from kodev.golang.template import Lookup, has_template, render
from kodev.oci.platform import Platform

_KEEP_BINARIES = 4  # per package and settings: the newest few (older ones are removed)
_KEEP_YOUNGER_THAN_SECONDS = 60  # never remove a binary another kodev may have just made


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

    def __init__(
        self, config: KoConfig, out_root: Path, options: BuildOptions,
        tmp_root: Path | None = None,
    ) -> None:
        self.config = config
        self.out_root = out_root  # where binaries are stored (KOCACHE/bin)
        self.tmp_root = tmp_root or out_root.parent  # private_dir's root (KOCACHE)
        self.options = options
        self.go = go_binary(options.environ)
        self.processes = _Processes()
        self._git: dict[Path, dict[str, str]] = {}  # .Git template data, once per build

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
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        futures: list[Future[dict[tuple[str, Platform], BuiltBinary]]] = []
        try:
            futures = [pool.submit(self._run_group, s, p, g) for s, p, g in jobs]
            for future in futures:
                built.update(future.result())
        except BaseException:
            # A failed group, Ctrl-C or SIGTERM: stop the other go builds now rather than
            # wait for them; each worker still removes its own directory.
            for future in futures:
                future.cancel()
            self.processes.stop()
            raise
        finally:
            pool.shutdown(wait=True)
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
        data = TemplateData(env, self.go, build_dir, self.options.environ, self._git_info)
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

    def _git_info(self, directory: Path) -> dict[str, str]:
        if directory not in self._git:
            self._git[directory] = git_info(directory)
        return self._git[directory]

    def go_build_args(self, settings: BuildSettings, out_dir: Path,
                      group: Sequence[GoPackage]) -> list[str]:
        """The ``go build`` command line (ko's, plus the empty build ID)."""
        flags = [*settings.flags, "-trimpath"]
        if self.options.disable_optimizations:
            flags += ["-gcflags", "all=-N -l"]
        flags = with_empty_build_id(flags, settings.ldflags, goflags(dict(settings.env)))
        return [self.go, "build", *flags, "-o", str(out_dir) + os.sep,
                *[p.import_path for p in group]]

    def _run_go_build(
        self, settings: BuildSettings, platform: Platform, group: list[GoPackage]
    ) -> dict[tuple[str, Platform], BuiltBinary]:
        store = self._output_dir(settings, platform, group)
        with private_dir(self.tmp_root, "go-build-") as scratch:
            out_dir, go_tmp = scratch / "out", scratch / "tmp"
            out_dir.mkdir()
            go_tmp.mkdir()
            # GOTMPDIR: go build's own work directory goes to the scratch directory too,
            # so even a go build killed by a signal leaves nothing in /tmp.
            env = {**dict(settings.env), "GOTMPDIR": str(go_tmp)}
            proc = self.processes.run(self.go_build_args(settings, out_dir, group),
                                      cwd=settings.dir, env=env)
            if proc.returncode != 0:
                names = ", ".join(p.import_path for p in group)
                raise BuildError(
                    f"go build failed for {names} ({platform})",
                    output=(proc.stderr or proc.stdout).strip(),
                    hint="fix the compile error above and run the command again",
                )
            suffix = ".exe" if platform.os == "windows" else ""
            return {
                (p.import_path, platform): store_binary(
                    describe_binary(p.import_path, platform,
                                    out_dir / (p.binary_name + suffix)),
                    store / p.binary_name,
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


def store_binary(binary: BuiltBinary, directory: Path) -> BuiltBinary:
    """Move a fresh binary into ``directory/<sha256>/<name>``, where it never changes: a
    concurrent kodev with the same binary finds it there (nothing is replaced), one with
    a different binary stores it beside. Only the newest few of a directory are kept."""
    target = directory / binary.sha256 / binary.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.stat().st_size == binary.size:
        os.utime(target)  # recently used: not one of the old ones to remove
    else:
        os.replace(binary.path, target)
    _remove_old_binaries(directory)
    return replace(binary, path=target)


def _remove_old_binaries(directory: Path) -> None:
    entries = []
    for entry in os.scandir(directory):
        try:
            entries.append((entry.stat().st_mtime, entry.path))
        except OSError:
            continue
    entries.sort(reverse=True)
    now = time.time()
    for mtime, path in entries[_KEEP_BINARIES:]:
        if now - mtime > _KEEP_YOUNGER_THAN_SECONDS:
            for child in Path(path).glob("*"):
                child.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                os.rmdir(path)


class _Processes:
    """The go builds running now, each in its own process group, so that an interrupted
    kodev stops every one of them (and the compilers they started) at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._stopped = False

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]
            ) -> subprocess.CompletedProcess[str]:
        with self._lock:
            if self._stopped:
                raise BuildError("go build was cancelled")
            proc = subprocess.Popen(
                list(args), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0,
            )
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            with self._lock:
                self._running.discard(proc)
        return subprocess.CompletedProcess(list(args), proc.returncode, stdout, stderr)

    def stop(self, wait: float = 1.0) -> None:
        """Terminate every running go build (and its compilers), and give them up to
        ``wait`` seconds to exit: a go build still writing into its directory would
        leave files behind after the directory is removed."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)
        deadline = time.monotonic() + wait
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)


_LDFLAGS = re.compile(r"^--?ldflags(=.*)?$", re.S)


def with_empty_build_id(
    flags: Sequence[str], ldflags: Sequence[str], goflags_list: Sequence[str]
) -> list[str]:
    """``flags`` plus the ``-ldflags`` go build gets, with ``-buildid=`` first in it.

    The ldflags go would use are kept: the build's ldflags when there are any (as ko, one
    ``-ldflags`` after the flags, so it wins); else the last ``-ldflags`` in the flags;
    else the last one in ``GOFLAGS`` (a command-line ``-ldflags`` replaces GOFLAGS').
    ``-buildid=`` comes first, so a ``-buildid`` of the user's own still wins."""
    out = list(flags)
    if ldflags:
        return [*out, *_with_build_id(" ".join(ldflags))]
    for position in range(len(out) - 1, -1, -1):
        match = _LDFLAGS.match(out[position])
        if match is None:
            continue
        if match.group(1) is not None:
            out[position:position + 1] = _with_build_id(match.group(1)[1:])
            return out
        if position + 1 < len(out):  # "-ldflags" "VALUE"
            out[position:position + 2] = _with_build_id(out[position + 1])
            return out
    inherited = ""
    for item in goflags_list:
        match = _LDFLAGS.match(item)
        if match is not None and match.group(1) is not None:
            inherited = match.group(1)[1:]
    return [*out, *_with_build_id(inherited)]


def _with_build_id(value: str) -> list[str]:
    """``-ldflags=value`` with ``-buildid=`` in front. A ``pattern=flags`` value (go help
    build) applies only to the packages it matches, so a plain ``-ldflags=-buildid=``
    goes first for the others (the latest matching ``-ldflags`` wins)."""
    value = value.strip()
    if not value:
        return ["-ldflags=-buildid="]
    if not value.startswith("-") and "=" in value:
        pattern, _, rest = value.partition("=")
        return ["-ldflags=-buildid=", f"-ldflags={pattern}=-buildid= {rest}".rstrip()]
    return ["-ldflags=-buildid= " + value]


def goflags(env: Mapping[str, str]) -> list[str]:
    """The GOFLAGS go build sees: the environment's, else (unset or empty, as go reads
    it) the ``go env -w`` file's."""
    if env.get("GOFLAGS"):
        return split_quoted(env["GOFLAGS"])
    return split_quoted(go_env_file_values(env).get("GOFLAGS", ""))


def go_env_file(env: Mapping[str, str]) -> Path | None:
    """The file ``go env -w`` writes (``GOENV``, else the user config directory's)."""
    configured = env.get("GOENV")
    if configured is not None:
        return None if configured in ("", "off") else Path(configured)
    base = env.get("XDG_CONFIG_HOME") or (
        str(Path(env["HOME"]) / ".config") if env.get("HOME") else "")
    return Path(base) / "go" / "env" if base else None


def go_env_file_values(env: Mapping[str, str]) -> dict[str, str]:
    path = go_env_file(env)
    try:
        text = path.read_text() if path is not None else ""
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value
    return values


def split_quoted(text: str) -> list[str]:
    """Go's ``quoted.Split`` (how go reads GOFLAGS): fields, with '...' or "..." quoting."""
    out: list[str] = []
    current: list[str] = []
    quote = ""
    started = False
    for char in text:
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
        elif char in "'\"":
            quote, started = char, True
        elif char.isspace():
            if started:
                out.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        out.append("".join(current))
    return out


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
        self, env: Mapping[str, str], go: str, build_dir: Path, environ: Mapping[str, str],
        git: Callable[[Path], dict[str, str]] | None = None,
    ) -> None:
        self.env = env
        self.go = go
        self.build_dir = build_dir
        self.epoch = source_date_epoch(environ)
        self.git = git or git_info

    def lookups(self) -> dict[str, Lookup]:
        stamp = self.epoch if self.epoch is not None else int(time.time())
        return {
            "Env": lambda: {"LDFLAGS": "", **self.env},
            "GoEnv": lambda: {**go_env(self.go, str(self.build_dir)), **_go_keys(self.env)},
            "Date": lambda: datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Timestamp": lambda: str(stamp),
            "Git": lambda: self.git(self.build_dir),
        }


def _go_keys(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("GO") or k == "CGO_ENABLED"}


@cache
def go_env(go: str, cwd: str) -> dict[str, str]:
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


def git_info(directory: Path) -> dict[str, str]:
    """The ``.Git`` template fields, from the git CLI; empty values outside a repository."""

    def git(*args: str) -> str:
        return run_git(directory, *args)

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


def run_git(directory: Path, *args: str) -> str:
    """``git args`` in ``directory``: its output, or "" when it fails (no repository, no git)."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""
