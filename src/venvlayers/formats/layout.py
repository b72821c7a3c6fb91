"""Where published and exported metadata lives: venvstacks 0.8.0's layout, and finding it.

A publish (or local export) writes one *metadata set* into ``<output>/__venvstacks__/``::

    venvstacks.json + env_metadata/<layer>.json                          untagged
    venvstacks-<platform>.json + env_metadata/<layer>-<platform>.json    --tag-outputs

beside its archives, exactly where venvstacks 0.8.0 writes them, so deployment code written
for venvstacks finds ours and several platforms' tagged sets share one folder without
colliding. venvlayers adds one file of its own per set, ``venvlayers-publish[-<platform>].json``
(what the publish job ran, for ``merge``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from venvlayers.formats.models import ENV_METADATA_DIR, METADATA_DIR

_MANIFEST = re.compile(r"^venvstacks(?:-(?P<platform>[A-Za-z0-9_]+))?\.json$")
_NOT_PLATFORMS = frozenset({"index"})  # venvstacks-index.json is merge's index, not a manifest


@dataclass(frozen=True, order=True)
class MetadataSet:
    """One platform's manifest and per-layer files, as one publish (or export) wrote them."""

    meta_root: Path
    """The ``__venvstacks__`` folder, holding the manifest and ``env_metadata/`` (archives sit
    in its parent)."""
    platform_tag: str = ""
    """``""`` (untagged) or ``"-<platform>"`` (``--tag-outputs``)."""

    @classmethod
    def for_output(cls, output_dir: Path, tag_platform: str | None) -> MetadataSet:
        """The set a publish into ``output_dir`` writes (tagged when ``tag_platform`` is set)."""
        return cls(output_dir / METADATA_DIR, f"-{tag_platform}" if tag_platform else "")

    @property
    def output_dir(self) -> Path:
        """Where the archives named by this set are."""
        return self.meta_root.parent

    @property
    def tagged(self) -> bool:
        return bool(self.platform_tag)

    @property
    def platform(self) -> str | None:
        """The platform the file names say (None for an untagged set: read its metadata)."""
        return self.platform_tag[1:] or None

    @property
    def manifest(self) -> Path:
        return self.meta_root / f"venvstacks{self.platform_tag}.json"

    def env_metadata(self, layer_name: str) -> Path:
        return self.meta_root / ENV_METADATA_DIR / f"{layer_name}{self.platform_tag}.json"

    @property
    def publish_info(self) -> Path:
        return self.meta_root / f"venvlayers-publish{self.platform_tag}.json"

    def relative(self, path: Path) -> str:
        """``path`` relative to the output folder, with '/' (for indexes and reports)."""
        return path.relative_to(self.output_dir).as_posix()


def _sets_in(meta_root: Path) -> list[MetadataSet]:
    """Every metadata set in a ``__venvstacks__`` folder."""
    found: list[MetadataSet] = []
    try:
        entries = sorted(meta_root.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _MANIFEST.match(entry.name)
        if match and entry.is_file():
            platform = match.group("platform")
            if platform in _NOT_PLATFORMS:
                continue
            found.append(MetadataSet(meta_root, f"-{platform}" if platform else ""))
    return found


def find_metadata_sets(path: Path) -> list[MetadataSet]:
    """The metadata sets at ``path``: a publish output folder, its ``__venvstacks__`` folder,
    or a manifest file itself."""
    if path.is_file():
        match = _MANIFEST.match(path.name)
        if match is None or match.group("platform") in _NOT_PLATFORMS:
            return []
        platform = match.group("platform")
        return [MetadataSet(path.parent, f"-{platform}" if platform else "")]
    if not path.is_dir():
        return []
    if (path / METADATA_DIR).is_dir():
        return _sets_in(path / METADATA_DIR)
    return _sets_in(path)


def find_publish_outputs(root: Path, *, exclude: Path | None = None) -> list[MetadataSet]:
    """The metadata sets in ``root`` (as ``find_metadata_sets``) or, when ``root`` is a plain
    folder, in it and in its direct subfolders: ``actions/download-artifact`` puts each
    artifact in its own subfolder unless ``merge-multiple`` is set. Subfolders resolving to
    ``exclude`` (the merge output) are skipped."""
    if root.is_file() or root.name == METADATA_DIR or root.parent.name == METADATA_DIR:
        return find_metadata_sets(root)
    bases = [root, *sorted(p for p in root.iterdir() if p.is_dir() and not _skipped(p))]
    found: list[MetadataSet] = []
    for base in bases:
        if exclude is not None and base.resolve() == exclude:
            continue
        if (base / METADATA_DIR).is_dir():
            found += find_metadata_sets(base)
    return found


def _skipped(path: Path) -> bool:
    # Hidden folders hold staging folders (and .git); metadata folders are not bases
    return path.name.startswith(".") or path.name == METADATA_DIR
