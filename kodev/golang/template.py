"""The subset of Go's text/template that ko's ``.ko.yaml`` flags and ldflags use.

Supported: ``{{.Env.NAME}}``, ``{{.GoEnv.NAME}}``, ``{{.Date}}``, ``{{.Timestamp}}``,
``{{.Git.Field}}`` and ``{{ index .Env "NAME" }}``, with ``missingkey=error``
semantics: an unknown key is a ConfigError, as in ko. Values are computed lazily so
that ``go env`` and ``git`` only run when a template needs them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from kodev.errors import ConfigError

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}")
_FIELD = re.compile(r"^\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?$")
_INDEX = re.compile(r'^index\s+\.([A-Za-z_]\w*)\s+"([^"]*)"$')

Lookup = Callable[[], Mapping[str, str] | str]


def has_template(text: str) -> bool:
    return "{{" in text


def template_fields(text: str) -> list[tuple[str, str | None]] | None:
    """The data ``text`` reads, as (top-level name, key) pairs: ``{{.Env.VERSION}}`` is
    ``("Env", "VERSION")``, ``{{.Date}}`` is ``("Date", None)``. None when an action is one
    :func:`render` does not support (rendering it fails anyway)."""
    fields: list[tuple[str, str | None]] = []
    for action in _ACTION.findall(text):
        field = _FIELD.match(action) or _INDEX.match(action)
        if field is None:
            return None
        fields.append((field.group(1), field.group(2)))
    return fields


def render(text: str, data: Mapping[str, Lookup], *, where: str) -> str:
    """Expand every action in ``text``; ``data`` maps top-level names to lazy values."""

    def expand(match: re.Match[str]) -> str:
        action = match.group(1)
        field = _FIELD.match(action) or _INDEX.match(action)
        if field is None:
            raise ConfigError(
                f"{where}: unsupported template action {{{{{action}}}}}",
                hint="kodev supports .Env.X, .GoEnv.X, .Date, .Timestamp and .Git.X",
            )
        top, key = field.group(1), field.group(2)
        if top not in data:
            raise ConfigError(f"{where}: template: no field {top!r} in {{{{{action}}}}}")
        value = data[top]()
        if key is None:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: template: {{{{.{top}}}}} needs a key")
            return value
        if isinstance(value, str) or key not in value:
            raise ConfigError(
                f"{where}: template: map has no entry for key {key!r} in {{{{{action}}}}}",
                hint=f"set {key} in the environment or in the build's env",
            )
        return value[key]

    return _ACTION.sub(expand, text)
