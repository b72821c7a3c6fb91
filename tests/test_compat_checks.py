"""Drop-in with venvstacks 0.8.0: what it accepts and builds, we accept and build.

One test per observation of issue 11 (lock side) that needs no reference tool: dotted
layer names with requirements (1), ``../`` module paths (2), the post-build check (9),
wheel tags from ``packaging.tags`` with hints naming spec fields (10), whole log lines
from concurrent threads (11). The reference-tool comparisons are in test_compat_lock.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from rig.cli import Run
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel

from venvlayers.core.platforms import Platform, uncovered_platforms
from venvlayers.core.report import GitHubReporter, Reporter


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "UV_EXCLUDE_NEWER"):
        monkeypatch.delenv(name, raising=False)


def index_table(url: str) -> str:
    return f'\n[[tool.uv.index]]\nname = "local"\nurl = "{url}"\ndefault = true\n'


def run_module(python: Path, module: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run(
        [str(python), "-m", module], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def wheels(tmp_path: Path, simple_index_factory: Callable[..., SimpleIndex]) -> SimpleIndex:
    folder = tmp_path / "wheels"
    build_wheel(folder, "alpha", "1.0.0", modules={"alpha/__init__.py": "NAME = 'alpha'\n"})
    # imports an optional dependency that is not installed (like matplotlib-inline)
    build_wheel(folder, "inliner", "1.0.0", modules={"inliner/__init__.py": "import notthere\n"})
    build_wheel(
        folder,
        "uni",
        "1.0.0",
        modules={"uni/__init__.py": ""},
        tag="py3-none-macosx_10_15_universal2",
    )
    build_wheel(
        folder,
        "linuxonly",
        "1.0.0",
        modules={"linuxonly/__init__.py": ""},
        tag="py3-none-linux_x86_64",
    )
    return simple_index_factory(folder)


# -- observation 1: a dotted layer name with requirements ---------------------------------


def test_dotted_runtime_with_requirements_locks_and_builds(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "cpython-3.12"\npython_implementation = "cpython@3.12.1"\n'
        'requirements = ["alpha"]\nplatforms = ["linux_x86_64"]\n' + index_table(wheels.url)
    )
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 0, run.text
    folder = tmp_path / "requirements" / "cpython-3.12"
    # PEP 751 names allow no dots in the name part, so venvstacks writes 3_12
    assert sorted(p.name for p in folder.iterdir()) == [
        "packages-cpython-3.12.txt",
        "pylock.cpython-3_12.meta.json",
        "pylock.cpython-3_12.toml",
        "requirements-cpython-3_12.in",
    ]
    site = tmp_path / "_build" / "cpython-3.12" / "lib" / "python3.12" / "site-packages"
    assert (site / "alpha" / "__init__.py").is_file()


# -- observation 2: module paths relative to the spec's folder, ../ included ---------------


def test_modules_outside_the_spec_folder_are_shipped(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    mods = tmp_path / "minimal_project"
    (mods / "helper").mkdir(parents=True)
    (mods / "helper" / "__init__.py").write_text("WORD = 'helped'\n")
    (mods / "empty.py").write_text(
        "import alpha\nfrom helper import WORD\nprint(alpha.NAME, WORD)\n"
    )
    spec = tmp_path / "project" / "venvstacks.toml"
    spec.parent.mkdir()
    spec.write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
        'platforms = ["linux_x86_64"]\n\n'
        '[[applications]]\nname = "app"\nruntime = "rt"\nrequirements = ["alpha"]\n'
        'launch_module = "../minimal_project/empty.py"\nsupport_modules = ["../minimal_project/helper"]\n'
        + index_table(wheels.url)
    )
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 0, run.text
    python = spec.parent / "_build" / "app-app" / "bin" / "python"
    assert run_module(python, "empty") == "alpha helped\n"


@pytest.mark.parametrize("module", ["", ".", "..", "../"])
def test_module_path_naming_no_module_is_an_error(
    tmp_path: Path, cli: Callable[..., Run], module: str
) -> None:
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
        f'[[applications]]\nname = "app"\nruntime = "rt"\nrequirements = []\nlaunch_module = "{module}"\n'
    )
    run = cli("show", spec)
    assert run.code == 2
    assert "field 'launch_module'" in run.err and "must name a .py module" in run.err


# -- observation 9: the post-build check never fails what venvstacks builds ----------------


def _app_spec(tmp_path: Path, url: str, launch: str, requirements: str) -> Path:
    (tmp_path / "app.py").write_text(launch)
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
        'platforms = ["linux_x86_64"]\n\n'
        f'[[applications]]\nname = "app"\nruntime = "rt"\nrequirements = {requirements}\n'
        'launch_module = "app.py"\n' + index_table(url)
    )
    return spec


def test_optional_dependency_missing_is_a_warning(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    spec = _app_spec(tmp_path, wheels.url, "import alpha\nprint('ok')\n", '["alpha", "inliner"]')
    # by default packages are only found, not imported: inliner is there
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 0, run.text
    assert "warning" not in run.err
    run = cli("build", "--lock-if-needed", "--clean", "--check-imports", spec)
    assert run.code == 0, run.text
    assert "warning: app-app: built; these packages do not import" in run.err
    assert "inliner (ModuleNotFoundError: No module named 'notthere')" in run.err
    assert run_module(tmp_path / "_build" / "app-app" / "bin" / "python", "app") == "ok\n"


def test_what_the_launch_module_imports_must_be_there(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    spec = _app_spec(tmp_path, wheels.url, "import alpha, notinstalled\n", '["alpha"]')
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 2, run.text
    assert "layer app-app: built, but what its launch or support modules import" in run.err
    assert "notinstalled (not installed)" in run.err
    assert "--no-check" in run.err
    # --no-check skips the check (venvstacks has none)
    run = cli("build", "--lock-if-needed", "--no-check", spec)
    assert run.code == 0, run.text
    assert "do not import" not in run.err


# -- observation 10: wheel tags from packaging.tags, hints naming spec fields --------------


def test_universal2_wheels_tagged_10_x_serve_both_mac_architectures() -> None:
    wheel = "pyzmq-27.1.0-cp311-cp311-macosx_10_15_universal2.whl"
    targets = [Platform.MACOSX_ARM64, Platform.MACOSX_X86_64]
    common = dict(py_version="3.11.7", glibc=(2, 28))
    assert uncovered_platforms([wheel], targets, macosx=(13, 0), **common) == []  # type: ignore[arg-type]
    # a target older than the wheel's is not served
    assert uncovered_platforms([wheel], targets, macosx=(10, 9), **common) == [  # type: ignore[arg-type]
        "macosx_arm64",
        "macosx_x86_64",
    ]


@pytest.mark.parametrize(
    ("wheel", "served", "unserved"),
    [
        (
            "x-1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "linux_x86_64",
            "linux_aarch64",
        ),
        ("x-1-cp312-cp312-manylinux1_x86_64.whl", "linux_x86_64", "win_amd64"),
        ("x-1-cp312-cp312-musllinux_1_2_x86_64.whl", None, "linux_x86_64"),
        ("x-1-cp312-cp312-manylinux_2_34_x86_64.whl", None, "linux_x86_64"),
        ("x-1-cp312-abi3-win_arm64.whl", "win_arm64", "win_amd64"),
        ("x-1-cp311-abi3-macosx_11_0_arm64.whl", "macosx_arm64", "macosx_x86_64"),
        ("x-1-cp311-cp311-win_amd64.whl", None, "win_amd64"),
        ("x-1-py2.py3-none-any.whl", "win_amd64", None),
    ],
)
def test_wheel_tags_follow_packaging(wheel: str, served: str | None, unserved: str | None) -> None:
    def covers(platform: str) -> bool:
        return not uncovered_platforms(
            [wheel], [Platform(platform)], py_version="3.12.1", glibc=(2, 28), macosx=(13, 0)
        )

    if served:
        assert covers(served)
    if unserved:
        assert not covers(unserved)


def test_universal2_lock_for_arm64_and_hint_names_platforms(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    spec = tmp_path / "venvstacks.toml"
    body = (
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n\n'
        '[[frameworks]]\nname = "mac"\nruntime = "rt"\nrequirements = ["uni"]\n'
        'platforms = ["macosx_arm64", "macosx_x86_64"]\n\n'
        '[[frameworks]]\nname = "lin"\nruntime = "rt"\nrequirements = ["linuxonly"]\n'
    )
    spec.write_text(body + index_table(wheels.url))
    run = cli("lock", "--include", "framework-mac", spec)
    assert run.code == 0, run.text
    run = cli("lock", spec)
    assert run.code == 2
    assert "layer framework-lin: linuxonly 1.0.0 has no wheel for linux_aarch64" in run.err
    assert "set the layer's 'platforms' to ['linux_x86_64']" in run.err
    assert "tool.uv.environments" not in run.err


# -- observation 11: whole lines only, from every thread, in every mode --------------------


class Writes(io.StringIO):
    """A text stream that records every write() call separately."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.guard = threading.Lock()

    def write(self, text: str) -> int:
        with self.guard:
            self.calls.append(text)
        return super().write(text)


@pytest.mark.parametrize("flavour", [Reporter, GitHubReporter])
def test_every_status_line_is_written_whole(flavour: type[Reporter]) -> None:
    stream = Writes()
    reporter = flavour(stream)

    def work(n: int) -> None:
        for i in range(200):
            reporter.info(f"layer-{n}: step {i}")
            reporter.warning(f"layer-{n}: warned {i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(call.endswith("\n") for call in stream.calls)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 * 200 * 2
    assert all(line.count("layer-") == 1 for line in lines)


def test_concurrent_lock_output_through_a_pipe_is_whole_lines(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror
) -> None:
    """`venvlayers lock … 2>&1 | cat`: independent layers lock concurrently."""
    body = (
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
    )
    for n in range(6):
        body += f'\n[[frameworks]]\nname = "f{n}"\nruntime = "rt"\nrequirements = ["alpha"]\n'
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(body + index_table(wheels.url))
    result = subprocess.run(
        [sys.executable, "-m", "venvlayers", "lock", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    for line in result.stdout.splitlines():
        assert line.count("framework-f") <= 1 or line.startswith("locked "), line
    assert json.dumps(result.stdout).count("resolving for") == 6


# -- observation 7: show marks invalid locks and names versioned install targets -----------


def test_show_marks_invalid_locks_and_versioned_targets(
    tmp_path: Path, wheels: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    (tmp_path / "app.py").write_text("import alpha\n")
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n\n'
        '[[frameworks]]\nname = "fw"\nruntime = "rt"\nrequirements = ["alpha"]\nversioned = true\n\n'
        '[[applications]]\nname = "app"\nframeworks = ["fw"]\nrequirements = []\n'
        'launch_module = "app.py"\n' + index_table(wheels.url)
    )
    unlocked = cli("show", spec)
    assert unlocked.out == (
        f"{spec}\n"
        "├── Runtimes\n"
        "│   └── *rt\n"
        "├── Frameworks\n"
        "│   └── *framework-fw -> framework-fw@???\n"
        "│       └── *rt\n"
        "└── Applications\n"
        "    └── *app-app\n"
        "        ├── *framework-fw -> framework-fw@???\n"
        "        └── *rt\n"
    )
    assert cli("lock", spec).code == 0
    locked = cli("show", spec).out
    assert "*" not in locked
    assert "│   └── framework-fw -> framework-fw@1\n" in locked
    document = json.loads(cli("show", "--json", spec).out)
    app = document["applications"][0]
    assert app["install_target"] == "app-app" and app["has_valid_lock"] is True
    assert app["dependencies"][0] == {
        "has_valid_lock": True,
        "install_target": "framework-fw@1",
        "name": "framework-fw",
        "selected_operations": None,
    }
    # a changed requirement invalidates that lock and every lock above it
    spec.write_text(
        spec.read_text().replace('requirements = ["alpha"]', 'requirements = ["alpha>=1"]')
    )
    stale = cli("show", spec).out
    assert "│   └── rt\n" in stale
    assert "│   └── *framework-fw -> framework-fw@???\n" in stale
    assert "    └── *app-app\n" in stale
