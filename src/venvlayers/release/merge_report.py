"""The merge's findings: every consistency problem, and the markdown table the job summary shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from venvlayers.core import markdown as md
from venvlayers.core.errors import MergeError
from venvlayers.formats.models import INDEX_NAME


class ProblemKind(StrEnum):
    NO_OUTPUT = "no-output"
    UNREADABLE = "unreadable"
    DUPLICATE_PLATFORM = "duplicate-platform"
    MISSING_PLATFORM = "missing-platform"
    UNEXPECTED_PLATFORM = "unexpected-platform"
    PLATFORM_MISMATCH = "platform-mismatch"
    SPEC_MISMATCH = "spec-mismatch"
    TOOL_MISMATCH = "tool-version-mismatch"
    DUPLICATE_LAYER = "duplicate-layer"
    MISSING_LAYER = "missing-layer"
    UNEXPECTED_LAYER = "unexpected-layer"
    METADATA_MISMATCH = "metadata-mismatch"
    LOCK_MISMATCH = "lock-mismatch"
    MISSING_ARCHIVE = "missing-archive"
    SIZE_MISMATCH = "size-mismatch"
    HASH_MISMATCH = "hash-mismatch"
    DUPLICATE_ARCHIVE = "duplicate-archive"
    SBOM = "sbom"
    LAYER_INDEX = "layer-index"


@dataclass(frozen=True, order=True)
class Problem:
    kind: ProblemKind
    message: str
    layer: str | None = None
    platform: str | None = None

    def concerns(self, layer: str, platform: str) -> bool:
        """Whether this problem makes the (layer, platform) cell of the report fail."""
        if self.layer is None and self.platform is None:
            return False
        return self.layer in (None, layer) and self.platform in (None, platform)

    def describe(self) -> str:
        """One line for the log: kind, where, what."""
        where = " on ".join(part for part in (self.layer, self.platform) if part)
        return f"{self.kind.value}: {where + ': ' if where else ''}{self.message}"


@dataclass
class MergeReport:
    platforms: list[str]
    """Platforms in the table: every job found plus any expected platform that is missing."""
    layers: list[str]
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    """layer -> platform -> archive size (as recorded in the metadata)."""
    problems: list[Problem] = field(default_factory=list)
    missing_platforms: list[str] = field(default_factory=list)
    output_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def layer_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.platforms, 0)
        for by_platform in self.sizes.values():
            for platform in by_platform:
                counts[platform] = counts.get(platform, 0) + 1
        return counts

    def _cell(self, layer: str, platform: str) -> str:
        if platform in self.missing_platforms:
            return "❌ no output"
        size = self.sizes.get(layer, {}).get(platform)
        failed = any(p.concerns(layer, platform) for p in self.problems)
        if size is None:
            return "❌ missing" if failed else "—"
        return f"{'❌' if failed else '✅'} {format_size(size)}"

    def to_markdown(self) -> str:
        verdict = (
            "✅ consistent"
            if self.ok
            else f"❌ {count_noun(len(self.problems), 'consistency problem')}"
        )
        lines = [
            f"## Stack merge: {count_noun(len(self.layers), 'layer')} on "
            f"{count_noun(len(self.platforms), 'platform')} — {verdict}",
            "",
        ]
        if self.layers and self.platforms:
            lines.append("| Layer | " + " | ".join(md.code(p) for p in self.platforms) + " |")
            lines.append("|---|" + "---|" * len(self.platforms))
            for layer in self.layers:
                cells = " | ".join(self._cell(layer, p) for p in self.platforms)
                lines.append(f"| {md.code(layer)} | {cells} |")
            counts = self.layer_counts
            lines.append(
                "| **layers** | " + " | ".join(str(counts[p]) for p in self.platforms) + " |"
            )
            lines.append("")
        if self.problems:
            lines.append(f"### Problems ({len(self.problems)})")
            lines.append("")
            for problem in self.problems:
                where = " ".join(
                    part
                    for part in (
                        md.code(problem.layer) if problem.layer else "",
                        f"on {md.code(problem.platform)}" if problem.platform else "",
                    )
                    if part
                )
                lines.append(
                    f"- **{problem.kind.value}**{' ' + where if where else ''}: {md.text(problem.message)}"
                )
            lines.append("")
        elif self.output_dir is not None:
            lines.append(f"Merged into {md.code(str(self.output_dir))} (index: `{INDEX_NAME}`).")
            lines.append("")
        return "\n".join(lines)


class MergeConsistencyError(MergeError):
    """The platform outputs disagree; ``report`` lists every problem."""

    def __init__(self, report: MergeReport):
        count = len(report.problems)
        super().__init__(f"{count_noun(count, 'consistency problem')}; see the report")
        self.report = report


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def count_noun(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
