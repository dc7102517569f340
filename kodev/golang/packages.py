"""The Go package graph, read from ``go list -json``.

Every command that needs to know what a ``main`` package is, where its ``kodata/``
lives or which files a binary depends on asks this module, so there is exactly one
place that runs ``go list``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kodev.errors import BuildError, UsageError

# Every file of a package that goes into its object code: Go, cgo, embedded files, and the
# assembly, C/C++/Objective-C/Fortran, SWIG and .syso files go build compiles or links.
_OTHER_FILE_FIELDS = (
    "SFiles", "HFiles", "CFiles", "CXXFiles", "MFiles", "FFiles", "SysoFiles", "SwigFiles",
    "SwigCXXFiles",
)
_LIST_FIELDS = ("ImportPath,Name,Dir,GoFiles,CgoFiles,EmbedFiles,Module,Error,DepsErrors,"
                "Standard," + ",".join(_OTHER_FILE_FIELDS))
_DEPS_FIELDS = _LIST_FIELDS + ",Deps,Imports"


@dataclass(frozen=True)
class GoPackage:
    """A package as ``go list`` reports it, trimmed to what kodev uses."""

    import_path: str
    name: str
    dir: Path
    module_path: str | None = None
    module_dir: Path | None = None
    go_files: tuple[str, ...] = ()
    cgo_files: tuple[str, ...] = ()
    embed_files: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    standard: bool = False
    error: str | None = None
    in_module_cache: bool = False  # from a versioned (so immutable) module download
    other_files: tuple[str, ...] = ()  # .s, .h, .c, .syso, ... (see _OTHER_FILE_FIELDS)

    @property
    def is_main(self) -> bool:
        return self.name == "main"

    @property
    def binary_name(self) -> str:
        """ko's rule: the last import path element, or ``ko-app`` for ``.``/``/``."""
        base = self.import_path.rstrip("/").rsplit("/", 1)[-1]
        return base if base not in ("", ".") else "ko-app"

    @property
    def kodata_dir(self) -> Path:
        return self.dir / "kodata"

    def source_files(self) -> list[Path]:
        """The files in this package that go into the binary (tests excluded)."""
        names = (*self.go_files, *self.cgo_files, *self.embed_files, *self.other_files)
        files = [self.dir / name for name in names]
        if self.is_main and (self.dir / "default.pgo").is_file():
            files.append(self.dir / "default.pgo")  # -pgo=auto, go build's default
        return files


def go_binary(environ: Mapping[str, str] | None = None) -> str:
    """``KO_GO_PATH`` names the go binary, as in ko; ``go`` from PATH otherwise."""
    env = os.environ if environ is None else environ
    return env.get("KO_GO_PATH") or "go"


def _decode_stream(text: str) -> Iterable[dict[str, Any]]:
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        obj, index = decoder.raw_decode(text, index)
        yield obj


def package_from_json(data: Mapping[str, Any]) -> GoPackage:
    """A package from ``go list -json`` output, or from :func:`package_json` (KOCACHE's
    fingerprint records keep packages in go list's own shape: one reader for both)."""
    module = data.get("Module") or {}
    return GoPackage(
        import_path=data["ImportPath"],
        name=data.get("Name", ""),
        dir=Path(data.get("Dir", ".")),
        module_path=module.get("Path"),
        module_dir=Path(module["Dir"]) if module.get("Dir") else None,
        go_files=tuple(data.get("GoFiles") or ()),
        cgo_files=tuple(data.get("CgoFiles") or ()),
        embed_files=tuple(data.get("EmbedFiles") or ()),
        deps=tuple(data.get("Deps") or ()),
        standard=bool(data.get("Standard")),
        error=_first_line(data["Error"]) if data.get("Error") else None,
        in_module_cache=bool((module.get("Replace") or module).get("Version")),
        other_files=tuple(name for field in _OTHER_FILE_FIELDS for name in data.get(field) or ()),
    )


def package_json(pkg: GoPackage) -> dict[str, Any]:
    """``pkg`` in go list's JSON shape, as :func:`package_from_json` reads it back.
    (go list's file kinds other than Go, cgo and embed are kept together under SFiles;
    a version stands for "in the module cache".)"""
    data: dict[str, Any] = {"ImportPath": pkg.import_path, "Name": pkg.name,
                            "Dir": str(pkg.dir), "GoFiles": list(pkg.go_files),
                            "CgoFiles": list(pkg.cgo_files), "EmbedFiles": list(pkg.embed_files),
                            "Deps": list(pkg.deps), "Standard": pkg.standard,
                            "SFiles": list(pkg.other_files)}
    if pkg.module_path is not None or pkg.module_dir is not None:
        data["Module"] = {"Path": pkg.module_path,
                          "Dir": str(pkg.module_dir) if pkg.module_dir else None,
                          "Version": "(module cache)" if pkg.in_module_cache else None}
    if pkg.error is not None:
        data["Error"] = {"Err": pkg.error}
    return data


def run_go_list(
    patterns: Sequence[str],
    *,
    workdir: Path,
    deps: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[GoPackage]:
    """Run one ``go list -e -json`` for ``patterns``; a package error becomes a BuildError."""
    env = dict(os.environ if environ is None else environ)
    fields = _DEPS_FIELDS if deps else _LIST_FIELDS
    args = [go_binary(env), "list", "-e", f"-json={fields}"]
    if deps:
        args.append("-deps")
    args.extend(["--", *patterns])
    try:
        proc = subprocess.run(
            args, cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError(
            f"cannot run {args[0]!r}: not found", hint="install Go or set KO_GO_PATH"
        ) from exc
    except NotADirectoryError as exc:
        raise UsageError(f"{workdir} is not a directory") from exc
    if proc.returncode != 0 and not proc.stdout.strip():
        raise BuildError(
            f"go list {' '.join(patterns)} failed in {workdir}",
            output=proc.stderr.strip(),
            hint="check that the directory is inside a Go module (go.mod)",
        )
    packages = []
    for data in _decode_stream(proc.stdout):
        error = data.get("Error")
        if error and not deps:
            raise BuildError(
                f"cannot load package {data.get('ImportPath', '?')}: {_first_line(error)}",
                output=error.get("Err", ""),
                hint="check the import path; it must be inside the current Go module",
            )
        packages.append(package_from_json(data))
    return packages


def _first_line(error: Mapping[str, Any]) -> str:
    return str(error.get("Err", "unknown error")).strip().splitlines()[0]


def select_main_packages(
    patterns: Sequence[str], listed: Sequence[GoPackage], workdir: Path
) -> dict[str, GoPackage]:
    """Pick each pattern's package out of a ``go list`` result; it must be ``main``."""
    by_path = {pkg.import_path: pkg for pkg in listed}
    result: dict[str, GoPackage] = {}
    for pattern in patterns:
        pkg = by_path.get(pattern) or _match_local_pattern(pattern, listed, workdir)
        if pkg is None:
            raise BuildError(
                f"{pattern}: no such package", hint="use an import path or a ./relative directory"
            )
        if pkg.error:
            raise BuildError(
                f"cannot load package {pattern}: {pkg.error}",
                hint="check the import path; it must be inside the current Go module",
            )
        if not pkg.is_main:
            raise BuildError(
                f"{pattern} is package {pkg.name!r}, not a main package",
                hint="kodev builds only 'package main' (commands); point it at a cmd directory",
            )
        result[pattern] = pkg
    return result


def _match_local_pattern(
    pattern: str, listed: Sequence[GoPackage], workdir: Path
) -> GoPackage | None:
    wanted = (workdir / pattern).resolve()
    for pkg in listed:
        if pkg.dir.resolve() == wanted:
            return pkg
    return None

