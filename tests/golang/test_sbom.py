"""SBOM generation: parse ``go version -m``, emit SPDX 2.3 and CycloneDX, validate both.

The end-to-end tests build a real Go program (one dependency from the module proxy,
one ``replace`` to a local directory) and check the documents with each format's
own validator library: spdx-tools and cyclonedx-python-lib.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from kodev.errors import BuildError
from kodev.golang.sbom import (
    SBOM_MEDIA_TYPES,
    CycloneDXVersion,
    GoBuildInfo,
    GoModule,
    ImageFacts,
    cyclonedx_document,
    cyclonedx_index_document,
    go_purl,
    h1_to_sha256,
    parse_go_version_m,
    proxy_url,
    read_build_info,
    spdx_document,
    spdx_index_document,
)

GO = shutil.which("go")
needs_go = pytest.mark.skipif(GO is None, reason="the go toolchain is not installed")

UUID_SUM = "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="
UUID_SHA256 = base64.b64decode(UUID_SUM[3:]).hex()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

GO_MOD = """module example.com/SbomApp

go 1.22

require (
\texample.com/Local v0.0.0
\tgithub.com/google/uuid v1.6.0
)

replace example.com/Local => ../local
"""
GO_SUM = f"""github.com/google/uuid v1.6.0 {UUID_SUM}
github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=
"""
MAIN_GO = """package main

import (
\t"fmt"

\tlocal "example.com/Local"
\t"github.com/google/uuid"
)

func main() { fmt.Println(uuid.NewSHA1(uuid.NameSpaceURL, []byte(local.Name()))) }
"""


def digest(char: str) -> str:
    return "sha256:" + char * 64


def image_facts(**overrides: Any) -> ImageFacts:
    values: dict[str, Any] = {
        "digest": digest("a"),
        "media_type": OCI_MANIFEST,
        "created": "2024-05-01T10:20:30.123456789+02:00",
        "repository": "registry.example:5000/team/SbomApp-0123abcd",
        "base_ref": "cgr.dev/chainguard/static:latest",
        "base_digest": digest("b"),
        "platform": "linux/amd64",
        "tool_version": "0.1.0",
    }
    values.update(overrides)
    return ImageFacts(**values)


# --------------------------------------------------------------------------- validators


def assert_valid_spdx(data: bytes, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(data)
    document = parse_file(str(path))
    messages = validate_full_spdx_document(document)
    assert [m.validation_message for m in messages] == []
    parsed: dict[str, Any] = json.loads(data)
    return parsed


@functools.cache
def cyclonedx_validator(spec_version: CycloneDXVersion) -> JsonStrictValidator:
    schema = {"1.5": SchemaVersion.V1_5, "1.6": SchemaVersion.V1_6}[spec_version]
    return JsonStrictValidator(schema)


def assert_valid_cyclonedx(data: bytes, spec_version: CycloneDXVersion) -> dict[str, Any]:
    error = cyclonedx_validator(spec_version).validate_str(data.decode())
    assert error is None, getattr(error, "data", error)
    parsed: dict[str, Any] = json.loads(data)
    assert parsed["specVersion"] == spec_version
    return parsed


def purls_in(node: Any) -> list[str]:
    """Every purl anywhere in a decoded SBOM."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("purl", "referenceLocator")]
        return found + [p for v in node.values() for p in purls_in(v)]
    if isinstance(node, list):
        return [p for v in node for p in purls_in(v)]
    return []


def spdx_package(doc: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [p for p in doc["packages"] if p["name"] == name]
    assert len(matches) == 1, [p["name"] for p in doc["packages"]]
    package: dict[str, Any] = matches[0]
    return package


def relationships(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    ids = {p["SPDXID"]: p["name"] for p in doc["packages"]} | {"SPDXRef-DOCUMENT": "DOCUMENT"}
    return {
        (ids[r["spdxElementId"]], r["relationshipType"], ids[r["relatedSpdxElement"]])
        for r in doc["relationships"]
    }


# --------------------------------------------------------------------------- real build


def _write_program(root: Path) -> Path:
    (root / "local").mkdir()
    (root / "local" / "go.mod").write_text("module example.com/Local\n\ngo 1.22\n")
    (root / "local" / "local.go").write_text(
        'package local\n\nfunc Name() string { return "sbom" }\n'
    )
    app = root / "app"
    (app / "cmd" / "sbomapp").mkdir(parents=True)
    (app / "go.mod").write_text(GO_MOD)
    (app / "go.sum").write_text(GO_SUM)
    (app / "cmd" / "sbomapp" / "main.go").write_text(MAIN_GO)
    return app


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert GO is not None
    root = tmp_path_factory.mktemp("goprog")
    app = _write_program(root)
    binary = root / "sbomapp"
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    proc = subprocess.run(
        [GO, "build", "-trimpath", "-o", str(binary), "./cmd/sbomapp"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return binary


@pytest.fixture(scope="module")
def build_info(go_binary: Path) -> GoBuildInfo:
    return read_build_info(go_binary)


@needs_go
def test_read_build_info_of_real_binary(build_info: GoBuildInfo) -> None:
    assert GO is not None
    go_version = subprocess.run(
        [GO, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert build_info.go_version == go_version
    assert build_info.path == "example.com/SbomApp/cmd/sbomapp"
    assert build_info.main == GoModule("example.com/SbomApp", "(devel)", None)
    assert build_info.deps == (
        GoModule("example.com/Local", "v0.0.0", None, GoModule("../local", "(devel)", None)),
        GoModule("github.com/google/uuid", "v1.6.0", UUID_SUM),
    )
    settings = dict(build_info.settings)
    assert settings["-trimpath"] == "true"
    assert settings["CGO_ENABLED"] == "0"


@needs_go
def test_spdx_of_real_binary_validates(build_info: GoBuildInfo, tmp_path: Path) -> None:
    doc = assert_valid_spdx(spdx_document(build_info, image_facts()), tmp_path)

    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["name"] == f"sbom-{digest('a')}"
    assert doc["documentNamespace"].endswith(f"/{digest('a')}")
    assert doc["creationInfo"] == {
        "created": "2024-05-01T08:20:30Z",
        "creators": ["Tool: kodev-0.1.0"],
    }
    image = "registry.example:5000/team/SbomApp-0123abcd"
    assert relationships(doc) == {
        ("DOCUMENT", "DESCRIBES", image),
        (image, "DESCENDANT_OF", "cgr.dev/chainguard/static"),
        (image, "CONTAINS", "example.com/SbomApp"),
        ("example.com/SbomApp", "DEPENDS_ON", "example.com/Local"),
        ("example.com/SbomApp", "DEPENDS_ON", "github.com/google/uuid"),
    }
    uuid_pkg = spdx_package(doc, "github.com/google/uuid")
    assert uuid_pkg["versionInfo"] == "v1.6.0"
    assert uuid_pkg["downloadLocation"] == (
        "https://proxy.golang.org/github.com/google/uuid/@v/v1.6.0.zip"
    )
    assert uuid_pkg["checksums"] == [{"algorithm": "SHA256", "checksumValue": UUID_SHA256}]
    assert uuid_pkg["externalRefs"][0]["referenceLocator"] == (
        "pkg:golang/github.com/google/uuid@v1.6.0?type=module"
    )
    local_pkg = spdx_package(doc, "example.com/Local")
    assert local_pkg["downloadLocation"] == "NOASSERTION"
    assert "checksums" not in local_pkg and "versionInfo" not in local_pkg
    assert "../local" in local_pkg["comment"]
    main_pkg = spdx_package(doc, "example.com/SbomApp")
    assert "versionInfo" not in main_pkg
    assert spdx_package(doc, image)["externalRefs"][0]["referenceLocator"] == (
        f"pkg:oci/sbomapp-0123abcd@{digest('a')}?arch=amd64&mediaType="
        "application/vnd.oci.image.manifest.v1%2Bjson&os=linux"
        "&repository_url=registry.example:5000/team/SbomApp-0123abcd"
    )


@needs_go
@pytest.mark.parametrize("spec_version", ["1.5", "1.6"])
def test_cyclonedx_of_real_binary_validates(
    build_info: GoBuildInfo, spec_version: CycloneDXVersion
) -> None:
    data = cyclonedx_document(build_info, image_facts(), spec_version=spec_version)
    doc = assert_valid_cyclonedx(data, spec_version)

    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"]["timestamp"] == "2024-05-01T08:20:30Z"
    image = doc["metadata"]["component"]
    assert image["type"] == "container"
    assert image["version"] == digest("a")
    assert image["pedigree"]["ancestors"][0]["name"] == "cgr.dev/chainguard/static"
    by_name = {c["name"]: c for c in doc["components"]}
    assert list(by_name) == ["example.com/SbomApp", "example.com/Local", "github.com/google/uuid"]
    assert all(c["type"] == "library" for c in doc["components"])
    uuid_component = by_name["github.com/google/uuid"]
    assert uuid_component["purl"] == "pkg:golang/github.com/google/uuid@v1.6.0?type=module"
    assert uuid_component["hashes"] == [{"alg": "SHA-256", "content": UUID_SHA256}]
    assert "hashes" not in by_name["example.com/Local"]
    main_ref = by_name["example.com/SbomApp"]["bom-ref"]
    assert doc["dependencies"] == [
        {"ref": image["bom-ref"], "dependsOn": [main_ref]},
        {"ref": main_ref, "dependsOn": [c["bom-ref"] for c in doc["components"][1:]]},
    ]


@needs_go
def test_documents_are_deterministic(go_binary: Path, build_info: GoBuildInfo) -> None:
    again = read_build_info(go_binary)
    assert again == build_info
    facts = image_facts()
    assert spdx_document(build_info, facts) == spdx_document(again, facts)
    assert cyclonedx_document(build_info, facts) == cyclonedx_document(again, facts)
    data = spdx_document(build_info, facts)
    assert data.endswith(b"}\n") and data.count(b"\n}\n") == 1


# --------------------------------------------------------------------------- index SBOMs


def index_inputs() -> tuple[list[ImageFacts], ImageFacts]:
    children = [
        image_facts(digest=digest("1"), platform="linux/amd64"),
        image_facts(digest=digest("2"), platform="linux/arm64/v8"),
        image_facts(digest=digest("3"), platform="linux/arm/v7"),
    ]
    index = image_facts(
        digest=digest("f"), media_type=OCI_INDEX, platform=None, base_digest=digest("e")
    )
    return children, index


def test_spdx_index_document_validates(tmp_path: Path) -> None:
    children, index = index_inputs()
    doc = assert_valid_spdx(spdx_index_document(children, index), tmp_path)
    assert doc["name"] == f"sbom-{digest('f')}"
    variants = [r for r in doc["relationships"] if r["relationshipType"] == "VARIANT_OF"]
    assert len(variants) == 3
    assert {r["relatedSpdxElement"] for r in variants} == {doc["packages"][0]["SPDXID"]}
    child_purls = [p["externalRefs"][0]["referenceLocator"] for p in doc["packages"][1:]]
    assert "arch=arm64" in child_purls[1] and "os=linux" in child_purls[1]
    assert "variant=v8" in child_purls[1]
    assert spdx_index_document(children, index) == spdx_index_document(children, index)


@pytest.mark.parametrize("spec_version", ["1.5", "1.6"])
def test_cyclonedx_index_document_validates(spec_version: CycloneDXVersion) -> None:
    children, index = index_inputs()
    data = cyclonedx_index_document(children, index, spec_version=spec_version)
    doc = assert_valid_cyclonedx(data, spec_version)
    assert doc["metadata"]["component"]["version"] == digest("f")
    index_purl = doc["metadata"]["component"]["purl"]
    assert "mediaType=application/vnd.oci.image.index.v1%2Bjson" in index_purl
    assert [c["version"] for c in doc["components"]] == [digest(c) for c in "123"]
    assert doc["dependencies"][0]["dependsOn"] == [c["bom-ref"] for c in doc["components"]]
    assert data == cyclonedx_index_document(children, index, spec_version=spec_version)


# --------------------------------------------------------------------------- synthetic build info

TRICKY = """/ko-app/weird: name: go1.22.1
\tpath\tgithub.com/Acme/Tool/cmd/tool
\tmod\tgithub.com/Acme/Tool\tv1.2.3-0.20240101000000-abcdef012345+dirty\t
\tdep\tgithub.com/BurntSushi/toml\tv1.3.2\th1:o7IhLm0Msx3BaB+n3Ag7L8EVlByGKpq14C8yWiu+lNk=
\tdep\tgithub.com/old/thing\tv1.0.0
\t=>\tgithub.com/new/Thing\tv1.1.0+incompatible\th1:o7IhLm0Msx3BaB+n3Ag7L8EVlByGKpq14C8yWiu+lNk=

\tdep\tgolang.org/x/text\tv0.14.0
\tdep\texample.com/legacy\tv0.1.0
\t=>\t./third_party/legacy\t\t
\tdep\texample.com/a_b\tv1.0.0\tnot-an-h1-sum
\tdep\texample.com/a-b\tv1.0.0
\tbuild\t-ldflags="-s -w -X \\"main.v=a b\\""
\tbuild\t"we=ird"=x
\tbuild\tvcs.modified=true
\tfuture\tsomething new
"""


def test_parse_tricky_text() -> None:
    info = parse_go_version_m(TRICKY.replace("\n", "\r\n"))
    assert info.go_version == "go1.22.1"
    assert info.path == "github.com/Acme/Tool/cmd/tool"
    assert info.main == GoModule(
        "github.com/Acme/Tool", "v1.2.3-0.20240101000000-abcdef012345+dirty", None
    )
    deps = {d.path: d for d in info.deps}
    assert list(deps) == [
        "github.com/BurntSushi/toml",
        "github.com/old/thing",
        "golang.org/x/text",
        "example.com/legacy",
        "example.com/a_b",
        "example.com/a-b",
    ]
    assert deps["github.com/old/thing"].sum is None
    assert deps["github.com/old/thing"].replace == GoModule(
        "github.com/new/Thing",
        "v1.1.0+incompatible",
        "h1:o7IhLm0Msx3BaB+n3Ag7L8EVlByGKpq14C8yWiu+lNk=",
    )
    assert deps["golang.org/x/text"] == GoModule("golang.org/x/text", "v0.14.0", None)
    assert deps["example.com/legacy"].replace == GoModule("./third_party/legacy", "", None)
    assert info.settings == (
        ("-ldflags", '-s -w -X "main.v=a b"'),
        ("we=ird", "x"),
        ("vcs.modified", "true"),
    )


def test_parse_debug_buildinfo_string_format() -> None:
    text = "go\tgo1.23.0\npath\tex.com/m\nmod\tex.com/m\t(devel)\t\nbuild\tGOOS=linux\n"
    info = parse_go_version_m(text)
    assert info == GoBuildInfo(
        "go1.23.0", "ex.com/m", GoModule("ex.com/m", "(devel)", None), (), (("GOOS", "linux"),)
    )


def test_parse_devel_toolchain_header() -> None:
    header = "bin: devel go1.27-abcdef Tue Jan 2 12:00:00 2026 +0000\n"
    text = header + "\tpath\tx.io/m\n\tmod\tx.io/m\t(devel)\n"
    assert parse_go_version_m(text).go_version.startswith("devel go1.27-abcdef")


def test_tricky_documents_validate(tmp_path: Path) -> None:
    info = parse_go_version_m(TRICKY)
    facts = image_facts(base_ref=None, base_digest=None, platform=None)
    doc = assert_valid_spdx(spdx_document(info, facts), tmp_path)
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(set(ids)) == len(ids)
    assert "SPDXRef-Package-example.com.a-b-v1.0.0-2" in ids

    replaced = spdx_package(doc, "github.com/new/Thing")
    assert replaced["versionInfo"] == "v1.1.0+incompatible"
    assert replaced["downloadLocation"] == (
        "https://proxy.golang.org/github.com/new/!thing/@v/v1.1.0+incompatible.zip"
    )
    assert "replaces github.com/old/thing v1.0.0" in replaced["comment"]
    assert "checksums" not in spdx_package(doc, "example.com/a_b")
    assert "checksums" not in spdx_package(doc, "golang.org/x/text")
    assert not any(r["relationshipType"] == "DESCENDANT_OF" for r in doc["relationships"])

    for spec_version in ("1.5", "1.6"):
        cdx = assert_valid_cyclonedx(
            cyclonedx_document(info, facts, spec_version=spec_version), spec_version
        )
        refs = [c["bom-ref"] for c in cdx["components"]]
        assert len(set(refs)) == len(refs)
        assert "pedigree" not in cdx["metadata"]["component"]


def test_base_ref_without_digest_validates(tmp_path: Path) -> None:
    info = parse_go_version_m(TRICKY)
    facts = image_facts(base_ref="ubuntu:24.04", base_digest=None)
    doc = assert_valid_spdx(spdx_document(info, facts), tmp_path)
    base = spdx_package(doc, "index.docker.io/library/ubuntu")
    assert base["externalRefs"][0]["referenceLocator"] == (
        "pkg:oci/ubuntu?repository_url=index.docker.io/library/ubuntu&tag=24.04"
    )
    assert_valid_cyclonedx(cyclonedx_document(info, facts), "1.6")


GARBAGE = [
    "",
    "hello world\n",
    "/bin/x: go1.22.1\n",
    "/bin/x: go1.22.1\n\tpath\tx\n",
    "/bin/x: go1.22.1\n\tmod\tx\tv1\n",
    "/bin/x: go1.22.1\n\tpath\tx\n\t=>\ty\tv1\n\tmod\tx\tv1\n",
    "/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\n",
    "/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\tv1\n\tmod\tx\tv1\n",
    "/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\tv1\n\tdep\ty\tv1\th1:x\textra\n",
    "/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\tv1\n\tbuild\tnoequals\n",
    '/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\tv1\n\tbuild\tk="unterminated\n',
    '/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\tv1\n\tbuild\tk="bad\\q"\n',
    "/bin/x: go1.22.1\n\tpath\tx\n\tmod\tx\tv1\n/bin/y: go1.22.1\n\tpath\ty\n",
    "\x7fELF\x02\x01\x01\x00garbage\x00\x00",
    "path x\nmod x v1\n",
]


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_raises_build_error(text: str) -> None:
    with pytest.raises(BuildError):
        parse_go_version_m(text)


@needs_go
def test_read_build_info_of_non_go_file(tmp_path: Path) -> None:
    not_go = tmp_path / "script.sh"
    not_go.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(BuildError, match="failed"):
        read_build_info(not_go)
    not_go.chmod(0o755)
    with pytest.raises(BuildError) as info:
        read_build_info(not_go)
    assert "unrecognized file format" in info.value.output


def test_read_build_info_without_go(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not found"):
        read_build_info(tmp_path / "x", go=str(tmp_path / "no-such-go"))


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("path", "version", "expected"),
    [
        (
            "github.com/google/uuid",
            "v1.6.0",
            "pkg:golang/github.com/google/uuid@v1.6.0?type=module",
        ),
        (
            "github.com/Acme/Tool/v2",
            "v2.0.0",
            "pkg:golang/github.com/acme/Tool/v2@v2.0.0?type=module",
        ),
        ("example.com/Local", None, "pkg:golang/example.com/Local?type=module"),
        ("gopkg.in/yaml.v3", "v3.0.1", "pkg:golang/gopkg.in/yaml.v3@v3.0.1?type=module"),
        (
            "github.com/x/y",
            "v1.0.0+incompatible",
            "pkg:golang/github.com/x/y@v1.0.0%2Bincompatible?type=module",
        ),
        ("mod", "v0.1.0", "pkg:golang/mod@v0.1.0?type=module"),
    ],
)
def test_go_purl(path: str, version: str | None, expected: str) -> None:
    assert go_purl(path, version) == expected


@needs_go
def test_purls_parse_with_reference_library(build_info: GoBuildInfo) -> None:
    """Every purl we emit round-trips through packageurl-python unchanged (up to key case)."""
    children, index = index_inputs()
    documents = [
        spdx_document(build_info, image_facts()),
        cyclonedx_document(build_info, image_facts()),
        spdx_document(parse_go_version_m(TRICKY), image_facts()),
        cyclonedx_index_document(children, index),
    ]
    purls = {p for data in documents for p in purls_in(json.loads(data))}
    assert len(purls) > 10
    for purl in purls:
        assert PackageURL.from_string(purl).to_string() == purl.replace("mediaType=", "mediatype=")


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30.999999999Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T01:20:30-02:30", "2024-05-01T03:50:30Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("", "1970-01-01T00:00:00Z"),
    ],
)
def test_created_is_normalized(created: str, expected: str, tmp_path: Path) -> None:
    info = parse_go_version_m(TRICKY)
    doc = assert_valid_spdx(spdx_document(info, image_facts(created=created)), tmp_path)
    assert doc["creationInfo"]["created"] == expected


@pytest.mark.parametrize(
    "overrides",
    [
        {"created": "yesterday"},
        {"created": "2024-13-01T00:00:00Z"},
        {"created": "0001-01-01T00:00:00+01:00"},
        {"digest": "sha256:abc"},
        {"platform": "linux"},
    ],
)
def test_bad_image_facts_raise(overrides: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        spdx_document(parse_go_version_m(TRICKY), image_facts(**overrides))


def test_serial_number_is_uuid5_of_digest() -> None:
    info = parse_go_version_m(TRICKY)
    first = json.loads(cyclonedx_document(info, image_facts()))["serialNumber"]
    same = json.loads(cyclonedx_document(info, image_facts(created="")))["serialNumber"]
    other = json.loads(cyclonedx_document(info, image_facts(digest=digest("c"))))["serialNumber"]
    assert first == same != other
    assert uuid.UUID(first.removeprefix("urn:uuid:")).version == 5


def test_h1_and_proxy_helpers() -> None:
    assert h1_to_sha256(UUID_SUM) == UUID_SHA256
    assert h1_to_sha256("h1:not base64!") is None
    assert h1_to_sha256("h1:" + base64.b64encode(b"short").decode()) is None
    assert h1_to_sha256("h2:" + UUID_SUM[3:]) is None
    assert h1_to_sha256(None) is None
    assert proxy_url("github.com/BurntSushi/toml", "v1.3.2") == (
        "https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v1.3.2.zip"
    )


def test_media_types() -> None:
    assert SBOM_MEDIA_TYPES == {
        "spdx": "text/spdx+json",
        "cyclonedx": "application/vnd.cyclonedx+json",
    }
