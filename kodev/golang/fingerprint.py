"""Skip ``go list`` and ``go build`` entirely when nothing a binary depends on has changed.

ko always runs ``go build`` (ko#1116: a no-change ko rebuild is slower than docker). kodev
reuses the last build's packages and binaries when two things match.

The key (:func:`build_key`) holds every input that is not a file of the module:

- the working directory, the patterns, the platforms, ``--ldflags`` and
  ``--disable-optimizations``;
- the ``go`` binary (path, size, mtime) and the contents of the ``go env -w`` file;
- every environment variable that reaches ``go build`` and can change what it makes:
  ``GO*`` (``GOFLAGS``, ``GOEXPERIMENT``, ``GOAMD64``, ``GOARM``, ``GOOS``, ``GOTOOLCHAIN``...),
  ``CGO_*``, ``CC``, ``CXX``, ``FC``, ``AR``, ``PKG_CONFIG``, the C include and library
  paths, ``PATH``, ``KO_*`` and ``SOURCE_DATE_EPOCH``;
- every value a flags or ldflags template of ``.ko.yaml`` (or ``--ldflags``) reads: each
  ``.Env.X`` variable, each ``.GoEnv.X`` value (from ``go env``), each ``.Git.X`` field;
- when go build stamps version control information into binaries (``-buildvcs``, on by
  default in a git work tree): the commit and whether the tree has changes.

Builds whose templates read ``.Date`` or ``.Timestamp`` without ``SOURCE_DATE_EPOCH`` (a
new time every run) have no key: they are never skipped.

The record under the key holds the size and mtime of every module-local file and package
directory in the binaries' dependency closure (from ``go list -deps``: Go, cgo, assembly,
C and .syso files, embedded files and their directories, ``default.pgo``), plus
``go.mod``, ``go.sum``, ``go.work``, ``vendor/modules.txt`` and ``.ko.yaml``. If every entry
still matches, the recorded packages and binaries are reused. Adding a file changes its
directory's mtime, so a new ``.go`` file is noticed too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodev.cache import Cache
from kodev.golang.packages import GoPackage, go_binary

if TYPE_CHECKING:
    from kodev.config import KoConfig

# kodev.config (yaml) and kodev.golang.builder are imported by the functions that need
# them: `kodev skaffold deps` uses request_key and still_valid only, once per Skaffold loop
# iteration per artifact, and should not pay ~35 ms of imports for them.

Stat = tuple[int, int]

# Environment variables that reach go build and can change its output (besides GO*, CGO_*
# and KO_*, matched by prefix).
_BUILD_ENV = frozenset((
    "PATH", "CC", "CXX", "FC", "AR", "PKG_CONFIG", "PKG_CONFIG_PATH", "GCCGO", "CPATH",
    "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "LIBRARY_PATH", "SOURCE_DATE_EPOCH",
))
_OTHER_VCS = (".hg", ".svn", ".bzr", ".fossil", "_FOSSIL_")


def build_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the environment that can change what go build makes."""
    return {
        k: v for k, v in environ.items()
        if k.startswith(("GO", "CGO_", "KO_")) or k in _BUILD_ENV
    }


def build_key(
    *,
    workdir: Path,
    patterns: Sequence[str],
    config: KoConfig,
    environ: Mapping[str, str],
    settings: Mapping[str, Any],
    ldflags_override: Sequence[str] = (),
) -> str | None:
    """The key of a ``kodev build`` (see the module docstring); None: never skip it."""
    from kodev.golang.builder import git_info, go_env, go_env_file, goflags
    from kodev.golang.template import template_fields

    go = go_binary(environ)
    flag_lists = [config.default_flags, config.default_ldflags, tuple(ldflags_override)]
    for build in config.builds:
        flag_lists += [build.flags or (), build.ldflags or ()]
    values = [v for flags in flag_lists for v in flags]
    fields = []
    for value in values:
        found = template_fields(value)
        if found is None:
            return None
        fields += found
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if any(top in ("Date", "Timestamp") for top, _ in fields) and not epoch:
        return None
    dirs = sorted({workdir.resolve(), *((workdir / b.dir).resolve() for b in config.builds)})
    templates: dict[str, Any] = {}
    git: dict[Path, dict[str, str]] = {}
    for top, key in sorted(set(fields), key=str):
        if top == "Env" and key is not None:
            templates[f"Env.{key}"] = environ.get(key)
        elif top == "GoEnv" and key is not None:
            templates[f"GoEnv.{key}"] = [go_env(go, str(d)).get(key) for d in dirs]
        elif top == "Git":
            templates[f"Git.{key}"] = [
                (git[d] if d in git else git.setdefault(d, git_info(d))).get(key or "")
                for d in dirs
            ]
    env_file = go_env_file(environ)
    vcs = None
    if _may_stamp_vcs(config, goflags(environ)):
        vcs = [_vcs_state(d) for d in dirs]
        if any(state is None for state in vcs):
            return None
    inputs = {
        **settings,
        "env": build_env(environ),
        "go env file": [str(env_file), _read(env_file)],
        "templates": templates,
        "vcs": vcs,
    }
    return request_key(workdir, patterns, inputs, go)


def _read(path: Path | None) -> str | None:
    try:
        return path.read_text() if path is not None else None
    except OSError:
        return None


def _may_stamp_vcs(config: KoConfig, goflags: Sequence[str]) -> bool:
    """False only if every build runs with ``-buildvcs=false`` (GOFLAGS or its flags)."""

    def setting(flags: Sequence[str], default: str) -> str:
        value = default
        for flag in flags:
            name, sep, rest = flag.lstrip("-").partition("=")
            if name == "buildvcs":
                value = rest if sep else "true"
        return value

    from_env = setting(goflags, "auto")
    lists = [config.default_flags] + [b.flags for b in config.builds if b.flags is not None]
    envs = [config.default_env] + [b.env for b in config.builds if b.env is not None]
    for env in envs:  # a build's own GOFLAGS replaces the environment's
        for item in env:
            key, _, value = item.partition("=")
            if key == "GOFLAGS" and setting(value.split(), "auto") != "false":
                return True
    return any(setting(flags, from_env) != "false" for flags in lists)


def _vcs_state(directory: Path) -> list[str] | None:
    """What go build stamps from git (the commit and whether the tree has changes); []
    outside a repository; None in another version control system (never skipped)."""
    from kodev.golang.builder import run_git

    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            break
        if any((candidate / name).exists() for name in _OTHER_VCS):
            return None
    else:
        return []
    # One git instead of two (rev-parse HEAD, status --porcelain): the header line
    # "# branch.oid <commit>" ("(initial)" before the first commit), then one line per
    # changed or untracked file, as go build's own `git status --porcelain` sees them.
    status = run_git(directory, "status", "--porcelain=v2", "--branch")
    if not status:  # git failed (older than 2.11, or refuses the repository): two runs
        return [run_git(directory, "rev-parse", "HEAD"),
                str(bool(run_git(directory, "status", "--porcelain")))]
    lines = status.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), "")
    changed = any(not line.startswith("# ") for line in lines)
    return [commit if commit != "(initial)" else "", str(changed)]


def _stat(path: Path) -> Stat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _go_binary_stat(go: str) -> list[Any]:
    found = shutil.which(go)
    return [found, _stat(Path(found)) if found else None]


def request_key(
    workdir: Path, patterns: Sequence[str], settings: Mapping[str, Any], go: str
) -> str:
    payload = json.dumps(
        [str(workdir), list(patterns), settings, _go_binary_stat(go)], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def closure_files(packages: Iterable[GoPackage], extra: Iterable[Path]) -> dict[str, Stat]:
    """Stats of every module-local package dir and source file, plus ``extra`` files."""
    files: dict[str, Stat | None] = {}
    for pkg in packages:
        if pkg.standard or pkg.module_dir is None or pkg.in_module_cache:
            continue
        files[str(pkg.dir)] = _stat(pkg.dir)
        for path in pkg.source_files():
            files[str(path)] = _stat(path)
        for name in pkg.embed_files:  # a new file in an embedded directory
            for parent in (pkg.dir / name).parents:
                if parent == pkg.dir or not parent.is_relative_to(pkg.dir):
                    break
                files[str(parent)] = _stat(parent)
        if pkg.kodata_dir.exists():
            for path in [pkg.kodata_dir, *sorted(pkg.kodata_dir.rglob("*"))]:
                files[str(path)] = _stat(path)
    for path in extra:
        files[str(path)] = _stat(path)
    return {k: v for k, v in files.items() if v is not None}


def _same_size(path: Path, stat: Sequence[int] | None) -> bool:
    """A stored binary is still there (its path holds its sha256: it never changes; its
    mtime does, each time a build uses it)."""
    found = _stat(path)
    return found is not None and stat is not None and found[0] == stat[0]


def still_valid(files: Mapping[str, Any]) -> bool:
    return all(_stat(Path(path)) == tuple(stat) for path, stat in files.items())


def stats_of(paths: Iterable[str]) -> dict[str, Stat | None]:
    return {path: _stat(Path(path)) for path in paths}


# Newer than this before a build started, a file may have been written while go build ran:
# kernels stamp files from a coarse clock, so the margin is generous.
_MTIME_MARGIN_NS = 1_000_000_000


def settled_files(
    files: Mapping[str, Stat], before: Mapping[str, Stat | None], started_ns: int
) -> dict[str, Stat] | None:
    """The stats to record for a build that ran ``go build`` while ``go list`` was still
    naming its files: each file's stat from ``before`` (taken before go build started, so an
    edit during the build makes the record stale, never wrongly valid); a file that was not
    there before counts only if it is older than the build. None: do not record."""
    out: dict[str, Stat] = {}
    for path, stat in files.items():
        if path in before:
            old = before[path]
            if old is None:
                return None  # created while go build ran
            out[path] = old
        elif stat[1] < started_ns - _MTIME_MARGIN_NS:
            out[path] = stat
        else:
            return None
    return out


def signatures_of(
    files: Mapping[str, Stat], previous: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """The import signature (graph.import_signature) of every ``.go`` file in ``files``, and
    the entries of every directory, as its recorded stat left it: a file whose stat moved
    since is left out (its content is not the one recorded), so any change to it makes the
    next build run ``go list``. Files unchanged since ``previous`` keep their recorded
    signature (no read)."""
    old_files = previous.get("files", {}) if previous else {}
    old_signatures = previous.get("signatures", {}) if previous else {}
    out: dict[str, list[str]] = {}
    for path, stat in files.items():
        old = old_files.get(path)
        if path in old_signatures and old is not None and tuple(old) == tuple(stat):
            out[path] = old_signatures[path]
            continue
        signature = _signature(path)
        if signature is not None and _stat(Path(path)) == tuple(stat):
            out[path] = signature
    return out


def _signature(path: str) -> list[str] | None:
    """A ``.go`` file's import signature; a directory's entries (a save that writes a new
    file and renames it over the old one changes the directory's mtime, not its entries);
    None for anything else."""
    from kodev.golang.graph import import_signature  # not on skaffold deps' cached path

    try:
        if path.endswith(".go"):
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            return list(import_signature(text))
        if os.path.isdir(path):
            return ["dir:", *sorted(os.listdir(path))]
    except OSError:
        return None
    return None


def same_package_graph(record: Mapping[str, Any], now: Mapping[str, Stat | None]) -> bool:
    """Whether ``go list -deps`` would give the answer recorded with ``record``, given the
    recorded files' stats ``now``: every file is unchanged, or is a ``.go`` file whose
    imports, package name, build constraints and embed patterns are the recorded ones (the
    rule ``kodev up``'s planner uses for a save), or a directory with the recorded entries.
    A file added, removed or renamed, a changed module file, ``.ko.yaml`` or any other
    file: no."""
    files, signatures = record.get("files"), record.get("signatures")
    if not isinstance(files, dict) or not isinstance(signatures, dict):
        return False
    for path, stat in files.items():
        current = now.get(path)
        if current == tuple(stat):
            continue
        if current is None or path not in signatures:
            return False
        if _signature(path) != signatures[path]:
            return False
    return True


def refreshed_graph_record(
    files: Mapping[str, Any], signatures: Mapping[str, Any] | None
) -> tuple[dict[str, Stat], dict[str, list[str]]] | None:
    """For an answer of ``go list`` recorded with the stats ``files`` and their
    ``signatures``, whose files moved since: when same_package_graph proves the answer
    still holds, the stats and signatures to record with it now; None when go list must
    run again. Stats are taken before any file is read (signatures_of keeps a signature
    only while its file's stat stays the one recorded)."""
    now = stats_of(files)
    record = {"files": files, "signatures": signatures}
    if not same_package_graph(record, now):
        return None
    fresh = {path: stat for path, stat in now.items() if stat is not None}
    return fresh, signatures_of(fresh, record)


class FingerprintStore:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def load(self, key: str) -> dict[str, Any] | None:
        record = self.cache.get_meta("fingerprint", key)
        if record is None or not still_valid(record.get("files", {})):
            return None
        binaries = record.get("binaries", {})
        if not all(_same_size(Path(b["path"]), b["stat"]) for b in binaries.values()):
            return None
        for binary in binaries.values():  # in use again: not one of the old ones to remove
            with contextlib.suppress(OSError):
                os.utime(binary["path"])
        return record

    def previous(self, key: str) -> dict[str, Any] | None:
        """The record under ``key`` even when its files changed since (a stale record):
        its targets are the best guess of what this build will list."""
        record = self.cache.get_meta("fingerprint", key)
        return record if isinstance(record, dict) else None

    def save(
        self,
        key: str,
        files: Mapping[str, Stat],
        targets: Sequence[Mapping[str, Any]],
        binaries: Mapping[str, Mapping[str, Any]],
        signatures: Mapping[str, list[str]],
    ) -> None:
        self.cache.put_meta(
            "fingerprint", key, {"files": files, "targets": list(targets), "binaries": binaries,
                                 "signatures": signatures}
        )


def binary_record(path: Path, sha256: str) -> dict[str, Any]:
    return {"path": str(path), "sha256": sha256, "stat": _stat(path)}
