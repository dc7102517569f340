"""The one rule for colour and for redrawing in place (kodev/console.py)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from kodev.console import is_live_terminal, wants_color


@pytest.fixture
def tty() -> Iterator[io.TextIOWrapper]:
    leader, follower = os.openpty()
    stream = open(follower, "w")  # noqa: SIM115 (closed below)
    try:
        yield stream
    finally:
        stream.close()
        os.close(leader)


@pytest.fixture(autouse=True)
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)


def test_a_terminal_redraws_and_is_coloured(tty: io.TextIOWrapper) -> None:
    assert is_live_terminal(tty) and wants_color("auto", tty)


def test_no_color_removes_colour_not_progress(tty: io.TextIOWrapper,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert is_live_terminal(tty) and not wants_color("auto", tty)
    assert wants_color("always", tty)


def test_a_dumb_terminal_gets_plain_lines(tty: io.TextIOWrapper,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert not is_live_terminal(tty) and not wants_color("auto", tty)


def test_a_pipe_gets_plain_lines_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    assert not is_live_terminal(pipe) and not wants_color("auto", pipe)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert is_live_terminal(pipe) and wants_color("auto", pipe)
