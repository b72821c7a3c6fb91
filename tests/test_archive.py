"""Archive writing (reproducible, parallel, standard) and safe extraction (hostile corpus)."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from venvlayers.archive import scan, tuning
from venvlayers.archive import tar as tar_writer
from venvlayers.archive.extract import extract_archive
from venvlayers.archive.formats import (
    ArchiveFormat,
    ArchiveInfo,
    archive_suffix,
    default_format_for,
)
from venvlayers.archive.read import KnownCopy, iter_archive_members
from venvlayers.archive.write import write_archive
from venvlayers.core.errors import ArchiveError

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

MTIME = 1_700_000_000
ALL_FORMATS = list(ArchiveFormat)


def make_tree(root: Path, *, file_mode: int = 0o644, on_disk_mtime: int | None = None) -> Path:
    """A small layer-like tree: text, binary, exec bit, nested folders, symlinks, hard link."""
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "pkg" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "lib" / "pkg" / "__init__.py").write_text("VALUE = 1\n" * 50)
    (root / "lib" / "pkg" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 300)
    (root / "lib" / "pkg" / "ünïcode.txt").write_text("non-ascii name\n")
    (root / "lib" / "pkg" / ("long" * 40 + ".txt")).write_text("long name\n")
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o750)  # any exec bit -> 0o755
    for path in root.rglob("*"):
        if path.is_file() and path.name != "tool":
            path.chmod(file_mode)
    (root / "bin" / "python").symlink_to("../lib/pkg/__init__.py")
    (root / "lib" / "pkg" / "here").symlink_to("sub")
    os.link(root / "lib" / "pkg" / "__init__.py", root / "lib" / "hardlinked.py")
    if on_disk_mtime is not None:
        for path in [root, *root.rglob("*")]:
            os.utime(path, (on_disk_mtime, on_disk_mtime), follow_symlinks=False)
    return root


def big_tree(root: Path) -> Path:
    """Enough content to span several compression chunks once the chunk sizes are shrunk."""
    root.mkdir(parents=True)
    for i in range(6):
        text = "".join(f"line {i} {j} {j * j % 97}\n" for j in range(12_000))
        (root / f"mod{i}.py").write_text(text)
    (root / "blob.bin").write_bytes(hashlib.sha256(b"seed").digest() * 20_000)
    return root


def write(src: Path, dest: Path, fmt: ArchiveFormat, **kwargs: object) -> ArchiveInfo:
    return write_archive(src, dest, root_name="layer", fmt=fmt, mtime=MTIME, **kwargs)  # type: ignore[arg-type]


def snapshot(folder: Path) -> list[tuple[str, str]]:
    """Everything under ``folder`` (hidden entries included) with type and content."""
    result = []
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            result.append((rel, "link:" + os.readlink(path)))
        elif path.is_dir():
            result.append((rel, "dir"))
        else:
            result.append((rel, hashlib.sha256(path.read_bytes()).hexdigest()))
    return result


# --- small API --------------------------------------------------------------------------


def test_default_format_and_suffix() -> None:
    assert default_format_for("win_amd64") is ArchiveFormat.ZIP
    assert default_format_for("linux_x86_64") is ArchiveFormat.TAR_XZ
    assert default_format_for("macosx_arm64") is ArchiveFormat.TAR_XZ
    assert archive_suffix(ArchiveFormat.TAR_XZ) == ".tar.xz"
    assert archive_suffix(ArchiveFormat.TAR_ZST) == ".tar.zst"
    assert archive_suffix(ArchiveFormat.ZIP) == ".zip"


# --- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_same_tree_twice_gives_same_bytes(tmp_path: Path, fmt: ArchiveFormat) -> None:
    src = make_tree(tmp_path / "src")
    first = write(src, tmp_path / f"a{archive_suffix(fmt)}", fmt)
    second = write(src, tmp_path / f"b{archive_suffix(fmt)}", fmt)
    assert first == second
    a = (tmp_path / f"a{archive_suffix(fmt)}").read_bytes()
    assert a == (tmp_path / f"b{archive_suffix(fmt)}").read_bytes()
    assert first.size == len(a)
    assert first.sha256 == hashlib.sha256(a).hexdigest()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_other_folder_mtimes_and_modes_give_same_bytes(tmp_path: Path, fmt: ArchiveFormat) -> None:
    one = make_tree(tmp_path / "one" / "src", file_mode=0o644, on_disk_mtime=1_000_000)
    two = make_tree(tmp_path / "elsewhere" / "deeper" / "x", file_mode=0o664, on_disk_mtime=2_000)
    a = write(one, tmp_path / "a.out", fmt)
    b = write(two, tmp_path / "b.out", fmt)
    assert a == b


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_thread_count_does_not_change_bytes(
    tmp_path: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks so this small tree spans many xz streams / deflate chunks.
    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)
    monkeypatch.setattr(tuning, "ZIP_CHUNK", 64 << 10)
    monkeypatch.setattr(tuning, "ZSTD_FEED", 64 << 10)
    # our zstd jobs are 16 or 32 MiB (tuning.ZSTD_*_JOBS); jobs of 512 KiB (zstd's least)
    # seeing 1/8 of the window before them give several workers work here
    for jobs in (tuning.ZSTD_SMALL_JOBS, tuning.ZSTD_BIG_JOBS):
        monkeypatch.setitem(jobs, zstd.CompressionParameter.job_size, 512 << 10)
        monkeypatch.setitem(jobs, zstd.CompressionParameter.overlap_log, 6)
    src = big_tree(tmp_path / "src")
    infos = {t: write(src, tmp_path / f"t{t}.out", fmt, threads=t) for t in (1, 2, 5)}
    assert len(set(infos.values())) == 1
    # The multi-chunk output is still one readable archive with intact content.
    dest = extract_archive(tmp_path / "t2.out", tmp_path / "x", expected_root="layer")
    assert snapshot(dest) == snapshot(src)


def _zstd_frame_window(data: bytes) -> int:
    """Window size declared by a zstd frame header (RFC 8878, section 3.1.1.1)."""
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    descriptor = data[4]
    assert not descriptor & 0x20, "single-segment frame: no window descriptor"
    exponent, mantissa = data[5] >> 3, data[5] & 7
    base = 1 << (10 + exponent)
    return base + base // 8 * mantissa


def test_zstd_window_fits_the_layer(tmp_path: Path) -> None:
    # A small layer gets zstd's 1 MiB floor; a bigger one the smallest power of two that
    # holds its whole tar stream, so a decoder never needs more memory than the layer.
    small = write(make_tree(tmp_path / "small"), tmp_path / "small.tar.zst", ArchiveFormat.TAR_ZST)
    assert small.size > 0
    assert _zstd_frame_window((tmp_path / "small.tar.zst").read_bytes()[:16]) == 1 << 20

    src = tmp_path / "big"
    src.mkdir()
    (src / "blob.bin").write_bytes(os.urandom(3 << 20))  # incompressible: tar is ~3 MiB
    out = tmp_path / "big.tar.zst"
    info = write(src, out, ArchiveFormat.TAR_ZST)
    assert info.layout is not None  # one frame per unit group: the blob's is the big one
    data = out.read_bytes()
    window = max(_zstd_frame_window(data[s.start : s.start + 16]) for s in info.layout.segments)
    with zstd.open(out, "rb") as stream:
        tar_size = len(stream.read())
    assert window == 1 << 22
    assert tar_size <= window
    # The cap: a frame of any size needs at most 32 MiB (a compressor on zstd's workers
    # holds about ten windows; see archive/tuning.py)
    entry = scan.Entry(rel="x", kind="file", path=src, mode=0o644, size=5 << 30, target="")
    assert tar_writer.zstd_window_log(entry.size) == 25


def test_tar_metadata_is_normalized(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", file_mode=0o666, on_disk_mtime=5)
    out = tmp_path / "a.tar.xz"
    write(src, out, ArchiveFormat.TAR_XZ)
    with tarfile.open(out) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    # folders first (sorted), then the files unit by unit (``archive.units``)
    folders = [m.name for m in members if m.isdir()]
    assert names[: len(folders)] == sorted(folders)
    assert sorted(names) == sorted(set(names))
    assert names[0] == "layer"
    assert all(n == "layer" or n.startswith("layer/") for n in names)
    by_name = {m.name: m for m in members}
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", MTIME)
    assert by_name["layer/lib"].mode == 0o755
    assert by_name["layer/bin/tool"].mode == 0o755
    assert by_name["layer/lib/pkg/__init__.py"].mode == 0o644
    assert by_name["layer/bin/python"].issym()
    assert by_name["layer/bin/python"].linkname == "../lib/pkg/__init__.py"
    # Hard links are stored as plain files.
    assert by_name["layer/lib/hardlinked.py"].isreg()
    assert by_name["layer/lib/hardlinked.py"].size == 500


def test_zip_metadata_and_epoch_clamp(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    out = tmp_path / "a.zip"
    write_archive(src, out, root_name="layer", fmt=ArchiveFormat.ZIP, mtime=0)
    with zipfile.ZipFile(out) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert zf.testzip() is None
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos.values())
    assert infos["layer/"].is_dir()
    assert infos["layer/bin/tool"].external_attr >> 16 == stat.S_IFREG | 0o755
    assert infos["layer/lib/pkg/__init__.py"].external_attr >> 16 == stat.S_IFREG | 0o644
    link = infos["layer/bin/python"]
    assert stat.S_ISLNK(link.external_attr >> 16)
    with zipfile.ZipFile(out) as zf:
        assert zf.read(link) == b"../lib/pkg/__init__.py"


def test_exclude_skips_paths_and_whole_folders(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "lib" / "pkg" / "__pycache__").mkdir()
    (src / "lib" / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"junk")

    def exclude(rel: PurePosixPath) -> bool:
        return rel.name == "__pycache__" or rel == PurePosixPath("bin/tool")

    out = tmp_path / "a.tar.xz"
    write(src, out, ArchiveFormat.TAR_XZ, exclude=exclude)
    names = list(iter_archive_members(out))
    assert "layer/bin/python" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith("bin/tool")]


def test_progress_is_reported_in_steps_not_per_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"f{i}.txt").write_bytes(os.urandom(20_000))
    calls: list[tuple[int, int]] = []
    write(
        src,
        tmp_path / "a.tar.zst",
        ArchiveFormat.TAR_ZST,
        progress=lambda done, total: calls.append((done, total)),
    )
    total = 300 * 20_000
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) < 50


def test_special_file_is_refused_by_name(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    fifo = src / "lib" / "a-fifo"
    os.mkfifo(fifo)
    out = tmp_path / "a.tar.xz"
    with pytest.raises(ArchiveError, match=r"a-fifo.*fifo"):
        write(src, out, ArchiveFormat.TAR_XZ)
    fifo.unlink()
    sock_path = src / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(ArchiveError, match=r"sock.*socket"):
            write(src, out, ArchiveFormat.ZIP)
    # Nothing half-written is left beside the target.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_absolute_symlink_is_refused_when_writing(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "abs").symlink_to("/usr/bin/env")
    with pytest.raises(ArchiveError, match="abs: symlink to the absolute path '/usr/bin/env'"):
        write(src, tmp_path / "a.tar.xz", ArchiveFormat.TAR_XZ)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_bad_root_name_is_refused(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    for bad in ("", "..", "a/b"):
        with pytest.raises(ArchiveError, match="single folder name"):
            write_archive(
                src, tmp_path / "a.zip", root_name=bad, fmt=ArchiveFormat.ZIP, mtime=MTIME
            )


def _elf_binaries(dest: Path) -> Path:
    """A folder of real x86-64 machine code: the compiled core of pydantic (a dependency)."""
    import pydantic_core._pydantic_core as compiled

    dest.mkdir(parents=True)
    code = Path(compiled.__file__).read_bytes()
    (dest / "core.so").write_bytes(code[: 2 << 20])
    return dest


@pytest.mark.skipif(platform.machine() != "x86_64", reason="needs x86-64 binaries")
def test_x86_code_uses_the_x86_filter_which_xz_reads(tmp_path: Path) -> None:
    src = _elf_binaries(tmp_path / "src")
    plain = write(src, tmp_path / "plain.tar.xz", ArchiveFormat.TAR_XZ)
    x86 = write(src, tmp_path / "x86.tar.xz", ArchiveFormat.TAR_XZ, x86_code=True)
    assert x86.size < plain.size  # the point of the filter
    again = write(src, tmp_path / "again.tar.xz", ArchiveFormat.TAR_XZ, x86_code=True, threads=1)
    assert again == x86

    if shutil.which("xz"):
        listing = subprocess.run(
            ["xz", "--robot", "--list", "-vv", str(tmp_path / "x86.tar.xz")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert "--x86" in listing
        assert (
            "--x86"
            not in subprocess.run(
                ["xz", "--robot", "--list", "-vv", str(tmp_path / "plain.tar.xz")],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    if shutil.which("tar"):
        unpacked = tmp_path / "tar-x"
        unpacked.mkdir()
        subprocess.run(
            ["tar", "-J", "-xf", str(tmp_path / "x86.tar.xz"), "-C", str(unpacked)], check=True
        )
        assert snapshot(unpacked / "layer") == snapshot(src)
    dest = extract_archive(tmp_path / "x86.tar.xz", tmp_path / "ours", expected_root="layer")
    assert snapshot(dest) == snapshot(src)


# --- standard tools read what we write -------------------------------------------------


def _tar_supports_zstd() -> bool:
    if shutil.which("tar") is None or shutil.which("zstd") is None:
        return False
    probe = subprocess.run(["tar", "--help"], capture_output=True, text=True)
    return "--zstd" in probe.stdout


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_standard_tools_read_the_archive(
    tmp_path: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)  # several concatenated xz streams
    monkeypatch.setattr(tuning, "ZIP_CHUNK", 64 << 10)  # chunked deflate of big files
    src = big_tree(tmp_path / "src")
    make_tree(src / "tree")
    out = tmp_path / f"a{archive_suffix(fmt)}"
    write(src, out, fmt, threads=3)
    expected = sorted(n.rstrip("/") for n in iter_archive_members(out))
    assert "layer/blob.bin" in expected
    if fmt is ArchiveFormat.ZIP:
        if shutil.which("unzip"):
            subprocess.run(["unzip", "-tq", str(out)], check=True, capture_output=True)
            listing = subprocess.run(
                ["unzip", "-Z1", str(out)], check=True, capture_output=True, text=True
            ).stdout.split("\n")
            names = sorted(n.rstrip("/") for n in listing if n)
        else:
            with zipfile.ZipFile(out) as zf:
                assert zf.testzip() is None
                names = sorted(n.rstrip("/") for n in zf.namelist())
    else:
        flag = {"tar.xz": "-J", "tar.zst": "--zstd"}[fmt.value]
        if shutil.which("tar") and (fmt is ArchiveFormat.TAR_XZ or _tar_supports_zstd()):
            unpacked = tmp_path / "tar-x"
            unpacked.mkdir()
            listing = subprocess.run(
                ["tar", flag, "-tf", str(out)], check=True, capture_output=True, text=True
            ).stdout.split("\n")
            names = sorted(n.rstrip("/") for n in listing if n)
            subprocess.run(["tar", flag, "-xf", str(out), "-C", str(unpacked)], check=True)
            assert snapshot(unpacked / "layer") == snapshot(src)
        else:
            opener = lzma.open if fmt is ArchiveFormat.TAR_XZ else zstd.open
            with opener(out) as raw, tarfile.open(fileobj=raw) as tf:
                names = sorted(tf.getnames())
    assert names == expected


# --- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_round_trip_keeps_content_modes_and_symlinks(tmp_path: Path, fmt: ArchiveFormat) -> None:
    src = make_tree(tmp_path / "src")
    out = tmp_path / f"a{archive_suffix(fmt)}"
    info = write(src, out, fmt)
    dest = extract_archive(
        out,
        tmp_path / "deploy",
        expected_root="layer",
        expected_size=info.size,
        expected_sha256=info.sha256,
    )
    assert dest == tmp_path / "deploy" / "layer"
    assert snapshot(dest) == snapshot(src)
    assert stat.S_IMODE((dest / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "lib" / "pkg" / "__init__.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "lib" / "pkg").stat().st_mode) == 0o755
    assert os.readlink(dest / "bin" / "python") == "../lib/pkg/__init__.py"
    assert (dest / "bin" / "python").read_text() == "VALUE = 1\n" * 50
    assert (dest / "empty").is_dir()
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["layer"]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.value)
def test_unpacked_modes_and_bytes_do_not_depend_on_the_umask(
    tmp_path: Path, fmt: ArchiveFormat
) -> None:
    """Files are written straight to their descriptor, the mode set on it: a strict umask
    changes nothing; an empty file and one larger than a read piece come out whole."""
    src = make_tree(tmp_path / "src")
    (src / "lib" / "empty.py").write_bytes(b"")
    (src / "lib" / "large.bin").write_bytes(hashlib.sha256(b"x").digest() * 70_000)  # > 2 MiB
    out = tmp_path / f"a{archive_suffix(fmt)}"
    info = write(src, out, fmt)
    old = os.umask(0o077)
    try:
        dest = extract_archive(
            out, tmp_path / "deploy", expected_root="layer", expected_sha256=info.sha256
        )
    finally:
        os.umask(old)
    assert snapshot(dest) == snapshot(src)
    for path in [dest, *dest.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        executable = path.is_dir() or path.name == "tool"
        assert mode == (0o755 if executable else 0o644), path


def test_existing_destination_needs_replace(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    out = tmp_path / "a.zip"
    write(src, out, ArchiveFormat.ZIP)
    old = tmp_path / "deploy" / "layer"
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("old")
    with pytest.raises(ArchiveError, match="already exists"):
        extract_archive(out, tmp_path / "deploy", expected_root="layer")
    assert (old / "stale.txt").exists()
    dest = extract_archive(out, tmp_path / "deploy", expected_root="layer", replace=True)
    assert not (dest / "stale.txt").exists()
    assert snapshot(dest) == snapshot(src)
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["layer"]


def test_sibling_symlinks_only_when_allowed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "python").symlink_to("../../runtime/bin/python3")
    out = tmp_path / "a.tar.xz"
    write(src, out, ArchiveFormat.TAR_XZ)
    with pytest.raises(ArchiveError, match="leaves the layer"):
        extract_archive(out, tmp_path / "d", expected_root="layer")
    with pytest.raises(ArchiveError, match=r"does not lead into one of its lower layers \(other\)"):
        extract_archive(out, tmp_path / "d", expected_root="layer", sibling_roots={"other"})
    dest = extract_archive(out, tmp_path / "d", expected_root="layer", sibling_roots={"runtime"})
    assert os.readlink(dest / "bin" / "python") == "../../runtime/bin/python3"


@pytest.mark.parametrize("link", ["../../../runtime/bin/python3", "../..", "../../outside/x"])
def test_sibling_symlinks_never_climb_above_the_destination(tmp_path: Path, link: str) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "python").symlink_to(link)
    out = tmp_path / "a.tar.xz"
    write(src, out, ArchiveFormat.TAR_XZ)
    with pytest.raises(ArchiveError, match="leaves the layer"):
        extract_archive(out, tmp_path / "d", expected_root="layer", sibling_roots={"runtime"})
    assert not (tmp_path / "d" / "layer").exists()


# --- hostile corpus ---------------------------------------------------------------------

# Each evil member: (name, kind, payload) where payload is file content or a link target.
Evil = list[tuple[str, str, str]]


def _tar_xz(members: Evil) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "device":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ)


def _zip(members: Evil) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, kind, payload in members:
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            modes = {
                "file": stat.S_IFREG | 0o644,
                "dir": stat.S_IFDIR | 0o755,
                "symlink": stat.S_IFLNK | 0o777,
                "device": stat.S_IFCHR | 0o644,
                "fifo": stat.S_IFIFO | 0o644,
            }
            info.external_attr = modes[kind] << 16
            with pytest.warns(UserWarning) if name in zf.NameToInfo else _nothing():
                zf.writestr(info, payload)
    return buf.getvalue()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


OK = [("layer/", "dir", ""), ("layer/ok.txt", "file", "fine")]

CORPUS: dict[str, tuple[Evil, str]] = {
    "absolute": ([*OK, ("/tmp/evil.txt", "file", "x")], "has an absolute path"),
    "dotdot": ([*OK, ("../x", "file", "x")], "contains a '..' component"),
    "inner-dotdot": ([*OK, ("layer/a/../../x", "file", "x")], "contains a '..' component"),
    "outside-root": ([*OK, ("other/x", "file", "x")], "is not under the expected top-level"),
    "symlink-escape": ([*OK, ("layer/esc", "symlink", "../../etc/passwd")], "leaves the layer"),
    "symlink-absolute": ([*OK, ("layer/abs", "symlink", "/etc/passwd")], "is absolute"),
    "symlink-chain": (
        [
            *OK,
            ("layer/sub/", "dir", ""),
            ("layer/sub/up", "symlink", ".."),
            ("layer/sub/trick", "symlink", "up/../../x"),
        ],
        "is not a plain relative path",
    ),
    "write-through-symlink": (
        [
            *OK,
            ("layer/sub/", "dir", ""),
            ("layer/door", "symlink", "sub"),
            ("layer/door/x.txt", "file", "x"),
        ],
        "goes through the symlink member",
    ),
    "hardlink-escape": ([*OK, ("layer/h", "hardlink", "../../etc/passwd")], "hard link target"),
    "hardlink-outside": ([*OK, ("layer/h", "hardlink", "other/x")], "hard link target"),
    "device": ([*OK, ("layer/null", "device", "")], "device file or fifo"),
    "fifo": ([*OK, ("layer/pipe", "fifo", "")], "device file or fifo"),
    "duplicate": ([*OK, ("layer/ok.txt", "file", "again")], "appears more than once"),
}
ZIP_LACKS = {"hardlink-escape", "hardlink-outside"}  # zip has no hard links


def _cases() -> list[Any]:
    cases: list[Any] = []
    for fmt in (ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP):
        for key in CORPUS:
            if not (fmt is ArchiveFormat.ZIP and key in ZIP_LACKS):
                cases.append(pytest.param(fmt, key, id=f"{fmt.value}-{key}"))
    return cases


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Path:
    """A destination that already holds other layers; it must stay exactly as it is."""
    dest = tmp_path / "deploy"
    (dest / "runtime" / "bin").mkdir(parents=True)
    (dest / "runtime" / "bin" / "python3").write_text("runtime")
    (dest / "notes.txt").write_text("keep me")
    return dest


def _refused(archive_file: Path, dest: Path, fragment: str, **kwargs: object) -> None:
    before = snapshot(dest)
    with pytest.raises(ArchiveError) as caught:
        extract_archive(archive_file, dest, expected_root="layer", **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert fragment in message
    assert str(archive_file) in message
    assert snapshot(dest) == before


@pytest.mark.parametrize(("fmt", "key"), _cases())
def test_hostile_member_is_refused(
    tmp_path: Path, deploy_dir: Path, fmt: ArchiveFormat, key: str
) -> None:
    members, fragment = CORPUS[key]
    data = _tar_xz(members) if fmt is ArchiveFormat.TAR_XZ else _zip(members)
    evil = tmp_path / f"evil{archive_suffix(fmt)}"
    evil.write_bytes(data)
    _refused(evil, deploy_dir, fragment)
    # The offending member is named (duplicates name the repeated one).
    with pytest.raises(ArchiveError) as caught:
        extract_archive(evil, deploy_dir, expected_root="layer")
    assert repr(members[-1][0]) in str(caught.value)


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP, ArchiveFormat.TAR_ZST])
def test_truncated_archive_is_refused(tmp_path: Path, deploy_dir: Path, fmt: ArchiveFormat) -> None:
    src = big_tree(tmp_path / "src")
    good = tmp_path / f"good{archive_suffix(fmt)}"
    write(src, good, fmt)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 7):
        bad = tmp_path / f"cut{archive_suffix(fmt)}"
        bad.write_bytes(data[:cut])
        _refused(bad, deploy_dir, "truncated or corrupt")


def test_tar_without_end_marker_is_refused(tmp_path: Path, deploy_dir: Path) -> None:
    # Complete xz data whose tar stream stops cleanly between members.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("layer/a", "layer/b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    cut = buf.getvalue()[: 4 * 512]  # two members, no end-of-archive blocks
    bad = tmp_path / "cut.tar.xz"
    bad.write_bytes(lzma.compress(cut, format=lzma.FORMAT_XZ))
    _refused(bad, deploy_dir, "end-of-archive marker is missing")


def test_corrupted_zip_member_is_refused(tmp_path: Path, deploy_dir: Path) -> None:
    src = make_tree(tmp_path / "src")
    good = tmp_path / "good.zip"
    write(src, good, ArchiveFormat.ZIP)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("layer/lib/pkg/sub/data.bin")
    data[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    _refused(bad, deploy_dir, "truncated or corrupt")


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP])
def test_wrong_size_and_sha256_are_refused_before_unpacking(
    tmp_path: Path, deploy_dir: Path, fmt: ArchiveFormat
) -> None:
    src = make_tree(tmp_path / "src")
    out = tmp_path / f"a{archive_suffix(fmt)}"
    info = write(src, out, fmt)
    _refused(out, deploy_dir, "size mismatch", expected_size=info.size + 1)
    with pytest.raises(ArchiveError, match=f"expected {info.size + 1} bytes.*found {info.size}"):
        extract_archive(out, deploy_dir, expected_root="layer", expected_size=info.size + 1)
    wrong = "0" * 64
    _refused(out, deploy_dir, "sha256 mismatch", expected_sha256=wrong)
    with pytest.raises(ArchiveError, match=f"expected {wrong}.*found {info.sha256}"):
        extract_archive(out, deploy_dir, expected_root="layer", expected_sha256=wrong)


def test_wrong_root_and_missing_parent_leave_nothing(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    out = tmp_path / "a.tar.xz"
    write(src, out, ArchiveFormat.TAR_XZ)
    target = tmp_path / "new" / "deeper"
    with pytest.raises(ArchiveError, match="is not under the expected top-level folder 'other/'"):
        extract_archive(out, target, expected_root="other")
    assert not (tmp_path / "new").exists()


def test_not_an_archive_is_refused(tmp_path: Path, deploy_dir: Path) -> None:
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"this is not an archive")
    _refused(junk, deploy_dir, "not a tar.xz, tar.zst or zip archive")


def test_iter_archive_members_lists_folders_with_slash(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    names: dict[ArchiveFormat, list[str]] = {}
    for fmt in ALL_FORMATS:
        out = tmp_path / f"a{archive_suffix(fmt)}"
        write(src, out, fmt)
        names[fmt] = list(iter_archive_members(out))
    assert names[ArchiveFormat.TAR_XZ] == names[ArchiveFormat.ZIP] == names[ArchiveFormat.TAR_ZST]
    listed = names[ArchiveFormat.ZIP]
    assert listed[0] == "layer/"
    assert "layer/empty/" in listed
    assert "layer/bin/python" in listed


@pytest.mark.slow
def test_zip_with_more_than_65535_entries_uses_zip64(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(66):
        folder = src / f"d{d:02}"
        folder.mkdir(parents=True)
        for f in range(1000):
            (folder / f"{f}").touch()
    out = tmp_path / "many.zip"
    write(src, out, ArchiveFormat.ZIP)
    with zipfile.ZipFile(out) as zf:
        assert len(zf.infolist()) == 1 + 66 + 66_000
        assert zf.testzip() is None
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tq", str(out)], check=True, capture_output=True)


def test_tar_hard_link_inside_the_layer_is_restored(tmp_path: Path) -> None:
    good = tmp_path / "links.tar.xz"
    good.write_bytes(
        _tar_xz(
            [*OK, ("layer/sub/", "dir", ""), ("layer/sub/same.txt", "hardlink", "layer/ok.txt")]
        )
    )
    dest = extract_archive(good, tmp_path / "d", expected_root="layer")
    assert (dest / "sub" / "same.txt").read_text() == "fine"
    assert (dest / "sub" / "same.txt").stat().st_ino == (dest / "ok.txt").stat().st_ino


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP])
def test_top_level_file_instead_of_folder_is_refused(
    tmp_path: Path, deploy_dir: Path, fmt: ArchiveFormat
) -> None:
    members: Evil = [("layer", "file", "not a folder")]
    evil = tmp_path / f"evil{archive_suffix(fmt)}"
    evil.write_bytes(_tar_xz(members) if fmt is ArchiveFormat.TAR_XZ else _zip(members))
    _refused(evil, deploy_dir, "top-level entry must be a folder")


# --- streamed xz chunks and parallel decoding --------------------------------------------


def test_xz_chunks_are_independent_streams_of_the_tar_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers read their chunk's files themselves; the bytes are still exactly the tar
    stream cut at unit starts and every XZ_CHUNK inside a unit, each piece compressed on
    its own (same bytes as buffering)."""
    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)
    src = big_tree(tmp_path / "src")
    make_tree(src / "tree")
    (src / "exact.bin").write_bytes(b"x" * (64 << 10))  # a file ending on a chunk boundary
    info = write(src, tmp_path / "a.tar.xz", ArchiveFormat.TAR_XZ)
    packed = (tmp_path / "a.tar.xz").read_bytes()
    tar_stream = lzma.decompress(packed)
    chunk = 64 << 10
    assert info.layout is not None
    segments = info.layout.segments
    assert all(s.tar_end - s.tar_start <= chunk for s in segments)
    assert segments[-1].tar_end == len(tar_stream) and segments[-1].end == len(packed)
    expected = b"".join(
        lzma.compress(
            tar_stream[s.tar_start : s.tar_end],
            format=lzma.FORMAT_XZ,
            check=lzma.CHECK_CRC64,
            filters=tuning.XZ_FILTERS,
        )
        for s in segments
    )
    assert packed == expected
    assert len(tar_stream) > 10 * chunk and len(tar_stream) % tarfile.RECORDSIZE == 0


def test_layers_written_at_once_give_the_bytes_of_layers_written_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent archives share the xz encoders (at most one per core), not their bytes."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)
    sources = [big_tree(tmp_path / f"src{i}") for i in range(3)]
    for i, src in enumerate(sources):
        (src / "own.txt").write_text(f"layer {i}\n" * 1000)
    alone = [
        write(src, tmp_path / f"alone{i}.tar.xz", ArchiveFormat.TAR_XZ)
        for i, src in enumerate(sources)
    ]
    with ThreadPoolExecutor(3) as pool:
        together = list(
            pool.map(
                lambda i: write(sources[i], tmp_path / f"together{i}.tar.xz", ArchiveFormat.TAR_XZ),
                range(3),
            )
        )
    assert together == alone


def test_parallel_xz_decoding_unpacks_identical_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from venvlayers.archive.xz import ParallelXzReader, find_streams, open_xz

    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)
    src = big_tree(tmp_path / "src")
    make_tree(src / "tree")
    info = write(src, tmp_path / "a.tar.xz", ArchiveFormat.TAR_XZ)
    with (tmp_path / "a.tar.xz").open("rb") as f:
        streams = find_streams(f, info.size)
    assert len(streams) > 10
    assert sum(s.length for s in streams) == info.size
    with open_xz(tmp_path / "a.tar.xz", threads=3) as reader:
        assert isinstance(reader, ParallelXzReader)
        assert reader.read() == lzma.decompress((tmp_path / "a.tar.xz").read_bytes())
    dest = extract_archive(
        tmp_path / "a.tar.xz", tmp_path / "x", expected_root="layer", expected_sha256=info.sha256
    )
    with tarfile.open(tmp_path / "a.tar.xz") as tf:
        tf.extractall(tmp_path / "plain", filter="tar")
    assert snapshot(dest) == snapshot(tmp_path / "plain" / "layer")


def test_single_stream_xz_is_decoded_the_plain_way(tmp_path: Path) -> None:
    """Archives from the reference tool (tarfile "w:xz") are one stream: read as before."""
    from venvlayers.archive.xz import ParallelXzReader, open_xz

    src = make_tree(tmp_path / "src")
    with tarfile.open(tmp_path / "ref.tar.xz", "w:xz") as tf:
        tf.add(src, "layer")
    with open_xz(tmp_path / "ref.tar.xz", threads=4) as reader:
        assert not isinstance(reader, ParallelXzReader)
    digest = hashlib.sha256((tmp_path / "ref.tar.xz").read_bytes()).hexdigest()
    dest = extract_archive(
        tmp_path / "ref.tar.xz", tmp_path / "x", expected_root="layer", expected_sha256=digest
    )
    assert (dest / "lib" / "pkg" / "__init__.py").read_text() == "VALUE = 1\n" * 50


@pytest.mark.parametrize("where", ["first stream", "middle stream", "index"])
def test_damaged_multi_stream_archive_is_refused_by_its_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The sha256 is checked as the archive is read once; a damaged archive is refused as
    damaged (not as "corrupt") and nothing is left behind."""
    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)
    src = big_tree(tmp_path / "src")
    info = write(src, tmp_path / "a.tar.xz", ArchiveFormat.TAR_XZ)
    data = bytearray((tmp_path / "a.tar.xz").read_bytes())
    position = {"first stream": 100, "middle stream": len(data) // 2, "index": len(data) - 20}
    data[position[where]] ^= 0x40
    (tmp_path / "a.tar.xz").write_bytes(bytes(data))
    dest_parent = tmp_path / "deploy"
    dest_parent.mkdir()
    with pytest.raises(ArchiveError, match="sha256 mismatch"):
        extract_archive(
            tmp_path / "a.tar.xz",
            dest_parent,
            expected_root="layer",
            expected_size=info.size,
            expected_sha256=info.sha256,
        )
    assert list(dest_parent.iterdir()) == []


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_reported_size_and_sha256_are_the_files(tmp_path: Path, fmt: ArchiveFormat) -> None:
    """tar writers hash what they write (the archive is not read back); zip reads it back."""
    info = write(make_tree(tmp_path / "src"), tmp_path / "a.out", fmt)
    data = (tmp_path / "a.out").read_bytes()
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_verified_copy_changed_since_is_hashed_again_and_refused(
    tmp_path: Path, deploy_dir: Path
) -> None:
    """``verified`` spares the hash only while the file is still the copy that was
    hashed: a byte changed in place (same size; its ctime moves) is caught by the sha256."""
    layer = tmp_path / "layer"
    (layer / "lib").mkdir(parents=True)
    (layer / "lib" / "data.bin").write_bytes(os.urandom(50_000))
    archive = tmp_path / "layer.tar.xz"
    write(layer, archive, ArchiveFormat.TAR_XZ)
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    hashed = KnownCopy.of(archive.stat())
    before = snapshot(deploy_dir)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="sha256 mismatch"):
        extract_archive(
            archive, deploy_dir, expected_root="layer", expected_sha256=good, verified=hashed
        )
    assert snapshot(deploy_dir) == before


def test_closing_a_parallel_reader_never_joins_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader left open inside a members generator is closed by the garbage collector,
    in whatever thread it runs: in CI it ran inside a new thread's start, with threading's
    shutdown-locks lock held, and joining the workers there deadlocked (the starting thread
    then waited forever). Closing under that lock must return."""
    from venvlayers.archive.xz import ParallelXzReader, open_xz

    lock = getattr(threading, "_shutdown_locks_lock", None)
    if lock is None:
        pytest.skip("this Python's threading has no shutdown-locks lock")
    monkeypatch.setattr(tuning, "XZ_CHUNK", 64 << 10)
    src = tmp_path / "src" / "lib"
    src.mkdir(parents=True)
    for i in range(8):  # 8 x 64 KiB of noise: one xz stream each
        (src / f"part{i}.bin").write_bytes(os.urandom(64 << 10))
    write(src.parent, tmp_path / "a.tar.xz", ArchiveFormat.TAR_XZ)
    reader = open_xz(tmp_path / "a.tar.xz", threads=2)
    assert isinstance(reader, ParallelXzReader)
    assert reader.read(1 << 16)  # workers started

    def close_as_the_collector_did() -> None:
        with lock:
            reader.close()

    closer = threading.Thread(target=close_as_the_collector_did, daemon=True)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive()
