"""The one decision of what to build for (oci/platform.configured_platforms)."""

from __future__ import annotations

import pytest

from kodev.errors import UsageError
from kodev.oci.platform import Platform, PlatformSelection, configured_platforms


def test_the_flag_wins_then_ko_yaml_then_goos_goarch() -> None:
    flag, config = ("linux/arm64",), ("linux/s390x",)
    assert str(configured_platforms(flag, config, {})) == "linux/arm64"
    assert str(configured_platforms((), config, {"GOARCH": "arm64"})) == "linux/s390x"
    assert str(configured_platforms((), (), {"GOARCH": "arm", "GOARM": "7"})) == "linux/arm/v7"
    assert str(configured_platforms((), (), {"GOOS": "windows", "GOARCH": "amd64"})) \
        == "windows/amd64"


def test_nothing_configured_leaves_the_default_to_the_caller() -> None:
    assert configured_platforms((), (), {"PATH": "/bin"}) is None


def test_goos_with_the_flag_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="GOOS/GOARCH cannot be combined with --platform"):
        configured_platforms(("linux/amd64",), (), {"GOOS": "linux"})


def test_all_is_made_concrete_by_what_is_offered() -> None:
    offered = (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert PlatformSelection.parse(["all"]).concrete(offered) == offered
    assert PlatformSelection.parse(["linux/riscv64"]).concrete(offered) == (
        Platform("linux", "riscv64"),)
