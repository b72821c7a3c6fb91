"""Addressable archives (issue 21): units, segments and the layer index beside an archive.

Every file of a published tar archive can be decoded from its index range alone; the
archive stays one ordinary tar.xz / tar.zst that tar, xz and zstd unpack, the same bytes
on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from venvlayers.archive import units
from venvlayers.archive.formats import ArchiveFormat
from venvlayers.archive.units import decode_segments, plan_units
from venvlayers.archive.write import write_archive
from venvlayers.core.errors import VenvlayersError
from venvlayers.formats.layer_index import LayerIndex, load_index
from venvlayers.publish.layer_index import build_index, write_index

SITE = "lib/python3.12/site-packages"


def _noise(seed: int, size: int) -> bytes:
    """Compressible but not trivially so: words drawn at random."""
    rng = random.Random(seed)
    words = [f"word{i}".encode() for i in range(500)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def _dist(root: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    site = root / SITE
    info = f"{name}-{version}.dist-info"
    rows = []
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{rel},sha256=x,{len(data)}")
    (site / info).mkdir(parents=True, exist_ok=True)
    (site / info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    rows += [f"{info}/METADATA,,", f"{info}/RECORD,,"]
    (site / info / "RECORD").write_text("\n".join(rows) + "\n")


def make_layer(root: Path, small_version: str = "1.0") -> Path:
    _dist(
        root,
        "big",
        "2.0",
        {f"big/mod{i}.py": _noise(i, 60_000) for i in range(6)}
        | {"../../../bin/big-tool": b"#!/bin/sh\necho big\n"},
    )
    _dist(root, "small", small_version, {"small.py": _noise(99, 3000) + small_version.encode()})
    _dist(root, "tiny", "0.1", {"tiny/__init__.py": b"X = 1\n"})
    (root / "bin").mkdir(exist_ok=True)
    os.symlink("../../cpython/bin/python", root / "bin" / "python")
    (root / "bin" / "big-tool").chmod(0o755)
    meta = root / "share" / "venv" / "metadata"
    meta.mkdir(parents=True)
    (meta / "venvstacks_layer.json").write_text('{"python": "bin/python"}\n')
    (root / "empty.txt").write_bytes(b"")
    return root


def test_units_follow_each_distributions_record(tmp_path: Path) -> None:
    from venvlayers.archive.scan import scan_tree

    units = plan_units(scan_tree(make_layer(tmp_path / "layer"), None))
    names = {u.name: {e.rel for e in u.entries} for u in units}
    big = names[f"{SITE}/big-2.0.dist-info"]
    assert "bin/big-tool" in big and f"{SITE}/big/mod0.py" in big  # ../../../bin via RECORD
    # small distributions are grouped: small and tiny share one unit
    grouped = names[f"{SITE}/small-1.0.dist-info"]
    assert {f"{SITE}/small.py", f"{SITE}/tiny/__init__.py"} <= grouped
    assert units[0].name == "(folders)" and all(e.kind == "dir" for e in units[0].entries)
    everything = [e.rel for u in units for e in u.entries]
    assert sorted(everything) == sorted(set(everything))  # each entry exactly once
    # the layer's own metadata (what a republish of the same layer changes) is a unit alone
    assert names["(layer metadata)"] == {"share/venv/metadata/venvstacks_layer.json"}
    assert "empty.txt" in names["(other)"]


def test_inside_a_unit_like_files_sit_together(tmp_path: Path) -> None:
    from venvlayers.archive.scan import scan_tree

    root = tmp_path / "layer"
    files = {
        "pkg/a.py": b"A = 1\n",
        "pkg/_core.cpython-312-x86_64-linux-gnu.so": b"\x7fELF",
        "pkg/b.py": b"B = 2\n",
        "pkg.libs/libblas-1a2b.so.3.1": b"\x7fELF",
        "pkg/data.json": b"{}",
        "pkg/z.pyi": b"Z: int\n",
    }
    _dist(root, "pkg", "1.0", {rel: data * 40_000 for rel, data in files.items()})
    unit = next(u for u in plan_units(scan_tree(root, None)) if "pkg-1.0" in u.name)
    order = [e.rel.removeprefix(f"{SITE}/") for e in unit.entries]
    # kinds in suffix order (.json, .py, .pyi, no suffix for RECORD/METADATA...), libraries
    # (versioned ones too) last, paths sorted inside each kind
    assert order[-2:] == [
        "pkg.libs/libblas-1a2b.so.3.1",
        "pkg/_core.cpython-312-x86_64-linux-gnu.so",
    ]
    assert order.index("pkg/a.py") + 1 == order.index("pkg/b.py")
    assert order.index("pkg/data.json") < order.index("pkg/a.py") < order.index("pkg/z.pyi")


def _vendoring_layer(root: Path) -> Path:
    """Two distributions vendoring the same libraries under other names (auditwheel's
    ``<name>.libs/``, delocate's ``.dylibs/``)."""
    blas, gfortran = _noise(3, 200_000), _noise(4, 150_000)
    _dist(
        root,
        "alpha",
        "1.0",
        {
            "alpha/__init__.py": _noise(1, 150_000),
            "alpha.libs/libblas-aaaa1111.so": blas,
            "alpha.libs/libgfortran-1111aaaa.so.5.0.0": gfortran,
        },
    )
    _dist(
        root,
        "beta",
        "2.0",
        {
            "beta/__init__.py": _noise(2, 150_000),
            "beta.libs/libblas-bbbb2222.so": blas + b"beta",
            "beta.libs/libgfortran-2222bbbb.so.5.0.0": gfortran,
            "beta/.dylibs/libomp.dylib": _noise(5, 1000),
            "beta/_ext.so": _noise(6, 1000),  # an extension module: beta's own
        },
    )
    return root


def test_zstd_gives_the_vendored_libraries_of_every_distribution_one_unit(
    tmp_path: Path,
) -> None:
    from venvlayers.archive.scan import scan_tree

    entries = scan_tree(_vendoring_layer(tmp_path / "layer"), None)
    shared = plan_units(entries, shared_vendored=True)
    vendored = [u for u in shared if u.name == units.VENDORED]
    assert len(vendored) == 1
    # each library beside its namesakes from the other distributions
    assert [e.rel.removeprefix(f"{SITE}/") for e in vendored[0].entries] == [
        "alpha.libs/libblas-aaaa1111.so",
        "beta.libs/libblas-bbbb2222.so",
        "alpha.libs/libgfortran-1111aaaa.so.5.0.0",
        "beta.libs/libgfortran-2222bbbb.so.5.0.0",
        "beta/.dylibs/libomp.dylib",
    ]
    beta = next(u for u in shared if "beta-2.0" in u.name)
    assert f"{SITE}/beta/_ext.so" in {e.rel for e in beta.entries}
    everything = [e.rel for u in shared for e in u.entries]
    assert sorted(everything) == sorted(e.rel for e in entries)  # each entry exactly once
    # tar.xz's 16 MiB streams gain nothing from it: each distribution keeps its own
    plain = plan_units(entries)
    assert all(u.name != units.VENDORED for u in plain)
    alpha = next(u for u in plain if "alpha-1.0" in u.name)
    assert f"{SITE}/alpha.libs/libblas-aaaa1111.so" in {e.rel for e in alpha.entries}


def test_vendored_libraries_share_a_frame_and_decode_from_their_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(units, "ZSTD_GROUP", 64 << 10)  # zstd frames group units up to 2 MiB
    src = _vendoring_layer(tmp_path / "layer")
    archive = tmp_path / "layer.tar.zst"
    info = write_archive(src, archive, root_name="layer", fmt="tar.zst", mtime=1)
    index = build_index(archive, "layer", info)
    assert index is not None
    ranges = {e.path.removeprefix(f"{SITE}/"): e.range for e in index.entries if e.range}
    assert ranges["alpha.libs/libblas-aaaa1111.so"] == ranges["beta.libs/libblas-bbbb2222.so"]
    assert ranges["alpha.libs/libblas-aaaa1111.so"] != ranges["alpha/__init__.py"]
    data = archive.read_bytes()
    for entry in index.entries:
        if entry.range is None or entry.skip is None:
            continue
        piece = data[entry.range[0] : entry.range[1]]
        out = b"".join(decode_segments(ArchiveFormat.TAR_ZST, piece, entry.skip + entry.size))
        assert out[entry.skip :] == (src / entry.path).read_bytes(), entry.path


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_ZST])
def test_every_file_decodes_from_its_index_range(
    tmp_path: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(units, "ZSTD_GROUP", 64 << 10)  # zstd frames group units up to 2 MiB
    src = make_layer(tmp_path / "layer")
    archive = tmp_path / f"layer.{fmt}"
    info = write_archive(src, archive, root_name="layer", fmt=fmt, mtime=1_700_000_000)
    index = build_index(archive, "layer", info)
    assert index is not None and index.archive_sha256 == info.sha256
    data = archive.read_bytes()
    files = [e for e in index.entries if e.kind == "file"]
    assert {e.path for e in files} == {
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and not p.is_symlink()
    }
    for entry in files:
        expected = (src / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(expected).hexdigest()
        if not entry.size:
            continue
        assert entry.range is not None and entry.skip is not None
        piece = data[entry.range[0] : entry.range[1]]
        out = b"".join(decode_segments(fmt, piece, entry.skip + entry.size))
        assert out[entry.skip :] == expected, entry.path
    links = {e.path: e.target for e in index.entries if e.kind == "symlink"}
    assert links == {"bin/python": "../../cpython/bin/python"}
    # a pure-Python bump touches one unit: far fewer bytes than the archive
    small = next(e for e in files if e.path.endswith("small.py"))
    assert small.range is not None and small.range[1] - small.range[0] < info.size / 3


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_ZST])
def test_index_digests_are_the_archived_bytes_also_of_files_cut_by_segments(
    tmp_path: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    from venvlayers.archive import tuning

    # segments of 16 KiB: the writer hashes a file as it compresses it when the file is
    # whole inside one segment; the others (and empty files) are hashed apart
    monkeypatch.setattr(tuning, "XZ_CHUNK", 16 << 10)
    monkeypatch.setattr(tuning, "ZSTD_SPLIT", 16 << 10)
    src = _vendoring_layer(make_layer(tmp_path / "layer"))
    info = write_archive(src, tmp_path / f"a.{fmt}", root_name="layer", fmt=fmt, mtime=1)
    index = build_index(tmp_path / f"a.{fmt}", "layer", info)
    assert index is not None
    assert info.layout is not None
    starts = [s.start for s in info.layout.segments]
    files = {e.path: e for e in index.entries if e.kind == "file"}
    cut = [
        e
        for e in files.values()
        if e.range and sum(e.range[0] <= x < e.range[1] for x in starts) > 1
    ]
    assert len(cut) >= 3  # files over several segments
    for path, entry in files.items():
        assert entry.sha256 == hashlib.sha256((src / path).read_bytes()).hexdigest(), path


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_ZST])
def test_unit_layout_is_reproducible_and_plain_tools_unpack_it(
    tmp_path: Path, fmt: ArchiveFormat
) -> None:
    src = _vendoring_layer(make_layer(tmp_path / "layer"))
    one = write_archive(src, tmp_path / f"a.{fmt}", root_name="layer", fmt=fmt, mtime=1, threads=1)
    two = write_archive(src, tmp_path / f"b.{fmt}", root_name="layer", fmt=fmt, mtime=1, threads=8)
    assert one.sha256 == two.sha256
    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
    ref_one = write_index(tmp_path / f"a.{fmt}", "layer", one)
    first = (tmp_path / f"a{'.index.json.xz'}").read_bytes()
    ref_again = write_index(tmp_path / f"a.{fmt}", "layer", one)
    assert ref_one == ref_again and (tmp_path / "a.index.json.xz").read_bytes() == first
    assert ref_one is not None and ref_one.name == "a.index.json.xz"
    tool = "xz" if fmt is ArchiveFormat.TAR_XZ else "zstd"
    if shutil.which("tar") is None or shutil.which(tool) is None:
        pytest.skip(f"no tar/{tool} here")
    dest = tmp_path / "plain"
    dest.mkdir()
    flag = "-J" if fmt is ArchiveFormat.TAR_XZ else "--zstd"
    subprocess.run(["tar", flag, "-xf", str(tmp_path / f"a.{fmt}"), "-C", str(dest)], check=True)
    for path in src.rglob("*"):
        twin = dest / "layer" / path.relative_to(src)
        if path.is_symlink():
            assert os.readlink(twin) == os.readlink(path)
        elif path.is_file():
            assert twin.read_bytes() == path.read_bytes()
    # the whole archive is also one valid xz / zstd file for the plain tool
    subprocess.run([tool, "-t", str(tmp_path / f"a.{fmt}")], check=True)


def test_index_is_checked_against_the_metadata_sha256(tmp_path: Path) -> None:
    src = make_layer(tmp_path / "layer")
    info = write_archive(src, tmp_path / "a.tar.xz", root_name="layer", fmt="tar.xz", mtime=1)
    ref = write_index(tmp_path / "a.tar.xz", "layer", info)
    assert ref is not None
    data = (tmp_path / ref.name).read_bytes()
    assert isinstance(load_index(data, ref.sha256, ref.name), LayerIndex)
    with pytest.raises(VenvlayersError, match=r"does not match venvlayers_index\.sha256"):
        load_index(data + b"\0", ref.sha256, ref.name)
    # an index whose range leaves the archive is refused even with a matching digest
    index = load_index(data, ref.sha256, ref.name)
    entries = [
        dataclasses.replace(e, range=(0, info.size + 10)) if e.range else e for e in index.entries
    ]
    bad = dataclasses.replace(index, entries=entries).to_bytes()
    with pytest.raises(VenvlayersError, match="range is not inside the archive"):
        load_index(bad, hashlib.sha256(bad).hexdigest(), "bad")


def test_zip_has_no_index(tmp_path: Path) -> None:
    src = make_layer(tmp_path / "layer")
    info = write_archive(src, tmp_path / "a.zip", root_name="layer", fmt="zip", mtime=1)
    assert write_index(tmp_path / "a.zip", "layer", info) is None


# --- merge and release carry the index -----------------------------------------------------


def _with_index(root: Path, tmp: Path, layer: str, platform: str) -> str:
    """Republish ``layer`` of a synthetic publish output with our writer and its index."""
    from test_merge import layer_file, manifest_file

    tree = tmp / "tree"
    tree.mkdir()
    _dist(tree, "pkg", "1.0", {"pkg.py": b"X = 1\n"})
    name = f"{layer}-{platform}-1.tar.xz"
    info = write_archive(tree, root / name, root_name=layer, fmt="tar.xz", mtime=1)
    ref = write_index(root / name, layer, info)
    assert ref is not None
    fields = {
        "archive_size": info.size,
        "archive_hashes": {"sha256": info.sha256},
        "venvlayers_index": {"name": ref.name, "sha256": ref.sha256},
    }
    meta_path = layer_file(root, platform, layer)
    meta_path.write_text(json.dumps(json.loads(meta_path.read_text()) | fields, indent=2))
    manifest_path = manifest_file(root, platform)
    manifest = json.loads(manifest_path.read_text())
    for entries in manifest["layers"].values():
        for entry in entries:
            if entry["install_target"] == layer:
                entry |= fields
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return ref.name


def test_merge_carries_the_index_and_release_lists_it(tmp_path: Path) -> None:
    from test_merge import LINUX, make_publish_output

    from venvlayers.core.report import Reporter
    from venvlayers.release.files import release_files
    from venvlayers.release.merge import merge_publish_outputs

    artifacts = make_publish_output(tmp_path / "linux")
    name = _with_index(artifacts, tmp_path, "app-hello", LINUX)
    merged = tmp_path / "merged"
    merge_publish_outputs([artifacts], merged, reporter=Reporter(io.StringIO()))
    assert (merged / name).read_bytes() == (artifacts / name).read_bytes()
    assert name in release_files(merged, Reporter(io.StringIO()))


@pytest.mark.parametrize("damage", ["tampered", "missing"])
def test_merge_refuses_a_tampered_or_missing_index(tmp_path: Path, damage: str) -> None:
    from test_merge import LINUX, make_publish_output

    from venvlayers.core.report import Reporter
    from venvlayers.release.merge import (
        MergeConsistencyError,
        ProblemKind,
        merge_publish_outputs,
    )

    artifacts = make_publish_output(tmp_path / "linux")
    index = artifacts / _with_index(artifacts, tmp_path, "app-hello", LINUX)
    if damage == "missing":
        index.unlink()
    else:
        index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(MergeConsistencyError) as caught:
        merge_publish_outputs([artifacts], tmp_path / "merged", reporter=Reporter(io.StringIO()))
    ((kind, message),) = [(p.kind, p.message) for p in caught.value.report.problems]
    assert kind is ProblemKind.LAYER_INDEX
    assert ("is missing" if damage == "missing" else "index was altered") in message
    assert not (tmp_path / "merged").exists()
