"""Shared fixtures: real registries (tests.fixtures.registry), the real Kubernetes test
environment (tests.fixtures.kube) and kodev-specific helpers (tests.fixtures.kodev).

A skipped test fails the run: a skip hides a missing part (a tool, the node), and
``make test`` must prove everything or say what is missing (``-rs`` lists the reasons).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import pytest

from tests.faults.catalog import fault_of

pytest_plugins = ["tests.fixtures.registry", "tests.fixtures.kube", "tests.fixtures.kodev",
                  "tests.fixtures.up", "tests.fixtures.crds"]

_skipped: list[str] = []
_server_dir: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Warm servers that kodev starts during the run (Skaffold and the install tests run
    the ``kodev`` entry point, which starts them) live in the session's own directory and
    are stopped at its end: none outlives ``make test``."""
    directory = tempfile.mkdtemp(prefix="kodev-servers-")
    os.environ["KODEV_SERVER_DIR"] = directory
    _server_dir.append(directory)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test documented as ``Fault: ... User sees: ...`` joins the fault suite
    (``pytest -m fault``), wherever it lives: see tests/faults/catalog.py."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and fault_of(function.__doc__) is not None:
            item.add_marker(pytest.mark.fault)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from kodev.warm.protocol import running_servers

    for directory in _server_dir:
        for server in running_servers(directory):
            os.kill(server.pid, signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)
    if _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.write_line(
            f"{len(_skipped)} test(s) skipped: a skip counts as a failure here "
            "(it hides a missing part; see the reasons above)", red=True)
