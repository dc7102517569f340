"""Unit tests for pure logic: naming, references, platforms, templates, config, layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

import kodev.oci.layers as layers
from kodev.config import load_config
from kodev.errors import ConfigError, UsageError
from kodev.golang.template import render
from kodev.oci.layers import binary_layer_tar, kodata_layer_tar, layer_from_tar
from kodev.oci.platform import PlatformSelection, parse_platform
from kodev.oci.reference import is_loopback_registry, parse_reference
from kodev.publish import image_repository


def test_md5_naming_matches_ko() -> None:
    # ko's own example: github.com/google/ko/cmd/ko -> ko-099ba5bcefdead87f92606265fb99ac0
    name = image_repository("gcr.io/proj", "github.com/google/ko/cmd/ko", "md5")
    assert name == "gcr.io/proj/ko-099ba5bcefdead87f92606265fb99ac0"
    assert image_repository("r", "github.com/A/B/cmd/x", "preserve") == "r/github.com/a/b/cmd/x"
    assert image_repository("r", "github.com/a/b/cmd/x", "base") == "r/x"
    assert image_repository("r/app", "github.com/a/b/cmd/x", "bare") == "r/app"


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "index.docker.io", "library/alpine", "latest", None),
        ("docker.io/user/app:v1", "index.docker.io", "user/app", "v1", None),
        ("localhost:5000/a/b", "localhost:5000", "a/b", "latest", None),
        ("127.0.0.1:5000/a@sha256:" + "a" * 64, "127.0.0.1:5000", "a", None, "sha256:" + "a" * 64),
    ],
)
def test_parse_reference(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_bad_references_are_usage_errors() -> None:
    for text in ("UPPER/case", "a@sha256:short", "host:5000/a:bad tag"):
        with pytest.raises(UsageError):
            parse_reference(text)


def test_loopback_registries_use_plain_http() -> None:
    assert is_loopback_registry("127.0.0.1:5000")
    assert is_loopback_registry("localhost:5000")
    assert is_loopback_registry("registry.localhost")
    assert is_loopback_registry("[::1]:5000")
    assert not is_loopback_registry("10.0.0.1:5000")
    assert not is_loopback_registry("ghcr.io")


def test_platforms() -> None:
    arm = parse_platform("linux/arm/v7")
    assert arm.go_env() == {"GOOS": "linux", "GOARCH": "arm", "GOARM": "7"}
    assert parse_platform("linux/amd64/v3").go_env()["GOAMD64"] == "v3"
    selection = PlatformSelection.parse(["linux/amd64,linux/arm64", "linux/arm64"])
    assert [str(p) for p in selection.platforms] == ["linux/amd64", "linux/arm64"]
    with pytest.raises(UsageError):
        PlatformSelection.parse(["all", "linux/amd64"])
    with pytest.raises(UsageError):
        parse_platform("linux")
    windows = parse_platform("windows/amd64:10.0.20348")
    assert parse_platform("windows/amd64:10.0.20348.2582").matches(windows)


def test_template_rendering() -> None:
    data = {"Env": lambda: {"VERSION": "1.2"}, "Date": lambda: "2020-01-01T00:00:00Z"}
    assert (
        render("-X main.v={{.Env.VERSION}} {{ .Date }}", data, where="t")
        == "-X main.v=1.2 2020-01-01T00:00:00Z"
    )
    assert render('{{ index .Env "VERSION" }}', data, where="t") == "1.2"
    with pytest.raises(ConfigError, match="VERSION2"):
        render("{{.Env.VERSION2}}", data, where="t")
    with pytest.raises(ConfigError):
        render("{{ if .Env.X }}y{{ end }}", data, where="t")


def test_config_env_overrides_and_case_insensitive_keys(tmp_path: Path) -> None:
    (tmp_path / ".ko.yaml").write_text(
        "DefaultBaseImage: base:1\nbaseImageOverrides:\n  Example.com/A: other:2\n"
        "builds:\n- id: x\n  main: ./cmd/x\n  flags: -tags netgo\n  ldflags: -s -w\n"
    )
    config = load_config(tmp_path, {"KO_DEFAULTPLATFORMS": "linux/arm64,linux/amd64"})
    assert config.default_base_image == "base:1"
    assert config.base_image_for("example.com/a") == "other:2"
    assert config.default_platforms == ("linux/arm64", "linux/amd64")
    assert config.builds[0].flags == ("-tags", "netgo")
    assert config.builds[0].ldflags == ("-s -w",)
    assert load_config(tmp_path, {"KO_DEFAULTBASEIMAGE": "env:3"}).default_base_image == "env:3"


def test_layers_are_deterministic_and_well_formed(tmp_path: Path) -> None:
    binary = tmp_path / "app"
    binary.write_bytes(b"\x7fELF" + bytes(range(256)) * 100)
    first = layer_from_tar(binary_layer_tar(binary, "app"))
    second = layer_from_tar(binary_layer_tar(binary, "app"))
    assert first.digest == second.digest and first.diff_id == second.diff_id
    raw = gzip.decompress(first.read())
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == first.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["ko-app/app"].mode == 0o555
    assert members["ko-app/app"].uid == 0 and members["ko-app/app"].mtime == 0


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, 3 * (1 << 20) + 7])
def test_block_gzip_is_the_same_on_any_number_of_cores(
    size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers are compressed in 1 MiB blocks on several threads: the bytes must not depend
    on how many ran (a 2-core laptop and a 64-core CI runner give one digest), and the
    result must be a gzip file that gzip(1) itself accepts and expands to the input."""
    # compressible but not trivial: a vocabulary of random words in a random order
    rng = random.Random(size)
    words = [rng.randbytes(rng.randint(2, 12)) for _ in range(300)]
    raw = b"".join(rng.choice(words) for _ in range(size // 6 + 1))[:size]
    outputs = set()
    for threads in (1, 2, 5):
        monkeypatch.setattr(layers, "_COMPRESS_THREADS", threads)
        compressed = layers.gzip_deterministic(raw)
        outputs.add(compressed)
        blob = tmp_path / f"layer-{threads}.gz"
        blob.write_bytes(compressed)
        expanded = subprocess.run(["gzip", "-dc", str(blob)], capture_output=True, check=True)
        assert expanded.stdout == raw
    assert len(outputs) == 1


def test_kodata_follows_links_inside_the_root_and_rejects_escapes(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    kodata = root / "cmd" / "kodata"
    kodata.mkdir(parents=True)
    (root / "shared.txt").write_text("shared")
    (kodata / "link.txt").symlink_to(root / "shared.txt")
    raw = kodata_layer_tar(kodata, allowed_root=root, mtime=42)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        link = tar.getmember("var/run/ko/link.txt")
        assert link.isfile() and link.mtime == 42
        assert tar.extractfile(link).read() == b"shared"  # type: ignore[union-attr]
    (kodata / "escape.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "elsewhere.txt").write_text("x")
    with pytest.raises(UsageError, match="outside"):
        kodata_layer_tar(kodata, allowed_root=root)


def test_goflags_come_from_the_environment_else_the_go_env_file(tmp_path: Path) -> None:
    from kodev.golang.builder import goflags

    goenv = tmp_path / "goenv"
    goenv.write_text("GOFLAGS=-ldflags=-X=main.v=file\n")
    assert goflags({"GOENV": str(goenv)}) == ["-ldflags=-X=main.v=file"]
    assert goflags({"GOENV": str(goenv), "GOFLAGS": ""}) == ["-ldflags=-X=main.v=file"]
    assert goflags({"GOENV": str(goenv), "GOFLAGS": "-mod=mod"}) == ["-mod=mod"]
    assert goflags({"GOENV": "off", "GOFLAGS": ""}) == []
