"""What the benchmark reports for its scale stacks (``torch``, ``scale``, ``scale-6g``,
``scale-mini``).

- Issue 23's scale targets per stack: peak memory <= 400 MiB for the build (its post-build
  check included), publish and deploy rows, each also <= the reference's on the same row;
- time per GB of tar (the layers' uncompressed bytes) per row and stack, and each row's
  CPU seconds over the CPU seconds of its physical limit on the same data (``limits.py``:
  one core's xz or zstd encoding, xz decoding, compiling the bytecode); the second is what
  must be flat within 15 % from the torch stack to the largest stack measured. CPU s per
  GB alone compares different data: the generated libraries compress twice as fast per
  byte with zstd as torch's, and decode slower with xz, so torch -> 2 GB read -53 % and
  +33 % on rows that were 1.0x and 1.14x their limits on both.

Tables are medians from ``bench.summarize``: row -> tool -> {"seconds", "rss_mib", ...}.
Stacks measured in separate runs are put side by side from their results files:
``python bench/scale_report.py bench/results/A.json bench/results/B.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

Table = Mapping[str, Mapping[str, Mapping[str, float | None]]]
Limits = Mapping[str, float]
TargetTuple = tuple[str, bool | None, str]

MEMORY_BOUND_MIB = 400.0
FLAT_WITHIN = 0.15
MEMORY_ROWS = (
    "build",
    "publish_xz",
    "publish_zst",
    "deploy_first",
    "deploy_update",
    "deploy_update_fw",
    "deploy_update_fw_http",
)
PER_GB_ROWS = ("build", "publish_xz", "publish_zst", "deploy_first", "deploy_first_nobc")
TITLES = {
    "build": "build (with the post-build check)",
    "publish_xz": "publish tar.xz",
    "publish_zst": "publish tar.zst",
    "deploy_first": "deploy (first)",
    "deploy_update": "deploy (one small package changed)",
    "deploy_update_fw": "deploy (one small package in the framework changed)",
    "deploy_update_fw_http": "deploy over HTTP (one small package in the framework changed)",
    "deploy_first_nobc": "deploy (first, no bytecode)",
}


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def scale_targets(table: Table, ours: str, theirs: str) -> list[TargetTuple]:
    targets: list[TargetTuple] = []
    for row in MEMORY_ROWS:
        mine = table.get(row, {}).get(ours, {}).get("rss_mib")
        ref = table.get(row, {}).get(theirs, {}).get("rss_mib")
        text = f"{TITLES[row]}: peak memory <= {MEMORY_BOUND_MIB:.0f} MiB and <= the reference's"
        if mine is None:
            targets.append((text, None, "not measured"))
            continue
        holds = mine <= MEMORY_BOUND_MIB and (ref is None or mine <= ref)
        vs = f" vs {ref:.0f} MiB" if ref is not None else " (the reference did not finish)"
        targets.append((text, holds, f"{mine:.0f} MiB{vs}"))
    return targets


def per_gb(
    table: Table, tar_bytes: float, tool: str, key: str = "seconds"
) -> dict[str, float | None]:
    """``key`` (wall ``seconds`` or ``cpu_seconds``) per GB of tar for each of ``PER_GB_ROWS``."""
    out: dict[str, float | None] = {}
    for row in PER_GB_ROWS:
        value = table.get(row, {}).get(tool, {}).get(key)
        out[row] = value / (tar_bytes / 1e9) if value is not None and tar_bytes else None
    return out


def limit_cpu_seconds(row: str, limits: Limits) -> float | None:
    """CPU seconds the physical work of ``row`` takes on this stack's data (None: no limit
    for this row; the build is uv and hard links)."""
    tar = limits.get("tar_bytes")
    if not tar:
        return None
    rate = {
        "publish_xz": "xz_encode_bytes_per_cpu_s",
        "publish_zst": "zstd_encode_bytes_per_cpu_s",
        "deploy_first_nobc": "xz_decode_bytes_per_cpu_s",
        "deploy_first": "xz_decode_bytes_per_cpu_s",
    }.get(row)
    if rate is None or not limits.get(rate):
        return None
    seconds = tar / limits[rate]
    if row == "deploy_first":
        if "compile_cpu_s" not in limits:
            return None
        seconds += limits["compile_cpu_s"]
    return seconds


def over_limit(table: Table, limits: Limits, tool: str) -> dict[str, float | None]:
    """Each of ``PER_GB_ROWS``: the row's CPU seconds over its limit's CPU seconds."""
    out: dict[str, float | None] = {}
    for row in PER_GB_ROWS:
        cpu = table.get(row, {}).get(tool, {}).get("cpu_seconds")
        limit = limit_cpu_seconds(row, limits)
        out[row] = cpu / limit if cpu is not None and limit else None
    return out


def per_gb_markdown(
    stacks: Mapping[str, tuple[Table, Limits]], ours: str
) -> tuple[str, list[TargetTuple]]:
    """A table of wall and CPU seconds per GB per row and of CPU seconds over the physical
    limit's (columns: the stacks, in the order given), and the flatness targets: each row's
    CPU over its limit on the largest stack within 15 % of the torch stack's. CPU time, not
    wall time: on a machine shared with other work the wall time of one run says more about
    the others' load than about the work."""
    names = list(stacks)
    if not names:
        return "", []
    tar = {name: limits.get("tar_bytes", 0.0) for name, (_, limits) in stacks.items()}
    wall = {name: per_gb(table, tar[name], ours) for name, (table, _) in stacks.items()}
    cpu = {
        name: per_gb(table, tar[name], ours, "cpu_seconds") for name, (table, _) in stacks.items()
    }
    over = {name: over_limit(table, limits, ours) for name, (table, limits) in stacks.items()}
    header = "| row | " + " | ".join(f"{n} ({tar[n] / 1e9:.2f} GB)" for n in names) + " |"
    lines = [
        "### Time per GB (venvlayers; wall s / CPU s per GB of uncompressed tar; "
        "CPU s over the CPU s of the row's physical limit on the same data)",
        "",
        header,
        "|---|" + "---:|" * len(names),
    ]
    for row in PER_GB_ROWS:
        cells = [
            f"{_f(wall[n][row], '.1f')} / {_f(cpu[n][row], '.1f')}; "
            + ("-" if over[n][row] is None else f"{over[n][row]:.2f}x") for n in names
        ]  # fmt: skip
        lines.append(f"| {TITLES[row]} | " + " | ".join(cells) + " |")
    targets: list[TargetTuple] = []
    if "torch" in cpu and len(names) > 1:
        largest = max((n for n in names if n != "torch"), key=lambda n: tar[n])
        for row in PER_GB_ROWS:
            a, b = over["torch"][row], over[largest][row]
            text = (
                f"{TITLES[row]}: CPU time over its physical limit within 15 % from torch "
                f"to {largest}"
            )
            if not a or b is None:
                why = "no physical limit for this row" if row == "build" else "not measured"
                targets.append((text, None, why))
                continue
            change = b / a - 1
            targets.append(
                (text, abs(change) <= FLAT_WITHIN, f"{a:.2f}x -> {b:.2f}x ({change:+.0%})")
            )
    return "\n".join(lines) + "\n", targets


def main(paths: list[str]) -> int:
    """The time-per-GB table and targets of the scale stacks in the given results files."""
    stacks: dict[str, tuple[Table, Limits]] = {}
    for path in paths:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, data in results["stacks"].items():
            if "median" in data and data.get("limits", {}).get("tar_bytes"):
                stacks[name] = (data["median"], data["limits"])
    order = sorted(stacks, key=lambda n: stacks[n][1]["tar_bytes"])
    text, targets = per_gb_markdown({n: stacks[n] for n in order}, "venvlayers")
    mark = {True: "HOLDS", False: "MISSED", None: "n/a"}
    sys.stdout.write(text + "\n" + "".join(f"- {mark[h]}: {t} — {d}\n" for t, h, d in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
