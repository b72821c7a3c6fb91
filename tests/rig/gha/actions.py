"""Where a ``uses:`` comes from: local folders, the real third-party actions, venvlayers itself.

``uses: ./path`` is a folder of the workspace. ``uses: owner/repo[/sub]@ref`` is looked up
in ``ActionSources``: the third-party actions in ``shared/gha-actions/<owner>/<repo>/<commit>/``
(the pinned commit, or the only one there when the pin moved on: which one ran is recorded),
and repositories the test registers (venvlayers/venvlayers -> this checkout). Nothing is
downloaded: an action that is not there is an error naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[3]
SHA = re.compile(r"[0-9a-f]{40}")


def load_yaml(path: Path) -> Any:
    """YAML 1.2 (so a workflow's ``on:`` stays a string key), plain dicts and lists."""
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def shared_actions_root() -> Path:
    """``shared/gha-actions`` beside the checkout (VENVLAYERS_GHA_ACTIONS overrides)."""
    override = os.environ.get("VENVLAYERS_GHA_ACTIONS")
    if override:
        return Path(override)
    for base in (ROOT, *ROOT.parents):
        candidate = base / "shared" / "gha-actions"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "gha-actions"


@dataclass(frozen=True)
class ResolvedAction:
    """An action's folder and ``action.yml``, and where it came from."""

    uses: str  # as written
    directory: Path
    definition: dict[str, Any]
    repository: str = ""  # owner/repo for remote actions
    ref: str = ""  # the ref written after @
    commit: str = ""  # the commit whose code ran (may differ from a SHA ref: see moved)

    @property
    def moved(self) -> bool:
        return bool(SHA.fullmatch(self.ref)) and self.commit != self.ref

    @property
    def using(self) -> str:
        return str(self.definition["runs"]["using"])


class ActionNotFound(LookupError):
    pass


@dataclass
class ActionSources:
    """Remote actions by ``owner/repo``: the shared third-party copies plus registered folders."""

    shared_root: Path = field(default_factory=shared_actions_root)
    repositories: dict[str, tuple[Path, str]] = field(default_factory=dict)

    def register(self, repository: str, folder: Path, commit: str = "") -> None:
        self.repositories[repository.lower()] = (folder, commit)

    def resolve(self, uses: str, workspace: Path) -> ResolvedAction:
        if uses.startswith("./") or uses == ".":
            folder = (workspace / uses).resolve()
            return ResolvedAction(uses, folder, self._definition(folder, uses))
        if uses.startswith("docker://"):
            raise ActionNotFound(f"{uses}: docker actions are not run by the test runner")
        name, _, ref = uses.partition("@")
        parts = name.split("/")
        if len(parts) < 2 or not ref:
            raise ActionNotFound(f"uses: {uses} is not owner/repo[/path]@ref")
        repository = "/".join(parts[:2])
        sub = "/".join(parts[2:])
        base, commit = self._repository_folder(repository, ref)
        folder = base / sub if sub else base
        return ResolvedAction(uses, folder, self._definition(folder, uses), repository, ref, commit)

    def _repository_folder(self, repository: str, ref: str) -> tuple[Path, str]:
        registered = self.repositories.get(repository.lower())
        if registered is not None:
            return registered[0], registered[1] or ref
        owner_repo = self.shared_root / repository
        if (owner_repo / ref).is_dir():
            return owner_repo / ref, ref
        commits = sorted(p.name for p in owner_repo.iterdir()) if owner_repo.is_dir() else []
        if len(commits) == 1:
            return owner_repo / commits[0], commits[0]
        raise ActionNotFound(
            f"{repository}@{ref} is not in {self.shared_root} (have: {commits or 'nothing'}); "
            "see shared/gha-actions/README.md"
        )

    @staticmethod
    def _definition(folder: Path, uses: str) -> dict[str, Any]:
        for name in ("action.yml", "action.yaml"):
            if (folder / name).is_file():
                document = load_yaml(folder / name)
                if not isinstance(document, dict) or "runs" not in document:
                    raise ActionNotFound(f"{uses}: {folder / name} has no runs:")
                return document
        raise ActionNotFound(f"{uses}: no action.yml in {folder}")
