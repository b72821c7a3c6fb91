"""Default release notes: what changed since the previous release, and how to install.

The layers whose archive changed since the previous release (its index against this one),
then, with the stack spec at hand (``release --spec``), ``lock-diff`` against the previous
release's tag (which packages went up or down), then the command that deploys it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from venvlayers.core import markdown as md
from venvlayers.core.errors import ReleaseError, VenvlayersError
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import INDEX_NAME
from venvlayers.formats.models import StackIndex, read_model
from venvlayers.net.github import GitHubClient
from venvlayers.release.merge_report import format_size


def default_notes(
    client: GitHubClient, tag: str, out: Path, spec: Path | None, reporter: Reporter
) -> str:
    index = read_model(StackIndex, out / INDEX_NAME, ReleaseError)
    previous = client.previous_release(tag)
    old_index = None
    if previous is not None:
        data = client.read_asset(previous, INDEX_NAME)
        try:
            old_index = StackIndex.model_validate_json(data) if data else None
        except ValidationError:
            reporter.warning(f"release notes: the {INDEX_NAME} of {previous} is unreadable")
    sections = [layer_table(index, previous, old_index)]
    if spec is not None and previous is not None:
        from venvlayers.lock.diff import lock_diff

        try:
            report = lock_diff(spec, previous, reporter=Reporter(quiet=True))
        except VenvlayersError as exc:
            reporter.warning(f"release notes: no lock changes since {previous} ({exc.message})")
        else:
            sections.append(report.to_markdown())
    sections.append(
        "Install an app on a target machine:\n\n"
        + md.fence(f"venvlayers deploy --from github:{client.repo_name}@{tag} --target DIR APP")
    )
    return "\n".join(sections)


def layer_table(index: StackIndex, previous: str | None, old: StackIndex | None) -> str:
    """The layers, their lock versions and archive sizes; what changed since ``previous``."""
    title = f"## Changes since {md.text(previous)}" if previous is not None else "## Layers"
    lines = [title, ""]
    header = "| Layer | Lock version | " + " | ".join(map(md.code, index.platforms)) + " |"
    lines += [header, "|---|---|" + "---|" * len(index.platforms)]
    changed = 0
    for name, layer in sorted(index.layers.items()):
        cells = []
        for platform in index.platforms:
            entry = layer.platforms.get(platform)
            if entry is None:
                cells.append("—")
                continue
            before = old.layers.get(name) if old is not None else None
            before_entry = before.platforms.get(platform) if before is not None else None
            if old is None:
                mark = ""
            elif before_entry is None:
                mark, changed = " (new)", changed + 1
            elif before_entry.sha256 != entry.sha256:
                mark, changed = " (changed)", changed + 1
            else:
                mark = " (unchanged)"
            cells.append(format_size(entry.archive_size) + mark)
        lines.append(f"| {md.code(name)} | {layer.lock_version} | " + " | ".join(cells) + " |")
    if old is not None:
        lines += ["", f"{changed} archive(s) new or changed; deployers fetch only those."]
    return "\n".join(lines) + "\n"
