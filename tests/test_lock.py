"""Acceptance tests of `venvlayers lock`: real uv against the local test index (and PyPI).

The stack in tests/data/stacks/layered is locked once per module; tests that change
something work on a copy (copied with mtimes, so "untouched" can be checked by mtime).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import tomlkit
from rig import run_uv
from rig.cli import LAYERED_LAYERS as LAYERS
from rig.cli import Run, index_table, make_stack
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror, local_cpython_prefix
from rig.wheels import build_wheel

from venvlayers.cli.commands import main

RUNTIME_HEADER = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []
"""


def write_spec(dest: Path, index_url: str, body: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    spec = dest / "venvstacks.toml"
    spec.write_text(RUNTIME_HEADER + "\n" + body + index_table(index_url))
    return spec


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def layer_files(snap: dict[str, tuple[bytes, int]], layer: str) -> dict[str, tuple[bytes, int]]:
    return {k: v for k, v in snap.items() if k.startswith(f"{layer}/")}


def lock_file(spec: Path, layer: str, suffix: str = "toml") -> Path:
    """venvstacks' lock file name: dots in the layer name become underscores."""
    return spec.parent / "requirements" / layer / f"pylock.{layer.replace('.', '_')}.{suffix}"


def pylock(spec: Path, layer: str) -> dict[str, object]:
    return tomllib.loads(lock_file(spec, layer).read_text())


def pinned(spec: Path, layer: str, *, shared: bool = False) -> dict[str, str]:
    """The packages a layer installs itself (``shared``: those it takes from below)."""
    packages = pylock(spec, layer)["packages"]
    assert isinstance(packages, list)
    return {
        p["name"]: p["version"]
        for p in packages
        if ("from_lower_layer" in p.get("marker", "")) == shared
    }


def meta(spec: Path, layer: str) -> dict[str, object]:
    path = lock_file(spec, layer, "meta.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def stale_layers(run: Run) -> list[str]:
    return re.findall(r"^(\S+): stale", run.out, flags=re.MULTILINE)


@pytest.fixture(autouse=True)
def _runtime(runtime_mirror: RuntimeMirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv lock needs the 3.12.1 interpreter: it comes from the offline runtime mirror."""
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "UV_EXCLUDE_NEWER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def locked(
    tmp_path_factory: pytest.TempPathFactory,
    local_index: SimpleIndex,
    runtime_mirror_session: RuntimeMirror,
) -> Iterator[Path]:
    """The layered stack, locked once; tests must not change it (use ``stack``)."""
    spec = make_stack(tmp_path_factory.mktemp("locked") / "stack", local_index.url)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        assert main(["-q", "lock", str(spec)]) == 0
    yield spec


@pytest.fixture
def stack(locked: Path, tmp_path: Path) -> Path:
    """A private copy of the locked stack (lock files keep their mtimes)."""
    dest = tmp_path / "stack"
    shutil.copytree(locked.parent, dest, copy_function=shutil.copy2)
    return dest / "venvstacks.toml"


# -- the locked stack ---------------------------------------------------------------------


def test_lock_writes_lock_metadata_and_package_list_per_layer(locked: Path) -> None:
    requirements = locked.parent / "requirements"
    assert sorted(p.name for p in requirements.iterdir()) == sorted(LAYERS)
    for layer in LAYERS:
        folder = requirements / layer
        assert lock_file(locked, layer).is_file()
        assert (folder / f"packages-{layer}.txt").is_file()
        assert (folder / f"requirements-{layer.replace('.', '_')}.in").is_file()
        data = meta(locked, layer)
        assert set(data) >= {
            "requirements_hash",
            "lock_input_hash",
            "other_inputs_hash",
            "version_inputs_hash",
            "lock_version",
            "locked_at",
        }
        assert data["lock_version"] == 1
        # venvstacks' format: ISO 8601 in UTC, with the offset
        assert datetime.fromisoformat(str(data["locked_at"])).utcoffset() == timedelta(0)
        assert str(data["requirements_hash"]).startswith("sha256:")
    # The package list puts what lower layers provide in its own section
    upper = (requirements / "framework-upper" / "packages-framework-upper.txt").read_text()
    own, _, inherited = upper.partition("# Shared packages inherited from other layers\n")
    assert own.startswith("# Package summary for framework-upper\n")
    assert "beta==1.0.0\n" in own and "alpha" not in own
    assert inherited == "alpha==1.1.0\n"
    one = (requirements / "app-one" / "packages-app-one.txt").read_text()
    inherited = one.partition("# Shared packages inherited from other layers\n")[2]
    assert "libshared==1.0.0\n" in inherited and "alpha==1.1.0\n" in inherited


def test_upper_layers_omit_lower_layers_packages(locked: Path) -> None:
    assert pinned(locked, "cpython-3.12") == {}
    assert pinned(locked, "framework-base") == {"alpha": "1.1.0", "zeta": "1.0"}
    # beta needs alpha, which framework-base provides
    assert pinned(locked, "framework-upper") == {"beta": "1.0.0", "libshared": "1.0.0"}
    # app-one asks for alpha itself, and extuser needs libshared: both come from below
    assert pinned(locked, "app-one") == {"delta": "1.0.0", "gamma": "1.0.0", "extuser": "1.0.0"}
    # Layers that do not stand on each other may pin different versions
    assert pinned(locked, "framework-side") == {"alpha": "1.0.0"}
    assert pinned(locked, "app-two") == {"epsilon": "1.0"}
    # What lower layers provide stays listed, never to be installed from this layer
    assert pinned(locked, "app-one", shared=True) == {"alpha": "1.1.0", "libshared": "1.0.0"}
    shared = next(p for p in pylock(locked, "app-one")["packages"] if p["name"] == "alpha")  # type: ignore[attr-defined]
    assert shared["marker"] == "sys_platform == 'from_lower_layer'"
    assert "wheels" not in shared and "index" not in shared


def test_lock_covers_every_platform_with_wheels(locked: Path) -> None:
    lock = pylock(locked, "framework-upper")
    libshared = next(p for p in lock["packages"] if p["name"] == "libshared")  # type: ignore[attr-defined]
    tags = sorted(w["url"].rsplit("-", 1)[1].removesuffix(".whl") for w in libshared["wheels"])
    assert tags == [
        "macosx_11_0_arm64",
        "macosx_11_0_x86_64",
        "manylinux_2_17_aarch64",
        "manylinux_2_17_x86_64",
        "win_amd64",
        "win_arm64",
    ]


def test_pylocks_install_into_scratch_venvs(locked: Path, tmp_path: Path) -> None:
    for layer in LAYERS:
        packages = pinned(locked, layer)
        if not packages:
            continue
        venv = tmp_path / layer
        run_uv(["venv", "-q", "--python", "3.12.1", venv])
        run_uv(
            ["pip", "install", "--python", venv / "bin" / "python", "-r", lock_file(locked, layer)]
        )
        listed = run_uv(["pip", "list", "--python", venv / "bin" / "python", "--format", "json"])
        installed = {p["name"]: p["version"] for p in json.loads(listed.stdout)}
        assert installed == packages, layer


# -- staleness and relocking ------------------------------------------------------------------


def test_relock_changes_nothing_and_check_passes(stack: Path, cli: Callable[..., Run]) -> None:
    before = snapshot(stack.parent / "requirements")
    run = cli("lock", stack)
    assert run.code == 0, run.text
    assert "changed: none" in run.err
    assert snapshot(stack.parent / "requirements") == before
    check = cli("lock", "--check", stack)
    assert check.code == 0, check.text
    assert stale_layers(check) == []


def test_edited_framework_is_stale_with_layers_above_and_only_they_relock(
    stack: Path, cli: Callable[..., Run]
) -> None:
    requirements = stack.parent / "requirements"
    before = snapshot(requirements)
    edit(
        stack,
        'requirements = ["beta", "libshared"]',
        'requirements = ["beta", "libshared", "gamma"]',
    )

    check = cli("lock", "--check", stack)
    assert check.code == 1, check.text
    assert stale_layers(check) == ["framework-upper", "app-one"]
    assert "framework-upper: stale (requirements changed)" in check.out
    assert "lower layer framework-upper is stale" in check.out
    assert snapshot(requirements) == before  # --check writes nothing

    run = cli("lock", stack)
    assert run.code == 0, run.text
    assert "changed: framework-upper, app-one" in run.err
    after = snapshot(requirements)
    for layer in ("cpython-3.12", "framework-base", "framework-side", "app-two"):
        assert layer_files(after, layer) == layer_files(before, layer), layer
    assert pinned(stack, "framework-upper") == {
        "beta": "1.0.0",
        "gamma": "1.0.0",
        "libshared": "1.0.0",
    }
    # gamma now comes from framework-upper, so app-one's lock content changed: versioned bump
    assert pinned(stack, "app-one") == {"delta": "1.0.0", "extuser": "1.0.0"}
    assert "gamma" in pinned(stack, "app-one", shared=True)
    assert meta(stack, "app-one")["lock_version"] == 2
    assert meta(stack, "framework-upper")["lock_version"] == 1  # not versioned
    assert cli("lock", "--check", stack).code == 0


def test_versioned_app_bumps_only_when_lock_or_launch_module_changes(
    stack: Path, cli: Callable[..., Run]
) -> None:
    requirements = stack.parent / "requirements"
    lock_file = requirements / "app-one" / "pylock.app-one.toml"
    before = snapshot(requirements)

    # Relocking from scratch gives the same content: no new lock version, no write at all
    run = cli("lock", "--reset-lock", "app-one", stack)
    assert run.code == 0, run.text
    assert snapshot(requirements) == before
    assert meta(stack, "app-one")["lock_version"] == 1

    # A changed launch module (same requirements) is a new version of the app
    launch = stack.parent / "launch" / "one.py"
    launch.write_text(launch.read_text() + "\n# changed\n")
    check = cli("lock", "--check", stack)
    assert check.code == 1
    assert stale_layers(check) == ["app-one"]
    assert "launch or support modules changed" in check.out
    assert cli("lock", stack).code == 0
    assert meta(stack, "app-one")["lock_version"] == 2
    assert lock_file.read_bytes() == before["app-one/pylock.app-one.toml"][0]

    # So is a changed support module
    helper = stack.parent / "launch" / "onehelp" / "__init__.py"
    helper.write_text(helper.read_text() + "EXTRA = 1\n")
    assert stale_layers(cli("lock", "--check", stack)) == ["app-one"]
    assert cli("lock", stack).code == 0
    assert meta(stack, "app-one")["lock_version"] == 3

    # An unversioned app's lock_version stays at 1 whatever happens
    two = stack.parent / "launch" / "two.py"
    two.write_text(two.read_text() + "\n# changed\n")
    assert cli("lock", stack).code == 0
    assert meta(stack, "app-two")["lock_version"] == 1


def test_edited_lock_file_is_stale(stack: Path, cli: Callable[..., Run]) -> None:
    path = lock_file(stack, "framework-side")
    # venvstacks hashes what the lock says (packages, wheels, hashes), not its bytes
    path.write_text(path.read_text() + "\n# a comment\n")
    assert cli("lock", "--check", stack).code == 0
    text = path.read_text()
    digest = re.search(r'sha256 = "([0-9a-f]{64})"', text)
    assert digest
    path.write_text(text.replace(digest.group(1), "0" * 64))
    check = cli("lock", "--check", stack)
    assert check.code == 1
    assert stale_layers(check) == ["framework-side", "app-two"]
    assert "lock file was edited after locking" in check.out


def test_include_locks_only_selected_layers_and_their_dependents(
    stack: Path, cli: Callable[..., Run]
) -> None:
    requirements = stack.parent / "requirements"
    before = snapshot(requirements)
    edit(
        stack,
        'requirements = ["beta", "libshared"]',
        'requirements = ["beta", "libshared", "gamma"]',
    )
    edit(stack, 'requirements = ["alpha==1.0.0"]', 'requirements = ["alpha==1.0.0", "gamma"]')

    run = cli("lock", "--include", "framework-side", stack)
    assert run.code == 0, run.text
    after = snapshot(requirements)
    assert pinned(stack, "framework-side") == {"alpha": "1.0.0", "gamma": "1.0.0"}
    # app-two, above it, was relocked too (as venvstacks does) to the same lock: epsilon
    # does not need gamma; the layers below were read, the others left alone
    for layer in ("framework-base", "framework-upper", "app-one", "app-two"):
        assert layer_files(after, layer) == layer_files(before, layer), layer
    check = cli("lock", "--check", stack)
    assert stale_layers(check) == ["framework-upper", "app-one"]


def test_include_matching_nothing_is_an_error(stack: Path, cli: Callable[..., Run]) -> None:
    run = cli("lock", "--include", "nosuchlayer", stack)
    assert run.code == 2
    assert "matches no layer" in run.err


def test_reset_lock_forgets_previous_pins(
    tmp_path: Path, cli: Callable[..., Run], simple_index_factory: Callable[..., SimpleIndex]
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "alpha", "1.0.0", modules={"alpha/__init__.py": ""})
    index = simple_index_factory(wheels)
    spec = write_spec(
        tmp_path / "stack",
        index.url,
        '[[frameworks]]\nname = "fw"\nruntime = "cpython-3.12"\nrequirements = ["alpha"]\n',
    )
    assert cli("lock", spec).code == 0
    assert pinned(spec, "framework-fw") == {"alpha": "1.0.0"}

    build_wheel(wheels, "alpha", "1.1.0", modules={"alpha/__init__.py": ""})
    # Unchanged inputs and --if-needed: nothing to do, the lock stays as it is
    assert cli("lock", "--if-needed", spec).code == 0
    assert pinned(spec, "framework-fw") == {"alpha": "1.0.0"}
    # --reset-lock resolves from scratch, --if-needed or not
    run = cli("lock", "--if-needed", "--reset-lock", "framework-fw", spec)
    assert run.code == 0, run.text
    assert pinned(spec, "framework-fw") == {"alpha": "1.1.0"}
    # So does `lock` without --if-needed (as venvstacks relocks: an earlier resolution is
    # no preference), on every layer
    build_wheel(wheels, "alpha", "1.2.0", modules={"alpha/__init__.py": ""})
    assert cli("lock", spec).code == 0
    assert pinned(spec, "framework-fw") == {"alpha": "1.2.0"}


def test_package_indexes_take_a_package_from_its_named_index(
    tmp_path: Path,
    local_index: SimpleIndex,
    cli: Callable[..., Run],
    simple_index_factory: Callable[..., SimpleIndex],
) -> None:
    other = simple_index_factory(tmp_path / "other-wheels")
    build_wheel(tmp_path / "other-wheels", "epsilon", "9.0", modules={"epsilon/__init__.py": ""})
    spec = write_spec(
        tmp_path / "stack",
        local_index.url,
        '[[frameworks]]\nname = "fw"\nruntime = "cpython-3.12"\nrequirements = ["zeta", "epsilon"]\n'
        'package_indexes = {epsilon = "other"}\n'
        f'\n[[tool.uv.index]]\nname = "other"\nurl = "{other.url}"\nexplicit = true\n',
    )
    run = cli("lock", spec)
    assert run.code == 0, run.text
    assert pinned(spec, "framework-fw") == {"alpha": "1.1.0", "zeta": "1.0", "epsilon": "9.0"}
    packages = pylock(spec, "framework-fw")["packages"]
    assert isinstance(packages, list)
    indexes = {p["name"]: p["index"] for p in packages}
    assert indexes == {"alpha": local_index.url, "zeta": local_index.url, "epsilon": other.url}


def test_exclude_newer_before_locked_at_makes_locks_stale(
    stack: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Locking *with* a cutoff needs upload times, which the local index does not serve
    # (uv then rejects every file); the staleness rule needs no index.
    monkeypatch.setenv("UV_EXCLUDE_NEWER", "2999-01-01T00:00:00Z")
    assert cli("lock", "--check", stack).code == 0
    monkeypatch.setenv("UV_EXCLUDE_NEWER", "2001-01-01T00:00:00Z")
    check = cli("lock", "--check", stack)
    assert check.code == 1
    assert stale_layers(check) == LAYERS
    assert "after exclude-newer 2001-01-01T00:00:00Z" in check.out


# -- failures -----------------------------------------------------------------------------


def test_conflict_with_a_lower_layers_pin_names_both_layers(
    stack: Path, cli: Callable[..., Run]
) -> None:
    edit(stack, 'requirements = ["delta", "alpha", "extuser"]', 'requirements = ["alpha>=2"]')
    run = cli("lock", stack)
    assert run.code == 2
    assert "layer app-one conflicts with versions pinned by lower layers" in run.err
    assert "alpha 1.1.0 (locked by framework-base)" in run.err
    assert "Traceback" not in run.err


FW = '[[frameworks]]\nname = "fw"\nruntime = "cpython-3.12"\nrequirements = ["{req}"]\n{extra}\n'


@pytest.mark.parametrize(
    ("req", "extra", "expected"),
    [
        pytest.param(
            "linuxonly",
            "",
            [r"linuxonly 1\.0\.0 has no wheel for (linux_aarch64|macosx|win)", "'platforms'"],
            id="linux-only-wheel-for-all-platforms",
        ),
        pytest.param(
            "newglibc",
            'platforms = ["linux_x86_64"]',
            [r"newglibc 1\.0\.0 has no wheel for linux_x86_64 \(glibc 2\.28\)", "linux_target"],
            id="glibc-2.34-wheel-for-default-target",
        ),
        pytest.param(
            "sdistonly",
            "",
            [r"has no wheel \(venvlayers installs wheels only\)", "sdistonly"],
            id="sdist-only",
        ),
    ],
)
def test_missing_wheels_fail_with_advice(
    tmp_path: Path,
    local_index: SimpleIndex,
    cli: Callable[..., Run],
    req: str,
    extra: str,
    expected: list[str],
) -> None:
    spec = write_spec(tmp_path / "stack", local_index.url, FW.format(req=req, extra=extra))
    run = cli("lock", spec)
    assert run.code == 2, run.text
    assert "layer framework-fw" in run.err
    for pattern in expected:
        assert re.search(pattern, run.err), (pattern, run.err)
    assert not (spec.parent / "requirements" / "framework-fw").exists()


@pytest.mark.parametrize(
    ("req", "extra"),
    [
        ("linuxonly", 'platforms = ["linux_x86_64"]'),
        ("newglibc", 'platforms = ["linux_x86_64"]\nlinux_target = "glibc@2.34"'),
    ],
    ids=["linux-only-narrowed", "glibc-2.34-target"],
)
def test_narrowed_platforms_or_raised_target_lock(
    tmp_path: Path, local_index: SimpleIndex, cli: Callable[..., Run], req: str, extra: str
) -> None:
    spec = write_spec(tmp_path / "stack", local_index.url, FW.format(req=req, extra=extra))
    run = cli("lock", spec)
    assert run.code == 0, run.text
    assert pinned(spec, "framework-fw") == {req: "1.0.0"}
    # the resolution is universal; the lock lists what the targets install
    assert "environments" not in pylock(spec, "framework-fw")


# -- real projects from PyPI ----------------------------------------------------------------


@pytest.mark.network
@pytest.mark.slow
def test_scientific_stack_locks_for_all_platforms_from_pypi(
    tmp_path: Path, cli: Callable[..., Run]
) -> None:
    spec = tmp_path / "venvstacks.toml"
    (tmp_path / "fit.py").write_text("import sklearn\n")
    spec.write_text(
        RUNTIME_HEADER
        + '\n[[frameworks]]\nname = "sci"\nruntime = "cpython-3.12"\nrequirements = ["numpy", "scipy"]\n'
        + '\n[[applications]]\nname = "fit"\nlaunch_module = "fit.py"\nframeworks = ["sci"]\n'
        + 'requirements = ["scikit-learn"]\n'
    )
    run = cli("lock", spec)
    assert run.code == 0, run.text
    sci = pinned(spec, "framework-sci")
    assert {"numpy", "scipy"} <= set(sci)
    fit = pinned(spec, "app-fit")
    assert "scikit-learn" in fit
    assert not {"numpy", "scipy"} & set(fit)
    lock = pylock(spec, "app-fit")
    sklearn = next(p for p in lock["packages"] if p["name"] == "scikit-learn")  # type: ignore[attr-defined]
    names = " ".join(w["url"].rsplit("/", 1)[1] for w in sklearn["wheels"])
    for tag in ("win_amd64", "win_arm64", "macosx", "manylinux", "aarch64"):
        assert tag in names, tag


def test_layer_without_requirements_is_locked_without_uv_as_uv_would(
    tmp_path: Path, local_index: SimpleIndex, cli: Callable[..., Run]
) -> None:
    """Runtimes usually have no requirements: their lock is written directly, and is
    what uv exports for a project without requirements (under the lock's header)."""
    spec = write_spec(tmp_path / "stack", local_index.url, "")
    assert cli("lock", spec).code == 0
    written = lock_file(spec, "cpython-3.12").read_text()
    assert not (spec.parent / "_build" / "_lock" / "cpython-3.12").exists()  # uv never ran
    project = tmp_path / "empty"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "empty"\nversion = "0"\nrequires-python = "==3.12.*"\ndependencies = []\n'
    )
    run_uv(["lock", "--python", "3.12.1"], cwd=project)
    exported = run_uv(
        ["export", "--format", "pylock.toml", "--frozen", "--no-header", "--no-emit-project"],
        cwd=project,
    ).stdout
    body = written.split("\n", 3)[3]  # after the three header lines
    assert body == tomlkit.dumps(tomlkit.parse(exported).unwrap())


def test_windows_line_endings_do_not_make_locks_stale(stack: Path, cli: Callable[..., Run]) -> None:
    """A Windows runner's checkout (git autocrlf) turns LF into CRLF in locks and modules."""
    for path in [
        *(stack.parent / "requirements").rglob("*"),
        *(stack.parent / "launch").rglob("*.py"),
    ]:
        if path.is_file():
            path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    run = cli("lock", "--check", stack)
    assert run.code == 0, run.out + run.err


# -- which interpreter uv locks with ------------------------------------------------------

FRAMEWORK = '[[frameworks]]\nname = "fw"\nruntime = "cpython-3.12"\nrequirements = ["beta"]\n'


@pytest.fixture
def python_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CPython 3.12.1 first on PATH, as ``python3.12``, that logs every start to the
    returned file; a fresh, empty folder of uv-managed Pythons."""
    prefix = local_cpython_prefix("3.12.1")
    if prefix is None:
        pytest.skip("no local CPython 3.12.1")
    bin_dir, log = tmp_path / "path-bin", tmp_path / "path-python.log"
    bin_dir.mkdir()
    for name in ("python3.12", "python3", "python"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\necho "$0" >> "{log}"\nexec "{prefix}/bin/python3.12" "$@"\n')
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "managed"))
    return log


def _managed(tmp_path: Path) -> list[str]:
    folder = tmp_path / "managed"
    return sorted(p.name for p in folder.glob("cpython-3.12.1-*")) if folder.is_dir() else []


def test_a_cold_lock_takes_the_managed_runtime_without_querying_pythons_on_path(
    tmp_path: Path, local_index: SimpleIndex, python_on_path: Path, cli: Callable[..., Run]
) -> None:
    """Each Python on PATH uv queries is a process start (pyenv's shims ~0.1 s each): the
    lock asks for the managed runtime its layer is built on, installed from the mirror."""
    spec = write_spec(tmp_path / "stack", local_index.url, FRAMEWORK)
    run = cli("lock", spec)
    assert run.code == 0, run.out + run.err
    assert pinned(spec, "framework-fw")["beta"] == "1.0.0"
    assert not python_on_path.exists(), python_on_path.read_text()
    assert _managed(tmp_path)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("UV_PYTHON_DOWNLOADS", "never"),  # the managed runtime cannot be had: PATH, as before
        ("UV_PYTHON_PREFERENCE", "only-system"),  # the user's preference, used as it is
    ],
)
def test_a_lock_takes_the_python_on_path_when_downloads_are_off_or_the_user_says_so(
    tmp_path: Path,
    local_index: SimpleIndex,
    python_on_path: Path,
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    spec = write_spec(tmp_path / "stack", local_index.url, FRAMEWORK)
    run = cli("lock", spec)
    assert run.code == 0, run.out + run.err
    assert pinned(spec, "framework-fw")["beta"] == "1.0.0"
    assert python_on_path.exists() and not _managed(tmp_path)


def test_a_lock_that_fails_on_one_layer_writes_no_lock_at_all(
    tmp_path: Path, local_index: SimpleIndex, cli: Callable[..., Run]
) -> None:
    """The runtime and a good framework lock; a framework asking for a package no index
    has fails: exit 2, one error, and no lock file of any layer written."""
    body = FRAMEWORK + (
        '\n[[frameworks]]\nname = "broken"\nruntime = "cpython-3.12"\n'
        'requirements = ["no-such-package-anywhere"]\n'
    )
    spec = write_spec(tmp_path / "stack", local_index.url, body)
    run = cli("lock", spec)
    assert run.code == 2, run.out + run.err
    assert "framework-broken" in run.err and "Traceback" not in run.err
    assert not (spec.parent / "requirements").exists()
    # once the broken layer is fixed, every layer locks
    edit(spec, '"no-such-package-anywhere"', '"beta"')
    assert cli("lock", spec).code == 0
    assert pinned(spec, "framework-fw")["beta"] == "1.0.0"
    assert pinned(spec, "framework-broken")["beta"] == "1.0.0"
