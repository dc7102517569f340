"""Benchmark Skaffold with kodev as its custom builder against Skaffold's built-in ko
builder, in one run, on this machine (issue 15, part a).

Same module (bench/run.py's five ``main`` packages sharing internal/greeting), same
Skaffold (tests/skaffold/build.sh, v2.24.0), same loopback registry, same base image
(kodev's built-in minimal base, copied into the registry: ``.ko.yaml`` for kodev,
``ko.fromImage`` for the ko builder), each setup with its own copy of the module and its
own Skaffold artifact cache. Each timed run changes ONE binary's own package
(cmd/svc0/main.go) and runs ``skaffold build --push``; reported: the artifacts Skaffold
rebuilt (its ``Building [...]`` lines) and the wall time, medians of ``--runs`` runs.
With ``--dev`` also part b, on the test environment's real node (started if needed):
``skaffold dev --port-forward=pods`` for each set-up, then per run the same one-package
change is saved and timed until the new code answers through Skaffold's port-forward.
Results: a table on stdout and bench/results/skaffold.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.run, as make bench runs this file directly
from bench.run import (  # noqa: E402
    TOOLS_BIN,
    Registry,
    make_five_binary_module,
    push_minimal_base,
)
from tests.skaffold.conftest import SkaffoldProcess  # noqa: E402
from tests.support.testenv import namespace, testenv_environ  # noqa: E402

SKAFFOLD_BUILD = REPO / "tests" / "skaffold" / "build.sh"
MODULE_PATH = "example.com/kodev-demo/cmd"
NAMES = [f"svc{i}" for i in range(5)]
EDITED = "svc0"
GLOBAL_CONFIG = "global:\n  update-check: false\n  collect-metrics: false\n"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: {name}
        image: "ko://{module}/{name}"
        ports: [{{containerPort: 8080}}]
"""
# Each binary answers its greeting over HTTP (part b asks it through the port-forward).
SERVING_MAIN = """\
package main

import (
\t"fmt"
\t"net/http"

\t"example.com/kodev-demo/internal/greeting"
)

func main() {{
\tmsg := greeting.Message("{name}")
\tfmt.Println(msg)
\thttp.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {{ fmt.Fprintln(w, msg) }})
\t_ = http.ListenAndServe(":8080", nil)
}}
"""
WATCHING = r"Watching for changes\.\.\."


def skaffold_binary() -> str:
    if subprocess.run([str(SKAFFOLD_BUILD), "--check"], check=False).returncode != 0:
        raise SystemExit("Skaffold is not built: run `make skaffold` first")
    return subprocess.run([str(SKAFFOLD_BUILD), "--print"], check=True, capture_output=True,
                          text=True).stdout.strip()


def make_module(root: Path, base: str) -> Path:
    """bench/run.py's five-binary module, with manifests naming the five images only."""
    make_five_binary_module(root)
    for name in NAMES:
        (root / "cmd" / name / "main.go").write_text(SERVING_MAIN.format(name=name))
    (root / ".ko.yaml").write_text(f"defaultBaseImage: {base}\n")
    shutil.rmtree(root / "config")
    (root / "config").mkdir()
    (root / "config" / "app.yaml").write_text("---\n".join(
        DEPLOYMENT.format(name=name, module=MODULE_PATH) for name in NAMES))
    return root


def ko_builder_config(base: str) -> str:
    """The same five images with Skaffold's ko builder (its default dependencies: **/*.go)."""
    artifacts = "".join(
        f"  - image: ko://{MODULE_PATH}/{name}\n    ko:\n      fromImage: {base}\n"
        for name in NAMES)
    return ("apiVersion: skaffold/v4beta13\nkind: Config\nmetadata: {name: bench-ko}\n"
            "build:\n  tagPolicy: {inputDigest: {}}\n  artifacts:\n" + artifacts +
            "manifests: {rawYaml: [config/app.yaml]}\ndeploy: {kubectl: {}}\n")


def edit_own_package(module: Path, marker: str) -> None:
    """A one-line change to svc0's main package, which no other binary imports."""
    main = module / "cmd" / EDITED / "main.go"
    text, count = re.subn(r'greeting\.Message\("svc0[^"]*"\)',
                          f'greeting.Message("svc0 {marker}")', main.read_text())
    assert count == 1, f"the message line of {main} moved"
    main.write_text(text)


class Setup:
    """One Skaffold set-up (kodev hook or ko builder) on its own copy of the module."""

    def __init__(self, name: str, skaffold: str, module: Path, env: dict[str, str],
                 registry: str, scratch: Path) -> None:
        self.name = name
        self.module = module
        config = scratch / f"{name}-global.yaml"
        config.write_text(GLOBAL_CONFIG)
        self.skaffold = skaffold
        self.flags = [f"--default-repo={registry}/{name}", f"--config={config}",
                      f"--cache-file={scratch / (name + '.skaffold-cache')}",
                      "--interactive=false", "--detect-minikube=false"]
        self.command = [skaffold, "build", "--push", *self.flags]
        self.env = env

    def build(self) -> tuple[float, list[str]]:
        """One ``skaffold build``: wall time and the artifacts it (re)built."""
        start = time.perf_counter()
        proc = subprocess.run(self.command, cwd=self.module, env=self.env,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: skaffold build failed:\n{output[-3000:]}")
        return elapsed, re.findall(r"Building \[(\S+)\]", output)


def answer(port: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
            return str(resp.read().decode().strip())
    except OSError:
        return None


def wait_answer(dev: SkaffoldProcess, app: str, expected: str, timeout: float = 600) -> float:
    """Poll the latest local port Skaffold forwards to ``app`` until it answers
    ``expected``; the time.monotonic() it first did."""
    deadline = time.monotonic() + timeout
    pattern = (rf"Port forwarding pod/{app}-\S+ in namespace \S+, remote port 8080 -> "
               r"http://127\.0\.0\.1:(\d+)")
    while time.monotonic() < deadline:
        forwards = dev.matches(pattern)
        if forwards and answer(forwards[-1].group(1)) == expected:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"{app} never answered {expected!r}:\n{dev.output()[-3000:]}")


FORWARD = (r"Port forwarding pod/({app}-\S+) in namespace \S+, remote port 8080 -> "
           r"http://127\.0\.0\.1:(\d+)")


def forwarded_pod(dev: SkaffoldProcess, app: str) -> str | None:
    forwards = dev.matches(FORWARD.format(app=app))
    return forwards[-1].group(1) if forwards else None


def wait_new_pod(dev: SkaffoldProcess, app: str, old_pod: str, timeout: float = 600) -> float:
    """Poll until a Pod other than ``old_pod`` is forwarded and answers; the
    time.monotonic() it first did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        forwards = dev.matches(FORWARD.format(app=app))
        if forwards and forwards[-1].group(1) != old_pod and answer(forwards[-1].group(2)):
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"no new {app} Pod answered:\n{dev.output()[-3000:]}")


def edit_manifest(module: Path, marker: str) -> None:
    """A change to svc0's pod template only (an annotation): Skaffold redeploys without
    building anything, so the time to a new Pod answering is Skaffold's own floor."""
    app = module / "config" / "app.yaml"
    text, count = re.subn(r"metadata: \{labels: \{app: svc0\}(, annotations: \{[^}]*\})?\}",
                          f'metadata: {{labels: {{app: svc0}}, annotations: '
                          f'{{bench/rev: "{marker}"}}}}', app.read_text())
    assert count == 1, f"svc0's pod template moved in {app}"
    app.write_text(text)


def settled(dev: SkaffoldProcess, edited: str) -> None:
    """Every app answers through its port-forward. Skaffold restarts all its forwards
    after each deploy, one by one; a save before they are back races with that restart
    (seen here: a new Pod then never got a forward), so each save waits for this."""
    for name in NAMES:
        wait_answer(dev, name, edited if name == EDITED else f"hello from {name}")


def dev_loop(setup: Setup, kubeconfig: str, runs: int) -> tuple[list[float], list[float]]:
    """Part b: ``skaffold dev`` in a fresh namespace; per run, save -> new code answers.
    Then, as many times, a manifest-only change -> a new Pod answers (no build: Skaffold's
    own redeploy, rollout and port-forward, the floor of any builder)."""
    name = f"bench-skaffold-{setup.name}-{secrets.token_hex(3)}"
    env = {**setup.env, "KUBECONFIG": kubeconfig}
    namespace(env, name, create=True)
    dev = SkaffoldProcess(setup.skaffold, ["dev", *setup.flags, f"--namespace={name}",
                                           "--port-forward=pods"], setup.module, env)
    samples: list[float] = []
    floors: list[float] = []
    try:
        dev.wait_for(WATCHING, timeout=900)
        current = re.search(r'greeting\.Message\("(svc0[^"]*)"\)',
                            (setup.module / "cmd" / EDITED / "main.go").read_text())
        assert current is not None
        settled(dev, f"hello from {current.group(1)}")
        for i in range(runs):
            marker = f"{setup.name}-dev{i}"
            mark = dev.mark()
            start = time.monotonic()
            edit_own_package(setup.module, marker)
            samples.append(wait_answer(dev, EDITED, f"hello from svc0 {marker}") - start)
            dev.wait_for(WATCHING, since=mark, timeout=600)
            settled(dev, f"hello from svc0 {marker}")  # before the next save
        for i in range(runs):
            old_pod = forwarded_pod(dev, EDITED)
            assert old_pod is not None
            mark = dev.mark()
            start = time.monotonic()
            edit_manifest(setup.module, f"{setup.name}-floor{i}")
            floors.append(wait_new_pod(dev, EDITED, old_pod) - start)
            dev.wait_for(WATCHING, since=mark, timeout=600)
            settled(dev, f"hello from svc0 {setup.name}-dev{runs - 1}")
    finally:
        if dev.process.poll() is None:
            dev.interrupt()
        dev.kill()
        namespace(env, name, create=False, wait=True)
    return samples, floors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per set-up")
    parser.add_argument("--dev", action="store_true",
                        help="also part b (skaffold dev on the test environment's node)")
    args = parser.parse_args()
    skaffold = skaffold_binary()
    samples: dict[str, list[tuple[float, list[str]]]] = {"kodev": [], "kodev_cold": [],
                                                          "ko": []}
    dev_samples: dict[str, list[float]] = {}
    floors: dict[str, list[float]] = {}
    testenv = testenv_environ() if args.dev else None
    with tempfile.TemporaryDirectory(prefix="kodev-bench-skaffold-") as tmp:
        scratch = Path(tmp)
        # Part b needs the registry the node pulls from; part a alone runs its own.
        registry = Registry(scratch) if testenv is None else None
        host = registry.host if registry else testenv["KODEV_TEST_REGISTRY"] if testenv else ""
        try:
            base = push_minimal_base(SimpleNamespace(host=host), scratch)  # type: ignore[arg-type]
            bin_dir = scratch / "bin"
            bin_dir.mkdir()
            kodev = bin_dir / "kodev"
            # the entry point users run (warm server on); kodev_cold: KODEV_SERVER=off
            entry = Path(sys.executable).parent / "kodev"
            kodev.write_text(f'#!/bin/sh\nexec "{entry}" "$@"\n')
            servers = scratch / "servers"
            servers.mkdir(mode=0o700)
            kodev.chmod(0o755)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("KO_", "KOCACHE", "SKAFFOLD_"))}
            env.update(PATH=f"{bin_dir}{os.pathsep}{TOOLS_BIN}{os.pathsep}{env['PATH']}",
                       PYTHONPATH=str(REPO), GOTOOLCHAIN="local", NO_COLOR="1",
                       KUBECONFIG=str(scratch / "no-kubeconfig"),
                       SKAFFOLD_UPDATE_CHECK="false", KODEV_SERVER_DIR=str(servers))
            env.pop("KODEV_SERVER", None)

            kodev_module = make_module(scratch / "kodev", base)
            subprocess.run([str(kodev), "skaffold", "init", "-f", "config"], check=True,
                           cwd=kodev_module, capture_output=True,
                           env={**env, "KOCACHE": str(scratch / "kocache")})
            cold_module = make_module(scratch / "kodev_cold", base)
            shutil.copy(kodev_module / "skaffold.yaml", cold_module / "skaffold.yaml")
            ko_module = make_module(scratch / "ko", base)
            (ko_module / "skaffold.yaml").write_text(ko_builder_config(base))
            setups = [
                Setup("kodev", skaffold, kodev_module,
                      {**env, "KOCACHE": str(scratch / "kocache")}, host, scratch),
                Setup("kodev_cold", skaffold, cold_module,
                      {**env, "KOCACHE": str(scratch / "kocache-cold"), "KODEV_SERVER": "off"},
                      host, scratch),
                Setup("ko", skaffold, ko_module,
                      {**env, "KOCACHE": str(scratch / "kocache-ko")}, host, scratch),
            ]
            for setup in setups:  # warm: everything built once, caches and registry full
                for i in range(2):
                    edit_own_package(setup.module, f"warm{i}")
                    setup.build()
            for i in range(args.runs):  # interleaved, so load drifts hit both alike
                for setup in setups:
                    edit_own_package(setup.module, f"{setup.name}{i}")
                    samples[setup.name].append(setup.build())
            if testenv is not None:
                for setup in setups:
                    if setup.name != "kodev_cold":  # part b: the warm path against ko
                        dev_samples[setup.name], floors[setup.name] = dev_loop(
                            setup, testenv["KUBECONFIG"], args.runs)
        finally:
            subprocess.run([str(kodev), "server", "stop"], env=env, capture_output=True,
                           check=False)
            if registry:
                registry.stop()
    report(samples, dev_samples, floors, args.runs)
    return 0


def report(samples: dict[str, list[tuple[float, list[str]]]],
           dev_samples: dict[str, list[float]], floors: dict[str, list[float]],
           runs: int) -> None:
    summary: dict[str, dict[str, Any]] = {
        name: {
            "median_s": statistics.median(t for t, _ in runs_),
            "runs_s": [round(t, 3) for t, _ in runs_],
            "artifacts_rebuilt": statistics.median(len(b) for _, b in runs_),
            "rebuilt_example": runs_[-1][1],
        }
        for name, runs_ in samples.items()
    }
    kodev, ko = summary["kodev"], summary["ko"]
    print(f"skaffold build after a change to one binary's own package "
          f"(5 images; median of {runs} runs)")
    print("| set-up | artifacts rebuilt | wall time (s) |")
    print("|---|---|---|")
    print(f"| Skaffold + kodev custom builder | {kodev['artifacts_rebuilt']:g} of 5 | "
          f"{kodev['median_s']:.2f} |")
    cold = summary["kodev_cold"]
    print(f"| Skaffold + kodev, KODEV_SERVER=off | {cold['artifacts_rebuilt']:g} of 5 | "
          f"{cold['median_s']:.2f} |")
    print(f"| Skaffold + built-in ko builder | {ko['artifacts_rebuilt']:g} of 5 | "
          f"{ko['median_s']:.2f} |")
    print(f"kodev / ko: {kodev['median_s'] / ko['median_s']:.2f}x (target <= 0.5x); "
          f"without the server {cold['median_s'] / ko['median_s']:.2f}x")
    dev_summary: dict[str, dict[str, Any]] = {name: {"median_s": statistics.median(runs_),
                          "runs_s": [round(t, 3) for t in runs_]}
                   for name, runs_ in dev_samples.items()}
    if dev_summary:
        kd, kb = dev_summary["kodev"]["median_s"], dev_summary["ko"]["median_s"]
        print(f"skaffold dev, save -> new code answers through the port-forward: kodev "
              f"{kd:.2f}s, ko builder {kb:.2f}s, {kd / kb:.2f}x (target <= 0.5x)")
        for name, values in floors.items():
            dev_summary[name]["floor_median_s"] = statistics.median(values)
            dev_summary[name]["floor_runs_s"] = [round(t, 3) for t in values]
        floor = min(statistics.median(v) for v in floors.values())
        print(f"Skaffold's own floor (a manifest-only change: no build; redeploy, new Pod, "
              f"port-forward): {floor:.2f}s = {floor / kb:.2f}x the ko builder's save -> "
              f"answer; kodev's build part: {kd - floor:.2f}s, ko's: {kb - floor:.2f}s")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "skaffold.json").write_text(json.dumps(
        {"runs": runs, "skaffold": "v2.24.0", "build": summary, "dev": dev_summary},
        indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
