"""What a no-change ``tofu plan`` costs with kodev's provider (issue 18).

One root module with five ``kodev_build`` resources (bench/run.py's five ``main`` packages
sharing internal/greeting, on kodev's built-in base), applied once; then, interleaved,
``tofu plan`` of that module (no change: the provider's fingerprint check only) and
``tofu plan`` of an empty root module (no provider: the CLI's own cost). Reported: the
medians of ``--runs`` runs of each and their difference (target: under 1 s), on stdout
and in bench/results/terraform.json. Each no-change plan is checked to say "No changes".

    python bench/terraform.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.run, as make bench runs this file directly
from bench.run import TOOLS_BIN, Registry, load_average, make_five_binary_module  # noqa: E402

TOFU_BUILD = REPO / "tests" / "terraform" / "build.sh"
SOURCE = "registry.opentofu.org/kodev/kodev"


def tofu_binary() -> str:
    return subprocess.run([str(TOFU_BUILD)], check=True, capture_output=True,
                          text=True).stdout.strip()


def environment(scratch: Path) -> dict[str, str]:
    mirror = scratch / "mirror"
    subprocess.run([sys.executable, "-m", "kodev.terraform", "mirror", str(mirror)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    config = scratch / "tofurc"
    config.write_text(f'provider_installation {{\n  filesystem_mirror {{\n'
                      f'    path = "{mirror}"\n    include = ["{SOURCE}"]\n  }}\n}}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KO_", "KOCACHE", "TF_"))}
    env.update(PATH=f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(REPO),
               KOCACHE=str(scratch / "kocache"), TF_CLI_CONFIG_FILE=str(config),
               TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1", NO_COLOR="1")
    return env


def five_builds(repo: str, module: Path, names: list[str]) -> str:
    blocks = [
        'terraform {\n  required_providers {\n    kodev = { source = "kodev/kodev" }\n  }\n}\n',
        f'provider "kodev" {{\n  repo = "{repo}"\n}}\n',
    ]
    for path in names:
        name = path.rsplit("/", 1)[-1]
        blocks.append(f'resource "kodev_build" "{name}" {{\n  importpath  = "{path}"\n'
                      f'  working_dir = "{module}"\n}}\n')
    return "\n".join(blocks)


def run(tofu: str, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([tofu, *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tofu {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tofu = tofu_binary()
    with tempfile.TemporaryDirectory(prefix="kodev-bench-tf-") as tmp:
        scratch = Path(tmp)
        env = environment(scratch)
        module = scratch / "module"
        names = make_five_binary_module(module)
        registry = Registry(scratch)
        try:
            builds_dir, empty_dir = scratch / "five", scratch / "empty"
            builds_dir.mkdir()
            empty_dir.mkdir()
            (builds_dir / "main.tf").write_text(five_builds(f"{registry.host}/bench", module,
                                                            names))
            (empty_dir / "main.tf").write_text("")
            for directory in (builds_dir, empty_dir):
                run(tofu, ["init"], directory, env)
            run(tofu, ["apply", "-auto-approve"], builds_dir, env)
            samples: dict[str, list[float]] = {"five kodev_build": [], "empty": []}
            loads = []
            for _ in range(args.runs):
                loads.append(load_average()[0])
                took, out = run(tofu, ["plan"], builds_dir, env)
                if "No changes." not in out:
                    raise SystemExit(f"the no-change plan planned changes:\n{out}")
                samples["five kodev_build"].append(took)
                took, _ = run(tofu, ["plan"], empty_dir, env)
                samples["empty"].append(took)
        finally:
            registry.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    extra = medians["five kodev_build"] - medians["empty"]
    version = subprocess.run([tofu, "version"], capture_output=True, text=True, check=False,
                             env=env).stdout
    tofu_version = next((line for line in version.splitlines() if line.startswith("OpenTofu")),
                        "tofu")
    result = {"tofu": tofu_version, "runs": args.runs, "samples": samples,
              "medians": medians, "provider_overhead": extra, "load_average_1m": loads}
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "terraform.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{tofu_version}, {args.runs} runs, load {min(loads)}-{max(loads)}")
    print(f"tofu plan, empty root module:          {medians['empty']:.2f} s (median)")
    print(f"tofu plan, five kodev_build, no change: {medians['five kodev_build']:.2f} s "
          "(median)")
    print(f"provider's cost beyond tofu's own:     {extra:.2f} s (target: < 1 s)")
    return 0 if extra < 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
