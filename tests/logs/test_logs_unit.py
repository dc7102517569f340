"""Pure logic of kodev.kube.logs: resume deduplication, timestamps, formatting, selectors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from kodev.console import wants_color
from kodev.errors import UsageError
from kodev.kube.logs import (
    colour_of,
    format_line,
    format_notice,
    parse_workload_ref,
    started_containers,
)
from kodev.kube.selector import workload_selector
from kodev.kube.tail import (
    MAX_LINE_BYTES,
    LogLine,
    LogNotice,
    Replay,
    cut_marker,
    since_time,
    split_timestamp,
    timestamp_key,
)
from kodev.kube.watch import LineBuffer, iter_lines

T1 = "2026-01-01T10:00:00.100000000Z"
T2 = "2026-01-01T10:00:00.2Z"  # a kubelet trims trailing zeros
T3 = "2026-01-01T10:00:01.000000001Z"


def show(replay: Replay, lines: list[tuple[str, str]]) -> list[str]:
    return [message for timestamp, message in lines if replay.accept(timestamp, message)]


def test_timestamp_key_orders_trimmed_and_offset_timestamps() -> None:
    assert timestamp_key(T1) == (1767261600, 100000000)
    assert timestamp_key(T1) < timestamp_key(T2) < timestamp_key(T3)  # type: ignore[operator]
    assert timestamp_key("2026-01-01T11:00:00.1+01:00") == timestamp_key(T1)
    assert timestamp_key("2026-01-01T10:00:00Z") == (1767261600, 0)
    assert timestamp_key("yesterday") is None


def test_since_time_is_the_start_of_the_second_in_utc() -> None:
    assert since_time((1767261600, 999999999)) == "2026-01-01T10:00:00Z"


def test_split_timestamp() -> None:
    assert split_timestamp(f"{T1} hello  world") == (T1, "hello  world")
    assert split_timestamp(f"{T1} ") == (T1, "")
    assert split_timestamp("no timestamp here") == ("", "no timestamp here")


def test_replay_drops_what_was_shown_and_keeps_what_was_not() -> None:
    replay = Replay()
    assert replay.resume() is None  # nothing shown: from the start (or since/tail)
    assert show(replay, [(T1, "a"), (T2, "b"), (T2, "b")]) == ["a", "b", "b"]
    assert replay.resume() == "2026-01-01T10:00:00Z"
    # The API replays the whole second; one more "b" at T2 was not shown before.
    replayed = [(T1, "a"), (T2, "b"), (T2, "b"), (T2, "b"), (T2, "c"), (T3, "d")]
    assert show(replay, replayed) == ["b", "c", "d"]


def test_replay_after_a_resume_with_nothing_new() -> None:
    replay = Replay()
    show(replay, [(T1, "a")])
    replay.resume()
    assert show(replay, [(T1, "a")]) == []
    replay.resume()
    assert show(replay, [(T1, "a"), (T1, "a")]) == ["a"]  # the second "a" is new


def test_a_resume_before_anything_was_shown_drops_what_came_before_the_first_request(
        ) -> None:
    replay = Replay()
    replay.floor = timestamp_key(T2)  # the first request went out at T2 (--tail 0)
    assert replay.resume() is None
    # The resume asks from the start of T2's second: T1 came before the first request.
    assert show(replay, [(T1, "old"), (T2, "new"), (T3, "newer")]) == ["new", "newer"]


def test_lines_without_timestamp_are_always_shown() -> None:
    replay = Replay()
    show(replay, [(T2, "a")])
    replay.resume()
    assert show(replay, [("", "partial"), (T1, "old")]) == ["partial"]


def test_format_line_modes() -> None:
    line = LogLine(T1, "dev", "web-1", "app", "héllo")
    assert format_line(line) == "web-1/app héllo"
    assert format_line(line, timestamps=True) == f"web-1/app {T1} héllo"
    assert format_line(line, namespace=True) == "dev/web-1/app héllo"
    assert format_line(line, "raw") == "héllo"
    assert format_line(line, "raw", timestamps=True) == f"{T1} héllo"
    assert json.loads(format_line(line, "json", color=True)) == {
        "timestamp": T1, "namespace": "dev", "pod": "web-1", "container": "app",
        "message": "héllo"}


def test_colour_is_stable_per_container_and_only_when_asked() -> None:
    line = LogLine(T1, "dev", "web-1", "app", "x")
    code = colour_of("dev", "web-1", "app")
    assert format_line(line, color=True) == f"\x1b[{code}mweb-1/app\x1b[0m x"
    assert code == colour_of("dev", "web-1", "app")
    codes = {colour_of("dev", "web-1", c) for c in ("app", "sidecar", "init", "proxy", "db")}
    assert len(codes) > 1
    assert "\x1b" not in format_line(line, color=False)


def test_format_notice() -> None:
    assert format_notice(LogNotice("added", "dev", "web-1", "app", "")) == "+ web-1/app"
    assert format_notice(LogNotice("removed", "dev", "web-1", "app", "")) == "- web-1/app"
    assert format_notice(LogNotice("resumed", "dev", "web-1", "app", "stream resumed")) == \
        "~ web-1/app stream resumed"
    assert format_notice(LogNotice("waiting", "dev", "", "", "nothing yet")) == "~ nothing yet"


def test_parse_workload_ref() -> None:
    assert parse_workload_ref("web") == ("", "web")
    assert parse_workload_ref("deploy/web") == ("Deployment", "web")
    assert parse_workload_ref("StatefulSets.apps/db") == ("StatefulSet", "db")
    assert parse_workload_ref("ds/agent") == ("DaemonSet", "agent")
    for bad in ("service/web", "/web", "deploy/", ""):
        with pytest.raises(UsageError):
            parse_workload_ref(bad)


def test_workload_selector_match_labels_and_expressions() -> None:
    selector = workload_selector({"spec": {"selector": {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                             {"key": "canary", "operator": "DoesNotExist"}]}}})
    assert selector.matches({"app": "web", "tier": "a"})
    assert not selector.matches({"app": "web", "tier": "c"})
    assert not selector.matches({"app": "web", "tier": "a", "canary": "1"})
    unknown = workload_selector({"spec": {"selector": {"matchExpressions": [
        {"key": "x", "operator": "Sometimes"}]}}})
    assert not unknown.requirements  # selects nothing (Workload.selects needs requirements)


def test_started_containers() -> None:
    pod = {"status": {
        "initContainerStatuses": [{"name": "init", "state": {"terminated": {}}}],
        "containerStatuses": [
            {"name": "app", "restartCount": 2, "state": {"running": {}}},
            {"name": "sidecar", "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert started_containers(pod, None) == [("init", 0, False), ("app", 2, True)]
    import re

    assert started_containers(pod, re.compile("^a")) == [("app", 2, True)]


def test_wants_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_color("auto", Tty()) and not wants_color("auto", io.StringIO())
    assert wants_color("always", io.StringIO()) and not wants_color("never", Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color("auto", Tty())


class _Streamed:
    """A response whose body arrives in the given pieces (as urllib3's stream() gives)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces
        self.amounts: list[int | None] = []

    def stream(self, amount: int | None) -> Iterator[bytes]:
        self.amounts.append(amount)
        yield from self.pieces


def test_lines_are_cut_across_pieces_and_long_ones_capped() -> None:
    buffer = LineBuffer(limit=5)
    assert buffer.feed(b"ab") == []
    assert buffer.feed(b"c\nde") == [(b"abc", 0)]
    assert buffer.feed(b"fghij\n\nxy") == [(b"defgh", 2), (b"", 0)]
    assert buffer.end() == (b"xy", 0)
    assert buffer.end() is None
    assert buffer.feed(b"0123456789") == [] and buffer.end() == (b"01234", 5)
    response = _Streamed(b"one\ntw", b"o\nthree-is-long", b"er\n")
    assert list(iter_lines(response, 6)) == [("one", 0), ("two", 0), ("three-", 9)]
    assert response.amounts[0] is not None  # pieces are bounded, never a whole body


def test_a_line_without_newline_takes_bounded_memory() -> None:
    """8 MiB without a newline (the issue's case, 4.8 s before: the whole pending line was
    copied and searched again for every piece) is kept only up to the cap."""
    import tracemalloc

    piece = b"x" * 4096
    response = _Streamed(*([piece] * (8 * 1024 * 1024 // len(piece))), b"\nafter\n")
    tracemalloc.start()
    try:
        lines = [(len(text), dropped) for text, dropped in iter_lines(response, MAX_LINE_BYTES)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [(MAX_LINE_BYTES, 8 * 1024 * 1024 - MAX_LINE_BYTES), (5, 0)]
    assert peak < 3 * MAX_LINE_BYTES, f"peak {peak:,} bytes"


def test_a_cut_line_says_so() -> None:
    assert cut_marker(7 * 1024 * 1024) == (" [kodev: line cut, 7,340,032 more bytes not shown; "
                                           "at most 1 MiB of a line is kept]")
