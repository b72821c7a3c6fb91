"""Set up a locked, built and published copy of a bench stack, then time the no-op rows.

Usage (from the repository, in its environment):

    env -u PYTHONDONTWRITEBYTECODE uv run --no-sync python bench/noop_stack.py \
        --stack small|realistic --dir /tmp/noop-small [--reps 5]

The first run copies ``bench/stacks/<stack>`` into ``--dir`` and runs lock, build and publish
once with the environment ``bench/bench.py`` gives venvlayers (the small stack's wheelhouse on
a local index, the runtime mirror; the realistic stack's PyPI cut-off). Every run then times
the bench's ``noop`` row (``lock --if-needed``, ``build --locked``, ``publish``, summed) and
its ``noop_one`` row (``build --publish``) ``--reps`` times through ``bench/measure.py``, and
prints the medians of wall and CPU seconds. ``--dir``/``env.json`` holds the environment, so
the commands can be rerun by hand (``--print-env`` prints it as ``export`` lines).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import (
    BENCH_DIR,
    RUNTIME_VERSIONS,
    VENVLAYERS,
    base_env,
    cache_env,
    make_tools,
    run_measured,
    stack_environment,
)


@contextlib.contextmanager
def _environment(stack: str, work: Path) -> Iterator[tuple[dict[str, str], list[str]]]:
    with stack_environment(stack, work) as setup:
        peer = Path(sys.executable)  # the reference tool is never run here
        tools = make_tools(peer, work, setup.env, setup.index_args)
        tool = next(t for t in tools if t.name == VENVLAYERS)
        yield {**tool.env, **cache_env(work / "caches")}, tool.index_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=("small", "realistic"), default="small")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--work-dir", type=Path, default=Path.home() / ".cache" / "venvlayers-bench" / "work"
    )
    parser.add_argument("--print-env", action="store_true")
    parser.add_argument(
        "--no-replay", action="store_true", help="time the full path (VENVLAYERS_NO_REPLAY=1)"
    )
    args = parser.parse_args()
    folder: Path = args.dir.resolve()
    spec, out = folder / "venvstacks.toml", folder / "_out-tar.xz"
    assert RUNTIME_VERSIONS and base_env  # the bench's own environment, unchanged
    with _environment(args.stack, args.work_dir.resolve()) as (env, index_args):
        prefix = [sys.executable, "-m", VENVLAYERS]
        log = Path(tempfile.gettempdir()) / f"noop-{args.stack}.log"
        if not spec.is_file():
            shutil.copytree(BENCH_DIR / "stacks" / args.stack, folder)
            for command in (
                [*prefix, "lock", *index_args, str(spec)],
                [*prefix, "build", "--locked", *index_args, str(spec)],
                [*prefix, "publish", "--output-dir", str(out), str(spec)],
            ):
                run_measured(command, env=env, cwd=folder, log=log)
        if args.no_replay:
            env = {**env, "VENVLAYERS_NO_REPLAY": "1"}
        (folder / "env.json").write_text(json.dumps(env, indent=1, sort_keys=True) + "\n")
        if args.print_env:
            for key, value in sorted(env.items()):
                print(f"export {key}={json.dumps(value)}")
            return 0
        three = [
            [*prefix, "lock", "--if-needed", *index_args, str(spec)],
            [*prefix, "build", "--locked", *index_args, str(spec)],
            [*prefix, "publish", "--output-dir", str(out), str(spec)],
        ]
        one = [*prefix, "build", "--publish", "--output-dir", str(out), str(spec)]
        rows: dict[str, list[tuple[float, float]]] = {"noop": [], "noop_one": []}
        for _ in range(args.reps):
            samples = [run_measured(c, env=env, cwd=folder, log=log) for c in three]
            rows["noop"].append(
                (sum(s.seconds for s in samples), sum(s.cpu_seconds or 0 for s in samples))
            )
            s = run_measured(one, env=env, cwd=folder, log=log)
            rows["noop_one"].append((s.seconds, s.cpu_seconds or 0))
        for row, values in rows.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            mode = "full path" if args.no_replay else "default"
            print(
                f"{args.stack} {row:<9} wall {wall:.3f} s  cpu {cpu:.3f} s  ({mode}, median of {args.reps})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
