"""kodev's Terraform/OpenTofu provider driven by the real ``tofu`` CLI against a real registry.

Every image is checked with tools that are not kodev's (skopeo, crane, umoci + runc), and
"the plan built nothing" is proven by a ``go`` on PATH that records its invocations (it
records the builds of apply, so it demonstrably sees them) plus the provider's own log
line for its decision.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.kodev import crane, skopeo_inspect
from tests.support.runimage import run_image
from tests.terraform.conftest import Tofu, provider_block

pytestmark = [pytest.mark.registry, pytest.mark.slow]

DIGEST_REF = r"@sha256:[0-9a-f]{64}"


def builds(lines: list[str]) -> list[str]:
    """The go invocations that compile or list packages (not ``go env``/``go version``)."""
    return [line for line in lines if line.split(" ", 1)[0] in ("build", "list")]


def build_config(repo: str, module: Path) -> str:
    return provider_block(repo) + (
        'resource "kodev_build" "web" {\n'
        '  importpath  = "./cmd/web"\n'
        f'  working_dir = "{module}"\n'
        "}\n\n"
        'output "image_ref" { value = kodev_build.web.image_ref }\n'
    )


def test_build_apply_plan_change_destroy(tofu: Tofu, registry, demo_module: Path) -> None:
    """init, apply (the image runs), a no-change plan that builds nothing, a source change
    known after apply, destroy."""
    tofu.write(build_config(f"{registry.host}/tf", demo_module))
    tofu.run("init")

    go_before = tofu.go_mark()
    tofu.run("apply", "-auto-approve")
    assert builds(tofu.go_lines(go_before)), "apply ran no go build"
    first = str(tofu.outputs()["image_ref"])
    assert re.fullmatch(rf"{re.escape(registry.host)}/tf/web-[0-9a-f]{{32}}{DIGEST_REF}",
                        first), first
    assert crane("digest", first).strip() == first.split("@", 1)[1]
    ran = run_image(first, ["--once"])
    assert ran.returncode == 0, ran.stderr
    assert "hello from web" in ran.stdout

    # No change: "No changes", and neither go build nor go list ran.
    go_before, log_before = tofu.go_mark(), tofu.log_mark()
    plan = tofu.run("plan", "-detailed-exitcode")
    assert "No changes." in plan.stdout
    assert builds(tofu.go_lines(go_before)) == []
    assert any("up to date (fingerprint): nothing to build" in line
               for line in tofu.provider_messages(log_before)), tofu.log_text(log_before)

    # A source change: image_ref is known after apply; the plan still builds nothing.
    greeting = demo_module / "internal" / "greeting" / "greeting.go"
    greeting.write_text(greeting.read_text().replace("hello from", "hi from"))
    go_before = tofu.go_mark()
    plan = tofu.run("plan", "-detailed-exitcode", expect=2)
    assert re.search(r"~ image_ref\s+= \"[^\"]+\" -> \(known after apply\)", plan.stdout), \
        plan.stdout
    assert builds(tofu.go_lines(go_before)) == []
    tofu.run("apply", "-auto-approve")
    second = str(tofu.outputs()["image_ref"])
    assert second != first
    assert "hi from web" in run_image(second, ["--once"]).stdout

    tofu.run("destroy", "-auto-approve")
    listed = tofu.run("state", "list").stdout
    assert listed.strip() == ""


def test_compile_error_fails_apply_not_plan(tofu: Tofu, registry, demo_module: Path) -> None:
    """Fault: a compile error in a package kodev_build builds, after a good apply.
    User sees: plan succeeds with image_ref "(known after apply)"; apply fails with kodev's
    one line (the compiler's output as the detail), no traceback; the state keeps the last
    good image."""
    tofu.write(build_config(f"{registry.host}/broken", demo_module))
    tofu.run("init")
    tofu.run("apply", "-auto-approve")
    good = str(tofu.outputs()["image_ref"])

    main_go = demo_module / "cmd" / "web" / "main.go"
    main_go.write_text(main_go.read_text() + "\nfunc broken() { undefinedCall() }\n")
    plan = tofu.run("plan", "-detailed-exitcode", expect=2)
    assert "(known after apply)" in plan.stdout
    assert "Error" not in plan.stdout + plan.stderr
    failed = tofu.run("apply", "-auto-approve", expect=1)
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: kodev: error: go build failed for example.com/kodev-demo/"
                      "cmd/web (linux/amd64) (fix the compile error above and run the "
                      "command again)"], failed.stderr
    assert "undefined: undefinedCall" in failed.stderr
    assert "Traceback" not in failed.stderr + tofu.log_text()
    assert str(tofu.outputs()["image_ref"]) == good


def test_resolve_manifests_by_digest(tofu: Tofu, registry, demo_module: Path) -> None:
    """kodev_resolve: every ko:// reference becomes an image by a digest the registry has,
    every other byte of each document is unchanged, and a second plan has no changes."""
    manifests_file = demo_module / "config" / "app.yaml"
    tofu.write(provider_block(f"{registry.host}/resolve") + (
        'resource "kodev_resolve" "app" {\n'
        f'  filenames   = ["{manifests_file}"]\n'
        f'  working_dir = "{demo_module}"\n'
        "}\n\n"
        'output "manifests" { value = kodev_resolve.app.manifests }\n'
    ))
    tofu.run("init")
    tofu.run("apply", "-auto-approve")
    manifests = tofu.outputs()["manifests"]
    assert isinstance(manifests, list) and len(manifests) == 2

    source_docs = manifests_file.read_text().split("---\n")
    pattern = re.compile(rf"{re.escape(registry.host)}/resolve/[a-z]+-[0-9a-f]{{32}}"
                         rf"{DIGEST_REF}")
    for document, source in zip(manifests, source_docs, strict=True):
        refs = pattern.findall(document)
        assert len(refs) == 1, document
        for ref in refs:
            assert crane("digest", ref).strip() == ref.split("@", 1)[1]
            assert skopeo_inspect(ref, raw=True)["schemaVersion"] == 2
        data = yaml.safe_load(document)
        name = data["metadata"]["name"]
        back = document.replace(refs[0], f"ko://example.com/kodev-demo/cmd/{name}")
        assert back.strip("\n") == source.strip("\n")  # comments and quoting kept

    go_before = tofu.go_mark()
    plan = tofu.run("plan", "-detailed-exitcode")
    assert "No changes." in plan.stdout
    assert builds(tofu.go_lines(go_before)) == []

    # A YAML edit (no Go change): manifests are known after apply.
    manifests_file.write_text(manifests_file.read_text().replace("replicas: 1", "replicas: 2",
                                                                 1))
    plan = tofu.run("plan", "-detailed-exitcode", expect=2)
    assert "manifests" in plan.stdout and "(known after apply)" in plan.stdout


def test_basic_auth_is_sensitive_and_used(tofu: Tofu, registry_basic, demo_module: Path
                                         ) -> None:
    """The provider's basic_auth pushes to its repo's registry with no docker config, and
    the schema marks it sensitive."""
    auth = f"{registry_basic.username}:{registry_basic.password}"
    tofu.write(provider_block(f"{registry_basic.host}/auth",
                              f'  basic_auth = "{auth}"\n') + (
        'resource "kodev_build" "worker" {\n'
        '  importpath  = "./cmd/worker"\n'
        f'  working_dir = "{demo_module}"\n'
        f'  repo        = "{registry_basic.host}/auth/exact"\n'
        "}\n\n"
        'output "image_ref" { value = kodev_build.worker.image_ref }\n'
    ))
    tofu.run("init")
    schema = json.loads(tofu.run("providers", "schema", "-json").stdout)
    provider = schema["provider_schemas"]["registry.opentofu.org/kodev/kodev"]["provider"]
    assert provider["block"]["attributes"]["basic_auth"]["sensitive"] is True
    applied = tofu.run("apply", "-auto-approve")
    assert registry_basic.password not in applied.stdout + applied.stderr + tofu.log_text()
    ref = str(tofu.outputs()["image_ref"])
    assert re.fullmatch(rf"{re.escape(registry_basic.host)}/auth/exact{DIGEST_REF}", ref), ref
    digest = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw",
         f"--creds={auth}", f"docker://{ref}"], capture_output=True, text=True, check=True)
    assert json.loads(digest.stdout)["schemaVersion"] == 2


def test_dev_overrides_plan(tofu_bin: str, tmp_path: Path, registry, demo_module: Path
                            ) -> None:
    """dev_overrides (no init): plan starts the provider from a directory and plans a
    build as known after apply."""
    from tests.terraform.conftest import tofu_env, write_mirror

    script = write_mirror(tmp_path / "mirror")
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "terraform-provider-kodev").symlink_to(script)
    cli_config = ('provider_installation {\n  dev_overrides {\n'
                  f'    "kodev/kodev" = "{plugin_dir}"\n  }}\n  direct {{}}\n}}\n')
    workdir = tmp_path / "infra"
    workdir.mkdir()
    tofu = Tofu(tofu_bin, workdir,
                tofu_env(tmp_path, cli_config, tmp_path / "go-calls", tmp_path / "tofu.log"),
                tmp_path / "go-calls", tmp_path / "tofu.log")
    tofu.write(build_config(f"{registry.host}/dev", demo_module))
    plan = tofu.run("plan", "-detailed-exitcode", expect=2)
    assert "Provider development overrides are in effect" in plan.stdout + plan.stderr
    assert "+ image_ref   = (known after apply)" in plan.stdout
    assert builds(tofu.go_lines()) == []



def test_build_attributes_reach_the_build(tofu: Tofu, registry, demo_module: Path) -> None:
    """ldflags, env, platforms and sbom are kodev's flags: the binary carries the
    ldflags value, and changing one attribute plans a rebuild."""
    def config(version: str) -> str:
        return provider_block(f"{registry.host}/attrs") + (
            'resource "kodev_build" "web" {\n'
            '  importpath  = "./cmd/web"\n'
            f'  working_dir = "{demo_module}"\n'
            f'  ldflags     = ["-X main.goVersion={version}"]\n'
            '  env         = { GOFLAGS = "-buildvcs=false" }\n'
            '  platforms   = ["linux/amd64"]\n'
            '  sbom        = "none"\n'
            "}\n\n"
            'output "image_ref" { value = kodev_build.web.image_ref }\n'
        )

    tofu.write(config("from-terraform"))
    tofu.run("init")
    tofu.run("apply", "-auto-approve")
    ref = str(tofu.outputs()["image_ref"])
    assert "built with: from-terraform" in run_image(ref, ["--once"]).stdout
    assert "No changes." in tofu.run("plan").stdout

    tofu.write(config("changed"))
    plan = tofu.run("plan", "-detailed-exitcode", expect=2)
    assert "(known after apply)" in plan.stdout and "changed" in plan.stdout
