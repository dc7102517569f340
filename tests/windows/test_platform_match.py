"""ko's platform matching rules for base index children (pure logic)."""

from __future__ import annotations

import pytest

from kodev.oci.platform import Platform, PlatformSelection, parse_platform

BASE_2022 = Platform("windows", "amd64", os_version="10.0.20348.2582")


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("windows/amd64", True),
        ("windows/amd64:10.0.20348", True),  # X.Y.Z matches X.Y.Z.N
        ("windows/amd64:10.0.20348.2582", True),  # exact
        ("windows/amd64:10.0.20348.1", False),  # another build number, given in full
        ("windows/amd64:10.0.2", False),  # not a string prefix match
        ("windows/amd64:10.0", False),
        ("windows/amd64:10.0.17763", False),
        ("windows/arm64:10.0.20348", False),
        ("linux/amd64", False),
    ],
)
def test_windows_os_version_matching(wanted: str, expected: bool) -> None:
    assert BASE_2022.matches(parse_platform(wanted)) is expected


def test_partial_os_version_only_matches_on_windows() -> None:
    base = Platform("linux", "amd64", os_version="1.2.3.4")
    assert not base.matches(parse_platform("linux/amd64:1.2.3"))
    assert base.matches(parse_platform("linux/amd64:1.2.3.4"))


def test_all_skips_unknown_attestation_entries_only() -> None:
    selection = PlatformSelection.parse(["all"])
    assert selection.matches(BASE_2022)
    assert not selection.matches(Platform("unknown", "unknown"))
