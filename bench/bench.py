"""Benchmark venvlayers against the reference tool (venvstacks 0.8.0) on the same stack specs.

Usage (normally through ``bench/run``):

    python bench/bench.py [--peer 0.8.0|0.7.0] [--peer-python PY] [--reps N] [--quick]
                          [--stack small|realistic]... [--work-dir DIR] [--keep]

The reference is installed on first use (``bench/peers.py``): 0.8.0 from the wheel in
``../shared/peer/``, 0.7.0 from the package index; ``--peer-python`` uses a given venv instead.

For every stack in ``bench/stacks/<name>/`` each tool works in its own copy of the folder,
with its own caches, and runs, N times, alternating which tool goes first:

- ``lock (cold)``: fresh copy (no locks, no build folder), empty package caches;
- ``lock (warm)``: fresh copy, caches kept from earlier runs of the same tool;
- ``build``: build folder removed, locks in place, warm caches;
- ``publish tar.xz``: into an empty output folder (archive bytes are summed);
- ``publish tar.zst``: venvlayers only; compared with the reference's tar.xz row;
- ``no-op pipeline``: lock + build + publish again with nothing changed (times summed);
- ``deploy (first)``: the tar.xz publish output into an empty target (venvlayers ``deploy``;
  venvstacks has no deploy command, so ``bench/peer_deploy.py`` does what its docs say:
  unpack every archive, run every ``postinstall.py``);
- ``deploy (app-only update)``: the app's launch module changes, the stack is rebuilt and
  published again (untimed), and the new output is deployed into that same target;
- ``deploy (first, no bytecode)``: venvlayers ``deploy --no-compile`` of that output into an
  empty target, against the reference's normal first deploy (it has no such choice).
- scale stacks only: ``deploy (one small package in the framework changed)``: the framework's
  pin of ``vlbench-util`` moves to 1.1, both tools lock, build and publish again (untimed:
  the big framework layer is published again), then deploy the output folder into the
  target of the first deploy; and venvlayers alone again over HTTP (``--from http://``, a
  range server on 127.0.0.1), after an untimed ``--rollback``, with a fresh download cache.

Before the repetitions each tool runs lock + build once, untimed, so "warm" caches are warm
on the first repetition too. Wall time is measured around each command; peak
memory is the command's own (``bench/measure.py``: started from a small launcher, the larger
of its largest process's ``ru_maxrss`` and the sampled sum of its process tree's Pss).

Runtimes come from local ``install_only`` archives made by the test rig from local
CPythons: venvlayers reads them through ``UV_PYTHON_DOWNLOADS_JSON_URL``, the reference
through ``bench/peer_offline.py``. The small stack is served from a generated wheelhouse on
a local PEP 503 index (``UV_DEFAULT_INDEX`` for uv, ``PIP_INDEX_URL`` for the reference's
pip); the realistic one resolves from PyPI as of ``EXCLUDE_NEWER``.

Prints a markdown table per stack and which targets hold; writes everything as JSON to
``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the offline rig: runtimes, wheels, index

import limits  # noqa: E402
import scale_report  # noqa: E402
from measure import measure  # noqa: E402
from peers import DEFAULT_PEER, PEER_VERSIONS, peer_python  # noqa: E402
from rig import LEAKY_ENV  # noqa: E402
from rig.index import SimpleIndex  # noqa: E402
from rig.range_server import RangeServer  # noqa: E402
from rig.runtime import local_cpython_prefix, make_runtime_mirror  # noqa: E402
from rig.wheels import make_wheelhouse  # noqa: E402
from scale_stacks import SCALE_STACKS, bump_framework_package, bump_patch, prepare  # noqa: E402

STACKS = ("small", "realistic")
ALL_STACKS = (*STACKS, *SCALE_STACKS)
#: Rows of the scale stacks (lock rows and no-ops say nothing new at that size).
SCALE_ROWS = (
    "lock_warm",
    "build",
    "publish_xz",
    "publish_zst",
    "deploy_first",
    "deploy_update",
    "deploy_first_nobc",
    "deploy_update_fw",
    "deploy_update_fw_http",
)
#: Rows only the scale stacks have (their framework pins a small package to move).
SCALE_ONLY_ROWS = ("deploy_update_fw", "deploy_update_fw_http")
RUNTIME_VERSIONS = ("3.12.1", "3.11.7")
#: The realistic stack resolves PyPI as of this instant, for both tools and every run.
EXCLUDE_NEWER = "2025-10-01T00:00:00Z"
ARCHIVE_SUFFIXES = (".tar.xz", ".tar.zst", ".zip", ".tar.gz")

VENVLAYERS = "venvlayers"
SCALE_MARK = ".scale-stack"  # in a scale stack's folder: its update bumps a package
REFERENCE = "venvstacks"


# -- measuring one command ----------------------------------------------------------------


@dataclass
class Sample:
    """One timed step: wall seconds, peak RSS (KiB); archive bytes written (publish) or
    needed (deploy: the archives a deploy from a remote source would download); bytes the
    deploy wrote into its target."""

    seconds: float
    rss_kib: int  # the larger of the two below
    archive_bytes: int | None = None
    written_bytes: int | None = None
    largest_kib: int | None = None  # ru_maxrss: the largest single process of the tree
    tree_kib: int | None = None  # the largest sampled sum of the tree's Pss
    cpu_seconds: float | None = None
    """user + system CPU of the command's tree (less noisy than wall time on a busy machine)"""


class CommandFailed(RuntimeError):
    pass


class OverBudget(CommandFailed):
    """A command that did not finish within its tool's budget (it was stopped)."""


def run_measured(
    command: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    budget: float | None = None,
) -> Sample:
    """Run ``command`` to completion through ``bench/measure.py``'s launcher, so its peak
    memory is its own (not this process's size); output goes to ``log`` (appended)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        measured = measure(
            command, env=env, cwd=cwd, stdout=out, result_dir=log.parent, timeout=budget
        )
    if measured.timed_out:
        raise OverBudget(
            f"did not finish within {budget:.0f} s (stopped; {measured.cpu_seconds:.0f} CPU s "
            f"and a peak of {measured.peak_kib / 1024:.0f} MiB by then): {' '.join(command)}"
        )
    if measured.exit_code != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise CommandFailed(f"{' '.join(command)} exited {measured.exit_code}; log {log}:\n{tail}")
    return Sample(
        seconds=measured.seconds,
        rss_kib=measured.peak_kib,
        largest_kib=measured.largest_kib,
        tree_kib=measured.tree_kib,
        cpu_seconds=measured.cpu_seconds,
    )


def archive_bytes(folder: Path) -> int:
    return sum(
        p.stat().st_size
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES)
    )


def combine(samples: Sequence[Sample]) -> Sample:
    """Several commands as one step: times add up, memory is the largest."""
    return Sample(
        seconds=sum(s.seconds for s in samples),
        rss_kib=max(s.rss_kib for s in samples),
        cpu_seconds=sum(s.cpu_seconds or 0.0 for s in samples),
    )


# -- the two tools ---------------------------------------------------------------------------


@dataclass
class Tool:
    """How to run one tool; ``env`` is its base environment (caches are added per step)."""

    name: str
    prefix: list[str]
    env: dict[str, str]
    noop_lock_args: list[str] = field(default_factory=list)
    formats: tuple[str, ...] = ("tar.xz",)
    deploy_from: bool = False  # venvlayers' deploy takes --from SOURCE (issue 16)
    bytecode: bool = False  # venvlayers' publish takes --bytecode (issue 23)
    index_args: list[str] = field(default_factory=list)  # --local-wheels DIR [--no-index]
    budget: float | None = None  # seconds a command may take before it is given up

    def lock(self, spec: Path) -> list[str]:
        return [*self.prefix, "lock", *self.index_args, str(spec)]

    def build(self, spec: Path) -> list[str]:
        if self.name == VENVLAYERS:
            # --locked: use the locks as they are (fail if stale) rather than relocking
            return [*self.prefix, "build", "--locked", *self.index_args, str(spec)]
        return [*self.prefix, "build", *self.index_args, str(spec)]

    def publish(self, spec: Path, out: Path, fmt: str, *, bytecode: bool = False) -> list[str]:
        command = [*self.prefix, "publish", "--output-dir", str(out)]
        if fmt != "tar.xz":
            command += ["--format", fmt]
        if bytecode:
            command.append("--bytecode")
        return [*command, str(spec)]

    def deploy(
        self, out: Path | str, target: Path, *, no_compile: bool = False, cache: Path | None = None
    ) -> list[str]:
        """Deploy ``out`` (a folder; for venvlayers also an http:// URL) into ``target``."""
        if self.name == VENVLAYERS:
            if self.deploy_from:
                flags = ["--no-compile"] if no_compile else []
                flags += ["--cache", str(cache)] if cache is not None else []
                return [*self.prefix, "deploy", *flags, "--from", str(out), "--target", str(target)]
            assert isinstance(out, Path)
            metadata = out / "__venvstacks__"
            return [
                *self.prefix,
                "deploy",
                "--metadata",
                str(metadata),
                "--archives",
                str(out),
                "--target",
                str(target),
            ]
        assert isinstance(out, Path)
        return [sys.executable, str(BENCH_DIR / "peer_deploy.py"), str(out), str(target)]

    def noop(self, spec: Path, out: Path) -> list[list[str]]:
        return [
            [*self.prefix, "lock", *self.noop_lock_args, *self.index_args, str(spec)],
            self.build(spec),
            self.publish(spec, out, "tar.xz"),
        ]

    def pipeline(self, spec: Path, out: Path) -> list[str]:
        """The whole pipeline as one command (what a CI job would run)."""
        if self.name == VENVLAYERS:
            return [*self.prefix, "build", "--publish", "--output-dir", str(out), str(spec)]
        return [
            *self.prefix,
            "build",
            "--lock-if-needed",
            "--publish",
            "--output-dir",
            str(out),
            str(spec),
        ]


def base_env(work: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE would make both tools compile their own code on every start
    # (the untimed priming run writes the bytecode a user's install has)
    env = {
        k: v for k, v in os.environ.items() if k not in LEAKY_ENV and k != "PYTHONDONTWRITEBYTECODE"
    }
    config = work / "empty-config"
    config.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "XDG_CONFIG_HOME": str(config),  # no user uv.toml / pip.conf
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "UV_NO_PROGRESS": "1",
        }
    )
    return env


def cache_env(root: Path) -> dict[str, str]:
    for sub in ("uv", "pip", "python"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "UV_CACHE_DIR": str(root / "uv"),
        "PIP_CACHE_DIR": str(root / "pip"),
        "UV_PYTHON_INSTALL_DIR": str(root / "python"),
    }


# -- one stack -------------------------------------------------------------------------------

ROWS = (
    "lock_cold",
    "lock_warm",
    "build",
    "publish_xz",
    "publish_zst",
    "noop",
    "noop_one",
    "deploy_first",
    "deploy_update",
    "deploy_first_nobc",
    "publish_xz_bc",
    "deploy_first_bc",
    "publish_zst_bc",
    "deploy_first_zst_bc",
)
ROW_TITLES = {
    "lock_cold": "lock (cold cache)",
    "lock_warm": "lock (warm cache)",
    "build": "build (clean)",
    "publish_xz": "publish tar.xz",
    "publish_zst": "publish tar.zst (vs ref tar.xz)",
    "noop": "no-op lock+build+publish",
    "noop_one": "no-op build --publish (1 command)",
    "deploy_first": "deploy (first)",
    "deploy_update": "deploy (app-only update)",
    "deploy_first_nobc": "deploy (first, no bytecode; ref: its normal first deploy)",
    "publish_xz_bc": "publish tar.xz --bytecode (vs ref tar.xz)",
    "deploy_first_bc": "deploy (first, --bytecode archives; ref: its normal first deploy)",
    "publish_zst_bc": "publish tar.zst --bytecode (vs ref tar.xz)",
    "deploy_first_zst_bc": "deploy (first, tar.zst --bytecode archives; ref: its normal first deploy)",
    "deploy_update_fw": "deploy (one small package in the framework changed; MB: archive bytes read)",
    "deploy_update_fw_http": "deploy over HTTP (the same update; MB: bytes downloaded; ref: its deploy from the folder)",
}


@dataclass
class StackRun:
    """State of one tool on one stack: its folders and the samples taken so far."""

    tool: Tool
    root: Path
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    current: Path | None = None  # the stack copy of the running repetition
    limits: dict[str, float] = field(default_factory=dict)  # see data_for_limits
    gave_up: str | None = None  # why this tool's later rows were not run (over its budget)

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    def warm_env(self) -> dict[str, str]:
        return {**self.tool.env, **cache_env(self.root / "cache")}

    def fresh_copy(self, source: Path, name: str) -> Path:
        destination = self.root / name
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("_build", "_out*"))
        return destination

    def record(self, row: str, sample: Sample) -> None:
        self.samples.setdefault(row, []).append(sample)


def step(run: StackRun, row: str, source: Path, rep: int) -> Sample | None:
    tool, log = run.tool, run.log
    if row == "lock_cold":
        folder = run.fresh_copy(source, f"rep{rep}-cold")
        cold_cache = run.root / f"rep{rep}-cold-cache"
        shutil.rmtree(cold_cache, ignore_errors=True)
        env = {**tool.env, **cache_env(cold_cache)}
        sample = run_measured(
            tool.lock(folder / "venvstacks.toml"), env=env, cwd=folder, log=log, budget=tool.budget
        )
        shutil.rmtree(folder)
        shutil.rmtree(cold_cache)
        return sample
    if row == "lock_warm":
        run.current = run.fresh_copy(source, f"rep{rep}")
        spec = run.current / "venvstacks.toml"
        return run_measured(
            tool.lock(spec), env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget
        )
    assert run.current is not None
    spec = run.current / "venvstacks.toml"
    if row == "build":
        shutil.rmtree(run.current / "_build", ignore_errors=True)
        return run_measured(
            tool.build(spec), env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget
        )
    if row in ("publish_xz", "publish_zst"):
        fmt = "tar.xz" if row == "publish_xz" else "tar.zst"
        if fmt not in tool.formats:
            return None
        return measure_publish(run, spec, run.current / f"_out-{fmt}", fmt)
    if row == "noop":
        out = run.current / "_out-tar.xz"
        samples = [
            run_measured(command, env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget)
            for command in tool.noop(spec, out)
        ]
        return combine(samples)
    if row == "noop_one":
        out = run.current / "_out-tar.xz"
        return run_measured(
            tool.pipeline(spec, out),
            env=run.warm_env(),
            cwd=run.current,
            log=log,
            budget=tool.budget,
        )
    if row == "deploy_first":
        out, target = run.current / "_out-tar.xz", run.current / "_deployed"
        shutil.rmtree(target, ignore_errors=True)
        return measure_deploy(run, out, target, previous=set())
    if row == "deploy_update":
        out, target = run.current / "_out-tar.xz", run.current / "_deployed"
        previous = archive_digests(out)
        if (run.current / SCALE_MARK).exists():
            # one small package changed: both tools lock, build and publish again
            bump_patch(run.current)
            for command in tool.noop(spec, out):
                run_measured(
                    command, env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget
                )
            return measure_deploy(run, out, target, previous=previous)
        app = change_app(run.current)
        if tool.name == VENVLAYERS:
            for command in tool.noop(spec, out):  # lock if needed, build, publish
                run_measured(
                    command, env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget
                )
        else:
            # venvstacks' publish keeps an existing archive whose lock did not change (its
            # `publish --force` rebuilds every layer), so the app's archive is taken as
            # changed instead: the same work for the deploy (unpack it, run its postinstall)
            previous -= {digest for name, digest in previous_by_name(out).items() if app in name}
            forget_deployed(target, app)
        return measure_deploy(run, out, target, previous=previous)
    if row in SCALE_ONLY_ROWS:
        if not (run.current / SCALE_MARK).exists():
            return None
        return framework_update(run, row, spec)
    if row == "deploy_first_nobc":
        if tool.name != VENVLAYERS or not tool.deploy_from:
            return None  # compared with the reference's deploy_first row
        out, target = run.current / "_out-tar.xz", run.current / "_deployed-nobc"
        shutil.rmtree(target, ignore_errors=True)
        return measure_deploy(run, out, target, previous=set(), no_compile=True)
    if row in ("publish_xz_bc", "deploy_first_bc", "publish_zst_bc", "deploy_first_zst_bc"):
        fmt = "tar.zst" if "zst" in row else "tar.xz"
        if not tool.bytecode or fmt not in tool.formats:
            return None  # compared with the reference's publish_xz / deploy_first rows
        out = run.current / f"_out-{fmt}-bytecode"
        if row.startswith("deploy"):
            target = run.current / f"_deployed-bc-{fmt}"
            shutil.rmtree(target, ignore_errors=True)
            return measure_deploy(run, out, target, previous=set())
        return measure_publish(run, spec, out, fmt, bytecode=True)
    raise ValueError(row)


def framework_update(run: StackRun, row: str, spec: Path) -> Sample | None:
    """The scale stacks' update inside the framework layer (``SCALE_ONLY_ROWS``)."""
    tool, log = run.tool, run.log
    assert run.current is not None
    out, target = run.current / "_out-tar.xz", run.current / "_deployed"
    if row == "deploy_update_fw":
        previous = archive_digests(out)
        bump_framework_package(run.current)
        for command in tool.noop(spec, out):  # lock, build and publish again (untimed)
            run_measured(command, env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget)
        start = log.stat().st_size
        sample = measure_deploy(run, out, target, previous=previous)
        if tool.name == VENVLAYERS:
            with log.open("rb") as f:
                f.seek(start)
                sample.archive_bytes = bytes_read(f.read().decode(errors="replace"), out)
        return sample
    if tool.name != VENVLAYERS or not tool.deploy_from:
        return None  # the reference deploys from folders only
    # back to the deployment before the update (untimed), then the same update over HTTP
    rollback = [*tool.prefix, "deploy", "--rollback", "--target", str(target)]
    run_measured(rollback, env=run.warm_env(), cwd=run.current, log=log, budget=tool.budget)
    cache = run.root / "http-deploy-cache"
    shutil.rmtree(cache, ignore_errors=True)
    with RangeServer(out) as server:
        sample = measure_deploy(run, out, target, previous=set(), source=server.url, cache=cache)
        sample.archive_bytes = server.bytes_sent()
    shutil.rmtree(cache, ignore_errors=True)
    return sample


_READING = re.compile(r"; reading \d+ range\(s\), (\d+) of \d+ bytes, of (\S+)$")
_UNPACKING = re.compile(r": unpacking (\S+)$")


def bytes_read(output: str, out: Path) -> int:
    """The archive bytes a venvlayers deploy from the folder ``out`` read, from its output:
    the ranges it read in place, and every archive it unpacked whole."""
    total = 0
    for line in output.splitlines():
        line = line.rstrip()
        if (match := _READING.search(line)) is not None:
            total += int(match[1])
        elif (match := _UNPACKING.search(line)) is not None and (out / match[1]).is_file():
            total += (out / match[1]).stat().st_size
    return total


def file_states(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every regular file under ``folder``: (inode, mtime_ns, size)."""
    states = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                states[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return states


def archive_digests(out: Path) -> set[str]:
    return set(previous_by_name(out).values())


def sha256_of(path: Path) -> str:
    """A file's sha256, read in blocks (archives of GBs)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def measure_publish(
    run: StackRun, spec: Path, out: Path, fmt: str, *, bytecode: bool = False
) -> Sample:
    """Publish ``spec`` into a fresh ``out`` as ``fmt``; the sample carries the archive bytes."""
    shutil.rmtree(out, ignore_errors=True)
    sample = run_measured(
        run.tool.publish(spec, out, fmt, bytecode=bytecode),
        env=run.warm_env(),
        cwd=run.current or out,
        log=run.log,
        budget=run.tool.budget,
    )
    sample.archive_bytes = archive_bytes(out)
    return sample


def measure_deploy(
    run: StackRun,
    out: Path,
    target: Path,
    previous: set[str],
    *,
    no_compile: bool = False,
    source: str | None = None,
    cache: Path | None = None,
) -> Sample:
    """Deploy ``out`` (or ``source``, its URL) into ``target``; count the bytes written into
    the target and the archive bytes a remote deploy would fetch (archives not already
    deployed from ``previous``)."""
    before = file_states(target) if target.exists() else {}
    sample = run_measured(
        run.tool.deploy(source or out, target, no_compile=no_compile, cache=cache),
        env=run.warm_env(),
        cwd=run.current or out,
        log=run.log,
        budget=run.tool.budget,
    )
    after = file_states(target)
    # a file whose inode (same mtime and size) was in the target before is a hard link or
    # a directory link to existing bytes, not written; each new inode counts once
    existing = set(before.values())
    sample.written_bytes = sum(state[2] for state in set(after.values()) - existing)
    sample.archive_bytes = sum(
        p.stat().st_size
        for p in out.iterdir()
        if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES) and sha256_of(p) not in previous
    )
    return sample


def change_app(stack: Path) -> str:
    """An app-only change: a new line in the first app's launch module. Returns the app's
    layer name (``app-<module>``, as the bench stacks name their apps)."""
    module = sorted((stack / "launch").glob("*.py"))[0]
    with module.open("a", encoding="utf-8") as handle:
        handle.write(f"BENCH_UPDATE = {time.time_ns()}\n")
    return f"app-{module.stem}"


def previous_by_name(out: Path) -> dict[str, str]:
    return {
        p.name: sha256_of(p)
        for p in out.iterdir()
        if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES)
    }


def forget_deployed(target: Path, app: str) -> None:
    """Make bench/peer_deploy.py treat ``app`` as changed."""
    record = target / "peer_deployed.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in data.items() if app not in k}))


def prime(run: StackRun, source: Path) -> None:
    """One untimed lock + build, so the tool's warm caches hold everything (publish and
    deploy keep no cache)."""
    folder = run.fresh_copy(source, "prime")
    spec = folder / "venvstacks.toml"
    env = run.warm_env()
    for command in (run.tool.lock(spec), run.tool.build(spec)):
        run_measured(command, env=env, cwd=folder, log=run.log, budget=run.tool.budget)
    shutil.rmtree(folder)


def bench_stack(
    name: str,
    tools: list[Tool],
    work: Path,
    reps: int,
    keep: bool,
    say: Callable[[str], None],
    source: Path | None = None,
    rows: Sequence[str] = ROWS,
) -> dict[str, StackRun]:
    source = source or BENCH_DIR / "stacks" / name
    runs = {t.name: StackRun(t, work / name / t.name) for t in tools}
    for run in runs.values():
        shutil.rmtree(run.root, ignore_errors=True)
        run.root.mkdir(parents=True)
        say(f"[{name}] priming {run.tool.name} (untimed lock+build)")
        try:
            prime(run, source)
        except OverBudget as exc:
            run.gave_up = f"priming (lock + build) {exc}"
            say(f"[{name}] {run.tool.name} gave up: {run.gave_up}")
    for rep in range(reps):
        # alternate who goes first, so drifting machine load hits both tools alike
        order = list(runs.values()) if rep % 2 == 0 else list(reversed(runs.values()))
        for row in rows:
            for run in order:
                if run.gave_up:
                    continue
                try:
                    sample = step(run, row, source, rep)
                except OverBudget as exc:  # a tool over its budget: its later rows are not run
                    run.gave_up = f"{ROW_TITLES[row]} {exc}"
                    say(f"[{name}] {run.tool.name} gave up: {run.gave_up}")
                    continue
                if sample is None:
                    continue
                run.record(row, sample)
                extra = f", {sample.archive_bytes / 1e6:.2f} MB" if sample.archive_bytes else ""
                if sample.written_bytes is not None:
                    extra += f", wrote {sample.written_bytes / 1e6:.1f} MB"
                say(
                    f"[{name}] rep {rep + 1}/{reps} {row:<11} {run.tool.name:<10} "
                    f"{sample.seconds:7.2f} s ({sample.cpu_seconds or 0:.2f} CPU s), "
                    f"{sample.rss_kib / 1024:6.0f} MiB{extra}"
                )
        if rep == 0 and not runs[VENVLAYERS].gave_up:
            data_for_limits(runs[VENVLAYERS], work, say)
        if not keep:
            for run in runs.values():
                shutil.rmtree(run.root / f"rep{rep}", ignore_errors=True)
    return runs


def data_for_limits(run: StackRun, work: Path, say: Callable[[str], None]) -> None:
    """Measure what the physical limits need, on venvlayers' first tar.xz publish output."""
    assert run.current is not None
    say("measuring the physical limits (tar bytes, one core's xz rates, disk write rate, compile)")
    data = limits.read_tar_data(run.current / "_out-tar.xz")
    deployed = run.current / "_deployed-nobc"
    rates = limits.xz_rates(data.sample)
    run.limits = {
        "tar_bytes": data.tar_bytes,
        "xz_bytes": data.archive_bytes,
        "xz_encode_bytes_per_cpu_s": rates.encode,
        "xz_decode_bytes_per_cpu_s": rates.decode,
        "zstd_encode_bytes_per_cpu_s": limits.zstd_encode_rate(data.sample),
        "disk_write_bytes_per_s": limits.disk_write_rate(work),
        "cores": limits.cores(),
    }
    if deployed.is_dir():  # what a first deploy's bytecode pass costs on this stack
        run.limits["compile_cpu_s"] = limits.compile_cpu_seconds(deployed)


# -- environments for a stack -----------------------------------------------------------------


@dataclass
class StackSetup:
    """What a stack needs: extra environment, its spec folder, index options, its rows."""

    env: dict[str, str]
    source: Path | None = None  # default: bench/stacks/<name>
    index_args: list[str] = field(default_factory=list)
    rows: Sequence[str] = ROWS
    unpacked_bytes: int | None = None


@contextlib.contextmanager
def stack_environment(name: str, work: Path) -> Iterator[StackSetup]:
    """What both tools get for stack ``name`` (index, PyPI cut-off or local wheels)."""
    if name in SCALE_STACKS:
        stack = prepare(name, work, say=lambda m: print(m, file=sys.stderr, flush=True))
        (stack.folder / SCALE_MARK).write_text("the update row bumps vlbench-patch\n")
        yield StackSetup(stack.env, stack.folder, stack.index_args, SCALE_ROWS)
    elif name == "small":
        wheelhouse = work / "wheelhouse"
        if not wheelhouse.is_dir():
            partial = work / "wheelhouse.partial"
            shutil.rmtree(partial, ignore_errors=True)
            make_wheelhouse(partial)
            partial.rename(wheelhouse)
        with SimpleIndex(wheelhouse) as index:
            yield StackSetup({"UV_DEFAULT_INDEX": index.url, "PIP_INDEX_URL": index.url})
    else:
        yield StackSetup({"UV_EXCLUDE_NEWER": EXCLUDE_NEWER})


def _help(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "venvlayers", command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def deploy_takes_from() -> bool:
    """Whether this venvlayers' ``deploy`` has ``--from`` (issue 16) rather than
    ``--metadata``/``--archives``."""
    completed = subprocess.run(
        [sys.executable, "-m", "venvlayers", "deploy", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "--from" in completed.stdout


def make_tools(
    peer: Path,
    work: Path,
    stack_env: dict[str, str],
    index_args: Sequence[str] = (),
    budget: float | None = None,
) -> list[Tool]:
    """The two tools; ``budget`` bounds each of the reference's commands (scale stacks)."""
    versions = [v for v in RUNTIME_VERSIONS]
    prefixes = []
    for version in versions:
        prefix = local_cpython_prefix(version)
        if prefix is None:
            sys.exit(
                f"no local CPython {version} (pyenv, or set VENVLAYERS_TEST_CPYTHON_{version.replace('.', '_')})"
            )
        prefixes.append((prefix, version))
    mirror = make_runtime_mirror(prefixes, work / "runtime-mirror")
    env = {**base_env(work), **stack_env}
    venvlayers = Tool(
        name=VENVLAYERS,
        prefix=[sys.executable, "-m", "venvlayers"],
        env={**env, **mirror.env},
        formats=("tar.xz", "tar.zst"),
        deploy_from=deploy_takes_from(),
        bytecode="--bytecode" in _help("publish"),
        # venvstacks' meaning since issue 20: without --if-needed, lock re-resolves every layer
        noop_lock_args=["--if-needed"],
        index_args=list(index_args),
    )
    reference = Tool(
        name=REFERENCE,
        prefix=[str(peer), str(BENCH_DIR / "peer_offline.py")],
        env={
            **env,
            "VENVLAYERS_BENCH_RUNTIMES": json.dumps(
                {v: str(p) for v, p in mirror.archives.items()}
            ),
        },
        # without --if-needed venvstacks re-resolves every layer on each lock
        noop_lock_args=["--if-needed"],
        index_args=list(index_args),
        budget=budget,
    )
    return [venvlayers, reference]


# -- reporting --------------------------------------------------------------------------------

Table = dict[str, dict[str, dict[str, float | None]]]


def median(samples: Sequence[Sample], attr: str) -> float | None:
    values = [getattr(s, attr) for s in samples if getattr(s, attr) is not None]
    return statistics.median(values) if values else None


def summarize(runs: dict[str, StackRun]) -> Table:
    """row -> tool -> median seconds / rss MiB / archive bytes / written bytes
    (the reference's publish_zst row is its tar.xz row)."""
    table: Table = {}
    for row in (*ROWS, *SCALE_ONLY_ROWS):
        table[row] = {}
        for tool_name, run in runs.items():
            samples = run.samples.get(row, [])
            if tool_name == REFERENCE and row == "publish_zst":
                samples = run.samples.get("publish_xz", [])
            if tool_name == REFERENCE and row in (
                "deploy_first_nobc",
                "deploy_first_bc",
                "deploy_first_zst_bc",
            ):
                samples = run.samples.get("deploy_first", [])
            if tool_name == REFERENCE and row in ("publish_xz_bc", "publish_zst_bc"):
                samples = run.samples.get("publish_xz", [])
            if tool_name == REFERENCE and row == "deploy_update_fw_http":
                samples = run.samples.get("deploy_update_fw", [])
            rss = median(samples, "rss_kib")
            table[row][tool_name] = {
                "seconds": median(samples, "seconds"),
                "rss_mib": rss / 1024 if rss is not None else None,
                "archive_bytes": median(samples, "archive_bytes"),
                "written_bytes": median(samples, "written_bytes"),
                "cpu_seconds": median(samples, "cpu_seconds"),
            }
    return table


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mb(value: float | None) -> str:
    """MB with 2 decimals; under 0.1 MB with 4 (an update's few KB are not 0.00)."""
    if value is not None and 0 < value < 100_000:
        return format(value / 1e6, ".4f")
    return _fmt(value / 1e6 if value is not None else None, ".2f")


def markdown_table(name: str, table: Table, peer: str, rows: Sequence[str] = ROWS) -> str:
    lines = [
        f"### Stack `{name}`",
        "",
        f"| step | venvlayers s | venvstacks {peer} s | time ratio | venvlayers MiB "
        "| venvstacks MiB | venvlayers MB | venvstacks MB | size ratio "
        "| venvlayers wrote MB | venvstacks wrote MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, theirs = table[row][VENVLAYERS], table[row][REFERENCE]
        lines.append(
            f"| {ROW_TITLES[row]} "
            f"| {_fmt(ours['seconds'], '.2f')} | {_fmt(theirs['seconds'], '.2f')} "
            f"| {_fmt(ratio(ours['seconds'], theirs['seconds']), '.2f')} "
            f"| {_fmt(ours['rss_mib'], '.0f')} | {_fmt(theirs['rss_mib'], '.0f')} "
            f"| {_mb(ours['archive_bytes'])} | {_mb(theirs['archive_bytes'])} "
            f"| {_fmt(ratio(ours['archive_bytes'], theirs['archive_bytes']), '.3f')} "
            f"| {_mb(ours['written_bytes'])} | {_mb(theirs['written_bytes'])} |"
        )
    lines += [
        "",
        "MiB: the command's own peak memory (bench/measure.py: the larger of its largest process's ru_maxrss and its process tree's sampled Pss sum). MB: archives written (publish) or "
        "archives a deploy from a remote source needs (deploy: those not already deployed). "
        "wrote MB: bytes of the files a deploy created or replaced in its target. Framework "
        "update rows (scale stacks): venvlayers' MB is what it read of the archives (ranges "
        "read in place, archives unpacked whole; the layer index aside) or, over HTTP, every "
        "byte the server sent; the reference's is the changed archives it unpacks whole.",
    ]
    return "\n".join(lines) + "\n"


def limits_markdown(table: Table, measured: dict[str, float]) -> str:
    """The physical limit of each publish/deploy row, and how close venvlayers gets."""
    if not measured:
        return ""
    cores = measured["cores"]
    encode, decode = measured["xz_encode_bytes_per_cpu_s"], measured["xz_decode_bytes_per_cpu_s"]
    disk = measured["disk_write_bytes_per_s"]
    tar_bytes = measured["tar_bytes"]
    publish_limit = tar_bytes / (encode * cores)

    def closeness(row: str, limit: float) -> str:
        seconds = table[row][VENVLAYERS]["seconds"]
        if seconds is None:
            return "not measured"
        return f"venvlayers {seconds:.2f} s = {seconds / limit:.1f}x the limit"

    lines = [
        f"Physical limits ({cores:.0f} cores; one core's xz, measured on a sample of these "
        f"layers with venvlayers' filters: {encode / 1e6:.1f} MB/s compress, "
        f"{decode / 1e6:.0f} MB/s decompress; disk write {disk / 1e6:.0f} MB/s with fsync):",
        "",
        f"- publish tar.xz: {tar_bytes / 1e6:.1f} MB of tar / ({encode / 1e6:.1f} MB/s x "
        f"{cores:.0f}) = {publish_limit:.2f} s; {closeness('publish_xz', publish_limit)}",
    ]
    compile_cpu = measured.get("compile_cpu_s")
    for row in (
        "deploy_first",
        "deploy_update",
        "deploy_first_nobc",
        "deploy_first_bc",
        *SCALE_ONLY_ROWS,
    ):
        if row not in table:
            continue
        written = table[row][VENVLAYERS]["written_bytes"]
        needed = table[row][VENVLAYERS]["archive_bytes"] or 0
        if written is None:
            continue
        # the archives it needed, decompressed, at the sample's compression ratio
        unpacked = needed * tar_bytes / max(measured["xz_bytes"], 1)
        disk_limit = written / disk
        decode_limit = unpacked / (decode * cores)
        # a first deploy also compiles every module (on every core, beside the unpacking);
        # an update compiles only its new modules (not counted)
        compile_limit = compile_cpu / cores if compile_cpu and row == "deploy_first" else 0.0
        compiling = (
            f"; compiling bytecode: {compile_cpu:.1f} CPU s / {cores:.0f} cores = "
            f"{compile_limit:.2f} s, with the decompression {decode_limit + compile_limit:.2f} s"
            if compile_limit
            else ""
        )
        lines.append(
            f"- {ROW_TITLES[row]}: {written / 1e6:.1f} MB written / {disk / 1e6:.0f} MB/s = "
            f"{disk_limit:.2f} s (decompressing {needed / 1e6:.1f} MB of archives on every "
            f"core: {decode_limit:.2f} s{compiling}); "
            f"{closeness(row, max(disk_limit, decode_limit + compile_limit))}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Target:
    text: str
    holds: bool | None
    detail: str


#: Issue 23's deploy targets per stack: (first deploy s, app-only update s).
DEPLOY_TARGETS = {"small": (1.0, 0.15), "realistic": (3.0, 0.5)}


def check_targets(table: Table, stack: str, measured: dict[str, float]) -> list[Target]:
    """Issue 23's targets (ratios against the reference from one alternating run; the
    tar.xz limit from ``limits.py`` in the same run)."""

    def col(row: str, tool: str, key: str) -> float | None:
        return table[row][tool][key]

    def t(row: str) -> float | None:
        return ratio(col(row, VENVLAYERS, "seconds"), col(row, REFERENCE, "seconds"))

    def s(row: str) -> float | None:
        return ratio(col(row, VENVLAYERS, "archive_bytes"), col(row, REFERENCE, "archive_bytes"))

    def holds(*conditions: tuple[float | None, float]) -> bool | None:
        if any(value is None for value, _ in conditions):
            return None
        return all(value <= bound for value, bound in conditions if value is not None)

    build, pt, ps = t("build"), t("publish_xz"), s("publish_xz")
    pm = ratio(col("publish_xz", VENVLAYERS, "rss_mib"), col("publish_xz", REFERENCE, "rss_mib"))
    xz_limit = None
    if measured.get("xz_encode_bytes_per_cpu_s"):
        limit_s = measured["tar_bytes"] / (
            measured["xz_encode_bytes_per_cpu_s"] * measured["cores"]
        )
        xz_limit = ratio(col("publish_xz", VENVLAYERS, "seconds"), limit_s)
    zt, zs = t("publish_zst"), s("publish_zst")
    lc, lw = t("lock_cold"), t("lock_warm")
    noop, noop_one = col("noop", VENVLAYERS, "seconds"), col("noop_one", VENVLAYERS, "seconds")
    first, update = (
        col("deploy_first", VENVLAYERS, "seconds"),
        col("deploy_update", VENVLAYERS, "seconds"),
    )
    first_bound, update_bound = DEPLOY_TARGETS.get(stack, DEPLOY_TARGETS["realistic"])
    return [
        Target("build (clean) <= 0.4x", holds((build, 0.4)), f"{_fmt(build, '.2f')}x"),
        Target(
            "publish tar.xz <= 0.4x and <= 1.1x the xz limit, archives <= +1%, peak memory "
            "<= 2x the reference's",
            holds((pt, 0.4), (xz_limit, 1.1), (ps, 1.01), (pm, 2.0)),
            f"{_fmt(pt, '.2f')}x time, {_fmt(xz_limit, '.2f')}x the limit, "
            f"{_fmt(ps, '.3f')}x size, {_fmt(pm, '.2f')}x memory",
        ),
        Target(
            "publish tar.zst <= 0.08x, archives <= +15% (vs the reference's tar.xz)",
            holds((zt, 0.08), (zs, 1.15)),
            f"{_fmt(zt, '.2f')}x time, {_fmt(zs, '.3f')}x size",
        ),
        Target(
            "lock <= 0.6x cold, <= 0.3x warm",
            holds((lc, 0.6), (lw, 0.3)),
            f"cold {_fmt(lc, '.2f')}x, warm {_fmt(lw, '.2f')}x",
        ),
        Target(
            "no-op lock+build+publish < 0.5 s (3 commands)",
            holds((noop, 0.5)),
            f"{_fmt(noop, '.2f')} s (as one `build --publish`: {_fmt(noop_one, '.2f')} s)",
        ),
        Target(
            f"deploy <= {first_bound:g} s first, <= {update_bound:g} s app-only update",
            holds((first, first_bound), (update, update_bound)),
            f"first {_fmt(first, '.2f')} s, update {_fmt(update, '.2f')} s",
        ),
        Target(
            f"deploy (first) <= {first_bound:g} s from `publish --bytecode` archives (opt-in)",
            holds((col("deploy_first_bc", VENVLAYERS, "seconds"), first_bound)),
            f"{_fmt(col('deploy_first_bc', VENVLAYERS, 'seconds'), '.2f')} s; archives "
            f"{_fmt(ratio(col('publish_xz_bc', VENVLAYERS, 'archive_bytes'), col('publish_xz', VENVLAYERS, 'archive_bytes')), '.3f')}x"
            " the default's",
        ),
        Target(
            f"deploy (first) <= {first_bound:g} s from `publish --format tar.zst --bytecode` "
            "archives",
            holds((col("deploy_first_zst_bc", VENVLAYERS, "seconds"), first_bound)),
            f"{_fmt(col('deploy_first_zst_bc', VENVLAYERS, 'seconds'), '.2f')} s; archives "
            f"{_fmt(ratio(col('publish_zst_bc', VENVLAYERS, 'archive_bytes'), col('publish_xz', VENVLAYERS, 'archive_bytes')), '.3f')}x"
            " the default's tar.xz",
        ),
    ]


def targets_markdown(targets: list[Target]) -> str:
    mark = {True: "HOLDS", False: "MISSED", None: "n/a"}
    return "\n".join(f"- {mark[t.holds]}: {t.text} — {t.detail}" for t in targets) + "\n"


def tool_versions(peer_python: Path) -> dict[str, str]:
    def out(command: list[str], cwd: Path | None = None) -> str:
        try:
            return subprocess.run(
                command, capture_output=True, text=True, check=True, cwd=cwd
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    from uv import find_uv_bin

    import venvlayers

    return {
        "venvlayers": f"{venvlayers.__version__} ({out(['git', 'rev-parse', '--short', 'HEAD'], REPO_ROOT)})",
        "venvstacks": out(
            [
                str(peer_python),
                "-c",
                "import importlib.metadata as m; print(m.version('venvstacks'))",
            ]
        ),
        "uv (venvlayers)": out([str(find_uv_bin()), "--version"]),
        "uv (venvstacks)": out([str(peer_python), "-m", "uv", "--version"]),
        "python": platform.python_version(),
        "host": f"{platform.platform()}, {os.cpu_count()} cpus",
    }


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peer",
        choices=PEER_VERSIONS,
        default=DEFAULT_PEER,
        help=f"venvstacks version to compare with (default {DEFAULT_PEER}); set up on first use",
    )
    parser.add_argument(
        "--peer-python", type=Path, default=None, help="python of a venv with venvstacks instead"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per step (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 repetition, small stack only"
    )
    parser.add_argument(
        "--stack",
        action="append",
        choices=ALL_STACKS,
        help="stacks to run (default: small and realistic; the scale stacks torch, scale "
        "(2 GB), scale-6g and scale-mini (20 MB, to try the scale rows) only when named)",
    )
    parser.add_argument(
        "--ref-budget",
        type=float,
        default=1200.0,
        help="on the scale stacks, seconds one reference command may take before it is "
        "stopped and its later rows skipped (default 1200)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path.home() / ".cache" / "venvlayers-bench" / "work",
        help="scratch folder for stack copies and caches",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--keep", action="store_true", help="keep each repetition's folders")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 1
        args.stack = args.stack or ["small"]
    args.stack = args.stack or list(STACKS)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work: Path = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    peer: Path = args.peer_python or peer_python(args.peer)
    started = dt.datetime.now(dt.UTC)
    versions = tool_versions(peer)
    results: dict[str, object] = {
        "started": started.isoformat(timespec="seconds"),
        "reps": args.reps,
        "versions": versions,
        "exclude_newer": EXCLUDE_NEWER,
        "stacks": {},
    }
    peer_version = versions["venvstacks"]
    report = [
        f"## venvlayers vs venvstacks {peer_version} "
        f"(median of {args.reps}, {started:%Y-%m-%d %H:%M} UTC)\n"
    ]
    failed = False
    per_gb_input: dict[str, tuple[scale_report.Table, scale_report.Limits]] = {}
    for name in args.stack:
        scale = name in SCALE_STACKS
        with stack_environment(name, work) as setup:
            tools = make_tools(
                peer, work, setup.env, setup.index_args, args.ref_budget if scale else None
            )
            try:
                runs = bench_stack(
                    name, tools, work, args.reps, args.keep, say, setup.source, setup.rows
                )
            except CommandFailed as exc:
                say(f"[{name}] FAILED: {exc}")
                results["stacks"][name] = {"error": str(exc)}  # type: ignore[index]
                report.append(f"### Stack `{name}`\n\nfailed: {str(exc).splitlines()[0]}\n")
                failed = True
                continue
        table = summarize(runs)
        measured = runs[VENVLAYERS].limits
        if scale:
            targets = [Target(*t) for t in scale_report.scale_targets(table, VENVLAYERS, REFERENCE)]
            per_gb_input[name] = (table, measured)
        else:
            targets = check_targets(table, name, measured)
        report.append(markdown_table(name, table, peer_version, setup.rows))
        for run in runs.values():
            if run.gave_up:
                report.append(f"{run.tool.name} did not finish: {run.gave_up}.\n")
        report.append(limits_markdown(table, measured))
        report.append(f"Targets ({name}):\n\n" + targets_markdown(targets))
        results["stacks"][name] = {  # type: ignore[index]
            "median": table,
            "limits": measured,
            "samples": {
                tool: {row: [vars(s) for s in samples] for row, samples in run.samples.items()}
                for tool, run in runs.items()
            },
            "targets": [vars(t) for t in targets],
            "gave_up": {tool: run.gave_up for tool, run in runs.items() if run.gave_up},
        }
    text, flat = scale_report.per_gb_markdown(per_gb_input, VENVLAYERS)
    if text:
        report.append(text)
        if flat:
            report.append(
                "Targets (time per GB):\n\n" + targets_markdown([Target(*t) for t in flat])
            )
        results["time_per_gb"] = {  # type: ignore[assignment]
            name: {
                "wall": scale_report.per_gb(table, stack_limits.get("tar_bytes", 0.0), VENVLAYERS),
                "cpu": scale_report.per_gb(
                    table, stack_limits.get("tar_bytes", 0.0), VENVLAYERS, "cpu_seconds"
                ),
                "over_limit": scale_report.over_limit(table, stack_limits, VENVLAYERS),
            }
            for name, (table, stack_limits) in per_gb_input.items()
        }
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    text = "\n".join(report)
    sys.stdout.write(text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    result_file = args.results_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    result_file.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    say(f"results: {result_file}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
