"""``kodev skaffold init``: a skaffold.yaml with one kodev custom artifact per ko:// image."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.fixtures.kodev import REPO_ROOT, Kodev

EXAMPLE = REPO_ROOT / "skaffold-plugin" / "skaffold.yaml"
WEB = "example.com/kodev-demo/cmd/web"
WORKER = "example.com/kodev-demo/cmd/worker"


def test_init_writes_one_custom_artifact_per_ko_reference(kodev: Kodev, demo_module: Path) -> None:
    result = kodev.run("skaffold", "init", "-f", "config/")
    assert result.stdout == ""
    assert "2 artifact(s)" in result.stderr and "--default-repo" in result.stderr
    config = yaml.safe_load((demo_module / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v4beta13"
    assert config["kind"] == "Config"
    assert config["manifests"] == {"rawYaml": ["config/app.yaml"]}
    assert config["deploy"] == {"kubectl": {}}
    artifacts = config["build"]["artifacts"]
    assert [a["image"] for a in artifacts] == [f"ko://{WEB}", f"ko://{WORKER}"]
    for artifact, path in zip(artifacts, (WEB, WORKER), strict=True):
        assert artifact["context"] == "."
        assert artifact["custom"] == {
            "buildCommand": f"kodev skaffold build {path}",
            "dependencies": {"command": f"kodev skaffold deps {path}"},
        }
        # Skaffold's build hook: the Docker check for PUSH_IMAGE=false (test_real_skaffold)
        assert artifact["hooks"] == {"before": [{
            "command": ["sh", "-c",
                        'test "$SKAFFOLD_PUSH_IMAGE" = true || exec kodev skaffold check'],
            "os": ["darwin", "linux"]}]}


def test_the_shipped_example_is_what_init_writes_for_the_demo(
    kodev: Kodev, demo_module: Path
) -> None:
    """skaffold-plugin/skaffold.yaml (the example the real-Skaffold test runs) stays in
    step with the generator."""
    kodev.run("skaffold", "init", "-f", "config/app.yaml")
    generated = yaml.safe_load((demo_module / "skaffold.yaml").read_text())
    generated["metadata"]["name"] = "kodev-demo"
    assert yaml.safe_load(EXAMPLE.read_text()) == generated


def test_init_refuses_to_overwrite_without_force(kodev: Kodev, demo_module: Path) -> None:
    target = demo_module / "skaffold.yaml"
    target.write_text("# mine\n")
    refused = kodev.run("skaffold", "init", "-f", "config/", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "kodev: error: skaffold.yaml already exists (pass --force to overwrite it)"]
    assert target.read_text() == "# mine\n"
    kodev.run("skaffold", "init", "-f", "config/", "--force")
    assert "skaffold/v4beta13" in target.read_text()


def test_init_skips_library_packages_and_needs_a_reference(
    kodev: Kodev, demo_module: Path
) -> None:
    extra = demo_module / "config" / "lib.yaml"
    extra.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lib}\nspec:\n  containers:\n"
        "  - name: c\n    image: ko://example.com/kodev-demo/internal/greeting\n")
    result = kodev.run("skaffold", "init", "-f", "config/")
    assert "internal/greeting is package 'greeting', not a main package" in result.stderr
    config = yaml.safe_load((demo_module / "skaffold.yaml").read_text())
    assert len(config["build"]["artifacts"]) == 2
    assert config["manifests"]["rawYaml"] == ["config/app.yaml", "config/lib.yaml"]

    plain = demo_module / "plain.yaml"
    plain.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    none = kodev.run("skaffold", "init", "-f", "plain.yaml", "-o", "other.yaml", check=False)
    assert none.returncode == 2
    assert "no ko:// references in plain.yaml" in none.stderr
    assert not (demo_module / "other.yaml").exists()
    stdin = kodev.run("skaffold", "init", "-f", "-", "-o", "other.yaml", check=False)
    assert stdin.returncode == 2 and "stdin" in stdin.stderr
