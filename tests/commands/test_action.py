"""The GitHub composite action (action.yml): its structure, and its shell steps run for
real in a scratch directory (a private venv, a private DOCKER_CONFIG, a real registry)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kodev import REPO_ROOT

ACTION = REPO_ROOT / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
INPUT_REF = re.compile(r"\binputs\.([A-Za-z0-9_-]+)")


def load_action() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return data


def expressions(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [e for v in value.values() for e in expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in expressions(v)]
    return EXPRESSION.findall(value) if isinstance(value, str) else []


def test_action_structure() -> None:
    action = load_action()
    assert action["name"] and action["description"]
    assert action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    assert {"version", "registry", "username", "password", "repo", "source"} <= set(inputs)
    for name, spec in inputs.items():
        assert spec.get("description"), name
    steps = action["runs"]["steps"]
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step["shell"] == "bash", step
            # Inputs reach scripts through env only, never pasted into the script text.
            assert not EXPRESSION.search(step["run"]), step["run"]
    referenced = {name for e in expressions(action) for name in INPUT_REF.findall(e)}
    assert referenced <= set(inputs), referenced - set(inputs)
    step_ids = {s["id"] for s in steps if "id" in s}
    for output in action.get("outputs", {}).values():
        (expression,) = EXPRESSION.findall(output["value"])
        assert expression.split(".")[1] in step_ids


def evaluate(expression: str, inputs: dict[str, str]) -> str | bool:
    """The two expression forms action.yml uses: ``inputs.x`` and ``a != '' && ...``."""
    if "!=" in expression:
        return all(inputs[INPUT_REF.fullmatch(part.split("!=")[0].strip()).group(1)] != ""  # type: ignore[union-attr]
                   for part in expression.split("&&"))
    match = INPUT_REF.fullmatch(expression)
    assert match, f"unsupported expression {expression!r}"
    return inputs[match.group(1)]


def substitute(value: str, inputs: dict[str, str]) -> str:
    return EXPRESSION.sub(lambda m: str(evaluate(m.group(1), inputs)), value)


@pytest.mark.registry
def test_action_steps_install_log_in_and_export(tmp_path: Path, registry_basic) -> None:
    scratch = tmp_path / "runner"
    scratch.mkdir()
    source = tmp_path / "checkout"  # a copy: pip builds in the source tree
    source.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / item, source / item)
    shutil.copytree(REPO_ROOT / "kodev", source / "kodev",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    # The "setup-python" step: a Python of our own. Runtime dependencies come from the
    # system site-packages; pip fetches only the build backend (setuptools) from PyPI.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    github_env, github_output = scratch / "github_env", scratch / "github_output"
    github_env.touch()
    github_output.touch()
    inputs = {"version": "latest", "source": str(source), "python-version": "3.11",
              "registry": registry_basic.host, "username": registry_basic.username,
              "password": registry_basic.password, "repo": f"{registry_basic.host}/team"}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KO_", "DOCKER_"))}
    base_env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "DOCKER_CONFIG": str(tmp_path / "docker"), "GITHUB_ENV": str(github_env),
        "GITHUB_OUTPUT": str(github_output),
    })
    ran = []
    for step in load_action()["runs"]["steps"]:
        if "run" not in step:
            continue
        if "if" in step and not evaluate(EXPRESSION.fullmatch(step["if"]).group(1), inputs):  # type: ignore[union-attr]
            continue
        step_env = {k: substitute(str(v), inputs) for k, v in step.get("env", {}).items()}
        env = {**base_env, **step_env}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c",
                               step["run"]], cwd=scratch, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{step['name']}: {proc.stdout}\n{proc.stderr}"
        assert registry_basic.password not in proc.stdout + proc.stderr
        ran.append(step["name"])
    assert ran == ["Install kodev", "Log in to the registry", "Export KO_DOCKER_REPO"]
    assert (venv / "bin" / "kodev").exists()
    assert github_output.read_text().splitlines() == ["version=0.1.0"]
    assert github_env.read_text().splitlines() == [f"KO_DOCKER_REPO={registry_basic.host}/team"]
    auth = json.loads((tmp_path / "docker" / "config.json").read_text())["auths"]
    decoded = base64.b64decode(auth[registry_basic.host]["auth"]).decode()
    assert decoded == f"{registry_basic.username}:{registry_basic.password}"
