"""The provider's pieces that need no Terraform: its command line, the filesystem mirror,
the plugin certificate cache and the manifests' text."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from kodev.terraform.provider import documents_text
from kodev.terraform.server import server_certificate
from tests.fixtures.kodev import REPO_ROOT


def provider_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    return subprocess.run([sys.executable, "-m", "kodev.terraform", *args], cwd=cwd,
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO_ROOT)})


def test_run_by_hand_says_what_it_is(tmp_path: Path) -> None:
    """Started without Terraform: one line on stderr, exit 1, nothing on stdout."""
    proc = provider_command(cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert len(proc.stderr.splitlines()) == 1
    assert "Terraform/OpenTofu provider plugin" in proc.stderr


def test_mirror_writes_an_executable_in_the_unpacked_layout(tmp_path: Path) -> None:
    proc = provider_command("mirror", str(tmp_path / "m"), "--host", "example.com", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    script = Path(proc.stdout.strip())
    relative = script.relative_to(tmp_path / "m").parts
    assert relative[:3] == ("example.com", "kodev", "kodev")
    assert relative[4].startswith("linux_") and relative[5].startswith("terraform-provider-kodev_v")
    assert script.stat().st_mode & stat.S_IXUSR
    # The script runs this kodev: started by hand, it says what it is.
    ran = subprocess.run([str(script)], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("TF_")})
    assert ran.returncode == 1 and "provider plugin" in ran.stderr


def test_mirror_bad_arguments_one_line(tmp_path: Path) -> None:
    for args in (("mirror",), ("mirror", "a", "b"), ("mirror", str(tmp_path / "f" / "x"))):
        if len(args) == 2:
            (tmp_path / "f").write_text("a file where a directory should be")
        proc = provider_command(*args, cwd=tmp_path)
        assert proc.returncode in (1, 2), proc
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_certificate_is_made_once_and_kept_private(tmp_path: Path) -> None:
    cert, key = server_certificate(tmp_path)
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
    stored = tmp_path / "terraform" / "plugin-certificate.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert server_certificate(tmp_path) == (cert, key)


def test_documents_text_drops_markers_and_empty_documents() -> None:
    texts = ["---\n# c\na: 1\n", "\n\n", "---\n", "b: 2"]
    assert documents_text(texts) == ["# c\na: 1\n", "b: 2\n"]
