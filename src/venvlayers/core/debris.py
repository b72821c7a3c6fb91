"""Crash debris: what a killed run leaves behind, removed by the next run.

Every file venvlayers writes goes to a temp name first (``fsutil.atomic_path``:
``.<name>.<random>.tmp``; archives also through ``.<target>.partial.<format>``), and
staging happens in ``_build/_stage``. A run killed half-way (``kill -9``, a full disk,
a cancelled CI job) leaves those behind. The next run cleans them while it holds the run
lock of the folder (``runlock.py``): holding the lock means no live run owns them.
Debris is never published either: every such name starts with a dot, and release and
merge skip hidden files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from venvlayers.core.rmtree import remove_tree_quietly

#: ``fsutil.atomic_path`` temp files (mkstemp's 8 random characters) and partial archives
_DEBRIS_FILE = re.compile(r"^\..+\.(?:[A-Za-z0-9_]{8}\.tmp|partial\.(?:tar\.xz|tar\.zst|zip))$")
#: ``fsutil.replace_dir``'s previous folder and export's staging folders
_DEBRIS_DIR = re.compile(r"^\..+\.(?:old|partial)$")
#: build-folder subfolders that only ever hold one run's scratch work
SCRATCH_DIRS = ("_stage",)
#: Folders being listed only to find debris (dot names) and subfolders: ``cli/replay``
#: notes such a listing by those names alone, so a new stamp or archive beside them (a
#: publish into another folder) is no change to a recorded no-op
SCANNING: set[str] = set()


def clean_folder(folder: Path, *, depth: int = 0) -> list[Path]:
    """Remove debris in ``folder`` (and ``depth`` levels of subfolders); return what went."""
    removed: list[Path] = []
    where = os.path.abspath(folder)
    SCANNING.add(where)
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return removed
    finally:
        SCANNING.discard(where)
    for entry in entries:
        try:
            if entry.is_symlink() or entry.is_file():
                if _DEBRIS_FILE.match(entry.name):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
            elif entry.is_dir():
                if _DEBRIS_DIR.match(entry.name):
                    remove_tree_quietly(entry)
                    removed.append(entry)
                elif depth > 0:
                    removed += clean_folder(entry, depth=depth - 1)
        except OSError:
            continue  # debris we cannot remove is still never published
    return removed


def clean_build_folder(build_dir: Path) -> list[Path]:
    """Debris of earlier runs in a stack's build folder (call with its run lock held)."""
    removed: list[Path] = []
    for name in SCRATCH_DIRS:
        scratch = build_dir / name
        if scratch.exists():
            remove_tree_quietly(scratch)
            removed.append(scratch)
    removed += clean_folder(build_dir, depth=0)
    for sub in ("_stamps", "_uv", "_lock"):
        removed += clean_folder(build_dir / sub, depth=1)
    return removed


def clean_output_folder(output_dir: Path) -> list[Path]:
    """Debris of earlier runs in a publish/export/merge output (call with its lock held)."""
    return clean_folder(output_dir, depth=0) + clean_folder(output_dir / "__venvstacks__", depth=3)


def clean_replaced_folder(folder: Path) -> list[Path]:
    """Staging siblings of a folder replaced as a whole (``.<name>.<random>.merging``)."""
    name = re.escape(folder.name)
    pattern = re.compile(rf"^\.{name}\.(?:[A-Za-z0-9_]{{8}}\.merging|old)$")
    removed: list[Path] = []
    try:
        siblings = sorted(folder.parent.iterdir())
    except OSError:
        return removed
    for entry in siblings:
        if pattern.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            remove_tree_quietly(entry)
            removed.append(entry)
    return removed + clean_output_folder(folder)


def clean_requirements(spec_dir: Path) -> list[Path]:
    """Temp files of interrupted lock writes under ``requirements/``."""
    return clean_folder(spec_dir / "requirements", depth=1)


__all__ = [
    "clean_build_folder",
    "clean_folder",
    "clean_output_folder",
    "clean_replaced_folder",
    "clean_requirements",
]
