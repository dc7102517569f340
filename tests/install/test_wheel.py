"""kodev as people install it: a wheel built with ``python -m build``, installed into a
fresh virtual environment, run from a directory with no repository around it.

The wheel's dependencies come from the environment running the tests (a ``.pth`` line in
the fresh environment), so the test needs no network; ``pip check`` then proves that
the wheel's declared requirements are all satisfied there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.fixtures.kodev import DEMO, REPO_ROOT, TOOLS_BIN
from tests.support.runimage import run_image
from tests.support.warm import served_calls, server_log, wait_for_server

pytestmark = pytest.mark.registry

SOURCES = ("pyproject.toml", "README.md", "kodev")


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding kodev's wheel; returns its bin directory."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", root / "dist",
         source, cwd=root)
    wheels = list((root / "dist").glob("kodev-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=root)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", wheels[0], cwd=root)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=root).stdout.strip())
    ours = sysconfig.get_paths()
    (site / "zz_kodev_test_dependencies.pth").write_text(
        "\n".join(dict.fromkeys((ours["purelib"], ours["platlib"]))) + "\n")
    _run(python, "-m", "pip", "check", cwd=root)
    return venv / "bin"


def _env(bin_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:{TOOLS_BIN}:/usr/local/go/bin:/usr/bin:/bin",
            "HOME": str(tmp_path / "home"), "KOCACHE": str(tmp_path / "cache"),
            "NO_COLOR": "1"}


def test_the_wheel_runs_without_the_repository(installed: Path, tmp_path: Path) -> None:
    env = _env(installed, tmp_path)
    where = _run(installed / "python", "-c", "import kodev; print(kodev.__file__)",
                 cwd=tmp_path, env=env).stdout.strip()
    assert where.startswith(str(installed.parent)), where  # the wheel's copy, not the checkout
    supervisor = _run(installed / "python", "-c",
                      "import importlib.resources as r; "
                      "print(r.files('kodev.golang').joinpath('supervisor/main.go').is_file())",
                      cwd=tmp_path, env=env).stdout.strip()
    assert supervisor == "True"  # kodev up --live builds it from the installed package

    info = json.loads(_run(installed / "kodev", "version", "--json", cwd=tmp_path,
                           env=env).stdout)
    assert info["go"]["version"].startswith("go1.")
    assert {"httpx", "pyyaml", "rich", "watchdog", "kubernetes"} <= info["dependencies"].keys()
    assert "missing" not in info["dependencies"].values()

    script = tmp_path / "kodev.bash"
    script.write_text(_run(installed / "kodev", "completion", "bash", cwd=tmp_path,
                           env=env).stdout)
    registered = _run("bash", "-c", f'source "{script}" && complete -p kodev', cwd=tmp_path,
                      env=env).stdout
    assert "-F _kodev" in registered, registered  # bash itself loaded the completion


def test_the_wheel_builds_an_image_that_runs(installed: Path, tmp_path: Path,
                                             registry: object) -> None:
    module = tmp_path / "demo"
    shutil.copytree(DEMO, module)
    assert "defaultBaseImage: kodev://minimal" in (module / ".ko.yaml").read_text()
    env = {**_env(installed, tmp_path), "KO_DOCKER_REPO": f"{registry.host}/wheel",  # type: ignore[attr-defined]
           "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    for name in ("GOPATH", "GOMODCACHE", "GOCACHE", "GOPROXY"):
        value = _run("go", "env", name, cwd=tmp_path).stdout.strip()
        env[name] = value
    servers = tmp_path / "servers"  # the installed entry point starts a warm server
    servers.mkdir(mode=0o700)
    env["KODEV_SERVER_DIR"] = str(servers)
    try:
        ref = _run(installed / "kodev", "build", "--base-import-paths", "./cmd/web",
                   cwd=module, env=env).stdout.strip()
        assert "@sha256:" in ref
        wait_for_server(servers)
        again = _run(installed / "kodev", "build", "--base-import-paths", "./cmd/web",
                     cwd=module, env=env).stdout.strip()
        assert again == ref
        assert served_calls(servers) == 1, server_log(servers)  # on the installed server
    finally:
        _run(installed / "kodev", "server", "stop", cwd=module, env=env)
    run = run_image(ref, ["--once"])
    assert run.returncode == 0, run.stderr
    assert "hello from web" in run.stdout
