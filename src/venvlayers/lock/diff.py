"""What a change to the locks means: package changes per layer, rebuilds, stale locks.

``lock_diff`` compares the locks in a spec's ``requirements/`` folder with an older copy
(a git ref of the same repository, or a folder) and checks the current locks against the
spec, so a pull request shows what it will ship and whether its locks are up to date.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import ValidationError

from venvlayers.core import markdown as md
from venvlayers.core.errors import LockError
from venvlayers.core.fsutil import sha256_text
from venvlayers.core.process import ProcessResult, run_process
from venvlayers.core.report import Reporter
from venvlayers.formats.models import LockMetadata
from venvlayers.lock import lockfiles
from venvlayers.lock.lockfiles import LockedPackage
from venvlayers.lock.resolve import LockResult, lock_stack
from venvlayers.lock.status import REQUIREMENTS_DIR, lock_paths, read_pylock_text
from venvlayers.stack.graph import StackGraph, load_stack


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    CHANGED = "changed"
    """The set of locked versions changed without a clear direction (per-marker entries)."""


@dataclass(frozen=True)
class PackageChange:
    name: str
    kind: ChangeKind
    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True)
class LayerLock:
    """One layer's lock as read from one side of the comparison."""

    packages: tuple[LockedPackage, ...]
    content_hash: str
    metadata: LockMetadata | None

    @property
    def requirements_hash(self) -> str:
        return self.metadata.requirements_hash if self.metadata else self.content_hash

    @property
    def lock_version(self) -> int | None:
        return self.metadata.lock_version if self.metadata else None


@dataclass
class LayerDiff:
    name: str
    old: LayerLock | None
    new: LayerLock | None
    in_spec: bool
    changes: list[PackageChange] = field(default_factory=list)

    @property
    def is_new(self) -> bool:
        return self.old is None and self.in_spec

    @property
    def is_deleted(self) -> bool:
        return self.old is not None and not self.in_spec

    @property
    def old_lock_version(self) -> int | None:
        return self.old.lock_version if self.old else None

    @property
    def new_lock_version(self) -> int | None:
        return self.new.lock_version if self.new else None

    @property
    def lock_version_bumped(self) -> bool:
        return (
            self.old_lock_version is not None
            and self.new_lock_version is not None
            and self.old_lock_version != self.new_lock_version
        )

    @property
    def rebuild_reasons(self) -> list[str]:
        """Why this layer's archives must be rebuilt and republished (empty: no need)."""
        if not self.in_spec:
            return []
        if self.old is None:
            return ["new layer"]
        if self.new is None:
            return ["not locked yet"]
        reasons = []
        if self.old.requirements_hash != self.new.requirements_hash:
            reasons.append("lock content changed")
        if self.lock_version_bumped:
            reasons.append(f"lock_version {self.old_lock_version} → {self.new_lock_version}")
        return reasons

    @property
    def needs_rebuild(self) -> bool:
        return bool(self.rebuild_reasons)

    @property
    def interesting(self) -> bool:
        return bool(self.changes or self.needs_rebuild or self.is_deleted)


@dataclass
class LockDiffReport:
    spec_label: str
    """The spec path as shown in messages (repository-relative when in git)."""
    base: str
    layers: list[LayerDiff]
    stale_layers: dict[str, list[str]]
    """layer name -> reasons its current lock does not match the spec."""

    @property
    def stale(self) -> bool:
        return bool(self.stale_layers)

    @property
    def new_layers(self) -> list[str]:
        return [d.name for d in self.layers if d.is_new]

    @property
    def deleted_layers(self) -> list[str]:
        return [d.name for d in self.layers if d.is_deleted]

    @property
    def needs_rebuild(self) -> list[str]:
        return [d.name for d in self.layers if d.needs_rebuild]

    @property
    def lock_version_bumps(self) -> dict[str, tuple[int, int]]:
        bumps = {}
        for diff in self.layers:
            old, new = diff.old_lock_version, diff.new_lock_version
            if old is not None and new is not None and old != new:
                bumps[diff.name] = (old, new)
        return bumps

    def layer(self, name: str) -> LayerDiff:
        for diff in self.layers:
            if diff.name == name:
                return diff
        raise KeyError(name)

    def fix_command(self) -> str:
        return f"venvlayers lock {self.spec_label}"

    def to_json(self) -> dict[str, object]:
        return {
            "base": self.base,
            "spec": self.spec_label,
            "stale": self.stale,
            "stale_layers": self.stale_layers,
            "needs_rebuild": self.needs_rebuild,
            "new_layers": self.new_layers,
            "deleted_layers": self.deleted_layers,
            "layers": {
                d.name: {
                    "changes": [
                        {
                            "name": c.name,
                            "kind": c.kind.value,
                            "old": list(c.old),
                            "new": list(c.new),
                        }
                        for c in d.changes
                    ],
                    "old_lock_version": d.old_lock_version,
                    "new_lock_version": d.new_lock_version,
                    "rebuild_reasons": d.rebuild_reasons,
                }
                for d in self.layers
                if d.interesting
            },
        }

    def to_markdown(self) -> str:
        lines = [f"## Lock changes in {md.code(self.spec_label)} against {md.code(self.base)}", ""]
        rebuild = self.layers_needing_rebuild()
        if rebuild:
            lines.append("**Needs rebuild and republish:**")
            lines.append("")
            lines += [
                f"- {md.code(d.name)}: {md.text(', '.join(d.rebuild_reasons))}" for d in rebuild
            ]
        else:
            lines.append("No layer needs a rebuild.")
        lines.append("")
        if self.deleted_layers:
            listed = ", ".join(md.code(n) for n in self.deleted_layers)
            lines += [f"**Deleted layers** (no longer published): {listed}", ""]
        for diff in self.layers:
            if diff.interesting:
                lines += _layer_section(diff)
        if self.stale:
            lines += [
                "> [!WARNING]",
                "> **Stale locks**: these locks do not match the spec, so builds would refuse them:",
            ]
            lines += [
                f"> - {md.code(name)}: {md.text('; '.join(reasons))}"
                for name, reasons in self.stale_layers.items()
            ]
            lines += [
                ">",
                f"> Run {md.code(self.fix_command())} and commit the changes in"
                f" {md.code(REQUIREMENTS_DIR + '/')}.",
                "",
            ]
        return "\n".join(lines)

    def layers_needing_rebuild(self) -> list[LayerDiff]:
        return [d for d in self.layers if d.needs_rebuild]


def _layer_section(diff: LayerDiff) -> list[str]:
    title = f"### {md.code(diff.name)}"
    if diff.is_new:
        title += " (new layer)"
    elif diff.is_deleted:
        title += " (deleted layer)"
    if diff.lock_version_bumped:
        title += f" — lock_version {diff.old_lock_version} → {diff.new_lock_version}"
    lines = [title, ""]
    if diff.changes:
        lines += ["| Package | Change | Before | After |", "|---|---|---|---|"]
        for change in diff.changes:
            before = md.text(", ".join(change.old)) or "—"
            after = md.text(", ".join(change.new)) or "—"
            lines.append(f"| {md.text(change.name)} | {change.kind.value} | {before} | {after} |")
    elif diff.is_deleted:
        lines.append("Removed from the spec: its archives will no longer be published.")
    else:
        lines.append("No package changes.")
    lines.append("")
    return lines


def diff_packages(
    old: Iterable[LockedPackage], new: Iterable[LockedPackage]
) -> list[PackageChange]:
    """Package changes between two locks, by normalized name, sorted by name.

    A package can be locked several times with different markers (e.g. one version per
    platform); such entries are compared as the set of their versions.
    """
    old_versions, old_names = _versions_by_name(old)
    new_versions, new_names = _versions_by_name(new)
    changes = []
    for key in sorted(old_versions.keys() | new_versions.keys()):
        before = old_versions.get(key, ())
        after = new_versions.get(key, ())
        if before == after:
            continue
        name = new_names.get(key) or old_names[key]
        if not before:
            kind = ChangeKind.ADDED
        elif not after:
            kind = ChangeKind.REMOVED
        else:
            kind = _direction(before, after)
        changes.append(PackageChange(name, kind, before, after))
    return changes


def _versions_by_name(
    packages: Iterable[LockedPackage],
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    versions: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for package in packages:
        key = canonicalize_name(package.name)
        versions.setdefault(key, set()).add(package.version)
        names.setdefault(key, package.name)
    return {k: tuple(sorted(v, key=_version_key)) for k, v in versions.items()}, names


def _version_key(value: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(value))
    except InvalidVersion:
        return (0, value)


def _direction(before: tuple[str, ...], after: tuple[str, ...]) -> ChangeKind:
    try:
        old = sorted(Version(v) for v in before)
        new = sorted(Version(v) for v in after)
    except InvalidVersion:
        return ChangeKind.CHANGED
    if old[-1] < new[-1] and old[0] <= new[0]:
        return ChangeKind.UPGRADED
    if old[-1] > new[-1] and old[0] >= new[0]:
        return ChangeKind.DOWNGRADED
    return ChangeKind.CHANGED


# ---------------------------------------------------------------- reading both sides


def _parse_lock(text: str, meta_text: str | None, where: str) -> LayerLock:
    try:
        packages = tuple(read_pylock_text(text))
    except Exception as exc:  # tomllib errors and missing keys alike mean a corrupt lock
        raise LockError(f"{where}: cannot read lock file ({exc})") from None
    metadata = None
    if meta_text is not None:
        try:
            metadata = LockMetadata.model_validate_json(meta_text)
        except ValidationError as exc:
            raise LockError(
                f"{where}: cannot read lock metadata ({exc.errors()[0]['msg']})"
            ) from None
    return LayerLock(packages, "sha256:" + sha256_text(text), metadata)


def _current_locks(graph: StackGraph) -> dict[str, LayerLock]:
    locks = {}
    for layer in graph:
        paths = lock_paths(graph, layer.name)
        if not paths.pylock.exists():
            continue
        meta = paths.meta.read_text(encoding="utf-8") if paths.meta.exists() else None
        locks[layer.name] = _parse_lock(
            paths.pylock.read_text(encoding="utf-8"), meta, str(paths.pylock)
        )
    return locks


def _lock_files(names: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """Layer name -> (pylock path, meta path or None), from paths relative to requirements/."""
    present = set(names)
    found: dict[str, tuple[str, str | None]] = {}
    for name in sorted(present):
        parts = name.split("/")
        if len(parts) != 2:
            continue
        layer, filename = parts
        if filename == lockfiles.pylock_name(layer):
            meta = f"{layer}/{lockfiles.meta_name(layer)}"
            found[layer] = (name, meta if meta in present else None)
    return found


def _base_locks_from_dir(base: Path) -> dict[str, LayerLock]:
    folder = base / REQUIREMENTS_DIR
    if not folder.is_dir():
        if any(base.glob("*/pylock.*.toml")):
            folder = base  # the requirements folder itself was given
        else:
            raise LockError(
                f"--base {base}: no {REQUIREMENTS_DIR}/ folder in it; pass an older copy of the"
                " spec's folder or a git ref"
            )
    names = [p.relative_to(folder).as_posix() for p in folder.glob("*/*") if p.is_file()]
    locks = {}
    for layer, (pylock, meta) in _lock_files(names).items():
        meta_text = (folder / meta).read_text(encoding="utf-8") if meta else None
        locks[layer] = _parse_lock(
            (folder / pylock).read_text(encoding="utf-8"), meta_text, str(folder / pylock)
        )
    return locks


def _git(args: list[str], cwd: Path, *, what: str | None = None) -> ProcessResult:
    """git's result; with ``what`` a failure raises LockError naming it, else the caller checks."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return run_process(
        ["git", *args],
        what=what or f"git {args[0]} (install git or pass --base a folder)",
        cwd=cwd,
        env=env,
        check=what is not None,
        error=LockError,
    )


def git_toplevel(folder: Path) -> Path | None:
    result = _git(["rev-parse", "--show-toplevel"], folder)
    return Path(result.stdout.strip()) if result.ok else None


def _base_locks_from_git(spec_dir: Path, ref: str) -> dict[str, LayerLock]:
    root = git_toplevel(spec_dir)
    if root is None:
        raise LockError(
            f"--base {ref}: {spec_dir} is not in a git repository (and {ref} is not a folder);"
            " pass a git ref from the spec's repository or an older copy of the spec's folder"
        )
    commit = _git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], root
    )
    if not commit.ok:
        raise LockError(
            f"--base {ref}: unknown git ref in {root}; fetch it first"
            " (in GitHub Actions: actions/checkout with fetch-depth: 0)"
        )
    sha = commit.stdout.strip()
    prefix = (spec_dir.resolve().relative_to(root.resolve()) / REQUIREMENTS_DIR).as_posix()
    listing = _git(
        ["ls-tree", "-r", "-z", "--name-only", sha, "--", f"{prefix}/"],
        root,
        what=f"--base {ref}: git ls-tree",
    )
    names = [n[len(prefix) + 1 :] for n in listing.stdout.split("\0") if n.startswith(prefix + "/")]
    locks = {}
    for layer, (pylock, meta) in _lock_files(names).items():
        texts: list[str | None] = []
        for relative in (pylock, meta):
            if relative is None:
                texts.append(None)
                continue
            shown = _git(
                ["show", f"{sha}:{prefix}/{relative}"],
                root,
                what=f"--base {ref}: git show {prefix}/{relative}",
            )
            texts.append(shown.stdout)
        assert texts[0] is not None
        locks[layer] = _parse_lock(texts[0], texts[1], f"{ref}:{prefix}/{pylock}")
    return locks


def _spec_label(spec_path: Path) -> str:
    root = git_toplevel(spec_path.parent)
    if root is not None:
        try:
            return spec_path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return spec_path.as_posix()


def failure_markdown(spec_path: Path, base: str, message: str) -> str:
    """The report when lock-diff itself failed (a PR comment must not keep an older verdict)."""
    return "\n".join(
        [
            f"## Lock changes in {md.code(_spec_label(Path(spec_path)))} against {md.code(base)}",
            "",
            "> [!CAUTION]",
            f"> **lock-diff failed**: {md.text(message)}",
            "",
        ]
    )


def lock_diff(spec_path: Path, base: str, *, reporter: Reporter) -> LockDiffReport:
    """Compare the spec's current locks with those at ``base`` (git ref or folder)."""
    spec_path = Path(spec_path)
    graph = load_stack(spec_path)
    spec_dir = graph.spec.spec_dir
    base_dir = Path(base)
    if base_dir.is_dir():
        old = _base_locks_from_dir(base_dir)
    else:
        old = _base_locks_from_git(spec_dir, base)
    new = _current_locks(graph)
    in_spec = [layer.name for layer in graph]
    diffs = []
    for name in [*in_spec, *sorted(set(old) - set(in_spec))]:
        diff = LayerDiff(name, old.get(name), new.get(name), in_spec=name in in_spec)
        if name in in_spec:
            before = diff.old.packages if diff.old else ()
            after = diff.new.packages if diff.new else ()
            diff.changes = diff_packages(before, after)
        diffs.append(diff)
    result: LockResult = lock_stack(graph, check=True, reporter=reporter)
    stale = {state.layer.name: list(state.stale_reasons) for state in result.stale}
    report = LockDiffReport(_spec_label(spec_path), base, diffs, stale)
    rebuild = report.needs_rebuild
    reporter.info(
        f"lock-diff against {base}: {len(rebuild)} layer(s) need a rebuild"
        + (f" ({', '.join(rebuild)})" if rebuild else "")
    )
    for name, reasons in stale.items():
        reporter.warning(
            f"{name}: lock is stale ({'; '.join(reasons)}); run `{report.fix_command()}`"
        )
    return report
