"""Benchmark for issue 21: what an update of a framework layer downloads, and what the
addressable layout (``archive/units``, the layer index) costs at publish.

    bench/run --delta [--reps N] [--work DIR] [--before REV] [--fmt tar.xz|tar.zst|both]
    (or: uv run python bench/delta_bench.py ...)

Layers are real installs from PyPI (``uv pip install --target``, kept in ``--work``):

- ``realistic``: the realistic stack's framework, numpy 2.1.2 + scipy 1.14.1, plus six
  1.16.0 as its small pure-Python dependency (~180 MB installed);
- ``small``: six, idna, attrs and packaging (~1 MB);
- ``runtime``: a local CPython 3.12.1 prefix without tests and caches, the runtime layer
  of both bench stacks (publish rows are per layer, then summed per stack).

Update rows (realistic framework, v1 deployed, then v2 through ``deploy/delta`` over a local
HTTP server that serves ranges and counts bytes and requests):

    (a) one small pure-Python dependency bumped: six 1.16.0 -> 1.17.0
    (b) one compiled package bumped: numpy 2.1.2 -> 2.1.3
    (c) nothing but the layer's version (its venvstacks_layer.json)

against today's update of a changed layer: the whole archive fetched, then unpacked with
unchanged files linked from the deployed version. Publish rows: archive bytes (+ index) and
time of this tree's writer against the writer at ``--before`` (main before issue 21), each
run in its own process with the same settings (x86 filter, every core), best of ``--reps``
by CPU seconds (wall time too: on a busy machine CPU time is the steadier measure).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from rig.range_server import RangeServer  # noqa: E402

from venvlayers.archive.extract import extract_archive, extract_members  # noqa: E402
from venvlayers.core.report import Reporter  # noqa: E402
from venvlayers.deploy.delta import plan_delta  # noqa: E402
from venvlayers.deploy.sources import HttpSource  # noqa: E402
from venvlayers.formats import records  # noqa: E402
from venvlayers.net.downloads import Download, Downloader  # noqa: E402

SITE = "lib/python3.12/site-packages"
MTIME = 1_700_000_000
BEFORE = "7d1c792"  # main before issue 21
TREES = {
    "small": ["six==1.16.0", "idna==3.10", "attrs==24.2.0", "packaging==24.1"],
    "realistic": ["numpy==2.1.2", "scipy==1.14.1", "six==1.16.0"],
    "a": ["numpy==2.1.2", "scipy==1.14.1", "six==1.17.0"],
    "b": ["numpy==2.1.3", "scipy==1.14.1", "six==1.16.0"],
}
CASES = {
    "a": "one small pure-Python dependency bumped (six 1.16.0 -> 1.17.0)",
    "b": "one compiled package bumped (numpy 2.1.2 -> 2.1.3)",
    "c": "only the layer's version changed",
}

# Runs in a fresh process (this tree's code, or --before's): archive one layer, print JSON.
_PUBLISH = """
import json, sys, time
from pathlib import Path
from venvlayers.archive.write import write_archive
try:  # imported before the clock starts, like write_archive (a publish has them loaded)
    from venvlayers.publish.layer_index import write_index
except ImportError:
    write_index = None
src, out, fmt, MTIME = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
began, cpu = time.perf_counter(), time.process_time()
info = write_archive(src, out, root_name="framework", fmt=fmt, mtime=MTIME, x86_code=True)
index = None
if write_index is not None:
    ref = write_index(out, "framework", info)
    index = ref.model_dump() if ref is not None else None
took, cpu = time.perf_counter() - began, time.process_time() - cpu
print(json.dumps({"size": info.size, "sha256": info.sha256, "seconds": took, "cpu": cpu, "index": index}))
"""


RUNTIME_PREFIX = Path("/root/.pyenv/versions/3.12.1")
"""A local CPython 3.12.1 prefix standing in for the stacks' runtime layer (as
``bench/archive_bench.py`` uses it): both bench stacks ship one, and it dominates the small
stack's bytes."""


def build_tree(work: Path, name: str, version: int = 1) -> Path:
    """``work/trees/<name>``: a layer folder (site-packages installed by uv, a layer config)."""
    tree = work / "trees" / f"{name}-{version}"
    if (tree / "share").is_dir():
        return tree
    if name == "runtime":
        skip = shutil.ignore_patterns("__pycache__", "test", "tests", "idlelib", "*.pyc")
        shutil.copytree(RUNTIME_PREFIX, tree, symlinks=True, ignore=skip)
        (tree / "share" / "venv" / "metadata").mkdir(parents=True, exist_ok=True)
        (tree / "share" / "venv" / "metadata" / "venvstacks_layer.json").write_text("{}\n")
        return tree
    if tree.exists():
        shutil.rmtree(tree)
    packages = TREES[name]
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            "3.12",
            "--target",
            str(tree / SITE),
            *packages,
        ],
        check=True,
    )
    meta = tree / "share" / "venv" / "metadata"
    meta.mkdir(parents=True)
    (meta / "venvstacks_layer.json").write_text(
        f'{{"python": "bin/python", "layer_version": {version}}}\n'
    )
    return tree


def publish(src: Path, out: Path, fmt: str, pythonpath: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, "-c", _PUBLISH, str(src), str(out), fmt, str(MTIME)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def old_source(work: Path, rev: str) -> Path:
    """The package at ``rev``, extracted once (``git archive``)."""
    folder = work / f"before-{rev}"
    if not (folder / "src").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", rev, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def publish_rows(work: Path, fmts: list[str], reps: int, rev: str) -> list[str]:
    rows = []
    new_src, old_src = REPO_ROOT / "src", old_source(work, rev)
    totals: dict[tuple[str, str], list[float]] = {}
    for stack, layer in (("small", "small"), ("both", "runtime"), ("realistic", "realistic")):
        tree = build_tree(work, layer)
        for fmt in fmts:
            best: dict[str, dict[str, object]] = {}
            for rep in range(reps):
                order = [("new", new_src), ("old", old_src)]
                for label, src in order if rep % 2 == 0 else order[::-1]:
                    out = work / "publish" / f"{stack}-{label}.{fmt}"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    got = publish(tree, out, fmt, src)
                    if label not in best or float(got["cpu"]) < float(best[label]["cpu"]):  # type: ignore[arg-type]
                        best[label] = got
            new, old = best["new"], best["old"]
            index = work / "publish" / f"{stack}-new.index.json.xz"
            index_bytes = index.stat().st_size if index.is_file() else 0
            size_new, size_old = int(new["size"]), int(old["size"])  # type: ignore[call-overload]
            t_new, t_old = float(new["seconds"]), float(old["seconds"])  # type: ignore[arg-type]
            c_new, c_old = float(new["cpu"]), float(old["cpu"])  # type: ignore[arg-type]
            rows.append(
                f"| publish {fmt} | {layer} layer | {size_new:,} B (+ index {index_bytes:,} B) | "
                f"{size_old:,} B | {100 * (size_new / size_old - 1):+.2f} % "
                f"(with index {100 * ((size_new + index_bytes) / size_old - 1):+.2f} %) | "
                f"{t_new:.2f} s vs {t_old:.2f} s ({100 * (t_new / t_old - 1):+.1f} %); CPU "
                f"{c_new:.2f} s vs {c_old:.2f} s ({100 * (c_new / c_old - 1):+.1f} %) |"
            )
            print(rows[-1], flush=True)
            for name in ("small", "realistic") if stack == "both" else (stack,):
                sums = totals.setdefault((name, fmt), [0.0] * 5)
                for i, value in enumerate((size_new, index_bytes, size_old, c_new, c_old)):
                    sums[i] += value
    for (name, fmt), (new_b, idx_b, old_b, new_c, old_c) in sorted(totals.items()):
        rows.append(
            f"| publish {fmt} | {name} stack (runtime + framework) | {new_b:,.0f} B (+ index "
            f"{idx_b:,.0f} B) | {old_b:,.0f} B | {100 * (new_b / old_b - 1):+.2f} % (with index "
            f"{100 * ((new_b + idx_b) / old_b - 1):+.2f} %) | CPU {new_c:.1f} s vs {old_c:.1f} s "
            f"({100 * (new_c / old_c - 1):+.1f} %) |"
        )
        print(rows[-1], flush=True)
    return rows


def metadata(out: Path, name: str, result: dict[str, object]) -> records.LayerMetadata:
    index = result["index"]
    assert isinstance(index, dict)
    return records.LayerMetadata(
        layer_name="framework-bench",
        install_target="framework",
        requirements_hash="sha256:x",
        lock_version=1,
        locked_at="2026-01-01T00:00:00Z",
        archive_name=name,
        archive_size=int(result["size"]),  # type: ignore[call-overload]
        archive_hashes=records.ArchiveHashes(sha256=str(result["sha256"])),
        venvlayers_index=records.LayerIndexRef(name=index["name"], sha256=index["sha256"]),
    )


def dist_compressed(tree: Path, dist_info: str, fmt: str) -> int:
    """The changed distribution alone (its RECORD's files) as its own tar, compressed like
    the archive (xz preset 6 / zstd level 12): what (a)'s target is measured against."""
    import csv
    import lzma
    import tarfile

    from venvlayers.archive.formats import zstd

    site = tree / SITE
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for row in csv.reader((site / dist_info / "RECORD").read_text().splitlines()):
            path = (site / row[0]).resolve()
            if row and path.is_file():
                tar.add(path, arcname=row[0])
    data = buffer.getvalue()
    if fmt == "tar.xz":
        return len(lzma.compress(data, preset=6))
    return len(zstd.compress(data, level=12))


def update_rows(work: Path, fmts: list[str]) -> list[str]:
    rows = []
    for fmt in fmts:
        served = work / "served" / fmt
        shutil.rmtree(served, ignore_errors=True)
        served.mkdir(parents=True)
        v1_tree = build_tree(work, "realistic")
        name1 = f"framework-linux_x86_64-1.{fmt}"
        publish(v1_tree, served / name1, fmt, REPO_ROOT / "src")
        deployed_root = work / "deployed" / fmt
        shutil.rmtree(deployed_root, ignore_errors=True)
        deployed = extract_archive(served / name1, deployed_root, expected_root="framework")
        for build, case in enumerate(CASES, start=2):
            if case == "c":
                tree = work / "trees" / "c-1"
                if not tree.exists():
                    shutil.copytree(v1_tree, tree, copy_function=os.link)
                    config = tree / "share" / "venv" / "metadata" / "venvstacks_layer.json"
                    config.unlink()
                    config.write_text('{"python": "bin/python", "layer_version": 2}\n')
            else:
                tree = build_tree(work, case)
            name = f"framework-linux_x86_64-{build}.{fmt}"
            meta = metadata(served, name, publish(tree, served / name, fmt, REPO_ROOT / "src"))
            whole = meta.archive_size or 0
            # today: the whole archive, then unpacked reusing the deployed version's files
            log = io.StringIO()
            with RangeServer(served) as server:
                downloader = Downloader(
                    work / "cache" / f"whole-{fmt}-{case}", reporter=Reporter(log)
                )
                shutil.rmtree(downloader.cache, ignore_errors=True)
                began = time.perf_counter()
                got = downloader.fetch(
                    Download(server.url + name, meta.archive_sha256, whole, name)
                )
                dest = work / "new" / f"whole-{fmt}-{case}"
                shutil.rmtree(dest, ignore_errors=True)
                extract_archive(got, dest, expected_root="framework", reuse_from=deployed)
                t_whole = time.perf_counter() - began
                whole_sent, whole_requests = server.bytes_sent(), len(server.log)
            with RangeServer(served) as server:
                downloader = Downloader(
                    work / "cache" / f"delta-{fmt}-{case}", reporter=Reporter(log)
                )
                shutil.rmtree(downloader.cache, ignore_errors=True)
                source = HttpSource(server.url, downloader)
                ref = meta.venvlayers_index
                assert ref is not None
                began = time.perf_counter()
                plan = plan_delta(
                    meta,
                    source.archive(name, meta),
                    source.beside(ref.name, ref.sha256),
                    deployed,
                    downloader,
                    Reporter(log),
                )
                assert plan is not None, log.getvalue()
                dest = work / "new" / f"delta-{fmt}-{case}"
                shutil.rmtree(dest, ignore_errors=True)
                extract_members(
                    plan.ranges,
                    plan.members(),
                    dest,
                    expected_root="framework",
                    bound_size=whole,
                    reuse_from=deployed,
                )
                t_delta = time.perf_counter() - began
                plan.discard()
                ranges = server.bytes_sent(str(fmt))
                index = server.bytes_sent(".index.json.xz")
                requests = len(server.log)
            target = ""
            if case in ("a", "b"):
                changed = next(
                    (tree / SITE).glob(
                        "six-1.17*.dist-info" if case == "a" else "numpy-2.1.3*.dist-info"
                    )
                )
                alone = dist_compressed(tree, changed.name, fmt)
                target = f"; the distribution alone compressed: {alone:,} B, ranges = {ranges / alone:.2f} x"
            rows.append(
                f"| update {fmt} ({case}) | {CASES[case]}{target} | {ranges + index:,} B "
                f"({ranges:,} ranges in {plan.stats.ranges} run(s) + {index:,} index), "
                f"{requests} requests, {t_delta:.2f} s | {whole_sent:,} B, {whole_requests} "
                f"request, {t_whole:.2f} s | {100 * (ranges + index) / whole:.2f} % |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "venvlayers-delta-bench"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--fmt", default="both", choices=["tar.xz", "tar.zst", "both"])
    parser.add_argument("--skip-publish", action="store_true")
    parser.add_argument("--skip-update", action="store_true")
    args = parser.parse_args()
    fmts = ["tar.xz", "tar.zst"] if args.fmt == "both" else [args.fmt]
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    if not args.skip_update:
        print(
            "| row | case | delta | whole archive (today) | share |\n|---|---|---|---|---|",
            flush=True,
        )
        rows += update_rows(args.work, fmts)
    if not args.skip_publish:
        print(
            "| row | stack | this layout | before | bytes | time |\n|---|---|---|---|---|---|",
            flush=True,
        )
        rows += publish_rows(args.work, fmts, args.reps, args.before)


if __name__ == "__main__":
    main()
