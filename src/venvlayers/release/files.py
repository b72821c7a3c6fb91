"""Which files of a merge output make a release: what a deployer needs, and nothing else.

The stack index, every platform's stack manifest (as a flat ``venvstacks-<platform>.json``
asset, venvstacks' own tagged name) and every archive the index names, with its SBOM
when publish wrote one. Anything else in the folder (reports, notes, stray files) stays
behind, with a warning.
"""

from __future__ import annotations

from pathlib import Path

from venvlayers.core.errors import ReleaseError
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import (
    INDEX_NAME,
    METADATA_DIR,
    SHA256SUMS_NAME,
    archive_name_problem,
    layer_index_name,
    manifest_candidates,
    platform_manifest_name,
    sbom_name,
)
from venvlayers.formats.models import StackIndex, StackManifest, read_model


def platform_manifest(out: Path, platform: str) -> Path | None:
    """``platform``'s manifest inside a publish or merge output folder, any layout."""
    for relative in manifest_candidates(platform):
        if not relative.startswith(METADATA_DIR + "/"):
            continue
        path = out / relative
        if not path.is_file():
            continue
        if relative == f"{METADATA_DIR}/venvstacks.json":
            # venvstacks' untagged name holds one platform: make sure it is this one
            manifest = read_model(StackManifest, path, ReleaseError)
            platforms = {
                m.target_platform
                for ms in manifest.layers.values()
                for m in ms
                if m.target_platform
            }
            if platforms and platforms != {platform}:
                continue
        return path
    return None


def release_files(out: Path, reporter: Reporter) -> dict[str, Path]:
    """Asset name -> local file, sorted by name (SHA256SUMS is added by the caller)."""
    if not out.is_dir():
        raise ReleaseError(f"{out} is not a folder; pass the output folder of `venvlayers merge`")
    index_path = out / INDEX_NAME
    if not index_path.is_file():
        raise ReleaseError(
            f"{index_path} not found; pass the output folder of `venvlayers merge` "
            "(it holds the stack index, the platforms' metadata and the archives)"
        )
    index = read_model(StackIndex, index_path, ReleaseError)
    files: dict[str, Path] = {INDEX_NAME: index_path}
    problems = []
    for platform in index.platforms:
        manifest = platform_manifest(out, platform)
        if manifest is None:
            problems.append(f"no {METADATA_DIR} manifest for {platform}")
        else:
            files[platform_manifest_name(platform)] = manifest
    for layer_name, layer in sorted(index.layers.items()):
        for platform, entry in sorted(layer.platforms.items()):
            name = entry.archive_name
            problem = archive_name_problem(name)
            if problem:
                problems.append(f"archive name {name!r} of {layer_name} ({platform}) {problem}")
                continue
            archive = out / name
            if not archive.is_file():
                problems.append(f"{name} ({layer_name} on {platform}) is missing")
                continue
            files[name] = archive
            for beside in (sbom_name(name), layer_index_name(name)):
                if (out / beside).is_file():
                    files[beside] = out / beside
    if problems:
        raise ReleaseError(f"{index_path}: {'; '.join(problems)}; run `venvlayers merge` again")
    released = set(files.values())
    for stray in sorted(out.iterdir()):
        if stray.name.startswith(".") or stray.name == SHA256SUMS_NAME or stray in released:
            continue
        if stray.is_file():
            reporter.warning(f"{stray}: not named by {INDEX_NAME}; not released")
    return dict(sorted(files.items()))
