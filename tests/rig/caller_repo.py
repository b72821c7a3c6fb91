"""The repository of a venvlayers user, for workflow runs: a tiny stack (one runtime, one app
needing one small package from the stage's index), its locks, and a workflow calling
build-stacks.yml the way docs/github-actions.md shows."""

from __future__ import annotations

from pathlib import Path

from .wheels import build_wheel

SPEC = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[applications]]
name = "hello"
launch_module = "launch/hello.py"
runtime = "cpython-3.12"
requirements = ["greeting"]

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""

HELLO = "import greeting\nprint(greeting.WORDS)\n"

CALLER_WORKFLOW = """\
name: Stacks
on:
  push:
    branches: [main]
    tags: ["v*.*.*"]
permissions: {{}}
jobs:
  stacks:
    uses: venvlayers/venvlayers/.github/workflows/build-stacks.yml@{sha}
    permissions:
      contents: write
    with:
      spec: venvstacks.toml
      runners: '{runners}'
      release-tag: ${{{{ startsWith(github.ref, 'refs/tags/v') && github.ref_name || '' }}}}
{extra}"""


def add_greeting(index_folder: Path, words: str = "hello from greeting") -> Path:
    """A small pure wheel the app needs, put in the index folder."""
    return build_wheel(
        index_folder, "greeting", "1.0", modules={"greeting/__init__.py": f"WORDS = {words!r}\n"}
    )


def add_newer_hatchling(index_folder: Path) -> Path:
    """A hatchling nobody locked, newer than the locked one (as a hijacked release would be):
    an unpinned ``hatchling>=1.25`` build requirement picks it; its backend fails loudly."""
    backend = "raise SystemExit('the unlocked hatchling 99.0 ran')\n"
    return build_wheel(
        index_folder,
        "hatchling",
        "99.0",
        modules={"hatchling/build.py": backend, "hatchling/__init__.py": ""},
    )


def write_stack(folder: Path, index_url: str) -> Path:
    """The stack's spec and launch module (no locks yet); the spec's path."""
    (folder / "launch").mkdir(parents=True, exist_ok=True)
    (folder / "launch" / "hello.py").write_text(HELLO, encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index_url), encoding="utf-8")
    return spec


def lock_stack(spec: Path) -> None:
    from venvlayers.cli.commands import main

    assert main(["-q", "lock", str(spec)]) == 0, "locking the caller's stack failed"


def write_caller_workflow(folder: Path, sha: str, runners: str, extra: str = "") -> Path:
    path = folder / ".github" / "workflows" / "stacks.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CALLER_WORKFLOW.format(sha=sha, runners=runners, extra=extra), encoding="utf-8")
    return path
