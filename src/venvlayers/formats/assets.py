"""Names of published files, shared by release (which uploads them) and deploy (which finds them).

Pure functions, no I/O: which names GitHub gives uploaded files, which file names an
archive may have, and where each layout puts a platform's stack manifest.
"""

from __future__ import annotations

import re

from venvlayers.core.names import plain_name_problem
from venvlayers.core.platforms import PLATFORM_TAG

METADATA_DIR = "__venvstacks__"
MANIFEST_NAME = "venvstacks.json"
INDEX_NAME = "venvstacks-index.json"
SHA256SUMS_NAME = "SHA256SUMS"

# GitHub renames assets with other characters (``app@2-…`` becomes ``app.2-…``). We
# upload under that name ourselves, so the name-based idempotency check still holds.
_UNSAFE_ASSET_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# <install_target>-<platform>[-<archive_build>].<ext>, as written by publish
LAYER_ARCHIVE = re.compile(
    rf"(?P<layer>.+?)-(?P<platform>{PLATFORM_TAG.pattern})(?:-\d+)?"
    r"\.(?:tar\.xz|tar\.zst|tar\.gz|tar\.bz2|zip)"
)
ARCHIVE_SUFFIXES = (".tar.xz", ".tar.zst", ".tar.gz", ".tar.bz2", ".zip")


def github_asset_name(name: str) -> str:
    """The name GitHub gives an uploaded file (versioned layers' ``@`` becomes ``.``)."""
    return _UNSAFE_ASSET_CHARS.sub(".", name)


def platform_manifest_name(platform: str) -> str:
    """A platform's manifest as a flat file (venvstacks' ``--tag-outputs`` name, release asset)."""
    return f"venvstacks-{platform}.json"


def manifest_candidates(platform: str) -> list[str]:
    """Where a publish, merge or release folder may hold ``platform``'s manifest, best first.

    venvstacks' layouts (``__venvstacks__/venvstacks-<platform>.json`` with
    ``--tag-outputs``, ``__venvstacks__/venvstacks.json`` without), and the flat files of
    a release.
    """
    tagged = platform_manifest_name(platform)
    return [
        f"{METADATA_DIR}/{tagged}",
        f"{METADATA_DIR}/{MANIFEST_NAME}",
        tagged,
        MANIFEST_NAME,
    ]


def archive_name_problem(name: str) -> str | None:
    """Why ``name`` (from metadata) cannot be an archive beside its manifest, or None.

    Archive names come from files a deployer downloads or a merge copies: they must stay
    plain file names in the archives folder, never a path that leads elsewhere.
    """
    problem = plain_name_problem(name)
    if problem is not None:
        return f"is not a plain file name ({problem}): it would lead outside the archives folder"
    if not name.endswith(ARCHIVE_SUFFIXES):
        return f"does not end in {', '.join(ARCHIVE_SUFFIXES)}"
    return None


def describe_file(name: str) -> str:
    """``archive X of layer L (platform)`` for layer archives, else the name."""
    match = LAYER_ARCHIVE.fullmatch(name)
    if match:
        return f"archive {name} of layer {match['layer']} ({match['platform']})"
    return name


SBOM_SUFFIX = ".cdx.json"


def sbom_name(archive_name: str) -> str:
    """The CycloneDX SBOM published beside an archive: ``<archive stem>.cdx.json``
    (``app-x-linux_x86_64-1.tar.xz`` -> ``app-x-linux_x86_64-1.cdx.json``)."""
    for suffix in ARCHIVE_SUFFIXES:
        if archive_name.endswith(suffix):
            return archive_name.removesuffix(suffix) + SBOM_SUFFIX
    return archive_name + SBOM_SUFFIX


LAYER_INDEX_SUFFIX = ".index.json.xz"


def layer_index_name(archive_name: str) -> str:
    """The layer index published beside a tar archive (``formats/layer_index``):
    ``<archive stem>.index.json.xz``."""
    for suffix in ARCHIVE_SUFFIXES:
        if archive_name.endswith(suffix):
            return archive_name.removesuffix(suffix) + LAYER_INDEX_SUFFIX
    return archive_name + LAYER_INDEX_SUFFIX
