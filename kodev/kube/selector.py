"""Kubernetes label selectors (``-l``), as ``kubectl`` and ``ko`` parse them.

Grammar (``k8s.io/apimachinery/pkg/labels``)::

    selector    := requirement ( "," requirement )*
    requirement := KEY | "!" KEY | KEY ("=" | "==" | "!=") VALUE
                 | KEY ("in" | "notin") "(" VALUE ( "," VALUE )* ")" | KEY (">" | "<") INTEGER

``!=`` and ``notin`` also match objects without the label, as in Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kodev.errors import UsageError

_TOKEN = re.compile(r"\s*(?:(==|!=|=|!|\(|\)|,|<|>)|([^\s=!,()<>]+))")
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY = re.compile(rf"(?:{_NAME}/)?{_NAME}")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "exists", "!", "=", "!=", "in", "notin", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if not present or value is None or not value.lstrip("-").isdigit():
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.operator == ">" else int(value) < bound


@dataclass(frozen=True)
class LabelSelector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def parse_selector(text: str) -> LabelSelector:
    """Parse ``text``; an empty selector matches everything."""
    tokens = _tokenize(text)
    requirements = []
    position = 0
    while position < len(tokens):
        requirement, position = _requirement(tokens, position, text)
        requirements.append(requirement)
        if position < len(tokens):
            _expect(tokens, position, ",", text)
            position += 1
            if position == len(tokens):
                raise _error(text, "a requirement must follow ','")
    return LabelSelector(text, tuple(requirements))


def _tokenize(text: str) -> list[str]:
    tokens = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover - every character matches one alternative
            raise _error(text, f"unexpected {text[position:]!r}")
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


def _requirement(tokens: list[str], position: int, text: str) -> tuple[Requirement, int]:
    if tokens[position] == "!":
        key = _key(tokens, position + 1, text)
        return Requirement(key, "!"), position + 2
    key = _key(tokens, position, text)
    position += 1
    if position == len(tokens) or tokens[position] == ",":
        return Requirement(key, "exists"), position
    operator = tokens[position]
    position += 1
    if operator in ("=", "==", "!="):
        value, position = _optional_value(tokens, position)
        return Requirement(key, "!=" if operator == "!=" else "=", (value,)), position
    if operator in ("in", "notin"):
        values, position = _value_set(tokens, position, text)
        return Requirement(key, operator, values), position
    if operator in (">", "<"):
        if position == len(tokens) or not tokens[position].lstrip("-").isdigit():
            raise _error(text, f"{key} {operator} needs an integer")
        return Requirement(key, operator, (tokens[position],)), position + 1
    raise _error(text, f"unexpected {operator!r} after {key!r}")


def _key(tokens: list[str], position: int, text: str) -> str:
    if position >= len(tokens) or not _KEY.fullmatch(tokens[position]):
        found = tokens[position] if position < len(tokens) else "the end"
        raise _error(text, f"expected a label key, found {found!r}")
    return tokens[position]


def _optional_value(tokens: list[str], position: int) -> tuple[str, int]:
    if position < len(tokens) and tokens[position] not in (",", "(", ")"):
        return tokens[position], position + 1
    return "", position


def _value_set(tokens: list[str], position: int, text: str) -> tuple[tuple[str, ...], int]:
    _expect(tokens, position, "(", text)
    position += 1
    values = []
    while True:
        value, position = _optional_value(tokens, position)
        values.append(value)
        if position < len(tokens) and tokens[position] == ",":
            position += 1
            continue
        _expect(tokens, position, ")", text)
        return tuple(values), position + 1


def _expect(tokens: list[str], position: int, wanted: str, text: str) -> None:
    if position >= len(tokens) or tokens[position] != wanted:
        found = tokens[position] if position < len(tokens) else "the end"
        raise _error(text, f"expected {wanted!r}, found {found!r}")


def _error(text: str, problem: str) -> UsageError:
    return UsageError(f"invalid label selector {text!r}: {problem}",
                      hint="e.g. -l app=web,tier!=db or -l 'env in (dev,test)'")


_MATCH_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def workload_selector(workload: Mapping[str, Any]) -> LabelSelector:
    """A workload's ``spec.selector`` (matchLabels and matchExpressions) as a LabelSelector."""
    selector = (workload.get("spec") or {}).get("selector") or {}
    requirements = [Requirement(k, "=", (str(v),))
                    for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        operator = _MATCH_OPERATORS.get(expression.get("operator", ""))
        if operator is None:
            return LabelSelector("", ())  # unknown operator: select nothing rather than all
        values = tuple(str(v) for v in expression.get("values") or ())
        requirements.append(Requirement(str(expression.get("key")), operator, values))
    return LabelSelector("", tuple(requirements))
