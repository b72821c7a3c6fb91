"""Software bills of materials: one CycloneDX document per published layer.

``publish`` writes ``<archive stem>.cdx.json`` beside each archive and the same document
inside the layer (``share/venv/metadata/sbom.cdx.json``), so a deployed layer keeps it.
The document describes

- the layer itself (``metadata.component``: install target, lock version, platform, hashes
  of its requirements) and the lower layers it runs on (components, and ``dependencies``);
- every distribution installed in the layer (read from its ``*.dist-info`` folders), each
  with its ``pkg:pypi`` purl and the SHA-256 of the very wheel the lock pinned for this
  platform (chosen by the wheel tags the installed distribution records);
- for runtime layers, the CPython it ships (version read from the runtime's headers).

Same inputs, same bytes: the timestamp is the lock time and the serial number is a UUID5 of
the document's content, so two publishes of one build give byte-identical SBOMs.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import quote, urlsplit

from packaging.tags import Tag, parse_tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from venvlayers import __version__
from venvlayers.build.layout import LayerLayout
from venvlayers.core.errors import PublishError
from venvlayers.core.platforms import Platform
from venvlayers.formats.models import LayerMetadata
from venvlayers.formats.sbom import (
    SBOM_PROPERTY,
    CdxComponent,
    CdxDependency,
    CdxExternalReference,
    CdxHash,
    CdxLifecycle,
    CdxMetadata,
    CdxProperty,
    CdxTools,
    CycloneDxBom,
)
from venvlayers.stack.graph import Layer
from venvlayers.stack.spec import LayerKind

SPEC_VERSION = "1.6"
SCHEMA_URL = f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json"
IN_LAYER = "share/venv/metadata/sbom.cdx.json"
"""Where a published layer carries its own SBOM (so ``deploy`` keeps it with the layer)."""

PYPI_SIMPLE = ("https://pypi.org/simple", "https://pypi.org/simple/")
# serial numbers are UUID5s in this namespace over the document's content
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/venvlayers/venvlayers#sbom")

_COMPONENT_TYPE = {
    LayerKind.RUNTIME: "platform",
    LayerKind.FRAMEWORK: "framework",
    LayerKind.APPLICATION: "application",
}


# --- what the lock pins and what the build installed ------------------------------------


@dataclass(frozen=True)
class LockedWheel:
    filename: str
    url: str
    sha256: str
    tags: frozenset[Tag]


@dataclass(frozen=True)
class LockedEntry:
    name: str
    version: str
    index: str
    wheels: tuple[LockedWheel, ...]


@dataclass(frozen=True)
class InstalledDist:
    name: str
    version: str
    tags: frozenset[Tag]
    where: Path


def read_lock_entries(pylock: Path) -> dict[tuple[str, str], LockedEntry]:
    """(canonical name, version) -> what a PEP 751 lock pins, wheels with their hashes."""
    try:
        data = tomllib.loads(pylock.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PublishError(
            f"{pylock}: cannot read the lock ({exc}); run `venvlayers lock`"
        ) from None
    entries: dict[tuple[str, str], LockedEntry] = {}
    for package in data.get("packages", []):
        name, version = str(package.get("name", "")), str(package.get("version", ""))
        wheels = []
        for wheel in package.get("wheels", []):
            # A wheel from --local-wheels is locked by its `path` (relative to the lock),
            # which names no place anyone else can fetch it from: no URL in the SBOM
            url = str(wheel.get("url", ""))
            located = url or str(wheel.get("path", ""))
            filename = str(wheel.get("name") or located.replace("\\", "/").rsplit("/", 1)[-1])
            try:
                tags = parse_wheel_filename(filename)[3]
            except InvalidWheelFilename:
                continue
            sha256 = str((wheel.get("hashes") or {}).get("sha256", ""))
            wheels.append(LockedWheel(filename, url, sha256, frozenset(tags)))
        key = (canonicalize_name(name), version)
        entries[key] = LockedEntry(name, version, str(package.get("index", "")), tuple(wheels))
    return entries


def installed_dists(site: Path) -> list[InstalledDist]:
    """Every distribution in a site-packages folder, from its ``*.dist-info``."""
    found = []
    for info in sorted(site.glob("*.dist-info")) if site.is_dir() else []:
        try:
            metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
            wheel = HeaderParser().parsestr((info / "WHEEL").read_text(encoding="utf-8"))
        except OSError as exc:
            raise PublishError(f"{info}: unreadable ({exc}); rebuild the layer") from None
        tags = frozenset(t for line in wheel.get_all("Tag") or [] for t in parse_tag(line))
        found.append(InstalledDist(metadata["Name"] or "", metadata["Version"] or "", tags, info))
    return found


def installed_wheel(dist: InstalledDist, entry: LockedEntry, layer: str) -> LockedWheel:
    """The locked wheel that was installed: the one whose tags the dist-info records."""
    exact = [w for w in entry.wheels if w.tags == dist.tags]
    overlapping = [w for w in entry.wheels if w.tags & dist.tags]
    for candidates in (exact, overlapping, list(entry.wheels)):
        if len(candidates) == 1:
            return candidates[0]
    raise PublishError(
        f"{dist.where}: layer {layer}: installed {dist.name} {dist.version} matches no single"
        " wheel of its lock; rebuild with `venvlayers build --clean`"
    )


def runtime_version(runtime_dir: Path, fallback: str) -> str:
    """The exact CPython version of a built runtime, from its ``patchlevel.h``."""
    headers = [
        *runtime_dir.glob("include/python3*/patchlevel.h"),
        runtime_dir / "include/patchlevel.h",
    ]
    for header in headers:
        try:
            match = re.search(r'#define\s+PY_VERSION\s+"([^"]+)"', header.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if match:
            return match.group(1)
    return fallback


# --- the document ----------------------------------------------------------------------------


def pypi_purl(name: str, version: str, index: str) -> str:
    purl = f"pkg:pypi/{canonicalize_name(name)}@{quote(version, safe='')}"
    if index and index not in PYPI_SIMPLE:
        purl += "?repository_url=" + quote(index, safe=":/")
    return purl


def _hashes(sha256: str) -> list[CdxHash] | None:
    return [CdxHash(alg="SHA-256", content=sha256)] if sha256 else None


def _properties(values: dict[str, str | None]) -> list[CdxProperty]:
    return [
        CdxProperty(name=SBOM_PROPERTY + key, value=value)
        for key, value in sorted(values.items())
        if value is not None
    ]


def _package(dist: InstalledDist, entry: LockedEntry, wheel: LockedWheel) -> CdxComponent:
    purl = pypi_purl(entry.name, entry.version, entry.index)
    # a URL with credentials in it never reaches a document that gets published
    url = wheel.url if wheel.url and not urlsplit(wheel.url).username else None
    return CdxComponent(
        type="library",
        bom_ref=purl,
        name=canonicalize_name(entry.name),
        version=entry.version,
        purl=purl,
        hashes=_hashes(wheel.sha256),
        external_references=(
            [CdxExternalReference(type="distribution", url=url, hashes=_hashes(wheel.sha256))]
            if url
            else None
        ),
        properties=_properties({"wheel": wheel.filename}),
    )


def layer_ref(install_target: str) -> str:
    return f"venvlayers:layer/{install_target}"


def layer_packages(
    layer: Layer, build_path: Path, pylock: Path, platform: Platform
) -> list[CdxComponent]:
    """One component per distribution installed in the built layer, hashes from the lock."""
    site = build_path / LayerLayout(platform, layer.py_version, layer.implementation).site_dir()
    entries = read_lock_entries(pylock)
    components = []
    for dist in installed_dists(site):
        entry = entries.get((canonicalize_name(dist.name), dist.version))
        if entry is None:
            raise PublishError(
                f"{dist.where}: layer {layer.name}: {dist.name} {dist.version} is installed but"
                f" not in {pylock.name}; rebuild with `venvlayers build --clean`"
            )
        components.append(_package(dist, entry, installed_wheel(dist, entry, layer.name)))
    return sorted(components, key=lambda c: c.bom_ref)


def _cpython(version: str, metadata: LayerMetadata) -> CdxComponent:
    """A runtime layer's interpreter, named as vulnerability databases know it."""
    purl = f"pkg:generic/python@{version}"
    return CdxComponent(
        type="platform",
        bom_ref=purl,
        name="CPython",
        version=version,
        purl=purl,
        cpe=f"cpe:2.3:a:python:python:{version}:*:*:*:*:*:*:*",
        properties=_properties({"python-implementation": metadata.python_implementation}),
    )


def _lower_layers(metadata: LayerMetadata) -> list[CdxComponent]:
    """The layers this one runs on (their own SBOMs list what they hold)."""
    below = [*(metadata.required_layers or []), metadata.runtime_layer or ""]
    return [
        CdxComponent(
            type="platform" if target == metadata.runtime_layer else "framework",
            bom_ref=layer_ref(target),
            name=target,
            properties=_properties({"layer": "lower"}),
        )
        for target in dict.fromkeys(t for t in below if t)
    ]


def _layer_component(layer: Layer, metadata: LayerMetadata, platform: Platform) -> CdxComponent:
    return CdxComponent(
        type=_COMPONENT_TYPE[layer.kind],
        bom_ref=layer_ref(metadata.install_target),
        name=metadata.install_target,
        version=str(metadata.lock_version),
        properties=_properties(
            {
                "layer-name": metadata.layer_name,
                "target-platform": str(platform),
                "requirements-hash": metadata.requirements_hash,
                "locked-at": metadata.locked_at,
                "python-implementation": metadata.python_implementation,
                "app-launch-module": metadata.app_launch_module,
            }
        ),
    )


def layer_sbom(
    layer: Layer,
    metadata: LayerMetadata,
    build_path: Path,
    pylock: Path,
    platform: Platform,
) -> CycloneDxBom:
    """The SBOM of one built layer (``metadata``: its published metadata, archive fields unset)."""
    components = layer_packages(layer, build_path, pylock, platform)
    if layer.kind is LayerKind.RUNTIME:
        components.append(_cpython(runtime_version(build_path, layer.py_version), metadata))
    lower = [] if layer.kind is LayerKind.RUNTIME else _lower_layers(metadata)
    component = _layer_component(layer, metadata, platform)
    tool = f"pkg:pypi/venvlayers@{__version__}"
    bom = CycloneDxBom(
        schema_url=SCHEMA_URL,
        spec_version=SPEC_VERSION,
        metadata=CdxMetadata(
            timestamp=metadata.locked_at,
            lifecycles=[CdxLifecycle(phase="build")],
            tools=CdxTools(
                components=[
                    CdxComponent(
                        type="application",
                        bom_ref=tool,
                        name="venvlayers",
                        version=__version__,
                        purl=tool,
                    )
                ]
            ),
            component=component,
        ),
        components=[*components, *lower],
        dependencies=[
            CdxDependency(
                ref=component.bom_ref,
                depends_on=sorted(c.bom_ref for c in [*components, *lower]) or None,
            )
        ],
    )
    # same content, same serial number: a UUID5 over the document (lock time included)
    content = json.dumps(bom.dump(), sort_keys=True)
    bom.serial_number = f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, content)}"
    return bom
