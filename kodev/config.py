"""``.ko.yaml`` plus ``KO_*`` environment variables, turned into typed settings.

ko reads its configuration with viper: keys are case-insensitive, unknown keys are
ignored, and ``KO_<KEY>`` environment variables override top-level keys. kodev keeps
those rules so an existing ``.ko.yaml`` works unchanged, but reports type errors with
the file and line instead of ignoring them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kodev.errors import ConfigError, UsageError
from kodev.yamlsub import compose_yaml, construct_yaml, read_yaml_file

DEFAULT_BASE_IMAGE = "cgr.dev/chainguard/static:latest"


@dataclass(frozen=True)
class BuildConfig:
    """One entry of ``builds:``; ``None`` fields fall back to the ``default*`` values."""

    id: str
    dir: str = "."
    main: str = "."
    env: tuple[str, ...] | None = None
    flags: tuple[str, ...] | None = None
    ldflags: tuple[str, ...] | None = None
    linux_capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class KoConfig:
    """The effective configuration: file values with environment overrides applied."""

    path: Path | None = None
    default_base_image: str = DEFAULT_BASE_IMAGE
    base_image_overrides: Mapping[str, str] = field(default_factory=dict)
    default_platforms: tuple[str, ...] = ()
    default_env: tuple[str, ...] = ()
    default_flags: tuple[str, ...] = ()
    default_ldflags: tuple[str, ...] = ()
    builds: tuple[BuildConfig, ...] = ()
    # kodev's own keys, under ``kodev:`` (ko ignores unknown keys, so the file still
    # works with ko): ``kodev: {portForward: true}`` makes ``kodev up --port-forward``
    # the project's default.
    port_forward: bool = False
    # ``kodev: {workloadKinds: [{apiVersion, kind, containers}]}``: custom resources with
    # pod templates that kodev up and kodev logs treat as workloads (``containers`` is a
    # JSONPath to their container lists); each as (apiVersion, kind, containers, where).
    workload_kinds: tuple[tuple[str, str, str, str], ...] = ()

    def base_image_for(self, import_path: str) -> str:
        return self.base_image_overrides.get(import_path.lower(), self.default_base_image)


def find_config_file(workdir: Path, environ: Mapping[str, str]) -> Path | None:
    """``KO_CONFIG_PATH`` (a file, or a directory holding ``.ko.yaml``), else ``./.ko.yaml``."""
    configured = environ.get("KO_CONFIG_PATH")
    if configured:
        path = Path(configured)
        if path.is_dir():
            for name in (".ko.yaml", ".ko.yml"):
                if (path / name).is_file():
                    return path / name
            return None
        if not path.is_file():
            raise ConfigError(
                f"KO_CONFIG_PATH={configured} does not exist",
                hint="point it at a .ko.yaml file or the directory that holds one",
            )
        return path
    for name in (".ko.yaml", ".ko.yml"):
        if (workdir / name).is_file():
            return workdir / name
    return None


def load_config(workdir: Path, environ: Mapping[str, str] | None = None) -> KoConfig:
    """Read the configuration that applies to ``workdir``."""
    env = os.environ if environ is None else environ
    path = find_config_file(workdir, env)
    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        reader = _FileReader(path)
        raw = reader.read()
        lines = reader.lines
    return _apply_env_overrides(_config_from_mapping(raw, path, lines), env)


class _FileReader:
    """Parses a YAML file into plain values while remembering each key's line for errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[str, int] = {}

    def read(self) -> dict[str, Any]:
        """The file's top-level mapping, read with kodev's limits for YAML (size, UTF-8,
        aliases: see :mod:`kodev.yamlsub`)."""
        source = str(self.path)
        try:
            node = compose_yaml(read_yaml_file(self.path), source)
        except UsageError as exc:
            raise ConfigError(exc.message, hint=exc.hint or "fix the syntax; .ko.yaml is "
                                                            "ordinary YAML") from exc
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{self.path}:{node.start_mark.line + 1}: expected a mapping")
        return self._mapping(node, "")

    def _mapping(self, node: yaml.MappingNode, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value).lower()
            dotted = f"{prefix}{key}"
            self.lines[dotted] = key_node.start_mark.line + 1
            out[key] = self._value(value_node, dotted + ".")
        return out

    def _value(self, node: yaml.Node, prefix: str) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, prefix)
        if isinstance(node, yaml.SequenceNode):
            base = prefix[:-1]
            return [self._value(item, f"{base}[{i}].") for i, item in enumerate(node.value)]
        try:
            return construct_yaml(node, str(self.path))
        except UsageError as exc:
            raise ConfigError(exc.message) from exc


def _config_from_mapping(
    raw: Mapping[str, Any], path: Path | None, lines: Mapping[str, int]
) -> KoConfig:
    where = str(path) if path else "configuration"

    def fail(key: str, expected: str) -> ConfigError:
        line = lines.get(key.lower())
        location = f"{where}:{line}" if line else where
        return ConfigError(
            f"{location}: {key}: expected {expected}",
            hint="see ko's .ko.yaml reference; kodev reads the same keys",
        )

    def string_list(key: str, value: Any, *, split: bool) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(shlex.split(value)) if split else (value,)
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            return tuple(str(v) for v in value)
        raise fail(key, "a string or a list of strings")

    base = raw.get("defaultbaseimage", DEFAULT_BASE_IMAGE)
    if not isinstance(base, str) or not base:
        raise fail("defaultBaseImage", "an image reference")
    overrides = raw.get("baseimageoverrides") or {}
    if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
        raise fail("baseImageOverrides", "a mapping of import path to image reference")
    builds_raw = raw.get("builds") or []
    if not isinstance(builds_raw, list):
        raise fail("builds", "a list")
    builds = []
    for index, entry in enumerate(builds_raw):
        if not isinstance(entry, dict):
            raise fail(f"builds[{index}]", "a mapping")
        build = _build_from_mapping(entry, index, string_list)
        _check_capabilities(build, f"{where}: builds[{index}].linux_capabilities")
        builds.append(build)
    platforms = raw.get("defaultplatforms")
    own = raw.get("kodev") or {}
    if not isinstance(own, dict):
        raise fail("kodev", "a mapping (kodev's own settings, e.g. portForward: true)")
    port_forward = {str(k).lower(): v for k, v in own.items()}.get("portforward", False)
    if not isinstance(port_forward, bool):
        raise fail("kodev.portForward", "true or false")
    kinds_raw = {str(k).lower(): v for k, v in own.items()}.get("workloadkinds") or []
    if not isinstance(kinds_raw, list):
        raise fail("kodev.workloadKinds", "a list of {apiVersion, kind, containers}")
    workload_kinds: list[tuple[str, str, str, str]] = []
    for index, entry in enumerate(kinds_raw):
        fields = {str(k).lower(): v for k, v in entry.items()} \
            if isinstance(entry, dict) else {}
        values = [fields.get(name) for name in ("apiversion", "kind", "containers")]
        if not all(isinstance(v, str) and v for v in values):
            raise fail(f"kodev.workloadKinds[{index}]",
                       "a mapping with apiVersion, kind and containers (a JSONPath)")
        api_version, kind, containers = (str(v) for v in values)
        workload_kinds.append((api_version, kind, containers,
                               f"{path}: kodev.workloadKinds[{index}]"))
    return KoConfig(
        path=path,
        default_base_image=base,
        base_image_overrides={str(k).lower(): v for k, v in overrides.items()},
        default_platforms=_split_platforms(string_list("defaultPlatforms", platforms, split=False)),
        default_env=string_list("defaultEnv", raw.get("defaultenv"), split=False),
        default_flags=string_list("defaultFlags", raw.get("defaultflags"), split=True),
        default_ldflags=string_list("defaultLdflags", raw.get("defaultldflags"), split=False),
        builds=tuple(builds),
        port_forward=port_forward,
        workload_kinds=tuple(workload_kinds),
    )


def _build_from_mapping(entry: Mapping[str, Any], index: int, string_list: Any) -> BuildConfig:
    key = f"builds[{index}]"

    def optional(name: str, split: bool) -> tuple[str, ...] | None:
        if name not in entry:
            return None
        result: tuple[str, ...] = string_list(f"{key}.{name}", entry[name], split=split)
        return result

    caps = entry.get("linux_capabilities")
    return BuildConfig(
        id=str(entry.get("id") or f"#{index}"),
        dir=str(entry.get("dir") or "."),
        main=str(entry.get("main") or "."),
        env=optional("env", False),
        flags=optional("flags", True),
        ldflags=optional("ldflags", False),
        linux_capabilities=string_list(f"{key}.linux_capabilities", caps, split=True),
    )


def _check_capabilities(build: BuildConfig, where: str) -> None:
    """A capability kodev cannot encode is a configuration error before anything builds."""
    from kodev.oci.caps import CapabilityError, file_capabilities

    try:
        file_capabilities(build.linux_capabilities)
    except CapabilityError as exc:
        raise ConfigError(
            f"{where}: {exc}",
            hint="use capability names as setcap(8) knows them (net_bind_service, "
            "CAP_CHOWN...), optionally with =p, =ep or +e clauses",
        ) from exc


def _split_platforms(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


def _apply_env_overrides(config: KoConfig, environ: Mapping[str, str]) -> KoConfig:
    """viper's ``AutomaticEnv`` with prefix ``KO``: ``KO_DEFAULTBASEIMAGE`` beats the file."""
    updates: dict[str, Any] = {}
    if environ.get("KO_DEFAULTBASEIMAGE"):
        updates["default_base_image"] = environ["KO_DEFAULTBASEIMAGE"]
    if environ.get("KO_DEFAULTPLATFORMS"):
        updates["default_platforms"] = _split_platforms((environ["KO_DEFAULTPLATFORMS"],))
    if environ.get("KO_DEFAULTENV"):
        updates["default_env"] = tuple(environ["KO_DEFAULTENV"].split(","))
    if environ.get("KO_DEFAULTFLAGS"):
        updates["default_flags"] = tuple(shlex.split(environ["KO_DEFAULTFLAGS"]))
    if environ.get("KO_DEFAULTLDFLAGS"):
        updates["default_ldflags"] = (environ["KO_DEFAULTLDFLAGS"],)
    if not updates:
        return config
    return KoConfig(**{**config.__dict__, **updates})
