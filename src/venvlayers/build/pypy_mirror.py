"""PyPy release archives in a runtime mirror (``venvlayers runtime-mirror pypy3.Y-v….tar.gz``).

A PyPy release is named by PyPy's own version (``pypy3.11-v7.3.19-linux64.tar.bz2``), but
uv lists it by the Python version it implements (``pypy-3.11.11-linux-x86_64-gnu``): that
version is read from the ``PY_VERSION`` line of the archive's ``include/pypy3.Y/patchlevel.h``,
so the entry says exactly what the archive holds. The archive's one top folder must be its
own name without the extension, as in every PyPy release (uv strips it when installing).

uv 0.13 unpacks ``.tar.gz`` and ``.tar.zst`` runtimes but not ``.tar.bz2``, the compression
PyPy publishes for Linux and macOS: such an archive is refused with the repacking to do.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from pathlib import Path
from typing import Any

from venvlayers.build.runtime_mirror import RuntimeMirrorError, open_tar_stream

# pypy3.11-v7.3.19-linux64.tar.gz: the Python minor version, PyPy's version, its platform
_PYPY_NAME_RE = re.compile(
    r"^(?P<top>pypy(?P<minor>3\.\d+)-v(?P<pypy>\d+\.\d+\.\d+)-(?P<platform>[a-z0-9_]+))"
    r"\.(?P<ext>tar\.gz|tar\.zst|tar\.bz2|zip)\Z"
)
#: PyPy's platform names -> uv's (os, arch, libc)
_PLATFORMS = {
    "linux64": ("linux", "x86_64", "gnu"),
    "aarch64": ("linux", "aarch64", "gnu"),
    "macos_arm64": ("darwin", "aarch64", "none"),
    "macos_x86_64": ("darwin", "x86_64", "none"),
}
_PY_VERSION_RE = re.compile(rb'^#define\s+PY_VERSION\s+"(\d+\.\d+\.\d+)"', re.MULTILINE)


def pypy_entry_fields(archive: Path) -> dict[str, Any]:
    """``version``, ``os_name``, ``arch``, ``libc`` and ``build`` of a PyPy release archive."""
    match = _PYPY_NAME_RE.match(archive.name)
    if match is None:
        raise RuntimeMirrorError(
            f"{archive.name} is not named like a PyPy release archive"
            " (pypyX.Y-vA.B.C-PLATFORM.tar.gz, e.g. pypy3.11-v7.3.19-linux64.tar.gz)",
            path=archive,
        )
    if match["platform"] not in _PLATFORMS:
        known = ", ".join(sorted(_PLATFORMS))
        raise RuntimeMirrorError(
            f"{archive.name}: PyPy platform {match['platform']!r} cannot be mirrored for uv"
            f" (Windows releases are zip archives uv does not install from a mirror);"
            f" use one of {known}",
            path=archive,
        )
    if match["ext"] in {"tar.bz2", "zip"}:
        raise RuntimeMirrorError(
            f"{archive.name}: uv cannot unpack a .{match['ext']} runtime; repack it as"
            f" {match['top']}.tar.gz with the same top folder",
            path=archive,
        )
    os_name, arch, libc = _PLATFORMS[match["platform"]]
    version = _python_version(archive, match["top"], match["minor"])
    return {"version": version, "os_name": os_name, "arch": arch, "libc": libc}


def _python_version(archive: Path, top: str, minor: str) -> str:
    """The Python version in the archive's ``patchlevel.h``; the archive's layout checked."""
    header = f"{top}/include/pypy{minor}/patchlevel.h"
    try:
        with archive.open("rb") as f:
            head = f.read(4)
            f.seek(0)
            with tarfile.open(fileobj=open_tar_stream(f, head), mode="r|") as tar:
                for member in tar:
                    if member.name.split("/")[0] != top:
                        raise RuntimeMirrorError(
                            f"{archive}: member {member.name!r} is outside the top folder"
                            f" {top}/ every PyPy release has; download the release again",
                            path=archive,
                        )
                    if member.name == header and member.isfile():
                        content = tar.extractfile(member)
                        found = _PY_VERSION_RE.search(content.read() if content else b"")
                        if found is None:
                            break
                        return found[1].decode("ascii")
    except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError) as exc:
        raise RuntimeMirrorError(
            f"{archive}: not a readable runtime archive ({exc}); download it again", path=archive
        ) from None
    raise RuntimeMirrorError(
        f"{archive}: no PY_VERSION in {header}, so the Python version it implements is"
        " unknown; mirror a complete PyPy release archive",
        path=archive,
    )
