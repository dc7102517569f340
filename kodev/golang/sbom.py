"""SBOMs for kodev images, built from ``go version -m`` output.

Two formats are produced, both as deterministic JSON bytes (the SBOM is pushed as a
blob, so the same inputs must give the same digest):

* SPDX 2.3, shaped like ko's: the document describes the image, which
  ``DESCENDANT_OF`` its base image and ``CONTAINS`` the main module, which
  ``DEPENDS_ON`` every dependency module.
* CycloneDX 1.5 or 1.6: ``metadata.component`` is the image (base image as a pedigree
  ancestor), ``components`` are the main module and the dependencies.

Nothing here reads the wall clock: every timestamp comes from the image config.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from kodev.errors import BuildError, UsageError
from kodev.oci.mediatypes import CYCLONEDX_JSON, SPDX_JSON
from kodev.oci.reference import parse_reference

SBOM_MEDIA_TYPES = {"spdx": SPDX_JSON, "cyclonedx": CYCLONEDX_JSON}

CycloneDXVersion = Literal["1.5", "1.6"]
JSON = dict[str, Any]

GO_PROXY = "https://proxy.golang.org"
NOASSERTION = "NOASSERTION"
DEVEL = "(devel)"
EPOCH = "1970-01-01T00:00:00Z"
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/kodev/sbom")
_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


# --------------------------------------------------------------------------- build info


@dataclass(frozen=True)
class GoModule:
    """One module line of the build info; ``version`` may be ``(devel)`` or empty."""

    path: str
    version: str
    sum: str | None
    replace: GoModule | None = None


@dataclass(frozen=True)
class GoBuildInfo:
    """What ``go version -m`` reports: toolchain, main package path, modules, build settings."""

    go_version: str
    path: str
    main: GoModule
    deps: tuple[GoModule, ...]
    settings: tuple[tuple[str, str], ...]


@dataclass
class _InfoBuilder:
    """Accumulates lines; ``last`` is the module a following ``=>`` line replaces."""

    go_version: str = ""
    path: str = ""
    main: GoModule | None = None
    deps: list[GoModule] = field(default_factory=list)
    settings: list[tuple[str, str]] = field(default_factory=list)
    last: Literal["main", "dep"] | None = None

    def on_go(self, fields: list[str]) -> None:
        self.go_version = _one_field("go", fields)

    def on_path(self, fields: list[str]) -> None:
        self.path = _one_field("path", fields)

    def on_mod(self, fields: list[str]) -> None:
        if self.main is not None:
            raise ValueError("more than one 'mod' line")
        self.main = _module("mod", fields)
        self.last = "main"

    def on_dep(self, fields: list[str]) -> None:
        self.deps.append(_module("dep", fields))
        self.last = "dep"

    def on_replace(self, fields: list[str]) -> None:
        replacement = _module("=>", fields, allow_empty_version=True)
        if self.last == "main" and self.main is not None:
            self.main = dc_replace(self.main, replace=replacement)
        elif self.last == "dep":
            self.deps[-1] = dc_replace(self.deps[-1], replace=replacement)
        else:
            raise ValueError("'=>' replacement without a module on the previous line")
        self.last = None

    def on_build(self, fields: list[str]) -> None:
        self.settings.append(_parse_setting("\t".join(fields)))

    def finish(self) -> GoBuildInfo:
        if not self.go_version:
            raise ValueError("no Go version")
        if not self.path:
            raise ValueError("no 'path' line")
        if self.main is None:
            raise ValueError("no 'mod' line (binary not built in module mode?)")
        return GoBuildInfo(
            go_version=self.go_version,
            path=self.path,
            main=self.main,
            deps=tuple(self.deps),
            settings=tuple(self.settings),
        )


def _one_field(word: str, fields: list[str]) -> str:
    if len(fields) != 1 or not fields[0]:
        raise ValueError(f"malformed {word!r} line")
    return fields[0]


def _module(word: str, fields: list[str], *, allow_empty_version: bool = False) -> GoModule:
    """Parse ``path version [sum]``; Go prints a trailing tab when the sum is empty."""
    if len(fields) not in (2, 3) or not fields[0]:
        raise ValueError(f"malformed {word!r} line")
    if not fields[1] and not allow_empty_version:
        raise ValueError(f"{word!r} line without a version")
    module_sum = fields[2] if len(fields) == 3 and fields[2] else None
    return GoModule(path=fields[0], version=fields[1], sum=module_sum)


_QUOTED_PREFIX = re.compile(r'"(?:[^"\\]|\\.)*"')
_GO_ESCAPE = re.compile(
    r"""\\(?:([abfnrtv\\"'])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3}))"""
)
_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
}


def _parse_setting(text: str) -> tuple[str, str]:
    """Parse ``key=value``; Go ``strconv.Quote``s a key or value holding spaces, quotes or ``=``."""
    quoted_key = _QUOTED_PREFIX.match(text) if text.startswith('"') else None
    if quoted_key:
        key, rest = _go_unquote(quoted_key.group()), text[quoted_key.end() :]
        if not rest.startswith("="):
            raise ValueError(f"malformed build setting {text!r}")
        value = rest[1:]
    else:
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"malformed build setting {text!r}")
    if not key:
        raise ValueError(f"empty build setting key in {text!r}")
    if value.startswith('"'):
        value = _go_unquote(value)
    return key, value


def _go_unquote(quoted: str) -> str:
    """Undo Go's ``strconv.Quote`` (escapes may encode raw bytes, hence the bytearray)."""
    if len(quoted) < 2 or not (quoted.startswith('"') and quoted.endswith('"')):
        raise ValueError(f"malformed quoted string {quoted!r}")
    body, out, pos = quoted[1:-1], bytearray(), 0
    for match in _GO_ESCAPE.finditer(body):
        out += _literal_bytes(body[pos : match.start()])
        out += _escape_bytes(match)
        pos = match.end()
    out += _literal_bytes(body[pos:])
    return out.decode("utf-8", errors="replace")


def _literal_bytes(chunk: str) -> bytes:
    if "\\" in chunk or '"' in chunk:
        raise ValueError(f"malformed escape in quoted string near {chunk!r}")
    return chunk.encode("utf-8")


def _escape_bytes(match: re.Match[str]) -> bytes:
    simple, hex2, hex4, hex8, octal = match.groups()
    if simple:
        return _SIMPLE_ESCAPES[simple]
    if hex2:
        return bytes([int(hex2, 16)])
    if octal:
        return bytes([int(octal, 8) & 0xFF])
    return chr(int(hex4 or hex8, 16)).encode("utf-8", errors="surrogatepass")


_HEADER_RE = re.compile(r"^(?P<file>.*): (?P<go>(?:devel )?go\d.*)$")


def _body_lines(text: str, builder: _InfoBuilder) -> list[str]:
    """Strip the ``<file>: go1.x`` header (taking the Go version from it) and the tab indent."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and not lines[0].startswith("\t"):
        header = _HEADER_RE.match(lines[0])
        if header:
            builder.go_version = header.group("go")
            lines.pop(0)
    body = []
    for line in lines:
        if line.startswith("\t"):
            line = line[1:]
        elif _header_like(line):
            raise ValueError("output covers more than one binary")
        body.append(line)
    return body


def _header_like(line: str) -> bool:
    """True for a ``<file>: go1.x`` line, i.e. the start of another binary's report."""
    return _HEADER_RE.match(line) is not None


def _dispatch(builder: _InfoBuilder) -> dict[str, Callable[[list[str]], None]]:
    return {
        "go": builder.on_go,
        "path": builder.on_path,
        "mod": builder.on_mod,
        "dep": builder.on_dep,
        "=>": builder.on_replace,
        "build": builder.on_build,
    }


def parse_go_version_m(text: str) -> GoBuildInfo:
    """Parse the stdout of ``go version -m <binary>`` (or ``debug.BuildInfo.String()``).

    Like Go's own ``debug.ParseBuildInfo``, unknown line keywords are ignored so that
    output from newer toolchains still parses. Raises BuildError on anything else odd.
    """
    builder = _InfoBuilder()
    try:
        handlers = _dispatch(builder)
        for line in _body_lines(text, builder):
            if not line.strip():
                continue
            word, _, rest = line.partition("\t")
            handler = handlers.get(word)
            if handler is not None:
                handler(rest.split("\t"))
            elif not re.fullmatch(r"[A-Za-z]+", word):
                raise ValueError(f"unrecognized line {line!r}")
        return builder.finish()
    except ValueError as exc:
        raise BuildError(f"cannot parse `go version -m` output: {exc}", output=text[:4000]) from exc


def read_build_info(binary: Path, *, go: str = "go") -> GoBuildInfo:
    """Run ``go version -m`` on ``binary`` and parse it."""
    return parse_go_version_m(go_version_m(binary, go=go))


def go_version_m(binary: Path, *, go: str = "go") -> str:
    """The raw ``go version -m`` output for ``binary``.

    ``GOTOOLCHAIN=local`` keeps a go.mod in the working directory from triggering a
    toolchain download just to read build info (the format is stable since Go 1.18).
    """
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    try:
        proc = subprocess.run(
            [go, "version", "-m", str(binary)],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            timeout=120,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BuildError(f"cannot run {go!r}: not found", hint="install Go or set PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"`{go} version -m {binary}` timed out") from exc
    if proc.returncode != 0:
        raise BuildError(
            f"`{go} version -m {binary}` failed (exit {proc.returncode})",
            output=proc.stderr + proc.stdout,
            hint="the file must be an executable Go binary built in module mode",
        )
    return proc.stdout


# --------------------------------------------------------------------------- image facts


@dataclass(frozen=True)
class ImageFacts:
    """The facts about a built image (or index) that go into its SBOM.

    ``created`` is the config's RFC 3339 ``created``; ``repository`` is ``registry/name``
    without tag; ``platform`` is ``os/arch[/variant]``; ``tool_version`` is kodev's version.
    """

    digest: str
    media_type: str
    created: str
    repository: str
    base_ref: str | None
    base_digest: str | None
    platform: str | None
    tool_version: str


_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def _utc_timestamp(created: str) -> str:
    """Normalize to ``YYYY-MM-DDThh:mm:ssZ`` in UTC, the only form SPDX accepts.

    Fractional seconds are dropped (as ko's Go layout does); an empty value, i.e. a
    config without ``created``, becomes the Unix epoch.
    """
    if not created:
        return EPOCH
    match = _RFC3339_RE.match(created)
    if not match:
        raise ValueError(f"image created time is not RFC 3339: {created!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    _, sign, off_h, off_m = match.groups()[6:]
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
    tz = timezone(-offset if sign == "-" else offset)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"image created time out of range: {created!r}") from exc
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def _digest_hex(digest: str) -> str:
    match = _DIGEST_RE.match(digest)
    if not match:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


def _platform_qualifiers(platform: str | None) -> dict[str, str]:
    if not platform:
        return {}
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    qualifiers = {"os": parts[0], "arch": parts[1]}
    if len(parts) == 3:
        qualifiers["variant"] = parts[2]
    return qualifiers


# --------------------------------------------------------------------------- purls


def _purl_quote(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encode like the purl reference implementations: ``:`` always stays literal."""
    return quote(text, safe="/:" if keep_slash else ":")


def _purl(ptype: str, path: Sequence[str], version: str | None, qualifiers: dict[str, str]) -> str:
    """Build a purl; qualifiers are emitted sorted by lowercased key, as the spec requires."""
    out = f"pkg:{ptype}/" + "/".join(_purl_quote(seg) for seg in path if seg)
    if version:
        out += "@" + _purl_quote(version)
    pairs = sorted(((k, v) for k, v in qualifiers.items() if v), key=lambda kv: kv[0].lower())
    if pairs:
        out += "?" + "&".join(f"{k}={_purl_quote(v, keep_slash=True)}" for k, v in pairs)
    return out


def go_purl(path: str, version: str | None) -> str:
    """``pkg:golang/<path>@<version>?type=module``.

    Like ko, the first two path elements are lowercased when the path has more than two
    (``github.com/Foo/bar`` becomes ``github.com/foo/bar``), the purl-spec golang rule.
    """
    elements = path.split("/")
    if len(elements) > 2:
        elements = [e.lower() for e in elements[:2]] + elements[2:]
    return _purl("golang", elements, version, {"type": "module"})


def oci_purl(repository: str, digest: str | None, qualifiers: dict[str, str]) -> str:
    """``pkg:oci/<last repo element>@sha256:<hex>?...&repository_url=<repository>``."""
    name = repository.rstrip("/").rsplit("/", 1)[-1].lower() or "image"
    return _purl("oci", [name], digest, {**qualifiers, "repository_url": repository})


def _image_purl(image: ImageFacts) -> str:
    """The image's own purl; also where a malformed digest or platform is rejected."""
    digest = "sha256:" + _digest_hex(image.digest)
    qualifiers = {"mediaType": image.media_type, **_platform_qualifiers(image.platform)}
    return oci_purl(image.repository, digest, qualifiers)


# --------------------------------------------------------------------------- module views


@dataclass(frozen=True)
class _ModuleView:
    """A module as the SBOM reports it: the code actually compiled in."""

    name: str
    version: str | None
    sha256: str | None
    download: str
    purl: str
    comment: str | None


def _is_local_path(path: str) -> bool:
    """Go's ``modfile.IsDirectoryPath``: a replacement pointing at a directory."""
    return (
        path in (".", "..")
        or path.startswith(("./", "../", "/", ".\\", "..\\"))
        or re.match(r"^[A-Za-z]:[\\/]", path) is not None
    )


def _escape_module(text: str) -> str:
    """The module proxy's case encoding: each upper-case letter becomes ``!`` + lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group().lower(), text)


def proxy_url(path: str, version: str) -> str:
    return f"{GO_PROXY}/{_escape_module(path)}/@v/{_escape_module(version)}.zip"


def h1_to_sha256(go_sum: str | None) -> str | None:
    """Hex of a go.sum ``h1:`` hash (base64 SHA-256 of the module's dirhash), as ko reports it."""
    if not go_sum or not go_sum.startswith("h1:"):
        return None
    try:
        raw = base64.b64decode(go_sum[3:], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _real_version(version: str) -> str | None:
    return None if version in ("", DEVEL) else version


def _module_view(module: GoModule) -> _ModuleView:
    rep = module.replace
    if rep is not None and _is_local_path(rep.path):
        return _ModuleView(
            name=module.path,
            version=None,
            sha256=None,
            download=NOASSERTION,
            purl=go_purl(module.path, None),
            comment=f"{module.path} {module.version} replaced by local directory {rep.path}",
        )
    actual = rep or module
    version = _real_version(actual.version)
    comment = f"replaces {module.path} {module.version}" if rep is not None else None
    return _ModuleView(
        name=actual.path,
        version=version,
        sha256=h1_to_sha256(actual.sum),
        download=proxy_url(actual.path, version) if version else NOASSERTION,
        purl=go_purl(actual.path, version),
        comment=comment,
    )


class _Ids:
    """Hands out unique identifiers in call order, so output stays deterministic."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, candidate: str) -> str:
        chosen, n = candidate, 1
        while chosen in self._taken:
            n += 1
            chosen = f"{candidate}-{n}"
        self._taken.add(chosen)
        return chosen


def _spdx_id(ids: _Ids, *parts: str) -> str:
    raw = "-".join(p.replace("/", ".") for p in parts if p)
    return ids.take("SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", raw))


def _dumps(doc: JSON) -> bytes:
    return (json.dumps(doc, indent=2, separators=(",", ": "), ensure_ascii=True) + "\n").encode()


# --------------------------------------------------------------------------- SPDX


@dataclass(frozen=True)
class _BaseImage:
    name: str
    digest: str | None
    purl: str | None


def _base_image(image: ImageFacts) -> _BaseImage | None:
    """The base image, if known; its purl needs a parseable reference."""
    if not image.base_ref and not image.base_digest:
        return None
    if not image.base_ref:
        return _BaseImage(name=image.base_digest or "", digest=image.base_digest, purl=None)
    try:
        ref = parse_reference(image.base_ref)
    except UsageError:
        return _BaseImage(name=image.base_ref, digest=image.base_digest, purl=None)
    digest = image.base_digest or ref.digest
    purl = oci_purl(ref.name, digest, {"tag": ref.tag or ""})
    return _BaseImage(name=ref.name, digest=digest, purl=purl)


def _spdx_package(
    spdx_id: str,
    name: str,
    version: str | None,
    *,
    download: str = NOASSERTION,
    sha256: str | None = None,
    purl: str | None = None,
    purpose: str,
    comment: str | None = None,
) -> JSON:
    pkg: JSON = {"SPDXID": spdx_id, "name": name}
    if version:
        pkg["versionInfo"] = version
    pkg["downloadLocation"] = download
    pkg["filesAnalyzed"] = False
    if sha256:
        pkg["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha256}]
    pkg["licenseConcluded"] = NOASSERTION
    pkg["licenseDeclared"] = NOASSERTION
    pkg["copyrightText"] = NOASSERTION
    if comment:
        pkg["comment"] = comment
    if purl:
        pkg["externalRefs"] = [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            },
        ]
    pkg["primaryPackagePurpose"] = purpose
    return pkg


def _relationship(element: str, kind: str, related: str) -> JSON:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def _spdx_skeleton(image: ImageFacts) -> JSON:
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"sbom-{image.digest}",
        "documentNamespace": f"http://spdx.org/spdxdocs/kodev/{image.digest}",
        "creationInfo": {
            "created": _utc_timestamp(image.created),
            "creators": [f"Tool: kodev-{image.tool_version}"],
        },
        "packages": [],
        "relationships": [],
    }


def _spdx_image_package(ids: _Ids, image: ImageFacts) -> JSON:
    return _spdx_package(
        _spdx_id(ids, image.digest),
        image.repository or image.digest,
        image.digest,
        purl=_image_purl(image),
        sha256=_digest_hex(image.digest),
        purpose="CONTAINER",
    )


def _spdx_module_package(ids: _Ids, view: _ModuleView, purpose: str) -> JSON:
    return _spdx_package(
        _spdx_id(ids, view.name, view.version or ""),
        view.name,
        view.version,
        download=view.download,
        sha256=view.sha256,
        purl=view.purl,
        purpose=purpose,
        comment=view.comment,
    )


def spdx_document(info: GoBuildInfo, image: ImageFacts) -> bytes:
    """SPDX 2.3 JSON for one image: image, base image, main module, dependency modules."""
    ids, doc = _Ids(), _spdx_skeleton(image)
    packages: list[JSON] = doc["packages"]
    relationships: list[JSON] = doc["relationships"]

    image_pkg = _spdx_image_package(ids, image)
    packages.append(image_pkg)
    relationships.append(_relationship("SPDXRef-DOCUMENT", "DESCRIBES", image_pkg["SPDXID"]))

    base = _base_image(image)
    if base is not None:
        base_pkg = _spdx_package(
            _spdx_id(ids, "base", base.digest or ""),
            base.name,
            base.digest,
            purl=base.purl,
            sha256=_digest_hex(base.digest) if base.digest else None,
            purpose="CONTAINER",
        )
        packages.append(base_pkg)
        relationships.append(
            _relationship(image_pkg["SPDXID"], "DESCENDANT_OF", base_pkg["SPDXID"])
        )

    main_pkg = _spdx_module_package(ids, _module_view(info.main), "APPLICATION")
    packages.append(main_pkg)
    relationships.append(_relationship(image_pkg["SPDXID"], "CONTAINS", main_pkg["SPDXID"]))

    for dep in info.deps:
        dep_pkg = _spdx_module_package(ids, _module_view(dep), "LIBRARY")
        packages.append(dep_pkg)
        relationships.append(_relationship(main_pkg["SPDXID"], "DEPENDS_ON", dep_pkg["SPDXID"]))
    return _dumps(doc)


def spdx_index_document(children: list[ImageFacts], index: ImageFacts) -> bytes:
    """SPDX 2.3 JSON for an image index: each platform image is a ``VARIANT_OF`` the index."""
    ids, doc = _Ids(), _spdx_skeleton(index)
    index_pkg = _spdx_image_package(ids, index)
    doc["packages"].append(index_pkg)
    doc["relationships"].append(_relationship("SPDXRef-DOCUMENT", "DESCRIBES", index_pkg["SPDXID"]))
    for child in children:
        child_pkg = _spdx_image_package(ids, child)
        doc["packages"].append(child_pkg)
        doc["relationships"].append(
            _relationship(child_pkg["SPDXID"], "VARIANT_OF", index_pkg["SPDXID"])
        )
    return _dumps(doc)


# --------------------------------------------------------------------------- CycloneDX


def _serial_number(digest: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_SERIAL_NAMESPACE, digest)}"


def _cdx_hashes(sha256: str | None) -> list[JSON]:
    return [{"alg": "SHA-256", "content": sha256}] if sha256 else []


def _cdx_component(
    ctype: str, bom_ref: str | None, name: str, version: str | None, **extra: Any
) -> JSON:
    component: JSON = {"type": ctype}
    if bom_ref:
        component["bom-ref"] = bom_ref
    component["name"] = name
    if version:
        component["version"] = version
    component.update({k: v for k, v in extra.items() if v})
    return component


def _cdx_image(image: ImageFacts, bom_ref: str) -> JSON:
    return _cdx_component(
        "container",
        bom_ref,
        image.repository or image.digest,
        image.digest,
        hashes=_cdx_hashes(_digest_hex(image.digest)),
        purl=_image_purl(image),
    )


def _cdx_base(base: _BaseImage) -> JSON:
    sha = _digest_hex(base.digest) if base.digest else None
    return _cdx_component(
        "container", None, base.name, base.digest, hashes=_cdx_hashes(sha), purl=base.purl
    )


def _cdx_module(view: _ModuleView, bom_ref: str) -> JSON:
    refs = [{"type": "distribution", "url": view.download}] if view.download != NOASSERTION else []
    return _cdx_component(
        "library",
        bom_ref,
        view.name,
        view.version,
        description=view.comment,
        hashes=_cdx_hashes(view.sha256),
        purl=view.purl,
        externalReferences=refs,
    )


def _cdx_skeleton(image: ImageFacts, component: JSON, spec_version: CycloneDXVersion) -> JSON:
    if spec_version not in ("1.5", "1.6"):
        raise ValueError(f"unsupported CycloneDX version {spec_version!r}")
    tool = {"type": "application", "name": "kodev", "version": image.tool_version}
    return {
        "$schema": f"http://cyclonedx.org/schema/bom-{spec_version}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": spec_version,
        "serialNumber": _serial_number(image.digest),
        "version": 1,
        "metadata": {
            "timestamp": _utc_timestamp(image.created),
            "tools": {"components": [tool]},
            "component": component,
        },
        "components": [],
        "dependencies": [],
    }


def cyclonedx_document(
    info: GoBuildInfo, image: ImageFacts, *, spec_version: CycloneDXVersion = "1.6"
) -> bytes:
    """CycloneDX JSON for one image.

    The serial number is a UUIDv5 of the image digest, so rebuilding the same image
    yields the same BOM. Dependencies of dependency modules are unknown (build info is
    flat), so only the image -> main -> deps edges are recorded.
    """
    ids = _Ids()
    image_ref = ids.take(_image_purl(image))
    image_component = _cdx_image(image, image_ref)
    base = _base_image(image)
    if base is not None:
        image_component["pedigree"] = {"ancestors": [_cdx_base(base)]}
    doc = _cdx_skeleton(image, image_component, spec_version)

    main_view = _module_view(info.main)
    main_ref = ids.take(main_view.purl)
    doc["components"].append(_cdx_module(main_view, main_ref))
    dep_refs = []
    for dep in info.deps:
        view = _module_view(dep)
        dep_refs.append(ids.take(view.purl))
        doc["components"].append(_cdx_module(view, dep_refs[-1]))
    doc["dependencies"] = [
        {"ref": image_ref, "dependsOn": [main_ref]},
        {"ref": main_ref, "dependsOn": dep_refs},
    ]
    return _dumps(doc)


def cyclonedx_index_document(
    children: list[ImageFacts], index: ImageFacts, *, spec_version: CycloneDXVersion = "1.6"
) -> bytes:
    """CycloneDX JSON for an image index: the platform images are its components."""
    ids = _Ids()
    index_ref = ids.take(_image_purl(index))
    doc = _cdx_skeleton(index, _cdx_image(index, index_ref), spec_version)
    child_refs = _append_children(doc["components"], children, ids)
    doc["dependencies"] = [{"ref": index_ref, "dependsOn": child_refs}]
    return _dumps(doc)


def _append_children(
    components: list[JSON], children: Iterable[ImageFacts], ids: _Ids
) -> list[str]:
    refs = []
    for child in children:
        refs.append(ids.take(_image_purl(child)))
        components.append(_cdx_image(child, refs[-1]))
    return refs
