"""A PyPy release archive made from Debian's pypy3 packages, for offline PyPy builds.

No PyPy download is reachable from the test machines (downloads.python.org and GitHub are
not), but Debian's package mirror is. Debian's ``pypy3``, ``pypy3-lib`` and ``pypy3-dev``
hold a PyPy that finds its standard library relative to its executable (RUNPATH
``$ORIGIN``), so laid out the way PyPy's own releases are (``bin/pypy3.Y`` beside
``libpypy3.Y-c.so``, ``lib/pypy3.Y``, ``include/pypy3.Y``) it is a relocatable runtime like
theirs. The archive is cached under ``~/.cache/venvlayers-tests/runtimes/`` and rebuilt
only when the packages change.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from rig.runtime import ARCHIVE_MTIME, host_x86_64_linux

#: Bump when the archive's layout changes, so archives cached by older rigs are not reused.
_RIG_VERSION = 2
_PACKAGES = ("pypy3", "pypy3-lib", "pypy3-dev")
_DEB_VERSION_RE = re.compile(r"^pypy3_(?P<pypy>\d+\.\d+\.\d+)[^_]*_amd64\.deb\Z")


def _cache_root() -> Path:
    root = os.environ.get("VENVLAYERS_TEST_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "venvlayers-tests") / "runtimes"


def debian_pypy_archive() -> Path | str:
    """The archive's path, or why none can be made here (a one-line skip reason)."""
    if not host_x86_64_linux():
        return "a PyPy runtime is made from Debian's amd64 packages: x86_64 Linux only"
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "a PyPy runtime is made from Debian's pypy3 packages: needs apt-get and dpkg-deb"
    debs = _cache_root() / "pypy-debs"
    if not _have_debs(debs):
        fetched = _download_debs(debs)
        if fetched is not None:
            return fetched
    main = next(debs.glob("pypy3_*_amd64.deb"))
    match = _DEB_VERSION_RE.match(main.name)
    if match is None:
        return f"unexpected Debian package name {main.name}"
    with tempfile.TemporaryDirectory(prefix="pypy-") as scratch:
        root = Path(scratch) / "root"
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        minor = next((root / "usr/lib").glob("pypy3.*")).name.removeprefix("pypy")
        top = f"pypy{minor}-v{match['pypy']}-linux64"
        archive = _cache_root() / f"pypy-r{_RIG_VERSION}" / f"{top}.tar.gz"
        if archive.exists():
            return archive
        tree = Path(scratch) / top
        _lay_out(root, tree, minor)
        _write_tar_gz(tree, archive)
    return archive


def _have_debs(folder: Path) -> bool:
    return all(any(folder.glob(f"{name}_*.deb")) for name in _PACKAGES)


def _download_debs(folder: Path) -> str | None:
    """Fetch the packages into ``folder`` (all or none); None when they are there."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".debs-", dir=folder.parent) as scratch:
        result = subprocess.run(
            ["apt-get", "download", *_PACKAGES],
            cwd=scratch,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            return f"apt-get download {' '.join(_PACKAGES)} failed: {last}"
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(scratch, folder)
        os.mkdir(scratch)  # TemporaryDirectory removes it again
    return None


def _lay_out(root: Path, tree: Path, minor: str) -> None:
    """Debian's file system layout -> PyPy's release layout."""
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(root / f"usr/bin/pypy{minor}", tree / "bin" / f"pypy{minor}")
    shutil.copy2(root / f"usr/lib/x86_64-linux-gnu/libpypy{minor}-c.so", tree / "bin")
    shutil.copytree(root / f"usr/lib/pypy{minor}", tree / "lib" / f"pypy{minor}", symlinks=True)
    # Debian's marker against pip installing into its system PyPy; PyPy's releases have none
    (tree / "lib" / f"pypy{minor}" / "EXTERNALLY-MANAGED").unlink(missing_ok=True)
    shutil.copytree(root / f"usr/include/pypy{minor}", tree / "include" / f"pypy{minor}")
    for link in ("pypy3", "pypy", "python", "python3", f"python{minor}"):
        (tree / "bin" / link).symlink_to(f"pypy{minor}")


def _write_tar_gz(tree: Path, archive: Path) -> None:
    """A reproducible tar.gz of ``tree`` (its name as the top folder), renamed into place."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = ARCHIVE_MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}")
    with (
        open(partial, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in [tree, *sorted(tree.rglob("*"))]:
            tar.add(path, arcname=path.relative_to(tree.parent), recursive=False, filter=normalise)
    os.replace(partial, archive)
