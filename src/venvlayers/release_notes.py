"""Default release notes: the lock changes since the previous release, and how to install.

With the stack spec at hand (``release --spec``), the notes are ``lock-diff`` against the
previous release's tag (which layers changed, which packages went up or down). Without it,
or when that tag cannot be read, they list the layers of the index.
"""

from __future__ import annotations

from pathlib import Path

from venvlayers.assets import INDEX_NAME
from venvlayers.errors import ReleaseError, VenvlayersError
from venvlayers.gha import Reporter
from venvlayers.github import GitHubClient
from venvlayers.merge import StackIndex, format_size
from venvlayers.models import read_model


def default_notes(
    client: GitHubClient, tag: str, out: Path, spec: Path | None, reporter: Reporter
) -> str:
    previous = client.previous_release(tag)
    install = (
        "Install an app on a target machine:\n\n"
        f"```\nvenvlayers deploy --from github:{client.repo_name}@{tag} --target DIR APP\n```\n"
    )
    if spec is not None and previous is not None:
        from venvlayers.lockdiff import lock_diff

        try:
            report = lock_diff(spec, previous, reporter=Reporter(quiet=True))
        except VenvlayersError as exc:
            reporter.warning(f"release notes: no lock changes since {previous} ({exc.message})")
        else:
            return f"## Changes since {previous}\n\n{report.to_markdown()}\n{install}"
    return layer_table(out, previous) + "\n" + install


def layer_table(out: Path, previous: str | None) -> str:
    index = read_model(StackIndex, out / INDEX_NAME, ReleaseError)
    lines = ["## Layers", ""]
    if previous is not None:
        lines = [f"Previous release: {previous}", "", *lines]
    lines += ["| Layer | Lock version | " + " | ".join(index.platforms) + " |"]
    lines += ["|---|---|" + "---|" * len(index.platforms)]
    for name, layer in sorted(index.layers.items()):
        sizes = [
            format_size(layer.platforms[p].archive_size) if p in layer.platforms else "—"
            for p in index.platforms
        ]
        lines.append(f"| `{name}` | {layer.lock_version} | " + " | ".join(sizes) + " |")
    return "\n".join(lines) + "\n"
