"""``kodev completion``: the scripts are accepted by the real shells and complete what the
argparse parser defines (bash and fish are driven for real; zsh is syntax-checked and its
``#compdef`` registration is checked with compinit)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.kodev import Kodev


def script(kodev: Kodev, shell: str, directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text(kodev.run("completion", shell).stdout)
    return path


def need(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed (apt-get install {shell})")
    return found


BASH_DRIVER = """
source {script}
complete -p kodev
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=(); _kodev
      echo "${{COMPREPLY[*]}}"; }}
t kodev bu
t kodev build --pla
t kodev build --sbom ""
t kodev completion ""
t kodev run ./cmd/x --ku
t kodev -v logi
"""


def test_bash_script_is_valid_and_completes(kodev: Kodev, tmp_path: Path) -> None:
    path = script(kodev, "bash", tmp_path, "kodev.bash")
    subprocess.run(["bash", "-n", str(path)], check=True)
    out = subprocess.run(["bash", "-c", BASH_DRIVER.format(script=path)], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out == [
        "complete -o default -F _kodev kodev",
        "build",
        "--platform",
        "spdx cyclonedx none",
        "bash zsh fish",
        "--kubeconfig",
        "login",
    ]


def test_fish_script_completes_commands_flags_and_choices(kodev: Kodev, tmp_path: Path) -> None:
    fish = need("fish")
    path = script(kodev, "fish", tmp_path, "kodev.fish")
    subprocess.run([fish, "--no-execute", str(path)], check=True)

    def complete(line: str) -> list[str]:
        proc = subprocess.run([fish, "--no-config", "-c", f"source {path}; complete -C '{line}'"],
                              check=True, capture_output=True, text=True)
        return [entry.split("\t", 1)[0] for entry in proc.stdout.splitlines()]

    assert complete("kodev cre") == ["create"]
    assert "--password-stdin" in complete("kodev login --pass")
    assert complete("kodev completion ") == ["bash", "fish", "zsh"]
    assert {"spdx", "cyclonedx", "none"} <= set(complete("kodev build --sbom "))
    assert set(complete("kodev skaffold ")) == {"build", "check", "deps", "init"}


def test_zsh_script_is_valid_and_registers_with_compinit(kodev: Kodev, tmp_path: Path) -> None:
    zsh = need("zsh")
    functions = tmp_path / "zfunc"
    functions.mkdir()
    path = script(kodev, "zsh", functions, "_kodev")
    subprocess.run([zsh, "-n", str(path)], check=True)
    check = (f"fpath=({functions} $fpath); autoload -Uz compinit; "
             f"compinit -u -d {tmp_path}/zcompdump; print -r -- $_comps[kodev]")
    out = subprocess.run([zsh, "-f", "-c", check], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "_kodev"
    text = path.read_text()
    for word in ("'create:", "'completion:", "--password-stdin", "(spdx cyclonedx none)"):
        assert word in text
