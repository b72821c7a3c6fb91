"""lock-diff against a real git history (and a folder copy) of a spec with hand-written locks."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from venvlayers.core.errors import LockError
from venvlayers.core.fsutil import sha256_text
from venvlayers.core.report import Reporter
from venvlayers.lock.diff import ChangeKind, PackageChange, diff_packages, lock_diff
from venvlayers.lock.hashes import lock_inputs, lock_metadata
from venvlayers.lock.lockfiles import LockedPackage, read_packages
from venvlayers.lock.status import lock_paths
from venvlayers.stack.graph import load_stack

ENVIRONMENTS = (
    "[\"platform_machine == 'aarch64' and sys_platform == 'linux'\","
    " \"platform_machine == 'x86_64' and sys_platform == 'linux'\","
    " \"platform_machine == 'arm64' and sys_platform == 'darwin'\","
    " \"platform_machine == 'x86_64' and sys_platform == 'darwin'\"]"
)
ALL = (
    "platform_machine == 'arm64' and sys_platform == 'darwin' or platform_machine == 'x86_64'"
    " and (sys_platform == 'darwin' or sys_platform == 'linux') or platform_machine == 'aarch64'"
    " and sys_platform == 'linux'"
)
MAC_INTEL = "platform_machine == 'x86_64' and sys_platform == 'darwin'"
NOT_MAC_INTEL = (
    "platform_machine == 'arm64' and sys_platform == 'darwin' or platform_machine == 'x86_64'"
    " and sys_platform == 'linux' or platform_machine == 'aarch64' and sys_platform == 'linux'"
)

SPEC_V1 = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []
platforms = ["linux_x86_64", "linux_aarch64", "macosx_arm64", "macosx_x86_64"]

[[frameworks]]
name = "common"
runtime = "cpython-3.12"
requirements = ["attrs", "numpy", "six"]

[[frameworks]]
name = "legacy"
runtime = "cpython-3.12"
requirements = ["chardet"]

[[applications]]
name = "hello"
launch_module = "launch/hello.py"
frameworks = ["common"]
requirements = ["idna"]
"""

SPEC_V2 = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []
platforms = ["linux_x86_64", "linux_aarch64", "macosx_arm64", "macosx_x86_64"]

[[frameworks]]
name = "common"
runtime = "cpython-3.12"
requirements = ["attrs", "numpy", "typing-extensions"]

[[applications]]
name = "hello"
launch_module = "launch/hello.py"
frameworks = ["common"]
requirements = ["idna<3.8"]

[[applications]]
name = "tool"
launch_module = "launch/tool.py"
frameworks = ["common"]
requirements = ["click"]
"""


def _hash(text: str) -> str:
    return sha256_text(text)


def pylock(packages: list[tuple[str, str, str]]) -> str:
    """A PEP 751 lock as `uv export --format pylock.toml --no-header` writes it (comments dropped)."""
    lines = [
        'lock-version = "1.0"',
        'created-by = "uv"',
        f"environments = {ENVIRONMENTS}",
        'requires-python = "==3.12.*"',
    ]
    if not packages:
        lines.append("packages = []")
    for name, version, marker in packages:
        dist = f"{name.replace('-', '_')}-{version}"
        lines += [
            "",
            "[[packages]]",
            f'name = "{name}"',
            f'version = "{version}"',
            f'marker = "{marker}"',
            'index = "https://pypi.org/simple"',
            f'sdist = {{ url = "https://files.pythonhosted.org/packages/aa/bb/{dist}.tar.gz",'
            f" upload-time = 2025-09-17T14:11:04Z, size = 216463,"
            f' hashes = {{ sha256 = "{_hash(dist + "sdist")}" }} }}',
            f'wheels = [{{ url = "https://files.pythonhosted.org/packages/cc/dd/{dist}-py3-none-any.whl",'
            f" upload-time = 2025-09-17T14:11:03Z, size = 69583,"
            f' hashes = {{ sha256 = "{_hash(dist + "wheel")}" }} }}]',
        ]
    return "\n".join(lines) + "\n"


def write_locks(
    spec_path: Path, locks: dict[str, list[tuple[str, str, str]]], lock_versions: dict[str, int]
) -> None:
    """Lock files and metadata that `venvlayers lock` would have written for this spec.

    The metadata hashes are computed from the spec the same way the locker records them,
    so ``lock --check`` finds these locks fresh without running uv.
    """
    graph = load_stack(spec_path)
    for layer in graph:
        text = pylock(locks[layer.name])
        paths = lock_paths(graph, layer.name)
        paths.folder.mkdir(parents=True, exist_ok=True)
        paths.pylock.write_text(text, encoding="utf-8")
        lock_metadata(
            lock_inputs(graph, layer),
            read_packages(text),
            lock_version=lock_versions.get(layer.name, 1),
            locked_at="2026-11-24T10:01:17+00:00",
        ).write(paths.meta)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{var}_NAME", "Test")
        monkeypatch.setenv(f"{var}_EMAIL", "test@example.invalid")
        monkeypatch.setenv(f"{var}_DATE", "2026-11-24T10:00:00Z")


V1_LOCKS = {
    "cpython-3.12": [],
    "framework-common": [
        ("attrs", "25.3.0", ALL),
        ("numpy", "2.0.2", MAC_INTEL),
        ("numpy", "2.1.0", NOT_MAC_INTEL),
        ("six", "1.16.0", ALL),
    ],
    "framework-legacy": [("chardet", "5.2.0", ALL)],
    "app-hello": [("idna", "3.10", ALL)],
}
V2_LOCKS = {
    "cpython-3.12": [],
    "framework-common": [
        ("attrs", "26.1.0", ALL),
        ("numpy", "2.2.0", MAC_INTEL),
        ("numpy", "2.2.0", NOT_MAC_INTEL),
        ("typing-extensions", "4.12.2", ALL),
    ],
    "app-hello": [("idna", "3.7", ALL)],
    "app-tool": [("click", "8.1.8", ALL)],
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with the stack in a subfolder; commit 1 (tag v1) and commit 2 (HEAD)."""
    root = tmp_path / "repo"
    stack = root / "stacks" / "basic"
    (stack / "launch").mkdir(parents=True)
    (stack / "launch" / "hello.py").write_text("print('hello')\n")
    (stack / "launch" / "tool.py").write_text("print('tool')\n")
    spec = stack / "venvstacks.toml"
    spec.write_text(SPEC_V1)
    write_locks(spec, V1_LOCKS, {})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "stack v1")
    git(root, "tag", "v1")

    spec.write_text(SPEC_V2)
    shutil.rmtree(stack / "requirements" / "framework-legacy")
    write_locks(spec, V2_LOCKS, {"framework-common": 2, "app-hello": 2})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "stack v2")
    return root


def _spec(repo: Path) -> Path:
    return repo / "stacks" / "basic" / "venvstacks.toml"


EXPECTED_MARKDOWN = """\
## Lock changes in `stacks/basic/venvstacks.toml` against `v1`

**Needs rebuild and republish:**

- `framework-common`: lock content changed, lock_version 1 → 2
- `app-hello`: lock content changed, lock_version 1 → 2
- `app-tool`: new layer

**Deleted layers** (no longer published): `framework-legacy`

### `framework-common` — lock_version 1 → 2

| Package | Change | Before | After |
|---|---|---|---|
| attrs | upgraded | 25.3.0 | 26.1.0 |
| numpy | upgraded | 2.0.2, 2.1.0 | 2.2.0 |
| six | removed | 1.16.0 | — |
| typing-extensions | added | — | 4.12.2 |

### `app-hello` — lock_version 1 → 2

| Package | Change | Before | After |
|---|---|---|---|
| idna | downgraded | 3.10 | 3.7 |

### `app-tool` (new layer)

| Package | Change | Before | After |
|---|---|---|---|
| click | added | — | 8.1.8 |

### `framework-legacy` (deleted layer)

Removed from the spec: its archives will no longer be published.
"""


def test_diff_against_git_ref(repo: Path) -> None:
    stream = io.StringIO()
    report = lock_diff(_spec(repo), "v1", reporter=Reporter(stream))
    assert not report.stale
    assert report.stale_layers == {}
    assert report.layer("framework-common").changes == [
        PackageChange("attrs", ChangeKind.UPGRADED, ("25.3.0",), ("26.1.0",)),
        PackageChange("numpy", ChangeKind.UPGRADED, ("2.0.2", "2.1.0"), ("2.2.0",)),
        PackageChange("six", ChangeKind.REMOVED, ("1.16.0",), ()),
        PackageChange("typing-extensions", ChangeKind.ADDED, (), ("4.12.2",)),
    ]
    assert report.layer("app-hello").changes == [
        PackageChange("idna", ChangeKind.DOWNGRADED, ("3.10",), ("3.7",))
    ]
    assert report.layer("app-tool").changes == [
        PackageChange("click", ChangeKind.ADDED, (), ("8.1.8",))
    ]
    assert report.layer("cpython-3.12").changes == []
    assert report.needs_rebuild == ["framework-common", "app-hello", "app-tool"]
    assert report.new_layers == ["app-tool"]
    assert report.deleted_layers == ["framework-legacy"]
    assert report.lock_version_bumps == {"framework-common": (1, 2), "app-hello": (1, 2)}
    assert report.to_markdown() == EXPECTED_MARKDOWN
    assert "3 layer(s) need a rebuild (framework-common, app-hello, app-tool)" in stream.getvalue()
    as_json = report.to_json()
    assert as_json["needs_rebuild"] == ["framework-common", "app-hello", "app-tool"]
    assert "cpython-3.12" not in as_json["layers"]  # type: ignore[operator]


def test_diff_against_same_commit_is_empty(repo: Path) -> None:
    report = lock_diff(_spec(repo), "HEAD", reporter=Reporter(io.StringIO()))
    assert report.needs_rebuild == []
    assert all(not d.changes for d in report.layers)
    assert report.to_markdown() == (
        "## Lock changes in `stacks/basic/venvstacks.toml` against `HEAD`\n\nNo layer needs a rebuild.\n"
    )


def test_diff_against_a_folder_copy(repo: Path, tmp_path: Path) -> None:
    """--base DIR: an older copy of the spec folder (e.g. a checkout of the base branch)."""
    old = tmp_path / "base-checkout"
    git(repo, "worktree", "add", "-q", "--detach", str(old), "v1")
    by_dir = lock_diff(_spec(repo), str(old / "stacks" / "basic"), reporter=Reporter(io.StringIO()))
    by_ref = lock_diff(_spec(repo), "v1", reporter=Reporter(io.StringIO()))
    assert [(d.name, d.changes, d.rebuild_reasons) for d in by_dir.layers] == [
        (d.name, d.changes, d.rebuild_reasons) for d in by_ref.layers
    ]
    # The requirements/ folder itself is accepted too
    by_req = lock_diff(
        _spec(repo),
        str(old / "stacks" / "basic" / "requirements"),
        reporter=Reporter(io.StringIO()),
    )
    assert by_req.needs_rebuild == by_ref.needs_rebuild


def test_stale_locks_are_reported(repo: Path) -> None:
    """Changing a requirement without relocking makes that layer's lock stale."""
    spec = _spec(repo)
    spec.write_text(SPEC_V2.replace('requirements = ["click"]', 'requirements = ["click", "rich"]'))
    stream = io.StringIO()
    report = lock_diff(spec, "v1", reporter=Reporter(stream))
    assert report.stale
    assert report.stale_layers == {"app-tool": ["requirements changed"]}
    markdown = report.to_markdown()
    assert markdown.endswith(
        "> [!WARNING]\n"
        "> **Stale locks**: these locks do not match the spec, so builds would refuse them:\n"
        "> - `app-tool`: requirements changed\n"
        ">\n"
        "> Run `venvlayers lock stacks/basic/venvstacks.toml` and commit the changes in `requirements/`.\n"
    )
    assert (
        "warning: app-tool: lock is stale (requirements changed);"
        " run `venvlayers lock stacks/basic/venvstacks.toml`"
    ) in stream.getvalue()


def test_stale_lower_layer_makes_upper_layers_stale(repo: Path) -> None:
    spec = _spec(repo)
    spec.write_text(SPEC_V2.replace('"typing-extensions"]', '"typing-extensions", "rich"]'))
    report = lock_diff(spec, "v1", reporter=Reporter(io.StringIO()))
    assert list(report.stale_layers) == ["framework-common", "app-hello", "app-tool"]
    assert report.stale_layers["app-hello"][0] == "lower layer framework-common is stale"
    assert "- `app-hello`: lower layer framework-common is stale" in report.to_markdown()


def test_unknown_git_ref(repo: Path) -> None:
    with pytest.raises(
        LockError, match=r"--base no-such-branch: unknown git ref in .*fetch-depth: 0"
    ):
        lock_diff(_spec(repo), "no-such-branch", reporter=Reporter(io.StringIO()))


def test_option_like_ref_is_not_passed_as_an_option(repo: Path) -> None:
    with pytest.raises(LockError, match="unknown git ref"):
        lock_diff(_spec(repo), "--all", reporter=Reporter(io.StringIO()))


def test_not_a_git_repository(repo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(repo / "stacks" / "basic", plain)
    with pytest.raises(LockError, match=r"--base main: .* is not in a git repository"):
        lock_diff(plain / "venvstacks.toml", "main", reporter=Reporter(io.StringIO()))


def test_folder_without_locks(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LockError, match="no requirements/ folder"):
        lock_diff(_spec(repo), str(empty), reporter=Reporter(io.StringIO()))


def _pkg(name: str, version: str, marker: str | None = None) -> Any:
    return LockedPackage(name, version, marker)


def test_diff_packages_directions_and_names() -> None:
    old = [
        _pkg("Typing_Extensions", "4.12.2"),
        _pkg("numpy", "1.26.4", "python_version < '3.13'"),
        _pkg("numpy", "2.1.0", "python_version >= '3.13'"),
        _pkg("weird", "not-a-version"),
        _pkg("pytz", "2024.1"),
    ]
    new = [
        _pkg("typing-extensions", "4.12.2"),  # same package, name normalization differs
        _pkg("numpy", "2.0.0", "python_version < '3.13'"),
        _pkg("numpy", "2.0.1", "python_version >= '3.13'"),
        _pkg("weird", "other"),
        _pkg("pytz", "2023.3"),
    ]
    assert diff_packages(old, new) == [
        PackageChange("numpy", ChangeKind.CHANGED, ("1.26.4", "2.1.0"), ("2.0.0", "2.0.1")),
        PackageChange("pytz", ChangeKind.DOWNGRADED, ("2024.1",), ("2023.3",)),
        PackageChange("weird", ChangeKind.CHANGED, ("not-a-version",), ("other",)),
    ]


def test_stack_at_repository_root_introduced_by_the_change(tmp_path: Path) -> None:
    """The base commit has no stack yet: every layer is new and needs a build."""
    root = tmp_path / "rootrepo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("stack to come\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "empty")
    (root / "launch").mkdir()
    (root / "launch" / "hello.py").write_text("print('hello')\n")
    (root / "launch" / "tool.py").write_text("print('tool')\n")
    (root / "venvstacks.toml").write_text(SPEC_V2)
    write_locks(root / "venvstacks.toml", V2_LOCKS, {})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "add the stack")

    report = lock_diff(root / "venvstacks.toml", "HEAD~1", reporter=Reporter(io.StringIO()))
    assert report.new_layers == ["cpython-3.12", "framework-common", "app-hello", "app-tool"]
    assert report.needs_rebuild == report.new_layers
    assert report.deleted_layers == []
    assert not report.stale
    markdown = report.to_markdown()
    assert markdown.startswith("## Lock changes in `venvstacks.toml` against `HEAD~1`\n")
    assert "### `cpython-3.12` (new layer)\n\nNo package changes.\n" in markdown
    # Against itself, with the stack at the root, nothing changed
    assert (
        lock_diff(root / "venvstacks.toml", "HEAD", reporter=Reporter(io.StringIO())).needs_rebuild
        == []
    )
