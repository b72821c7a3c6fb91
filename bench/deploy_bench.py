"""Deploy rows for the benchmark: a first deploy and an app-only update, over local HTTP.

``deploy_rows(v1, v2, work)`` serves two publish outputs of one stack (v2 differs from v1
in one app) from a counting HTTP server on 127.0.0.1 and times, with a fresh cache and
target each repetition:

- ``deploy (first)``: ``venvlayers deploy --from <url>/v1`` into an empty target;
- ``deploy (app-only update)``: then ``--from <url>/v2`` into the same target;
- ``deploy (first, no bytecode)``: ``deploy --no-compile --from <url>/v1`` into another
  empty target.

venvlayers runs without ``PYTHONDONTWRITEBYTECODE`` (a user's installation has its
bytecode; with the variable set every run would compile venvlayers and pydantic again).

Each row reports wall seconds and the archive bytes the server sent. ``bench.py`` can call
``deploy_rows`` with its own publish outputs; run alone, this file builds the test rig's
two-app stack (``tests/rig/deploy_stack.py``) and prints the table:

    uv run python bench/deploy_bench.py [--reps N] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))  # the offline rig

from rig.file_server import FileServer  # noqa: E402

ROWS = {
    "first": "deploy (first)",
    "update": "deploy (app-only update)",
    "first_nobc": "deploy (first, no bytecode)",
}


def _deploy(url: str, target: Path, cache: Path, *flags: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "venvlayers",
            "-q",
            "deploy",
            *flags,
            "--from",
            url,
            "--target",
            str(target),
            "--cache",
            str(cache),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - start


def deploy_rows(v1: Path, v2: Path, work: Path, *, reps: int = 3) -> dict[str, dict[str, float]]:
    """Median seconds and archive bytes downloaded for each row."""
    served = work / "served"
    shutil.rmtree(served, ignore_errors=True)
    served.mkdir(parents=True)
    for name, folder in (("v1", v1), ("v2", v2)):
        shutil.copytree(folder, served / name, copy_function=os.link)
    samples: dict[str, list[tuple[float, int]]] = {row: [] for row in ROWS}
    with FileServer(served) as server:
        for rep in range(reps):
            run_dir = work / f"rep-{rep}"
            shutil.rmtree(run_dir, ignore_errors=True)
            target, cache = run_dir / "target", run_dir / "cache"
            runs = (
                ("first", "v1", ()),
                ("update", "v2", ()),
                ("first_nobc", "v1", ("--no-compile",)),
            )
            for row, version, flags in runs:
                server.clear()
                if row == "first_nobc":
                    target, cache = run_dir / "target-nobc", run_dir / "cache-nobc"
                seconds = _deploy(server.url + version, target, cache, *flags)
                archive_bytes = sum(
                    s.sent for s in server.log if s.path.endswith((".tar.xz", ".tar.zst", ".zip"))
                )
                samples[row].append((seconds, archive_bytes))
            shutil.rmtree(run_dir, ignore_errors=True)
    return {
        row: {
            "seconds": statistics.median(s for s, _ in values),
            "bytes_downloaded": statistics.median(b for _, b in values),
        }
        for row, values in samples.items()
    }


def markdown(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| row | seconds | archive bytes downloaded |", "|---|---|---|"]
    for row, title in ROWS.items():
        values = rows[row]
        lines.append(f"| {title} | {values['seconds']:.2f} | {int(values['bytes_downloaded'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    from rig.deploy_stack import published_versions
    from rig.index import SimpleIndex
    from rig.runtime import local_cpython_prefix, make_runtime_mirror
    from rig.wheels import make_wheelhouse

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="venvlayers-deploy-bench-"))
    prefix = local_cpython_prefix("3.12.1")
    if prefix is None:
        print("error: needs a local CPython 3.12.1 (see bench/README.md)", file=sys.stderr)
        return 2
    mirror = make_runtime_mirror([(prefix, "3.12.1")], work / "mirror")
    os.environ.update(mirror.env)
    os.environ.pop("SOURCE_DATE_EPOCH", None)
    with SimpleIndex(make_wheelhouse(work / "wheelhouse").path) as index:
        versions = published_versions(work / "stack", index.url)
    sys.stdout.write(
        markdown(deploy_rows(versions.v1, versions.v2, work / "deploy", reps=args.reps))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
