"""First deploy of the realistic stack, timed phase by phase (issue 23).

    uv run python bench/deploy_profile.py setup   [--work-dir DIR]
    uv run python bench/deploy_profile.py time    [--work-dir DIR] [--reps N] [--only NAME]
                                                  [--baseline OTHER_CHECKOUT/src]
    uv run python bench/deploy_profile.py profile [--work-dir DIR] --only NAME

``setup`` locks, builds and publishes ``bench/stacks/realistic`` (PyPI as of
``bench.EXCLUDE_NEWER``, the runtimes from the local mirror) three ways: tar.xz, tar.xz
``--bytecode`` and tar.zst, under ``<work>/out-<name>``. ``time`` deploys each output into
an empty target ``--reps`` times (``venvlayers deploy --from <folder>``, without
``PYTHONDONTWRITEBYTECODE``, as a user runs it) and prints the median wall and CPU seconds
(the deploy's own process and every child it waited for: ``RUSAGE_CHILDREN``), and for
plain tar.xz and tar.zst the time ``--no-compile`` takes. ``profile`` runs one deploy in process under
cProfile; ``phases`` runs one in process and prints each stage function's wall and CPU
seconds.
The machine is shared: compare CPU seconds as well as wall.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

from rig.runtime import local_cpython_prefix, make_runtime_mirror  # noqa: E402

from bench import EXCLUDE_NEWER, RUNTIME_VERSIONS, base_env, cache_env  # noqa: E402

OUTPUTS = {
    "xz": ("tar.xz", False),
    "xz-bytecode": ("tar.xz", True),
    "zst": ("tar.zst", False),
    "zst-bytecode": ("tar.zst", True),
}
DEFAULT_WORK = Path.home() / ".cache" / "venvlayers-bench" / "deploy-profile"


def environment(work: Path) -> dict[str, str]:
    prefixes = []
    for version in RUNTIME_VERSIONS:
        prefix = local_cpython_prefix(version)
        if prefix is None:
            sys.exit(f"no local CPython {version} (see bench/README.md)")
        prefixes.append((prefix, version))
    mirror = make_runtime_mirror(prefixes, work / "runtime-mirror")
    return {
        **base_env(work),
        **cache_env(work / "cache"),
        **mirror.env,
        "UV_EXCLUDE_NEWER": EXCLUDE_NEWER,
    }


def venvlayers(*args: str | Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "venvlayers", *map(str, args)], env=env, check=True)


def setup(work: Path) -> None:
    env = environment(work)
    spec_dir = work / "stack"
    if not spec_dir.is_dir():
        shutil.copytree(BENCH_DIR / "stacks" / "realistic", spec_dir)
    spec = spec_dir / "venvstacks.toml"
    venvlayers("lock", "--if-needed", spec, env=env)
    venvlayers("build", "--locked", spec, env=env)
    for name, (fmt, bytecode) in OUTPUTS.items():
        out = work / f"out-{name}"
        if out.is_dir():
            continue
        partial = work / f"out-{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        flags = ["--format", fmt] + (["--bytecode"] if bytecode else [])
        venvlayers("publish", "--output-dir", partial, *flags, spec, env=env)
        partial.rename(out)


def deploy_once(
    work: Path, name: str, *flags: str, source_tree: Path | None = None
) -> tuple[float, float]:
    """Wall and CPU seconds (this child and its children) of one first deploy;
    ``source_tree``: another checkout's ``src`` to run instead of this one."""
    target = work / "targets" / name
    shutil.rmtree(target, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if source_tree is not None:
        env["PYTHONPATH"] = str(source_tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    source, into = str(work / f"out-{name}"), str(target)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "venvlayers",
            "-q",
            "deploy",
            *flags,
            "--from",
            source,
            "--target",
            into,
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shutil.rmtree(target, ignore_errors=True)
    return wall, cpu


def time_all(work: Path, reps: int, only: str | None, baseline: Path | None) -> None:
    """Each row ``reps`` times; with ``baseline`` (another checkout's ``src``) the two
    trees alternate, run for run, so both see the same load."""
    rows = [(n, ()) for n in OUTPUTS] + [(n, ("--no-compile",)) for n in ("xz", "zst")]
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if baseline is not None:
        trees.insert(0, ("baseline", baseline))
    print("| output | flags | tree | wall s (median) | CPU s (median) | samples (wall/CPU) |")
    print("|---|---|---|---|---|---|")
    for name, flags in rows:
        if only and name != only:
            continue
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in trees}
        for _label, tree in trees:  # warm the page cache and each tree's own bytecode
            deploy_once(work, name, *flags, source_tree=tree)
        for _ in range(reps):
            for label, tree in trees:
                samples[label].append(deploy_once(work, name, *flags, source_tree=tree))
        for label, values in samples.items():
            wall = statistics.median(s[0] for s in values)
            cpu = statistics.median(s[1] for s in values)
            listing = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in values)
            print(
                f"| {name} | {' '.join(flags)} | {label} | {wall:.2f} | {cpu:.2f} | {listing} |",
                flush=True,
            )


def _timed(module: object, name: str, log: list[str]) -> None:
    """Wrap ``module.name`` to log its wall, process CPU and children's CPU seconds."""
    inner = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        start, cpu = time.perf_counter(), time.process_time()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            return inner(*args, **kwargs)
        finally:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            child = after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
            label = str(kwargs.get("expected_root", "")) or name
            log.append(
                f"{name:16} {label:18} wall {time.perf_counter() - start:6.2f} "
                f"cpu {time.process_time() - cpu:6.2f} children {child:6.2f}"
            )

    setattr(module, name, wrapper)


def phases(work: Path, name: str, *flags: str) -> None:
    """One deploy in process, the stage functions' wall and CPU seconds (CPU of a phase
    running beside others counts theirs too)."""
    from venvlayers.cli.commands import main
    from venvlayers.deploy import stage

    target = work / "targets" / f"phases-{name}"
    shutil.rmtree(target, ignore_errors=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    log: list[str] = []
    for function in ("extract_archive", "link_for", "compile_layers", "stage_layers"):
        _timed(stage, function, log)
    start, cpu = time.perf_counter(), time.process_time()
    main(["-q", "deploy", *flags, "--from", str(work / f"out-{name}"), "--target", str(target)])
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("\n".join(log))
    print(
        f"deploy total wall {time.perf_counter() - start:.2f} cpu {time.process_time() - cpu:.2f}"
        f" children {kids.ru_utime + kids.ru_stime:.2f}"
    )
    shutil.rmtree(target, ignore_errors=True)


def profile(work: Path, name: str) -> None:
    import cProfile
    import pstats

    from venvlayers.cli.commands import main

    target = work / "targets" / f"profile-{name}"
    shutil.rmtree(target, ignore_errors=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    prof = cProfile.Profile()
    argv = ["deploy", "--from", str(work / f"out-{name}"), "--target", str(target)]
    prof.runcall(main, argv)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    shutil.rmtree(target, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("setup", "time", "profile", "phases"))
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=tuple(OUTPUTS), default=None)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout's src, timed alternately"
    )
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.action == "setup":
        setup(work)
    elif args.action == "time":
        time_all(work, args.reps, args.only, args.baseline)
    elif args.action == "phases":
        phases(work, args.only or "xz")
    else:
        profile(work, args.only or "xz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
