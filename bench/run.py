"""Benchmark kodev against ko and against `go build` alone, in one run, on this machine.

Scenarios (each tool's runs interleaved with the others', medians):
  a. `kodev build`, no source change              (kodev vs ko)
  b. `kodev build` after a one-line change        (kodev vs ko vs go build of the same change)
  c. 5 binaries, change to a shared package       (kodev vs ko)
  d. `kodev skaffold build` (Skaffold's custom builder call), no change   (vs ko build)
  e. `kodev skaffold build` after a one-line change  (vs go build of the same change)
  f. `kodev skaffold deps`, no change (vs Python's own start-up)
  g. `kodev skaffold deps` after a one-line change (the files moved but their imports did
     not: the answer is kept without go list; the warm call also leaves a compile ahead
     running in the background, see README "Warm server")

Both tools get the same module, the same loopback registry, the same base image (kodev's
built-in minimal base, copied into the registry so ko can use it) and a warm KOCACHE.
Results: a table on stdout and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS_BIN = Path.home() / ".cache" / "kodev" / "tools" / "bin"
KO_VERSION = "v0.19.1"
sys.path.insert(0, str(REPO))  # make bench runs this file directly
from tests.support.warm import wait_for_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_ko() -> str:
    ko = TOOLS_BIN / "ko"
    if not ko.exists():
        print(f"building ko {KO_VERSION} from the Go module proxy ...", file=sys.stderr)
        subprocess.run(
            ["go", "install", f"github.com/google/ko@{KO_VERSION}"],
            check=True,
            env={**os.environ, "GOBIN": str(TOOLS_BIN), "GOTOOLCHAIN": "local"},
        )
    return str(ko)


class Registry:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = root / "registry.yml"
        config.write_text(
            "version: 0.1\nlog: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
            f"http: {{addr: {self.host}}}\n"
        )
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("registry did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def push_minimal_base(registry: Registry, scratch: Path) -> str:
    """Write kodev://minimal into an OCI layout and copy it to the registry with skopeo."""
    sys.path.insert(0, str(REPO))
    from kodev.cache import Cache
    from kodev.oci.base import MINIMAL, BaseLoader
    from kodev.oci.layout import LayoutWriter
    from kodev.oci.platform import PlatformSelection, host_platform_default

    base = BaseLoader(lambda: None, Cache(scratch / "c", enabled=False)).load(  # type: ignore[arg-type,return-value]
        MINIMAL, PlatformSelection((host_platform_default(),))
    )
    layout = LayoutWriter(scratch / "base-layout", lambda layer: layer.read())
    layout.add(base.images[0], annotations={"org.opencontainers.image.ref.name": "v1"})
    layout.close()
    ref = f"{registry.host}/bases/minimal:v1"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{scratch / 'base-layout'}:v1",
            f"docker://{ref}",
        ],
        check=True,
    )
    return ref


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def set_message(path: Path, marker: str) -> None:
    text = path.read_text()
    start = text.index('fmt.Sprintf("hello from %s')
    end = text.index('"', start + len('fmt.Sprintf("'))
    path.write_text(text[:start] + f'fmt.Sprintf("hello from %s {marker}' + text[end:])


def make_five_binary_module(root: Path) -> list[str]:
    shutil.copytree(REPO / "examples" / "demo", root)
    names = []
    for i in range(5):
        name = f"svc{i}"
        (root / "cmd" / name).mkdir(parents=True, exist_ok=True)
        (root / "cmd" / name / "main.go").write_text(
            'package main\n\nimport (\n\t"fmt"\n\t"net/http"\n\n'
            '\t"example.com/kodev-demo/internal/greeting"\n)\n\n'
            f'func main() {{\n\tfmt.Println(greeting.Message("{name}"))\n'
            "\t_ = http.ListenAndServe\n}\n"
        )
        names.append(f"./cmd/{name}")
    return names


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def kodev_env(env: dict[str, str], source: Path, scratch: Path, name: str) -> dict[str, str]:
    """kodev from ``source``, with its own KOCACHE and repository (two versions pushing to
    one tag would move it back and forth: never a no-change push), and bytecode written
    once and reused (as an installed wheel has it): PYTHONDONTWRITEBYTECODE would make
    every run compile kodev from source (~0.1-0.3 s), which no user pays."""
    servers = scratch / f"servers-{name}"
    servers.mkdir(mode=0o700, exist_ok=True)
    out = {
        **env,
        "KO_DOCKER_REPO": f"{env['KO_DOCKER_REPO']}/{name}",
        "PYTHONPATH": str(source),
        "KOCACHE": str(scratch / f"cache-{name}"),
        "PYTHONPYCACHEPREFIX": str(scratch / f"pycache-{name}"),
        "KODEV_SERVER_DIR": str(servers),
    }
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out.pop("KODEV_SERVER", None)
    return out


def wait_for_servers(envs: dict[str, dict[str, str]]) -> None:
    """The warm servers the warm-up calls started: wait until each serves."""
    for env in envs.values():
        if env.get("KODEV_SERVER") != "off":
            wait_for_server(Path(env["KODEV_SERVER_DIR"]))


def stop_servers(kodev: list[str], envs: dict[str, dict[str, str]]) -> None:
    for env in envs.values():
        subprocess.run([*kodev, "server", "stop"], env=env, capture_output=True, check=False)


Step = tuple[list[str], dict[str, str], Path]


def interleaved(
    steps: dict[str, Step], runs: int, before: Callable[[str, int], None] | None = None
) -> dict[str, float]:
    """Median wall time of each step; the steps take turns run by run, so a load change on
    the machine (it is shared) hits every tool alike."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(runs):
        for name, (cmd, env, cwd) in steps.items():
            if before:
                before(name, i)
            samples[name].append(timed(cmd, cwd, env))
    return {name: median(values) for name, values in samples.items()}


def warm(steps: dict[str, Step], times: int = 2) -> None:
    for _ in range(times):
        for cmd, env, cwd in steps.values():
            timed(cmd, cwd, env)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="timed runs per scenario")
    parser.add_argument(
        "--compare-source",
        type=Path,
        metavar="DIR",
        help="also time the kodev in DIR (a checkout of another version, e.g. "
        "`git archive HEAD kodev | tar -x -C DIR`) in the same runs: column kodev_before",
    )
    args = parser.parse_args()
    ko = ensure_ko()
    # the entry point users (and Skaffold) run: warm server on; "kodev_cold": the same
    # kodev with KODEV_SERVER=off (every call starts Python and imports kodev)
    kodev = [str(Path(sys.executable).parent / "kodev")]
    results: dict[str, dict[str, float]] = {}
    loads = {"start": load_average()}
    with tempfile.TemporaryDirectory(prefix="kodev-bench-") as tmp:
        scratch = Path(tmp)
        registry = Registry(scratch)
        try:
            base = push_minimal_base(registry, scratch)
            module = scratch / "demo"
            shutil.copytree(REPO / "examples" / "demo", module)
            (module / ".ko.yaml").write_text(f"defaultBaseImage: {base}\n")
            env = {
                **os.environ,
                "KO_DOCKER_REPO": f"{registry.host}/bench",
                "GOTOOLCHAIN": "local",
                "NO_COLOR": "1",
            }
            sources = {"kodev": REPO, "kodev_cold": REPO}
            if args.compare_source:
                sources["kodev_before"] = args.compare_source.resolve()
            kodev_envs = {name: kodev_env(env, src, scratch, name) for name, src in sources.items()}
            kodev_envs["kodev_cold"]["KODEV_SERVER"] = "off"
            ko_env = {**env, "KOCACHE": str(scratch / "ko-cache")}
            build_args = ["build", "--sbom=none", "./cmd/web"]
            # The floor: the go build that kodev and ko run (CGO off, -trimpath), alone.
            go_env = {**env, "CGO_ENABLED": "0"}
            go_out = str(scratch / "go-out" / "web")
            go_cmd = ["go", "build", "-trimpath", "-o", go_out, "./cmd/web"]
            kodev_builds: dict[str, Step] = {
                name: ([*kodev, *build_args], e, module) for name, e in kodev_envs.items()
            }
            ko_build: Step = ([ko, *build_args], ko_env, module)
            go_build: Step = (go_cmd, go_env, module)
            # Skaffold's custom builder contract: IMAGE (repo:tag), PUSH_IMAGE, BUILD_CONTEXT.
            hook_env = {"PUSH_IMAGE": "true", "BUILD_CONTEXT": str(module)}
            hooks: dict[str, Step] = {  # each version its own image: no tag ping-pong
                f"{name}_skaffold_build": (
                    [*kodev, "skaffold", "build", "./cmd/web"],
                    {**e, **hook_env, "IMAGE": f"{registry.host}/bench/skaffold-{name}:dev"},
                    module,
                )
                for name, e in kodev_envs.items()
            }
            deps: dict[str, Step] = {
                f"{name}_skaffold_deps": (
                    [*kodev, "skaffold", "deps", "./cmd/web"], {**e, **hook_env}, module
                )
                for name, e in kodev_envs.items()
            }
            python_floor: Step = (
                [sys.executable, "-c", "pass"], kodev_envs["kodev"], module
            )
            everything = {**kodev_builds, "ko": ko_build, "go_build": go_build, **hooks, **deps}
            warm(everything)  # caches, the registry, Go's build cache, bytecode, servers
            wait_for_servers(kodev_envs)
            warm(everything, 1)

            greeting = module / "internal" / "greeting" / "greeting.go"
            counter = iter(range(1_000_000))

            def change(name: str, i: int) -> None:  # a new message each time: a real change
                set_message(greeting, f"{name}-{i}-{next(counter)}")

            def no_change(name: str, i: int) -> None:
                pass

            # a: nothing changed since the last build (each tool's own last build)
            results["a_no_change"] = interleaved(
                {**kodev_builds, "ko": ko_build, "go_build": go_build}, args.runs
            )
            # b: a one-line change before every run
            results["b_one_line_change"] = interleaved(
                {"go_build": go_build, **kodev_builds, "ko": ko_build}, args.runs, change
            )
            # Skaffold hook: `kodev skaffold build` as Skaffold runs it, ko for scale.
            warm({**hooks, "ko": ko_build}, 1)
            results["d_skaffold_build_no_change"] = interleaved(
                {**hooks, "ko": ko_build, "go_build": go_build}, args.runs, no_change
            )
            results["e_skaffold_build_one_line_change"] = interleaved(
                {"go_build": go_build, **hooks}, args.runs, change
            )
            # `kodev skaffold deps`: Skaffold runs it once per loop iteration per artifact.
            warm(deps, 1)
            results["f_skaffold_deps_no_change"] = interleaved(
                {**deps, "python_start": python_floor}, args.runs
            )
            results["g_skaffold_deps_after_change"] = interleaved(
                deps, args.runs, change
            )

            five = scratch / "five"
            names = make_five_binary_module(five)
            (five / ".ko.yaml").write_text(f"defaultBaseImage: {base}\n")
            five_greeting = five / "internal" / "greeting" / "greeting.go"
            five_steps: dict[str, Step] = {
                **{
                    name: ([*kodev, "build", "--sbom=none", *names], e, five)
                    for name, e in kodev_envs.items()
                },
                "ko": ([ko, "build", "--sbom=none", *names], ko_env, five),
            }
            warm(five_steps)

            def change_five(name: str, i: int) -> None:
                set_message(five_greeting, f"{name}-{i}-{next(counter)}")

            results["c_five_binaries_shared_change"] = interleaved(
                five_steps, args.runs, change_five
            )
        finally:
            stop_servers(kodev, kodev_envs)
            registry.stop()
    loads["end"] = load_average()
    report(results, args.runs, loads)
    return 0


def _ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}x"


def report(results: dict[str, dict[str, float]], runs: int, loads: dict[str, list[float]]
           ) -> None:
    a, b, c = (
        results["a_no_change"],
        results["b_one_line_change"],
        results["c_five_binaries_shared_change"],
    )
    d, e = results["d_skaffold_build_no_change"], results["e_skaffold_build_one_line_change"]
    f, g = results["f_skaffold_deps_no_change"], results["g_skaffold_deps_after_change"]

    def beyond_go(step: dict[str, float], key: str) -> str:
        return (f"kodev - go build = {1000 * (step[key] - step['go_build']):.0f} ms "
                f"(go build {step['go_build']:.2f} s)")

    # (scenario, its results, kodev's key without the version prefix, ko, result, target)
    rows = [
        ("a. `kodev build`, no change", a, "", a["ko"],
         f"{_ratio(a['kodev'], a['ko'])} ko", "<= 0.6x ko"),
        ("b. `kodev build`, one-line change", b, "", b["ko"], beyond_go(b, "kodev"),
         "<= 250 ms"),
        ("c. 5 binaries, shared change", c, "", c["ko"],
         f"{_ratio(c['kodev'], c['ko'])} ko", "<= 0.5x ko"),
        ("d. `kodev skaffold build`, no change", d, "_skaffold_build", d["ko"],
         f"{_ratio(d['kodev_skaffold_build'], d['ko'])} ko", "<= 0.6x ko"),
        ("e. `kodev skaffold build`, one-line change", e, "_skaffold_build", None,
         beyond_go(e, "kodev_skaffold_build"), "<= 250 ms"),
        ("f. `kodev skaffold deps`, no change", f, "_skaffold_deps", None,
         f"python start-up alone {f['python_start']:.2f} s", ""),
        ("g. `kodev skaffold deps` after a change", g, "_skaffold_deps", None,
         "imports unchanged: no go list", ""),
    ]
    before = "kodev_before" in a
    print(f"median of {runs} runs, seconds; load average {loads['start']} -> {loads['end']} "
          f"on {os.cpu_count()} CPUs")
    header = "| scenario | kodev (warm server) | kodev cold | ko " + KO_VERSION + \
        " | result (warm) | target |"
    if before:
        header += " kodev before |"
    print(header)
    print("|---|---|---|---|---|---|" + ("---|" if before else ""))
    for name, step, suffix, ko_s, note, target in rows:
        ko_text = f"{ko_s:.2f}" if ko_s is not None else "-"
        line = (f"| {name} | {step['kodev' + suffix]:.2f} | {step['kodev_cold' + suffix]:.2f} "
                f"| {ko_text} | {note} | {target} |")
        if before:
            old = step.get("kodev_before" + suffix)
            line += f" {old:.2f} |" if old is not None else " - |"
        print(line)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps(
            {"runs": runs, "ko_version": KO_VERSION, "load_average": loads,
             "cpus": os.cpu_count(), "results": results},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
