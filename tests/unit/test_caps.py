"""linux_capabilities terms -> file capabilities, with the rules ko documents."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kodev.config import load_config
from kodev.errors import ConfigError
from kodev.oci.caps import ALL_KNOWN, CapabilityError, FileCapabilities, file_capabilities

CHOWN_TO_DAC_READ_SEARCH = 0b111


@pytest.mark.parametrize(("terms", "expected"), [
    ([], None),
    (["chown", "dac_override", "dac_read_search"],
     FileCapabilities(CHOWN_TO_DAC_READ_SEARCH, 0, False)),
    (["CAP_CHOWN", "DAC_OVERRIDE", "2"], FileCapabilities(CHOWN_TO_DAC_READ_SEARCH, 0, False)),
    (["chown,dac_override,dac_read_search=p"],
     FileCapabilities(CHOWN_TO_DAC_READ_SEARCH, 0, False)),
    (["chown,dac_override,dac_read_search=i"],
     FileCapabilities(0, CHOWN_TO_DAC_READ_SEARCH, False)),
    (["chown,dac_override,dac_read_search=e"], None),  # effective alone grants nothing
    (["chown,dac_override,dac_read_search=pe"],
     FileCapabilities(CHOWN_TO_DAC_READ_SEARCH, 0, True)),
    (["=pe"], FileCapabilities(ALL_KNOWN, 0, True)),
    (["chown=ie", "chown=p"], FileCapabilities(1, 0, False)),
    (["chown=ie", "chown="], None),
    (["chown=ie", "chown+p"], FileCapabilities(1, 1, True)),
    (["chown=pie", "dac_override,chown-p"], FileCapabilities(0, 1, True)),
    (["="], None),
])
def test_terms(terms: list[str], expected: FileCapabilities | None) -> None:
    assert file_capabilities(terms) == expected


@pytest.mark.parametrize("terms", [["chown,=pie"], ["-pie"], ["+pie"], ["net_bind_servise"],
                                   ["chown=x"], ["64"]])
def test_bad_terms(terms: list[str]) -> None:
    with pytest.raises(CapabilityError):
        file_capabilities(terms)


def test_the_xattr_is_vfs_cap_data_revision_2() -> None:
    caps = file_capabilities(["net_bind_service,checkpoint_restore=ep"])
    assert caps is not None
    assert struct.unpack("<5I", caps.xattr()) == (0x02000001, 1 << 10, 0, 1 << 8, 0)


def test_a_bad_name_in_ko_yaml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".ko.yaml").write_text("builds:\n- id: a\n  linux_capabilities: bpf nope\n")
    with pytest.raises(ConfigError, match=r"builds\[0\]\.linux_capabilities: unknown "
                       r"capability 'nope'") as caught:
        load_config(tmp_path, {})
    assert caught.value.exit_code == 2
