"""Skip ``go list`` and ``go build`` entirely when nothing a binary depends on has changed.

ko always runs ``go build`` (ko#1116: a no-change ko rebuild is slower than docker). After
a build kodev records a fingerprint: the size and mtime of every module-local file and
package directory in the binaries' dependency closure (from ``go list -deps``), plus
``go.mod``, ``go.sum``, ``go.work``, ``.ko.yaml`` and the ``go`` binary itself. If every
entry still matches on the next run, the recorded packages and binaries are reused.
Adding a file changes its directory's mtime, so a new ``.go`` file is noticed too.
Builds whose flags use ``.Date``, ``.Timestamp`` or ``.Git`` templates are never skipped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kodev.cache import Cache
from kodev.golang.packages import GoPackage

_VOLATILE_TEMPLATES = (".Date", ".Timestamp", ".Git")
Stat = tuple[int, int]


def has_volatile_template(values: Iterable[str]) -> bool:
    return any("{{" in v and any(t in v for t in _VOLATILE_TEMPLATES) for v in values)


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
        if pkg.kodata_dir.exists():
            for path in [pkg.kodata_dir, *sorted(pkg.kodata_dir.rglob("*"))]:
                files[str(path)] = _stat(path)
    for path in extra:
        files[str(path)] = _stat(path)
    return {k: v for k, v in files.items() if v is not None}


def module_files(workdir: Path, config_path: Path | None) -> list[Path]:
    out = []
    for directory in (workdir, *workdir.parents):
        for name in ("go.mod", "go.sum", "go.work", "go.work.sum"):
            if (directory / name).exists():
                out.append(directory / name)
        if (directory / "go.mod").exists() or (directory / "go.work").exists():
            break
    if config_path is not None:
        out.append(config_path)
    return out


def still_valid(files: Mapping[str, Any]) -> bool:
    return all(_stat(Path(path)) == tuple(stat) for path, stat in files.items())


class FingerprintStore:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def load(self, key: str) -> dict[str, Any] | None:
        record = self.cache.get_meta("fingerprint", key)
        if record is None or not still_valid(record.get("files", {})):
            return None
        binaries = record.get("binaries", {})
        if not all(still_valid({b["path"]: b["stat"]}) for b in binaries.values()):
            return None
        return record

    def save(
        self,
        key: str,
        files: Mapping[str, Stat],
        targets: Sequence[Mapping[str, Any]],
        binaries: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.cache.put_meta(
            "fingerprint", key, {"files": files, "targets": list(targets), "binaries": binaries}
        )


def package_json(pkg: GoPackage) -> dict[str, Any]:
    data = asdict(pkg)
    data["dir"] = str(pkg.dir)
    data["module_dir"] = str(pkg.module_dir) if pkg.module_dir else None
    return data


def package_from_json(data: Mapping[str, Any]) -> GoPackage:
    return GoPackage(
        import_path=data["import_path"],
        name=data["name"],
        dir=Path(data["dir"]),
        module_path=data.get("module_path"),
        module_dir=Path(data["module_dir"]) if data.get("module_dir") else None,
        go_files=tuple(data.get("go_files", ())),
        cgo_files=tuple(data.get("cgo_files", ())),
        embed_files=tuple(data.get("embed_files", ())),
        deps=tuple(data.get("deps", ())),
        standard=bool(data.get("standard")),
        error=data.get("error"),
        in_module_cache=bool(data.get("in_module_cache")),
    )


def binary_record(path: Path, sha256: str) -> dict[str, Any]:
    return {"path": str(path), "sha256": sha256, "stat": _stat(path)}
