"""kodev up's retry scheduler (kodev/dev/retry.py): pure state on a fake clock."""

from __future__ import annotations

from pathlib import Path

from kodev.dev.retry import MAX_BACKOFF_SECONDS, RetryScheduler


def test_backoff_doubles_to_the_cap_and_restarts_after_success() -> None:
    now = [100.0]
    retry = RetryScheduler(clock=lambda: now[0])
    assert retry.until() is None and not retry.due()
    delays = [retry.schedule({"a"}, ()) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, MAX_BACKOFF_SECONDS]
    assert retry.until() == MAX_BACKOFF_SECONDS and not retry.due()
    now[0] += MAX_BACKOFF_SECONDS
    assert retry.due()
    retry.succeeded()
    assert retry.schedule((), ()) == 0.5


def test_what_is_owed_accumulates_until_taken() -> None:
    now = [0.0]
    retry = RetryScheduler(clock=lambda: now[0])
    retry.schedule({"a"}, {Path("x.yaml")})
    retry.schedule({"b"}, ())
    now[0] = 10.0
    assert retry.take() == ({"a", "b"}, {Path("x.yaml")})
    assert retry.until() is None
    retry.settled()  # nothing owed: the next failure starts afresh
    assert retry.schedule((), ()) == 0.5
