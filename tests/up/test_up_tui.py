"""The full-screen TUI, driven in a pseudo-terminal and read back with pyte (a VT100
emulator, tests/support/terminal.py): what a developer sees (one row per workload, the
error first, the log pane and its filter), the keys, a resize, and that ``q`` quits."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kodev.dev.dashboard import Dashboard
from kodev.dev.tui import DashboardView
from kodev.dev.views import LineView
from tests.apply.test_apply_kube import eventually
from tests.fixtures.up import (
    crashing_gamma_main,
    deployment_images,
    edit,
    gamma_main,
    import_path,
    pods_of,
    up_env,
)
from tests.support.terminal import Terminal

ROWS, COLUMNS = 40, 150

Start = Callable[..., Terminal]


@pytest.fixture
def tui(up_module: Path, kube_env: Any, kube_namespace: str, tmp_path: Path
        ) -> Iterator[Start]:
    """Start ``kodev up`` full screen in a pseudo-terminal; killed and closed afterwards."""
    started: list[Terminal] = []

    def start(*extra: str, rows: int = ROWS, columns: int = COLUMNS) -> Terminal:
        terminal = Terminal(rows, columns)
        env = {**up_env(kube_env, tmp_path / "kocache", kube_env.registry),
               "TERM": "xterm-256color"}
        for name in ("NO_COLOR", "COLUMNS", "LINES"):  # the size is the terminal's
            env.pop(name, None)
        started.append(terminal)
        terminal.start([sys.executable, "-m", "kodev", "up", "-f", "config", "-n", kube_namespace,
                        *extra], up_module, env)
        return terminal

    yield start
    for terminal in started:
        terminal.close()


def row(screen: str, workload: str) -> str:
    """The table row of a workload (``deployment/gamma``)."""
    return next((line for line in screen.splitlines()
                 if line.lstrip("> ").startswith(workload)), "")


def all_ready(screen: str) -> bool:
    return all(" ready" in row(screen, f"deployment/{n}") and "1/1" in row(
        screen, f"deployment/{n}") for n in ("alpha", "beta", "gamma"))


def panel(screen: str, title: str) -> list[str]:
    """The lines inside the panel whose top border carries ``title``."""
    lines = screen.splitlines()
    top = next((i for i, line in enumerate(lines) if "╭" in line and title in line), None)
    if top is None:
        return []
    inside = []
    for line in lines[top + 1:]:
        if "╰" in line:
            break
        inside.append(line.strip().strip("│").strip())
    return inside


def quit_cleanly(terminal: Terminal) -> None:
    assert terminal.process is not None
    terminal.send(b"q")
    assert terminal.wait_exit(30) == 0


@pytest.mark.kube
def test_tui_build_compile_error_fix_and_failed_rollout(
        up_module: Path, kube_api: Any, kube_namespace: str, tui: Start) -> None:
    """A row per workload; a save's build shows on the rows (build time, save→running, its
    history); a compile error fills the error panel (file:line) until a save fixes it;
    a container that exits shows the Pod's reason; enter shows the error in full."""
    terminal = tui()
    screen = terminal.wait_for(all_ready, what="three ready workloads")
    for header in ("workload", "state", "pods", "build", "save→running", "history",
                   "last error"):
        assert header in screen
    assert "q quit" in terminal.lines()[-1] and "l logs on" in screen  # 40 rows: logs on

    # A build: the shared package, so alpha and beta roll; the rows say how long it took.
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hi "')
    screen = terminal.wait_for(lambda t: all_ready(t) and all(
        "s " in row(t, f"deployment/{n}").split("1/1", 1)[1] for n in ("alpha", "beta")),
        what="alpha and beta rolled, with a build time and a save→running time")
    beta = row(screen, "deployment/beta").split("1/1", 1)[1].split()
    assert beta[0].endswith("s") and beta[1].endswith("s")  # build, save→running
    assert any(bar in beta[2] for bar in "▁▂▃▄▅▆▇█")  # its history, one bar so far
    assert "s " not in row(screen, "deployment/gamma").split("1/1", 1)[1]  # not rebuilt

    # A compile error: the compiler's output in the error panel, gamma's row failed.
    (up_module / "cmd/gamma/main.go").write_text(
        'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(undefinedName) }\n')
    screen = terminal.wait_for(lambda t: any("undefinedName" in line for line in panel(
        t, "compile error")), what="the compile error panel")
    assert any("main.go:5" in line for line in panel(screen, "compile error"))
    assert " failed" in row(screen, "deployment/gamma")
    assert re.search(r"\d\d:\d\d:\d\d\s*$", row(screen, "deployment/gamma"))  # last error

    # Fixed: the panel goes, gamma is ready again (the same binary as before: no rollout).
    (up_module / "cmd/gamma/main.go").write_text(gamma_main())
    screen = terminal.wait_for(lambda t: not panel(t, "compile error") and " ready" in row(
        t, "deployment/gamma"), what="the compile error gone once fixed")

    # It compiles, but the container exits as it starts: the Pod's reason, first.
    (up_module / "cmd/gamma/main.go").write_text(crashing_gamma_main())
    screen = terminal.wait_for(lambda t: any("CrashLoopBackOff" in line or "Error" in line
                                             for line in panel(t, "failed")),
                               what="the failed rollout's reason in the error panel")
    assert " failed" in row(screen, "deployment/gamma")
    assert any(line.startswith("deployment/gamma") for line in panel(screen, "failed"))

    # enter on the failed row: its error in full (the Pod, the reason, the message).
    for _ in range(3):
        terminal.send(b"\t")
    terminal.wait_for(lambda t: row(t, "deployment/gamma").startswith(">"),
                      what="gamma selected")
    terminal.send(b"\r")
    screen = terminal.wait_for(lambda t: bool(panel(t, "deployment/gamma: error")),
                               what="gamma's error in full")
    assert "pod gamma-" in " ".join(panel(screen, "deployment/gamma: error"))
    quit_cleanly(terminal)


@pytest.mark.kube
def test_tui_logs_filter_rebuild_key_and_resize(
        up_module: Path, kube_api: Any, kube_namespace: str, tui: Start) -> None:
    """The log pane (on at 40 rows) interleaves every workload's lines; tab selects a
    workload and the pane shows only its lines; r rebuilds the selected image; the screen
    follows a resize (and hides the log pane below a height); l shows it again. With
    --port-forward each row has its URL."""
    terminal = tui("--port-forward")
    terminal.wait_for(lambda t: all_ready(t) and all(
        "http://127.0.0.1:" in row(t, f"deployment/{n}") for n in ("alpha", "beta", "gamma")),
        what="three ready workloads, each with its port-forward URL")
    (alpha,) = pods_of(kube_api, kube_namespace, "alpha")
    (beta,) = pods_of(kube_api, kube_namespace, "beta")
    screen = terminal.wait_for(lambda t: any(f"{alpha}/alpha hello alpha" in line
                                             for line in panel(t, "logs"))
                               and any(f"{beta}/beta hello beta" in line
                                       for line in panel(t, "logs")),
                               what="alpha's and beta's lines in the log pane")

    terminal.send(b"\t\t")  # alpha, then beta
    screen = terminal.wait_for(lambda t: bool(panel(t, "logs: deployment/beta")),
                               what="the log pane filtered to beta")
    lines = panel(screen, "logs: deployment/beta")
    assert any(f"{beta}/beta hello beta" in line for line in lines)
    assert not any("alpha" in line or "gamma" in line for line in lines), lines
    assert row(screen, "deployment/beta").startswith(">")

    terminal.send(b"r")  # the same code again: built, nothing pushed
    terminal.wait_for(lambda t: any("unchanged" in line and "cmd/beta" in line
                                    for line in panel(t, "events")),
                      what="beta rebuilt on r (unchanged)")

    terminal.resize(20, 100)
    screen = terminal.wait_for(
        lambda t: "l logs off" in t and not panel(t, "logs") and "q quit" in t.splitlines()[-1]
        and all_ready(t), what="the screen redrawn at 20x100, the log pane hidden")
    terminal.send(b"l")
    terminal.wait_for(lambda t: bool(panel(t, "logs: deployment/beta")) and "l logs on" in t,
                      what="l shows the log pane again")
    terminal.resize(40, 150)
    terminal.wait_for(lambda t: "l logs on" in t and all_ready(t)
                      and "q quit" in t.splitlines()[-1], what="the screen at 40x150 again")
    quit_cleanly(terminal)


@pytest.mark.kube
def test_live_rows_and_the_converge_key(
        up_module: Path, kube_api: Any, kube_namespace: str, tui: Start) -> None:
    """With --live: the row says live-swapped after a save, the footer offers c, and c
    rolls the running binary out as a normal rollout (the Deployment then names it)."""
    terminal = tui("--live")
    terminal.wait_for(lambda t: "c roll out live changes" in t and all_ready(t),
                      what="ready, with the c key")
    before = deployment_images(kube_api, kube_namespace)["gamma"]
    edit(up_module / "cmd/gamma/main.go", '"gamma"', '"gamma live"')
    terminal.wait_for(lambda t: " live-swapped" in row(t, "deployment/gamma"),
                      what="gamma live-swapped")
    assert deployment_images(kube_api, kube_namespace)["gamma"] == before
    terminal.send(b"c")
    terminal.wait_for(lambda t: "rolling out the running digest" in t,
                      what="the converge event")
    eventually("the Deployment to name the live digest",
               lambda: deployment_images(kube_api, kube_namespace)["gamma"] != before)
    quit_cleanly(terminal)


@pytest.mark.kube
def test_json_workload_events_carry_what_the_rows_show(
        up_module: Path, kube_env: Any, start_up: Callable[..., Any]) -> None:
    """--json: every change of a row is a ``workload`` event with every field the row
    shows (state, Pods, build, save→running and its history), after the events that
    caused it; the ``ready`` event has ``save_to_running_seconds`` too."""
    up = start_up(up_module, kube_env.registry)
    since = up.started()
    edit(up_module / "internal/shared/shared.go", '"hello "', '"hi "')
    ready = up.wait_for(lambda e: e["event"] == "ready"
                        and e.get("workload") == "deployment/alpha", since)
    row = up.wait_for(lambda e: e["event"] == "workload" and e["workload"] == "deployment/alpha"
                      and e["state"] == "ready" and bool(e["history_seconds"]), since)
    assert row["save_to_running_seconds"] == ready["save_to_running_seconds"] \
        == ready["save_to_ready_seconds"] == row["history_seconds"][-1]
    assert row["pods_desired"] == 1 and row["pods_ready"] >= 1  # the old Pod may linger
    assert row["build_seconds"] > 0 and row["importpaths"] == [import_path("alpha")]
    states = [e["state"] for e in up.of_kind("workload", since)
              if e["workload"] == "deployment/alpha"]  # Pod counts repeat a state
    changes = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert changes[changes.index("building"):] == ["building", "pushing", "rolling", "ready"]


@pytest.mark.parametrize("height", [12, 24, 40])
def test_the_newest_event_is_always_on_screen(height: int) -> None:
    """Events with multi-line messages (an error's detail) once pushed the events panel
    past the screen's bottom, cropping the newest event: each event is one line now, and
    the panel holds exactly what fits."""
    dashboard = Dashboard()
    for number in range(60):
        dashboard.emit("error", f"event {number}\n  detail line one\n  detail line two")
    dashboard.set_error("# example.com/m\nmain.go:1:1: broken\n" * 20)
    console = Console(width=100, height=height, force_terminal=True, color_system=None)
    lines = console.render_lines(DashboardView(dashboard, "kodev up"),
                                 console.options.update_height(height))
    screen = ["".join(segment.text for segment in line) for line in lines]
    assert len(screen) == height
    assert any("event 59" in line for line in screen), "\n".join(screen)
    assert "q quit" in screen[-1]


def test_rows_follow_the_events_and_each_change_is_a_workload_event() -> None:
    """A workload row is derived from the events about it or its images: a compile error
    fails it (with the output as its error) and a no-op build after the fix makes it
    ready again; a stuck rollout keeps the Pod's reason; live swaps fill the history.
    Each change is one ``workload`` event; the plain view prints none of them."""
    dashboard = Dashboard()
    rows: list[dict[str, Any]] = []
    dashboard.subscribe(lambda e: rows.append(e.json()) if e.kind == "workload" else None)
    plain = io.StringIO()
    dashboard.subscribe(LineView(plain))
    image = "example.com/m/cmd/web"
    dashboard.add_workload("deployment/web", "ns", [image])
    dashboard.set_pods("deployment/web", 1, 1)
    dashboard.emit("ready", "deployment/web: rollout complete", workload="deployment/web")
    assert rows[-1]["state"] == "ready" and rows[-1]["pods_ready"] == 1

    dashboard.emit("build", "building 1 image(s)", images=[image])
    dashboard.emit("compile-error", "go build failed", output="main.go:3:1: broken",
                   images=[image])
    failed = dashboard.workload("deployment/web")
    assert failed is not None and failed.state == "failed" and failed.error.startswith("main.go:3")
    assert rows[-1]["state"] == "failed" and "last_error_time" in rows[-1]
    dashboard.emit("build", "building 1 image(s)", images=[image])
    dashboard.emit("unchanged", "cmd/web: byte-identical binary", image, build_seconds=0.4)
    fixed = dashboard.workload("deployment/web")
    assert fixed is not None and (fixed.state, fixed.error) == ("ready", "")
    assert fixed.error_at == failed.error_at  # when the last error was, still

    problem = "pod web-1: CrashLoopBackOff: back-off 10s restarting failed container"
    dashboard.emit("failed", f"deployment/web: {problem}", workload="deployment/web",
                   reason=problem)
    stuck = dashboard.workload("deployment/web")
    assert stuck is not None and stuck.error == problem
    assert stuck.message.startswith("CrashLoopBackOff")

    for seconds in (0.7, 0.5):
        dashboard.emit("live", "new binary running", image, workload="deployment/web",
                       mode="live", save_to_running_seconds=seconds)
    assert rows[-1]["state"] == "live-swapped" and rows[-1]["history_seconds"] == [0.7, 0.5]
    assert "Pods ready" not in plain.getvalue() and "new binary running" in plain.getvalue()
