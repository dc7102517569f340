"""Run an image for real: skopeo copies it out of the registry, umoci unpacks it, runc runs it.

None of these tools is kodev's, so a passing run proves the image is what a container
runtime expects. Usable from tests and from the demo::

    python -m tests.support.runimage 127.0.0.1:5000/app@sha256:... -- --once
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    config: dict[str, object]


def fetch_to_layout(ref: str, layout: Path, tag: str = "run") -> None:
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{ref}",
            f"oci:{layout}:{tag}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def run_layout(
    layout: Path, args: list[str] | None = None, tag: str = "run", timeout: float = 60
) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="kodev-runc-") as scratch:
        bundle = Path(scratch) / "bundle"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
            check=True,
            capture_output=True,
            text=True,
        )
        config_path = bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["terminal"] = False
        if args:
            config["process"]["args"] = [*config["process"]["args"], *args]
        config_path.write_text(json.dumps(config))
        name = f"kodev-test-{uuid.uuid4().hex[:12]}"
        try:
            proc = subprocess.run(
                ["runc", "run", "--bundle", str(bundle), name],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        finally:
            subprocess.run(["runc", "delete", "--force", name], capture_output=True)
        return RunResult(proc.returncode, proc.stdout, proc.stderr, config)


def run_image(ref: str, args: list[str] | None = None, timeout: float = 60) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="kodev-layout-") as scratch:
        layout = Path(scratch) / "layout"
        fetch_to_layout(ref, layout)
        return run_layout(layout, args, timeout=timeout)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.support.runimage REF [-- ARGS...]", file=sys.stderr)
        return 2
    for tool in ("skopeo", "umoci", "runc"):
        if shutil.which(tool) is None:
            print(f"runimage: {tool} is not installed (make deps installs it)", file=sys.stderr)
            return 2
    ref, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    result = run_image(ref, rest)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
