"""A corpus of hostile stack specs, run through `lock` and `build --publish`.

Every case must end in a user error: exit 2, at most 4 lines of output with the error
on one line and last, no traceback, no secret repeated, and nothing written outside the
spec's folder (the folder around it is compared before and after; every file written
inside it is searched for the secret).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rig.cli import Run, index_table
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror

SECRET = "hunter2Secret"

RUNTIME = """
[[runtimes]]
name = {runtime}
python_implementation = "cpython@3.12.1"
requirements = []
"""
APP = """
[[applications]]
name = {app}
launch_module = {launch}
runtime = {app_runtime}
requirements = {requirements}
"""


def toml_string(value: str) -> str:
    """A TOML basic string holding ``value`` exactly (control characters escaped)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@dataclass
class Case:
    runtime: str = "cpython-3.12"
    app: str = "app"
    launch: str = "launch/app.py"
    app_runtime: str | None = None
    requirements: tuple[str, ...] = ()
    tail: str = ""
    raw: str | None = None  # the whole spec text, instead of the template
    setup: Callable[[Path], None] | None = None
    says: tuple[str, ...] = ()  # each must be in the error line
    files: dict[str, bytes] = field(default_factory=dict)
    index: bool = True  # False: no [tool.uv] in the spec, so venvstacks.uv.toml is read

    def spec_text(self, index_url: str) -> str:
        if self.raw is not None:
            return self.raw
        requirements = "[" + ", ".join(toml_string(r) for r in self.requirements) + "]"
        return (
            RUNTIME.format(runtime=toml_string(self.runtime))
            + APP.format(
                app=toml_string(self.app),
                launch=toml_string(self.launch),
                app_runtime=toml_string(self.app_runtime or self.runtime),
                requirements=requirements,
            )
            + self.tail
            + ("" if "[[tool.uv.index]]" in self.tail or not self.index else index_table(index_url))
        )


def inner_link(target: str) -> Callable[[Path], None]:
    def setup(stack: Path) -> None:
        package = stack / "launch" / "pkg"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text("print('pkg')\n")
        (package / "leak").symlink_to(target)

    return setup


NESTED = "a = " + "[" * 5000 + "]" * 5000 + "\n"
LONG = "x" * 5000

CASES: dict[str, Case] = {
    # layer names that are paths, or not portable folder names
    "runtime-name-escapes": Case(runtime="../../escaped", says=("name",)),
    "app-name-escapes": Case(app="../../../../x", says=("name",)),
    "name-dotdot": Case(runtime="..", says=("name",)),
    "name-separator": Case(app="a/b", says=("name", "path separator")),
    "name-backslash": Case(app="a\\b", says=("name",)),
    "name-leading-space": Case(app=" app", says=("name", "spaces")),
    "name-drive-prefix": Case(app="C:evil", says=("name",)),
    "name-newline-command": Case(app="x\n::error title=Injected::pwned", says=("name",)),
    "name-nul": Case(app="a\x00b", says=("name",)),
    "name-5000-chars": Case(app=LONG, says=("name", "5000 characters")),
    "name-rtl-override": Case(app="txt.\u202eexe", says=("name",)),
    "name-windows-device": Case(runtime="con", says=("name", "Windows")),
    "name-trailing-dot": Case(app="app.", says=("name",)),
    "name-build-folder": Case(runtime="_stamps", says=("name",)),
    "names-differ-in-case": Case(
        tail=RUNTIME.format(runtime='"CPython-3.12"'), says=("name", "only in case")
    ),
    "reference-with-newline": Case(app_runtime="cpython\n::error::pwned", says=("runtime",)),
    # module paths
    "launch-module-dot": Case(launch=".", says=("launch_module",)),
    "launch-module-ancestor": Case(
        launch="../../er", says=("launch_module", "spec's folder itself")
    ),
    "launch-module-empty": Case(launch="", says=("launch_module",)),
    "launch-module-control-char": Case(launch="launch/a\nb.py", says=("launch_module",)),
    "launch-module-5000-chars": Case(launch="launch/" + LONG + ".py", says=("launch_module",)),
    "inner-link-leaves-package": Case(
        launch="launch/pkg", setup=inner_link("/etc/passwd"), says=("leak", "outside")
    ),
    "inner-link-loops": Case(launch="launch/pkg", setup=inner_link("."), says=("folder",)),
    # credentials and uv settings
    "index-url-password": Case(
        tail=(
            '\n[[tool.uv.index]]\nname = "corp"\n'
            f'url = "https://ci:{SECRET}@pypi.invalid/simple"\ndefault = true\n'
        ),
        says=("UV_INDEX_CORP_USERNAME", "UV_INDEX_CORP_PASSWORD"),
    ),
    "extra-index-url-token": Case(
        tail=f'\n[tool.uv]\nextra-index-url = ["https://{SECRET}@pypi.invalid/simple"]\n',
        says=("extra-index-url", "UV_INDEX_"),
    ),
    "requirement-url-password": Case(
        requirements=(f"alpha @ https://u:{SECRET}@files.invalid/alpha-1.0-py3-none-any.whl",),
        says=("requirements", "UV_INDEX_"),
    ),
    "unknown-uv-setting": Case(
        tail='\n[tool.uv]\nindex-strategyy = "unsafe-best-match"\n',
        says=("index-strategyy", "did you mean 'index-strategy'"),
    ),
    "requirement-not-a-url": Case(requirements=("alpha @ notaurl",), says=("not a URL",)),
    "requirement-invalid": Case(requirements=("alpha beta",), says=("invalid requirement",)),
    # unreadable input
    "toml-nested-5000": Case(raw=NESTED, says=("nested too deeply",)),
    "binary-uv-toml": Case(
        files={"venvstacks.uv.toml": bytes(range(256)) * 4},
        index=False,
        says=("venvstacks.uv.toml",),
    ),
}
SLOW_CASES: dict[str, Case] = {
    # a bad value is reported at the spec's setting, not at a generated uv.toml
    "uv-setting-bad-value": Case(
        requirements=("alpha",),
        tail="\n[tool.uv]\nindex-strategy = 3\n",
        says=("venvstacks.toml", "index-strategy"),
    ),
}


def snapshot(root: Path, skip: Path) -> set[str]:
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip:
            dirs.clear()
            continue
        found.update(os.path.join(folder, name) for name in dirs + files)
    return found


def run_case(
    case: Case, command: list[str], tmp_path: Path, index: SimpleIndex, cli: Callable[..., Run]
) -> None:
    stack = tmp_path / "deep" / "er" / "stack"
    (stack / "launch").mkdir(parents=True)
    (stack / "launch" / "app.py").write_text("print('app')\n")
    if case.setup:
        case.setup(stack)
    for name, data in case.files.items():
        (stack / name).write_bytes(data)
    spec = stack / "venvstacks.toml"
    spec.write_text(case.spec_text(index.url), encoding="utf-8")
    before = snapshot(tmp_path, stack)

    args = [a.replace("{out}", str(stack / "out")) for a in command]
    result = cli(*args, spec)

    assert result.code == 2, result.text
    lines = result.text.strip().splitlines()
    assert "Traceback" not in result.text
    assert len(lines) <= 4, result.text
    assert lines[-1].startswith("error: "), f"the error is not one last line:\n{result.text}"
    for words in case.says:
        assert words in lines[-1], lines[-1]
    assert not any(line.lstrip().startswith("::") for line in lines), result.text
    assert SECRET not in result.text
    assert snapshot(tmp_path, stack) == before, "written outside the spec's folder"
    for folder, _, files in os.walk(stack):
        for name in files:
            path = Path(folder, name)
            if path != spec and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), f"{path} holds the password"


COMMANDS = {
    "lock": ["-q", "lock"],
    "build-publish": ["-q", "build", "--lock-if-needed", "--publish", "--output-dir", "{out}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_spec_is_a_one_line_user_error(
    name: str,
    command: str,
    tmp_path: Path,
    local_index: SimpleIndex,
    runtime_mirror: RuntimeMirror,
    cli: Callable[..., Run],
) -> None:
    run_case(CASES[name], COMMANDS[command], tmp_path, local_index, cli)


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", sorted(SLOW_CASES))
def test_hostile_spec_needing_uv_is_a_one_line_user_error(
    name: str,
    command: str,
    tmp_path: Path,
    local_index: SimpleIndex,
    runtime_mirror: RuntimeMirror,
    cli: Callable[..., Run],
) -> None:
    run_case(SLOW_CASES[name], COMMANDS[command], tmp_path, local_index, cli)
