"""Benchmark kodev against ko and against `go build` alone, in one run, on this machine.

Scenarios (see bench/README.md):
  a. warm rebuild, no source change            (kodev vs ko)
  b. warm rebuild after a one-line change       (kodev vs ko vs go build of the same change)
  c. 5 binaries, change to a shared package     (kodev vs ko)

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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per scenario")
    args = parser.parse_args()
    ko = ensure_ko()
    kodev = [sys.executable, "-m", "kodev"]
    results: dict[str, dict[str, float]] = {}
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
                "PYTHONPATH": str(REPO),
                "NO_COLOR": "1",
            }
            kodev_env = {**env, "KOCACHE": str(scratch / "kodev-cache")}
            ko_env = {**env, "KOCACHE": str(scratch / "ko-cache")}
            kodev_cmd = [*kodev, "build", "--sbom=none", "./cmd/web"]
            ko_cmd = [ko, "build", "--sbom=none", "./cmd/web"]
            # The floor: the go build that kodev and ko run (CGO off, -trimpath), alone.
            go_env = {**env, "CGO_ENABLED": "0"}
            go_cmd = [
                "go",
                "build",
                "-trimpath",
                "-o",
                str(scratch / "go-out" / "web"),
                "./cmd/web",
            ]
            for _ in range(2):  # warm both caches, the registry and Go's build cache
                timed(kodev_cmd, module, kodev_env)
                timed(ko_cmd, module, ko_env)
                timed(go_cmd, module, go_env)

            def sample(
                cmd: list[str], e: dict[str, str], before: Callable[[int], None] | None = None
            ) -> list[float]:
                out = []
                for i in range(args.runs):
                    if before:
                        before(i)
                    out.append(timed(cmd, module, e))
                return out

            results["a_no_change"] = {
                "kodev": median(sample(kodev_cmd, kodev_env)),
                "ko": median(sample(ko_cmd, ko_env)),
                "go_build": median(sample(go_cmd, go_env)),
            }
            greeting = module / "internal" / "greeting" / "greeting.go"
            results["b_one_line_change"] = {
                "go_build": median(
                    sample(go_cmd, go_env, lambda i: set_message(greeting, f"g{i}"))
                ),
                "kodev": median(
                    sample(kodev_cmd, kodev_env, lambda i: set_message(greeting, f"k{i}"))
                ),
                "ko": median(sample(ko_cmd, ko_env, lambda i: set_message(greeting, f"o{i}"))),
            }
            five = scratch / "five"
            names = make_five_binary_module(five)
            (five / ".ko.yaml").write_text(f"defaultBaseImage: {base}\n")
            five_greeting = five / "internal" / "greeting" / "greeting.go"
            kodev_five = [*kodev, "build", "--sbom=none", *names]
            ko_five = [ko, "build", "--sbom=none", *names]
            for _ in range(2):
                timed(kodev_five, five, kodev_env)
                timed(ko_five, five, ko_env)
            module = five
            results["c_five_binaries_shared_change"] = {
                "kodev": median(
                    sample(kodev_five, kodev_env, lambda i: set_message(five_greeting, f"k{i}"))
                ),
                "ko": median(
                    sample(ko_five, ko_env, lambda i: set_message(five_greeting, f"o{i}"))
                ),
            }
        finally:
            registry.stop()
    report(results, args.runs)
    return 0


def report(results: dict[str, dict[str, float]], runs: int) -> None:
    a, b, c = (
        results["a_no_change"],
        results["b_one_line_change"],
        results["c_five_binaries_shared_change"],
    )
    rows = [
        ("a. warm rebuild, no change", a["kodev"], a["ko"], f"{a['kodev'] / a['ko']:.2f}x ko"),
        (
            "b. one-line change",
            b["kodev"],
            b["ko"],
            f"kodev - go build = {1000 * (b['kodev'] - b['go_build']):.0f} ms "
            f"(go build {b['go_build']:.2f}s)",
        ),
        ("c. 5 binaries, shared change", c["kodev"], c["ko"], f"{c['kodev'] / c['ko']:.2f}x ko"),
    ]
    print(f"median of {runs} runs, seconds")
    print(f"| scenario | kodev | ko {KO_VERSION} | result |")
    print("|---|---|---|---|")
    for name, kodev_s, ko_s, note in rows:
        print(f"| {name} | {kodev_s:.2f} | {ko_s:.2f} | {note} |")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"runs": runs, "ko_version": KO_VERSION, "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
