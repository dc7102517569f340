"""Fixtures for the Skaffold hook tests: ``kodev`` on PATH as Skaffold and Tilt call it,
the real Skaffold CLI (built by tests/skaffold/build.sh), and a background ``skaffold``
process whose output the tests wait on."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.fixtures.kodev import REPO_ROOT, TOOLS_BIN, Kodev
from tests.support.tools import built_tool
from tests.support.warm import served_calls, wait_for_server

BUILD_SCRIPT = REPO_ROOT / "tests" / "skaffold" / "build.sh"


def install_kodev_command(bin_dir: Path, calls: Path | None = None) -> Path:
    """A ``kodev`` executable that runs this checkout's kodev through its entry point (the
    one users install: warm server on, in the test session's ``KODEV_SERVER_DIR``).

    ``calls``: every invocation appends one line, its arguments, to that file first (one
    small ``O_APPEND`` write, so concurrent calls do not mix), so a test can tell which
    artifacts Skaffold asked kodev to build and when."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "kodev"
    record = f'printf \'%s\\n\' "$*" >> "{calls}"\n' if calls is not None else ""
    entry = Path(sys.executable).parent / "kodev"
    script.write_text(f'#!/bin/sh\n{record}exec "{entry}" "$@"\n')
    script.chmod(0o755)
    return bin_dir


# What Skaffold and Tilt set; each test sets its own.
HOOK_VARIABLES = ("IMAGE", "PUSH_IMAGE", "BUILD_CONTEXT", "PLATFORMS", "SKIP_TEST",
                  "EXPECTED_REF", "EXPECTED_IMAGE", "EXPECTED_TAG", "DOCKER_HOST")


@pytest.fixture
def hook_env(kodev: Kodev, tmp_path: Path) -> dict[str, str]:
    """The kodev fixture's environment (private KOCACHE, crane on PATH) with ``kodev``
    itself first on PATH, so ``sh -c "kodev skaffold build ..."`` runs this checkout."""
    bin_dir = install_kodev_command(tmp_path / "bin")
    env = {k: v for k, v in kodev.env.items() if k not in HOOK_VARIABLES}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


# --------------------------------------------------------------------------- real Skaffold


@pytest.fixture(scope="session")
def skaffold_bin() -> str:
    """The Skaffold binary `make skaffold` built (a missing one fails the test: a skip
    would hide it)."""
    return built_tool(BUILD_SCRIPT, "skaffold", "github.com/GoogleContainerTools/skaffold/v2")


# Skaffold's global config for a test: no update check, no metrics, no survey prompt, and
# nothing read from or written to the user's ~/.skaffold.
GLOBAL_CONFIG = """\
global:
  update-check: false
  collect-metrics: false
  survey:
    disable-prompt: true
"""


def skaffold_env(tmp_path: Path, *, kubeconfig: Path | None = None,
                 calls: Path | None = None) -> dict[str, str]:
    """The environment Skaffold runs in: this checkout's ``kodev`` first on PATH (recording
    its calls in ``calls``), a private KOCACHE, no KO_* or hook variables of the caller's,
    and ``kubeconfig`` (else one that does not exist: no cluster)."""
    bin_dir = install_kodev_command(tmp_path / "bin", calls)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KO_", "KOCACHE", "SKAFFOLD_")) and k not in HOOK_VARIABLES}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO_ROOT),
        KOCACHE=str(tmp_path / "kocache"),
        KUBECONFIG=str(kubeconfig or tmp_path / "no-kubeconfig"),
        NO_COLOR="1",
        SKAFFOLD_UPDATE_CHECK="false",
    )
    return env


def warm_calls() -> int:
    """Calls the test session's warm servers have run."""
    return served_calls(Path(os.environ["KODEV_SERVER_DIR"]))


def wait_for_a_warm_server() -> None:
    wait_for_server(Path(os.environ["KODEV_SERVER_DIR"]))


def skaffold_flags(tmp_path: Path, *, cache: bool = True) -> list[str]:
    """Flags every test passes: a private global config and (``cache``: for the commands
    that build) a private artifact cache."""
    config = tmp_path / "skaffold-global.yaml"
    config.write_text(GLOBAL_CONFIG)
    flags = [f"--config={config}", "--interactive=false"]
    if cache:
        flags.append(f"--cache-file={tmp_path / 'skaffold-cache'}")
    return flags


def run_skaffold(skaffold_bin: str, cwd: Path, env: dict[str, str], *args: str,
                 check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([skaffold_bin, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"skaffold {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


class SkaffoldProcess:
    """``skaffold <args>`` in the background (its own process group), stdout and stderr
    merged and read line by line, so tests wait for what Skaffold prints."""

    def __init__(self, binary: str, args: Sequence[str], cwd: Path, env: dict[str, str]
                 ) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [binary, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """An index into ``lines``: later waits look only at what comes after it."""
        with self._changed:
            return len(self.lines)

    def output(self, since: int = 0) -> str:
        with self._changed:
            return "\n".join(self.lines[since:])

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 300) -> re.Match[str]:
        """The first line from ``since`` on that matches ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = since
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if not self._reader.is_alive():
                    raise AssertionError(
                        f"skaffold exited ({self.process.poll()}) before printing "
                        f"{pattern!r}:\n{self.output(since)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} within {timeout:.0f}s:\n"
                                         f"{self.output(since)}")
                self._changed.wait(timeout=min(left, 1.0))

    def matches(self, pattern: str, since: int = 0) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self._changed:
            return [m for line in self.lines[since:] if (m := regex.search(line))]

    def interrupt(self, timeout: float = 180) -> int:
        """Ctrl-C (SIGINT to Skaffold alone, as a terminal's would reach it first); waits
        for Skaffold to clean up and exit, and returns its exit code."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code

    def kill(self) -> None:
        """Teardown after a failure: the whole process group (Skaffold's kubectl
        port-forwards included)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def start_skaffold(skaffold_bin: str) -> Iterator[Callable[..., SkaffoldProcess]]:
    """Start ``skaffold`` in the background; killed at the end of the test if it still runs."""
    started: list[SkaffoldProcess] = []

    def start(args: Sequence[str], cwd: Path, env: dict[str, str]) -> SkaffoldProcess:
        process = SkaffoldProcess(skaffold_bin, args, cwd, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def kodev_skaffold_init(module: Path, env: dict[str, str], *args: str) -> None:
    """``kodev skaffold init -f config`` in ``module``, as a user runs it."""
    proc = subprocess.run(["kodev", "skaffold", "init", "-f", "config", *args], cwd=module,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def kodev_calls(calls: Path, since: int = 0) -> list[str]:
    """The recorded ``kodev`` invocations (their arguments), from line ``since`` on."""
    if not calls.exists():
        return []
    return calls.read_text().splitlines()[since:]
