"""Reading archive members of any format as one stream of checked records."""

from __future__ import annotations

import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from venvlayers.archive.formats import (
    TAR_BLOCK,
    TAR_RECORD,
    ZIP_UNIX,
    ArchiveFormat,
    detect_format,
    zstd,
)
from venvlayers.archive.xz import Digest, HashingFile, Owning, open_xz
from venvlayers.core.errors import ArchiveError


class _CountingReader:
    """Counts decompressed bytes, to tell a complete tar stream from a cut-off one."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def _open_decompressed(
    archive_path: Path, fmt: ArchiveFormat, digest: Digest | None = None
) -> IO[bytes]:
    if fmt is ArchiveFormat.TAR_XZ:
        return open_xz(archive_path, digest=digest)  # multi-stream: on every core
    f = archive_path.open("rb")
    source = f if digest is None else cast(IO[bytes], HashingFile(f, digest))
    return cast(IO[bytes], Owning(cast(IO[bytes], zstd.ZstdFile(source, "rb")), source))


CORRUPT = (
    tarfile.TarError,
    lzma.LZMAError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    zstd.ZstdError,
    NotImplementedError,  # zipfile: unsupported compression method
    UnicodeDecodeError,
    struct.error,  # zipfile: malformed headers
)


def corrupt(archive_path: Path, exc: BaseException, member: str | None = None) -> ArchiveError:
    where = f" (at member {member!r})" if member else ""
    return ArchiveError(
        f"{archive_path}: the archive is truncated or corrupt{where}: {exc}. "
        "Download or build it again."
    )


@dataclass(frozen=True)
class KnownCopy:
    """A file on disk read and found to hold exactly a member's bytes, identified by what
    any later change to it alters: device, inode, size, mtime and ctime (a write sets
    ctime, which no one can set back). Only made when the file had not changed for
    ``racy_seconds`` before it was read (``is_settled``): a second write within one tick
    of the file system's clock could leave all five as they were (git's "racy clean")."""

    identity: tuple[int, int, int, int, int]

    @classmethod
    def of(cls, st: os.stat_result) -> KnownCopy:
        return cls((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))

    def is_same(self, st: os.stat_result) -> bool:
        return KnownCopy.of(st) == self

    @staticmethod
    def is_settled(st: os.stat_result, read_from_ns: int, racy_seconds: float = 2.0) -> bool:
        """``st`` (taken after the read that began at ``read_from_ns``) shows no change
        close enough to that read for a later one to go unseen."""
        newest = max(st.st_mtime_ns, st.st_ctime_ns)
        return newest < read_from_ns - int(racy_seconds * 1e9)


@dataclass
class Member:
    name: str
    kind: Literal["dir", "file", "symlink", "hardlink", "device", "other"]
    mode: int
    size: int
    linkname: str
    open: Callable[[], IO[bytes]] | None
    known_copy: KnownCopy | None = None
    """A file below the extraction's ``reuse_from`` at this member's path holding its
    bytes (``deploy/delta``): hard-linked while it is still the same, without reading."""


def _tar_members(
    archive_path: Path, fmt: ArchiveFormat, digest: Digest | None = None
) -> Iterator[Member]:
    with _open_decompressed(archive_path, fmt, digest) as raw:
        counter = _CountingReader(raw)
        try:
            # Stream mode: one pass, no seeking back into the decompressed data.
            tf = tarfile.open(fileobj=counter, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
        except CORRUPT as exc:
            raise corrupt(archive_path, exc) from exc
        with tf:
            while True:
                try:
                    info = tf.next()
                except CORRUPT as exc:
                    raise corrupt(archive_path, exc) from exc
                if info is None:
                    break
                yield _tar_member(tf, info)
            end = tf.offset
            try:
                while counter.read(TAR_RECORD):
                    pass
            except CORRUPT as exc:
                raise corrupt(archive_path, exc) from exc
        # tarfile stops quietly at a cut-off header; require the end-of-archive marker.
        if counter.count < end + 2 * TAR_BLOCK:
            raise corrupt(archive_path, EOFError("the end-of-archive marker is missing"))


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    name = info.name + ("/" if info.isdir() and not info.name.endswith("/") else "")
    if info.isreg():

        def opener() -> IO[bytes]:
            f = tf.extractfile(info)
            assert f is not None
            return f

        return Member(name, "file", info.mode, info.size, "", opener)
    if info.isdir():
        return Member(name, "dir", info.mode, 0, "", None)
    if info.issym():
        return Member(name, "symlink", info.mode, 0, info.linkname, None)
    if info.islnk():
        return Member(name, "hardlink", info.mode, 0, info.linkname, None)
    if info.ischr() or info.isblk() or info.isfifo():
        return Member(name, "device", info.mode, 0, "", None)
    return Member(name, "other", info.mode, 0, "", None)


def _zip_members(archive_path: Path) -> Iterator[Member]:
    try:
        zf = zipfile.ZipFile(archive_path)
    except CORRUPT as exc:
        raise corrupt(archive_path, exc) from exc
    with zf:
        for info in zf.infolist():
            yield _zip_member(archive_path, zf, info)


def _zip_member(archive_path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    unix_mode = info.external_attr >> 16 if info.create_system == ZIP_UNIX else 0
    fmt = stat.S_IFMT(unix_mode)
    name = info.filename
    if info.flag_bits & 0x1:
        return Member(name, "other", 0, 0, "encrypted", None)

    def opener() -> IO[bytes]:
        return zf.open(info)

    if info.is_dir() or fmt == stat.S_IFDIR:
        return Member(name if name.endswith("/") else name + "/", "dir", 0o755, 0, "", None)
    if fmt == stat.S_IFLNK:
        if info.file_size > 4096:
            return Member(name, "other", 0, 0, "oversized symlink", None)
        try:
            target = zf.read(info).decode("utf-8")
        except CORRUPT as exc:
            raise corrupt(archive_path, exc, name) from exc
        return Member(name, "symlink", 0o777, 0, target, None)
    if fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        return Member(name, "device", unix_mode, 0, "", None)
    if fmt not in (0, stat.S_IFREG):
        return Member(name, "other", unix_mode, 0, "", None)
    mode = unix_mode & 0o777 if unix_mode else 0o644
    return Member(name, "file", mode, info.file_size, "", opener)


def members(archive_path: Path, digest: Digest | None = None) -> Iterator[Member]:
    """The archive's members; a tar archive's bytes also go to ``digest`` as they are read
    (all of them once the members have been read to the end). Zip archives are read by
    seeking around, so ``digest`` gets nothing from them."""
    fmt = detect_format(archive_path)
    if fmt is ArchiveFormat.ZIP:
        return _zip_members(archive_path)
    return _tar_members(archive_path, fmt, digest)


def iter_archive_members(archive_path: Path) -> Iterator[str]:
    """Member names in archive order; folders end with '/' for every format."""
    for member in members(archive_path):
        yield member.name
