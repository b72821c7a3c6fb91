"""Archive formats: their names, suffixes and how to tell them apart by content."""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from venvlayers.core.errors import ArchiveError

if TYPE_CHECKING:
    from venvlayers.archive.units import ArchiveLayout

if sys.version_info >= (3, 14):
    from compression import zstd as zstd
else:
    from backports import zstd as zstd

ProgressCallback = Callable[[int, int], None]

ExcludeCallback = Callable[[PurePosixPath], bool]


class ArchiveFormat(StrEnum):
    TAR_XZ = "tar.xz"
    TAR_ZST = "tar.zst"
    ZIP = "zip"


@dataclass(frozen=True)
class ArchiveInfo:
    size: int
    sha256: str
    layout: ArchiveLayout | None = field(default=None, compare=False, repr=False)
    """tar formats: where each member and segment landed (``units``), for the layer index."""


def default_format_for(platform_tag: str) -> ArchiveFormat:
    """zip for Windows targets (no tar there by default), tar.xz elsewhere (as venvstacks)."""
    return ArchiveFormat.ZIP if platform_tag.startswith("win") else ArchiveFormat.TAR_XZ


def archive_suffix(fmt: ArchiveFormat) -> str:
    return "." + ArchiveFormat(fmt).value


# Shared by the writers and readers.
ZIP_UNIX = 3  # zip "made by" Unix: external attributes hold a st_mode
READ_SIZE = 1 << 20
TAR_BLOCK = tarfile.BLOCKSIZE
TAR_RECORD = tarfile.RECORDSIZE

_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def detect_format(archive_path: Path) -> ArchiveFormat:
    """The archive's format, from its first bytes (not its name)."""
    try:
        with archive_path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ArchiveError(f"{archive_path}: cannot read the archive ({exc.strerror}).") from exc
    if head.startswith(_XZ_MAGIC):
        return ArchiveFormat.TAR_XZ
    if head.startswith(_ZSTD_MAGIC):
        return ArchiveFormat.TAR_ZST
    if head.startswith(_ZIP_MAGICS):
        return ArchiveFormat.ZIP
    raise ArchiveError(
        f"{archive_path}: not a tar.xz, tar.zst or zip archive (unrecognized first bytes)."
    )
