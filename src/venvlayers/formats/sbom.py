"""The CycloneDX SBOM published beside each archive (``<archive stem>.cdx.json``) and inside
each layer: its models (the subset ``publish.sbom`` writes; see
https://cyclonedx.org/docs/1.6/json/), where it lives, and the check ``merge`` runs on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from venvlayers.formats.assets import sbom_name
from venvlayers.formats.models import FileModel, LayerMetadata

SBOM_PROPERTY = "venvlayers:"
"""The namespace of venvlayers' own component properties."""


def sbom_path(archive: Path) -> Path:
    return archive.with_name(sbom_name(archive.name))


class CdxModel(BaseModel):
    """CycloneDX objects: JSON names (``bom-ref``, ``dependsOn``) are the field aliases."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CdxHash(CdxModel):
    alg: str
    content: str


class CdxProperty(CdxModel):
    name: str
    value: str


class CdxExternalReference(CdxModel):
    type: str
    url: str
    hashes: list[CdxHash] | None = None


class CdxComponent(CdxModel):
    type: str
    bom_ref: str = Field(alias="bom-ref")
    name: str
    version: str | None = None
    purl: str | None = None
    cpe: str | None = None
    hashes: list[CdxHash] | None = None
    external_references: list[CdxExternalReference] | None = Field(
        default=None, alias="externalReferences"
    )
    properties: list[CdxProperty] | None = None

    def property(self, name: str) -> str | None:
        return next((p.value for p in self.properties or [] if p.name == name), None)


class CdxLifecycle(CdxModel):
    phase: str


class CdxTools(CdxModel):
    components: list[CdxComponent]


class CdxMetadata(CdxModel):
    timestamp: str
    lifecycles: list[CdxLifecycle] | None = None
    tools: CdxTools | None = None
    component: CdxComponent


class CdxDependency(CdxModel):
    ref: str
    depends_on: list[str] | None = Field(default=None, alias="dependsOn")


class CycloneDxBom(FileModel):
    """``<archive stem>.cdx.json`` beside each archive (and inside the layer): its SBOM."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_url: str | None = Field(default=None, alias="$schema")
    bom_format: str = Field(default="CycloneDX", alias="bomFormat")
    spec_version: str = Field(alias="specVersion")
    serial_number: str | None = Field(default=None, alias="serialNumber")
    version: int = 1
    metadata: CdxMetadata
    components: list[CdxComponent] = Field(default_factory=list)
    dependencies: list[CdxDependency] = Field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


# --- checking a published SBOM (merge) ------------------------------------------------------


def check_sbom(archives_dir: Path, metadata: LayerMetadata, *, required: bool) -> str | None:
    """What is wrong with the SBOM published beside ``metadata``'s archive (None: nothing).

    ``required``: venvlayers wrote this output, so the SBOM must be there (venvstacks'
    own outputs have none; theirs are checked only when present).
    """
    if not metadata.archive_name:
        return None  # the archive itself is reported missing
    path = archives_dir / sbom_name(metadata.archive_name)
    if not path.is_file():
        if not required:
            return None
        return f"SBOM {path.name} is missing from {archives_dir}; upload it with the archive"
    try:
        bom = CycloneDxBom.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        return f"{path}: not a CycloneDX SBOM ({str(exc).splitlines()[0]}); republish this platform"
    component = bom.metadata.component
    expected = {
        "bomFormat": (bom.bom_format, "CycloneDX"),
        "metadata.component.name": (component.name, metadata.install_target),
        "metadata.component.version": (component.version, str(metadata.lock_version)),
        "requirements-hash": (
            component.property(SBOM_PROPERTY + "requirements-hash"),
            metadata.requirements_hash,
        ),
        "target-platform": (
            component.property(SBOM_PROPERTY + "target-platform"),
            metadata.target_platform,
        ),
        "locked-at": (component.property(SBOM_PROPERTY + "locked-at"), metadata.locked_at),
    }
    for field, (found, wanted) in expected.items():
        if wanted is not None and found != wanted:
            return (
                f"{path}: {field} is {found!r} but the layer metadata says {wanted!r};"
                " republish this platform"
            )
    return None
