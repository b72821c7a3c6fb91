"""An update inside a multi-GB framework layer, by hand: what ``deploy/delta`` costs when
one small package changed in a layer of gigabytes (issue 23).

    uv run python bench/delta_scale.py [--factor 1.0] [--work DIR] [--reps 3]
        [--fmt tar.zst] [--before REV]

The layer is the ``scale`` stack's generated framework (``bench/scale_stacks``: ~2 GB at
``--factor 1``, 20 MB at 0.01) unzipped into ``lib/python3.11/site-packages``, with its tiny
package ``vlbench-util`` at 1.0 (v1) and 1.1 (v2). Both are archived with this tree's writer
and layer index into ``<work>/served``; v1 is unpacked as the deployed version (each timed row
waits 2.5 s first so that its files are settled, as a deployment updated later is).
Each timed row plans the update from the archive in the folder (``plan_delta`` with a
``FolderSource``) and unpacks it beside the deployed version (``extract_members``), in a
fresh interpreter started from ``bench/launcher.py`` so that its memory is its own; it
prints wall and CPU seconds, peak memory, and the bytes the process read (``rchar``).
``--before REV`` runs the same rows with the code at REV (``git archive``), alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "src"))

import scale_stacks  # noqa: E402
from delta_bench import metadata, old_source  # noqa: E402

SITE = "lib/python3.11/site-packages"
ROOT = "framework"  # the install target of ``delta_bench.metadata``

#: Runs in the measured interpreter: PYTHONPATH picks the code (this tree or --before).
ROW = r"""
import json, os, resource, sys, time
from pathlib import Path
from venvlayers.archive.extract import extract_members
from venvlayers.core.report import Reporter
from venvlayers.deploy.delta import plan_delta
from venvlayers.deploy.sources import FolderSource
from venvlayers.formats.records import LayerMetadata
from venvlayers.net.downloads import Downloader

served, deployed, into = map(Path, sys.argv[1:4])
item = LayerMetadata.from_json((served / "v2.json").read_text())
start = time.perf_counter()
reporter = Reporter(sys.stderr)
source = FolderSource(served)
ref = item.venvlayers_index
plan = plan_delta(item, source.archive(item.archive_name, item),
                  source.beside(ref.name, ref.sha256), deployed,
                  Downloader(into.parent / "cache", reporter=reporter), reporter)
planned = time.perf_counter()
assert plan is not None
extract_members(plan.ranges, plan.members(), into, expected_root=item.install_target,
                bound_size=item.archive_size, reuse_from=deployed)
done = time.perf_counter()
rchar = next(int(l.split()[1]) for l in open("/proc/self/io") if l.startswith("rchar:"))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"plan_s": planned - start, "unpack_s": done - planned,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "rchar": rchar,
                  "files": len(plan.index.entries), "reused": len(plan.reused)}))
"""


def build_tree(wheels: Path, dest: Path, util_version: str) -> None:
    """The framework layer's files: every framework wheel unzipped, ``vlbench-util`` at
    ``util_version``, and the layer's marker file."""
    site = dest / SITE
    site.mkdir(parents=True)
    for wheel in sorted(wheels.glob("*.whl")):
        name = wheel.name
        if name.startswith("vlbench_patch-") or (
            name.startswith("vlbench_util-") and f"-{util_version}-" not in name
        ):
            continue
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                target = site / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(target, (info.external_attr >> 16) & 0o777 or 0o644)
    meta = dest / "share" / "venv" / "metadata"
    meta.mkdir(parents=True)
    (meta / "venvstacks_layer.json").write_text('{"python": "bin/python"}\n')


def publish(tree: Path, served: Path, build: int, fmt: str) -> Path:
    """Archive ``tree`` with its layer index into ``served``; its metadata as ``v<build>.json``."""
    from venvlayers.archive.formats import ArchiveFormat
    from venvlayers.archive.write import write_archive
    from venvlayers.publish.layer_index import write_index

    archive = served / f"{ROOT}-linux_x86_64-{build}.{fmt}"
    info = write_archive(tree, archive, root_name=ROOT, fmt=ArchiveFormat(fmt), mtime=0)
    ref = write_index(archive, ROOT, info)
    assert ref is not None
    index = {"name": ref.name, "sha256": ref.sha256}
    item = metadata(
        served, archive.name, {"index": index, "size": info.size, "sha256": info.sha256}
    )
    path = served / f"v{build}.json"
    path.write_text(json.dumps(item.dump()))
    return path


def prepare(work: Path, factor: float, fmt: str) -> tuple[Path, Path]:
    """``<work>/served`` (v1 and v2 archives) and ``<work>/deployed/layer`` (v1), made once."""
    from venvlayers.archive.extract import extract_archive

    wheels = work / "wheels"
    made = f"{factor} {scale_stacks.RECIPE}\n"
    if not (wheels / "done").exists() or (wheels / "done").read_text() != made:
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        scale_stacks.framework_wheels(wheels, factor)
        scale_stacks.patch_wheels(wheels)
        (wheels / "done").write_text(made)
        shutil.rmtree(work / f"served-{ROOT}-{fmt}", ignore_errors=True)  # made from the old ones
    served, deployed = work / f"served-{ROOT}-{fmt}", work / f"deployed-{ROOT}-{fmt}"
    if not (served / "v2.json").exists():
        shutil.rmtree(served, ignore_errors=True)
        served.mkdir()
        for build, util in ((1, "1.0"), (2, "1.1")):
            tree = work / f"tree-v{build}"
            shutil.rmtree(tree, ignore_errors=True)
            build_tree(wheels, tree, util)
            publish(tree, served, build, fmt)
            shutil.rmtree(tree)
        shutil.rmtree(deployed, ignore_errors=True)
    if not (deployed / ROOT).is_dir():
        extract_archive(served / f"{ROOT}-linux_x86_64-1.{fmt}", deployed, expected_root=ROOT)
    return served, deployed / ROOT


def measure(src: Path, served: Path, deployed: Path, scratch: Path) -> dict[str, float]:
    into = scratch / "new"
    shutil.rmtree(into, ignore_errors=True)
    shutil.rmtree(scratch / "cache", ignore_errors=True)
    into.mkdir(parents=True)
    # removing the last row's links changed the deployed files' ctime: let them settle, as
    # a deployment updated later than two seconds after its last deploy has them
    time.sleep(2.5)
    result = scratch / "launcher.json"
    env = dict(os.environ, PYTHONPATH=str(src))
    command = [sys.executable, "-c", ROW, str(served), str(deployed), str(into)]
    launcher = [sys.executable, "-I", "-S", str(BENCH / "launcher.py"), str(result), "--"]
    done = subprocess.run(
        [*launcher, *command], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"row failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    launched = json.loads(result.read_text())
    row["wall_s"] = launched["seconds"]
    row["peak_mib"] = launched["largest_kib"] / 1024
    shutil.rmtree(into)
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "vl-delta-scale")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fmt", default="tar.zst", choices=["tar.zst", "tar.xz"])
    parser.add_argument("--before", default=None, help="a git revision to compare with")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    served, deployed = prepare(args.work, args.factor, args.fmt)
    codes = {"this tree": REPO / "src"}
    if args.before:
        codes[args.before] = old_source(args.work, args.before)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    for _ in range(args.reps):
        for name, src in codes.items():  # alternating
            rows[name].append(measure(src, served, deployed, args.work / "scratch"))
    size = sum(p.stat().st_size for p in deployed.rglob("*") if p.is_file())
    print(f"\nlayer: {size / 1e9:.2f} GB unpacked, {args.fmt}, median of {args.reps}")
    print("| code | wall s | plan s | unpack s | CPU s | peak MiB | read MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, samples in rows.items():

        def med(key: str, samples: list[dict[str, float]] = samples) -> float:
            return statistics.median(s[key] for s in samples)

        print(
            f"| {name} | {med('wall_s'):.2f} | {med('plan_s'):.2f} | {med('unpack_s'):.2f} "
            f"| {med('cpu_s'):.2f} | {med('peak_mib'):.0f} | {med('rchar') / 1e6:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
