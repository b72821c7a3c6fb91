"""Micro benchmark: venvlayers.archive against the single-threaded reference (tarfile "w:xz").

Builds a ~150 MB layer-like tree (a CPython standard library without tests and caches,
plus a real site-packages with compiled extensions and a tool binary), then times and
sizes every way of packing it:

    uv run python bench/archive_bench.py [--threads N] [--repeat N] [--keep DIR]

The reference is what venvstacks does: ``tarfile.open(..., "w:xz")`` (xz preset 6, one
thread). Ratios are against that reference; tar.zst is also compared with our tar.xz.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from venvlayers.archive.extract import extract_archive
from venvlayers.archive.formats import ArchiveFormat
from venvlayers.archive.write import write_archive
from venvlayers.core.platforms import host_platform

MTIME = 1_700_000_000
DEFAULT_SOURCES = [
    Path("/root/.pyenv/versions/3.12.1/lib/python3.12"),
    Path("/work/.peer/lib/python3.11/site-packages"),
]
SKIP = shutil.ignore_patterns("__pycache__", "test", "tests", "idlelib", "*.pyc")


def build_tree(dest: Path, sources: list[Path]) -> tuple[int, int]:
    """Copy the sources side by side under ``dest``; returns (bytes, files)."""
    for i, source in enumerate(sources):
        shutil.copytree(source, dest / f"{i}-{source.name}", symlinks=True, ignore=SKIP)
    total = files = 0
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            files += 1
    return total, files


def reference_tar_xz(tree: Path, out: Path) -> None:
    """venvstacks' way: tarfile "w:xz" (preset 6, single thread), normalized entries."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = min(info.mtime, MTIME)
        info.mode &= 0o755
        return info

    with tarfile.open(out, "w:xz") as tf:
        tf.add(tree, "layer", filter=normalize)


def reference_zip(tree: Path, out: Path) -> None:
    """zipfile ZIP_DEFLATED (zlib level 6), single thread, as shutil.make_archive does."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                zf.write(path, "layer/" + str(path.relative_to(tree)))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds) of ``repeat`` runs; CPU time shows the parallelism
    even when other processes compete for the cores."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        action()
        best = min(best, (time.perf_counter() - start, cpu_seconds() - start_cpu))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="worker threads (all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per variant")
    parser.add_argument("--keep", type=Path, help="build the tree and archives here, keep them")
    parser.add_argument("--source", type=Path, action="append", help="tree(s) to copy in")
    parser.add_argument(
        "--only",
        default="ref-xz,ref-zip,xz,zst,zip",
        help="comma-separated variants to run (ref-xz, ref-zip, xz, zst, zip)",
    )
    args = parser.parse_args()
    sources = [s for s in (args.source or DEFAULT_SOURCES) if s.is_dir()]
    if not sources:
        sources = [Path(sysconfig.get_paths()["stdlib"])]

    work = args.keep or Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:
        tree = work / "tree"
        if not tree.exists():
            tree.mkdir(parents=True)
            size, files = build_tree(tree, sources)
        else:
            size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
            files = sum(1 for p in tree.rglob("*") if p.is_file())
        cores = os.cpu_count() or 1
        print(
            f"tree: {size / 1e6:.1f} MB in {files} files; {cores} cores; "
            f"threads={args.threads or cores}; Python {sys.version.split()[0]}; "
            f"load average {os.getloadavg()[0]:.1f} (wall times need an idle machine)"
        )

        results: dict[str, tuple[float, int]] = {}

        def ours(fmt: ArchiveFormat) -> Callable[[], object]:
            out = work / f"ours.{fmt.value}"
            # as publish does on this host: x86 hosts get xz's x86 filter
            x86 = host_platform().is_x86_64
            return lambda: write_archive(
                tree,
                out,
                root_name="layer",
                fmt=fmt,
                mtime=MTIME,
                threads=args.threads,
                x86_code=x86,
            )

        only = set(args.only.split(","))
        variants: list[tuple[str, Path, Callable[[], object]]] = []
        ref = work / "reference.tar.xz"
        if "ref-xz" in only:
            label = "reference tar.xz (tarfile w:xz, 1 thread)"
            variants.append((label, ref, lambda: reference_tar_xz(tree, ref)))
        refzip = work / "reference.zip"
        if "ref-zip" in only:
            label = "reference zip (zipfile, 1 thread)"
            variants.append((label, refzip, lambda: reference_zip(tree, refzip)))
        for fmt, key in zip(ArchiveFormat, ("xz", "zst", "zip"), strict=True):
            if key in only:
                variants.append((f"ours {fmt.value}", work / f"ours.{fmt.value}", ours(fmt)))

        print(f"  {'variant':45s} {'wall':>9s} {'cpu':>9s} {'size':>11s}")
        for label, out, action in variants:
            seconds, cpu = timed(action, args.repeat)
            results[label] = (seconds, out.stat().st_size)
            print(
                f"  {label:45s} {seconds:7.2f} s {cpu:7.2f} s {out.stat().st_size / 1e6:8.2f} MB",
                flush=True,
            )
        # Unpacking speed (verification included), as deploy would do it.
        for fmt in ArchiveFormat:
            if not (work / f"ours.{fmt.value}").exists():
                continue
            dest = work / f"unpacked-{fmt.value}"
            shutil.rmtree(dest, ignore_errors=True)
            archive = work / f"ours.{fmt.value}"
            start = time.perf_counter()
            extract_archive(archive, dest, expected_root="layer", replace=True)
            seconds = time.perf_counter() - start
            print(f"  extract ours {fmt.value:33s} {seconds:7.2f} s")

        print("ratios (time ratio = speed-up, size ratio = size / baseline size):")
        pairs = [
            ("ours tar.xz", "reference tar.xz (tarfile w:xz, 1 thread)"),
            ("ours tar.zst", "reference tar.xz (tarfile w:xz, 1 thread)"),
            ("ours tar.zst", "ours tar.xz"),
            ("ours zip", "reference zip (zipfile, 1 thread)"),
            ("ours zip", "ours tar.xz"),
        ]
        for label, base in pairs:
            if label in results and base in results:
                speedup = results[base][0] / results[label][0]
                size_ratio = results[label][1] / results[base][1]
                print(f"  {label:13s} vs {base:42s} {speedup:5.2f}x faster, size x{size_ratio:.3f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
