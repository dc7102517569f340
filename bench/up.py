"""Benchmark ``kodev up`` on the test environment's real node: from a file save to (a)
the Deployment patched with the new digest, (b) the rollout complete (the new Pod Ready),
(c) the new code answering HTTP through ``kodev up --port-forward``, against ``go build``
of the same change (the floor), timed in the same run. Also kodev up's resident memory
and CPU while it sits watching.

Needs the test environment (``make testenv-up``; this script starts it if needed). Each
run changes the text web answers (examples/demo's cmd/web; only web is affected). The
floor builds an equal change in a second copy of the module (another marker, so neither
run gets the other's build cache). Results: a table on stdout and bench/results/up.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, as make bench runs this file directly
from tests.support.testenv import namespace, testenv_environ  # noqa: E402

DEMO = REPO / "examples" / "demo"
MAIN = "cmd/web/main.go"


def copy_demo(root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(DEMO, target)
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    return target


RUNS = 7  # saves per benchmark run (the README's tables say the same)
ANSWER = re.compile(r'greeting\.Message\("web"\), "-[^"]*", motd\(\)')


def set_marker(module: Path, marker: str) -> None:
    """A one-line change to the text web answers over HTTP."""
    path = module / MAIN
    text, count = ANSWER.subn(f'greeting.Message("web"), "- {marker}", motd()', path.read_text())
    assert count == 1, f"the answer line of {path} moved"
    path.write_text(text)


def answered(url: str, marker: str, deadline: float) -> float:
    """Ask ``url`` until the answer carries ``marker``; the time.time() it first did."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if marker in response.read().decode():
                    return time.time()
        except OSError:
            pass  # the forward waits for a Ready Pod, or the old one just went away
        time.sleep(0.01)
    raise RuntimeError(f"{url} never answered {marker!r}")


def floor_build(module: Path, marker: str, env: dict[str, str]) -> float:
    """``go build`` of the change with exactly the flags kodev uses for web (the demo's
    .ko.yaml: ``-s -w`` and the goVersion -X; kodev adds -trimpath, CGO_ENABLED=0)."""
    set_marker(module, marker)
    version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True,
                             check=True, env=env).stdout.strip()
    began = time.perf_counter()
    subprocess.run(["go", "build", "-trimpath", f"-ldflags=-s -w -X main.goVersion={version}",
                    "-o", str(module / "out") + os.sep, "./cmd/web"],
                   cwd=module, env={**env, "CGO_ENABLED": "0"}, check=True)
    return time.perf_counter() - began


class Up:
    def __init__(self, module: Path, ns: str, env: dict[str, str],
                 extra: tuple[str, ...] = ()) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kodev", "up", "-f", "config", "-n", ns, "--json",
             "--logs=false", "--port-forward", *extra], cwd=module, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def wait(self, kind: str, workload: str | None = None, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if event["event"] == "compile-error":
                raise RuntimeError(event["output"])
            if event["event"] == kind and (workload is None or event.get("workload") == workload):
                return event

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    env = testenv_environ()
    env["NO_COLOR"] = "1"
    with tempfile.TemporaryDirectory(prefix="kodev-bench-up-") as scratch:
        root = Path(scratch)
        env["KOCACHE"] = str(root / "kocache")
        floor = copy_demo(root, "floor")
        nonce = secrets.token_hex(3)  # the registry may hold earlier runs' blobs
        floor_build(floor, f"warm-up-{nonce}", env)
        rolled, idle_cpu, memory = series(root, floor, env, args, nonce, live=False)
        live, _, _ = series(root, floor, env, args, nonce, live=True)
    report({**rolled, **{f"live_{k}": v for k, v in live.items()}}, idle_cpu, memory,
           args.runs)
    return 0


def series(root: Path, floor: Path, env: dict[str, str], args: argparse.Namespace, nonce: str,
           *, live: bool) -> tuple[dict[str, list[float]], float, float]:
    """``args.runs`` saves under one ``kodev up`` (``--live`` or not), each next to a floor
    build of an equal change; the times from each save, and CPU and memory when idle."""
    mode = "live" if live else "rolled"
    watched = copy_demo(root, f"watched-{mode}")
    namespace_name = f"kodev-bench-{mode}-{os.getpid()}"
    namespace(env, namespace_name, create=True)
    up = Up(watched, namespace_name, env, ("--live",) if live else ())
    samples: dict[str, list[float]] = {"floor": [], "answering": []}
    try:
        url = up.wait("forward", "deployment/web")["url"]
        up.wait("watching")
        up.wait("ready", "deployment/web")
        for run in range(args.runs):
            samples["floor"].append(floor_build(floor, f"floor-{mode}-{run}-{nonce}", env))
            time.sleep(0.5)
            marker = f"up-{mode}-{run}-{nonce}"
            saved = time.time()
            set_marker(watched, marker)
            # Ask only once the new code is in place: it cannot answer before, and a request
            # (a WebSocket through the API server) every few ms would take CPU from the
            # build on 2 cores.
            if live:
                swapped = up.wait("live", "deployment/web")
                samples.setdefault("swapped", []).append(swapped["time"] - saved)
            else:
                patched = up.wait("patched", "deployment/web")
                samples.setdefault("patched", []).append(patched["time"] - saved)
            samples["answering"].append(answered(url, marker, time.monotonic() + 120) - saved)
            if not live:
                ready = up.wait("ready", "deployment/web")
                samples.setdefault("ready", []).append(ready["time"] - saved)
                time.sleep(2.0)  # let the old Pod go before the next save
            else:
                time.sleep(1.0)
        before = cpu_seconds(up.process.pid)
        time.sleep(args.idle_seconds)
        idle_cpu = (cpu_seconds(up.process.pid) - before) / args.idle_seconds * 100
        memory = rss_mb(up.process.pid)
    finally:
        up.stop()
        namespace(env, namespace_name, create=False, wait=True)
    return samples, idle_cpu, memory


def report(samples: dict[str, list[float]], idle_cpu: float, memory: float, runs: int) -> None:
    med = {k: statistics.median(v) for k, v in samples.items()}
    p90 = {k: p90_of(v) for k, v in samples.items()}
    results = {
        "runs": runs,
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "p90_seconds": {k: round(v, 3) for k, v in p90.items()},
        "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "patched_minus_floor": round(med["patched"] - med["floor"], 3),
        "ready_minus_patched": round(med["ready"] - med["patched"], 3),
        "answering_minus_floor": round(med["answering"] - med["floor"], 3),
        "live_answering_minus_floor": round(med["live_answering"] - med["live_floor"], 3),
        "idle_cpu_percent": round(idle_cpu, 2),
        "rss_mb": round(memory, 1),
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "up.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"kodev up, median of {runs} saves each (seconds)")
    print("  digest rollout (kodev up --port-forward)")
    print(f"    go build of the change (floor)      {med['floor']:.3f}")
    print(f"    (a) save -> Deployment patched      {med['patched']:.3f}   "
          f"floor + {results['patched_minus_floor']:.3f}  (target <= 0.300)")
    print(f"    (b) save -> new Pod Ready (rollout) {med['ready']:.3f}   "
          f"(a) + {results['ready_minus_patched']:.3f}")
    print(f"    (c) save -> new code answering      {med['answering']:.3f}   "
          f"floor + {results['answering_minus_floor']:.3f}  (target <= 1.000)")
    print("  live swap (kodev up --live --port-forward)")
    print(f"    go build of the change (floor)      {med['live_floor']:.3f}")
    print(f"    (d) save -> new binary running      {med['live_swapped']:.3f}   "
          f"p90 {p90['live_swapped']:.3f}")
    print(f"    (e) save -> new code answering      {med['live_answering']:.3f}   "
          f"floor + {results['live_answering_minus_floor']:.3f}  (target <= 0.300), "
          f"p90 {p90['live_answering']:.3f}")
    print(f"  resident memory while watching      {memory:.0f} MB  (target < 150)")
    print(f"  CPU while idle                      {idle_cpu:.2f} %")


def p90_of(values: list[float]) -> float:
    """The 90th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


if __name__ == "__main__":
    raise SystemExit(main())
