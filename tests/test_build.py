"""Acceptance tests of `venvlayers build`: real layered environments from the local index.

The layered stack (tests/data/stacks/layered) is built once per module. The incremental
test at the end of the module changes that build, so it runs last.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rig.cli import LAYERED_LAYERS as LAYERS
from rig.cli import STACKS, Run, index_table, make_stack
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel

from venvlayers.build.layout import LayerLayout, layer_config
from venvlayers.build.python_wrapper import python_wrapper
from venvlayers.cli.commands import main
from venvlayers.core.platforms import Platform
from venvlayers.layer_scripts import postinstall
from venvlayers.stack.graph import load_stack
from venvlayers.stack.spec import LayerKind

SITE = "lib/python3.12/site-packages"


def clean_env() -> dict[str, str]:
    """The environment apps run in: no loader path, no venv, nothing from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("LD_LIBRARY_PATH", None)
    return env


def run_app(build: Path, app: str, module: str) -> dict[str, object]:
    result = subprocess.run(
        [str(build / app / "bin" / "python"), "-m", module],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=build.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def layer_of(build: Path, file: object) -> str:
    """The build folder (layer) a module file lives in."""
    return Path(str(file)).relative_to(build).parts[0]


def summary(run: Run) -> tuple[set[str], set[str]]:
    """(built, unchanged) layers from the build's closing line (in completion order)."""
    line = next(x for x in run.err.splitlines() if x.startswith("built: "))
    built_part, unchanged_part = line.removeprefix("built: ").split("; unchanged: ")
    unchanged_part = unchanged_part.split(";")[0]

    def names(text: str) -> set[str]:
        return set() if text == "none" else set(text.split(", "))

    return names(built_part), names(unchanged_part)


def top_level(site: Path) -> set[str]:
    return {
        p.name.split("-")[0].split(".")[0]
        for p in site.iterdir()
        if p.name not in ("sitecustomize.py", "_virtualenv.py", "_virtualenv.pth", "__pycache__")
    }


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    local_index: SimpleIndex,
    runtime_mirror_session: RuntimeMirror,
) -> Iterator[Path]:
    """The layered stack, locked and built; yields the spec path (build in ``_build``)."""
    dest = tmp_path_factory.mktemp("built") / "stack"
    spec = make_stack(dest, local_index.url)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("LD_LIBRARY_PATH", raising=False)
        assert main(["-q", "build", "--lock-if-needed", str(spec)]) == 0
    yield spec


@pytest.fixture
def build_env(runtime_mirror: RuntimeMirror, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)


# -- the built stack ------------------------------------------------------------------------


@pytest.mark.slow
def test_every_layer_is_built(built: Path) -> None:
    build = built.parent / "_build"
    for layer in LAYERS:
        assert (build / layer / "share/venv/metadata/venvstacks_layer.json").is_file(), layer
        assert (build / layer / "postinstall.py").is_file(), layer


@pytest.mark.slow
def test_app_imports_from_every_lower_layer_and_loads_shared_library(built: Path) -> None:
    build = built.parent / "_build"
    result = run_app(build, "app-one", "one")
    files = result["files"]
    assert isinstance(files, dict)
    assert {name: layer_of(build, path) for name, path in files.items()} == {
        "alpha": "framework-base",
        "zeta": "framework-base",
        "beta": "framework-upper",
        "libshared": "framework-upper",
        "delta": "app-one",
        "gamma": "app-one",
        "extuser": "app-one",
        "onehelp": "app-one",
    }
    # extuser links libvlshared.so from framework-upper: found through the dynlib folder
    # and the bin/python wrapper, with no LD_LIBRARY_PATH from the caller
    assert result["answer"] == 42
    assert result["greeting"] == "hello from onehelp"
    dynlib = build / "framework-upper" / "share/venv/dynlib" / "libvlshared.so"
    assert dynlib.is_symlink() and dynlib.resolve().is_file()


@pytest.mark.slow
def test_sibling_app_sees_its_own_framework_version(built: Path) -> None:
    build = built.parent / "_build"
    result = run_app(build, "app-two", "two")
    assert result["alpha"] == "1.0.0"
    files = result["files"]
    assert isinstance(files, dict)
    assert layer_of(build, files["alpha"]) == "framework-side"
    assert layer_of(build, files["epsilon"]) == "app-two"


@pytest.mark.slow
def test_layers_hold_only_their_own_packages(built: Path) -> None:
    build = built.parent / "_build"
    one = top_level(build / "app-one" / SITE)
    assert one == {"delta", "gamma", "extuser", "one", "onehelp"}
    assert top_level(build / "framework-upper" / SITE) == {"beta", "libshared"}
    assert top_level(build / "framework-base" / SITE) == {"alpha", "zeta"}
    # No installer in the runtime or the layers: they run with python -m, nothing else
    runtime_site = build / "cpython-3.12" / SITE
    assert not list(runtime_site.glob("pip*"))
    for layer in LAYERS[1:]:
        assert [p.name for p in (build / layer / "bin").iterdir() if "pip" in p.name] == []


@pytest.mark.slow
def test_installed_files_are_hard_links_into_uvs_cache(built: Path) -> None:
    """uv's default link mode: a package's files are uv's cached files, no byte copied."""
    installed = built.parent / "_build" / "framework-base" / SITE / "alpha" / "__init__.py"
    cache = Path(os.environ["UV_CACHE_DIR"])
    if cache.stat().st_dev != installed.stat().st_dev:
        pytest.skip("uv's cache is on another file system: uv copies")
    assert installed.stat().st_nlink >= 2
    inode = installed.stat().st_ino
    assert any(p.stat().st_ino == inode for p in cache.rglob("alpha/__init__.py") if p.is_file())


def test_link_layer_never_writes_through_a_hard_link(built: Path, tmp_path: Path) -> None:
    """A built layer's files may be hard links into uv's cache: linking replaces them."""
    layer = tmp_path / "app-one"
    shutil.copytree(built.parent / "_build" / "app-one", layer, symlinks=True)
    shutil.copytree(
        built.parent / "_build" / "cpython-3.12", tmp_path / "cpython-3.12", symlinks=True
    )
    for dep in ("framework-base", "framework-upper"):
        (tmp_path / dep).mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours\n")
    for name in ("pyvenv.cfg", f"{SITE}/sitecustomize.py"):
        (layer / name).unlink()
        os.link(outside, layer / name)
    postinstall.link_layer(layer, compile_files=False)
    assert outside.read_text() == "not yours\n"
    assert "home = " in (layer / "pyvenv.cfg").read_text()
    assert "addsitedir" in (layer / SITE / "sitecustomize.py").read_text()


@pytest.mark.slow
def test_layer_config_and_links_are_relative(built: Path) -> None:
    build = built.parent / "_build"
    config = json.loads((build / "app-one/share/venv/metadata/venvstacks_layer.json").read_text())
    assert config == {
        "base_python": "../cpython-3.12/bin/python3.12",
        "dynlib_dirs": ["../framework-upper/share/venv/dynlib"],
        "launch_module": "one",
        "py_version": "3.12.1",
        "pylib_dirs": [
            f"../framework-upper/{SITE}",
            f"../framework-base/{SITE}",
            f"../cpython-3.12/{SITE}",
        ],
        "python": "bin/python",
        "site_dir": SITE,
    }
    link = build / "app-one" / "bin" / "python3.12"
    assert os.readlink(link) == "../../cpython-3.12/bin/python3.12"
    # app-two has no lower shared libraries: plain symlinks, no wrapper
    assert (build / "app-two" / "bin" / "python").is_symlink()


# -- dynlib clashes ---------------------------------------------------------------------------


def _clash_stack(root: Path, index_url: str, exclude: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "cpython-3.12"\npython_implementation = "cpython@3.12.1"\n'
        'requirements = []\nplatforms = ["linux_x86_64"]\n\n'
        '[[frameworks]]\nname = "clash"\nruntime = "cpython-3.12"\n'
        f'requirements = ["clasha", "clashb"]\n{exclude}\n' + index_table(index_url)
    )
    return spec


@pytest.mark.slow
def test_dynlib_clash_fails_with_advice_and_dynlib_exclude_fixes_it(
    tmp_path: Path,
    build_env: None,
    cli: Callable[..., Run],
    simple_index_factory: Callable[..., SimpleIndex],
) -> None:
    wheels = tmp_path / "wheels"
    for name in ("clasha", "clashb"):
        build_wheel(
            wheels,
            name,
            "1.0.0",
            modules={
                f"{name}/__init__.py": "",
                # different builds of one library name (identical copies are linked once)
                f"{name}/lib/libclash.so": b"\x7fELF not real " + name.encode(),
                # venvstacks' rule: versioned names and extension modules are not linked,
                # an untagged *.so is
                f"{name}/lib/libversioned.so.1": b"\x7fELF versioned " + name.encode(),
                f"{name}/_speedups.cpython-312-x86_64-linux-gnu.so": b"\x7fELF ext",
                f"{name}/_plain{name}.so": b"\x7fELF plain " + name.encode(),
            },
            tag="py3-none-manylinux_2_17_x86_64",
        )
    index = simple_index_factory(wheels)
    spec = _clash_stack(tmp_path / "stack", index.url)
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 2
    assert "layer framework-clash: two packages ship libclash.so" in run.err
    assert 'dynlib_exclude = ["clashb/lib/libclash.so"]' in run.err
    assert "Traceback" not in run.err

    spec = _clash_stack(
        tmp_path / "stack", index.url, exclude='dynlib_exclude = ["clashb/lib/libclash.so"]'
    )
    run = cli("build", "--lock-if-needed", "--no-check", spec)
    assert run.code == 0, run.err
    dynlib = tmp_path / "stack" / "_build" / "framework-clash" / "share/venv/dynlib"
    assert os.readlink(dynlib / "libclash.so") == f"../../../{SITE}/clasha/lib/libclash.so"
    assert sorted(p.name for p in dynlib.iterdir()) == [
        "_plainclasha.so",
        "_plainclashb.so",
        "libclash.so",
    ]


# -- layout logic for other platforms (pure functions) --------------------------------------


@pytest.mark.parametrize(
    ("platform", "runtime_python", "layer_python", "site", "dynlib"),
    [
        (Platform.WIN_AMD64, "python.exe", "Scripts/python.exe", "Lib/site-packages", None),
        (Platform.WIN_ARM64, "python.exe", "Scripts/python.exe", "Lib/site-packages", None),
        (Platform.MACOSX_ARM64, "bin/python3.12", "bin/python", SITE, "share/venv/dynlib"),
        (Platform.LINUX_AARCH64, "bin/python3.12", "bin/python", SITE, "share/venv/dynlib"),
    ],
)
def test_layer_layout(
    platform: Platform, runtime_python: str, layer_python: str, site: str, dynlib: str | None
) -> None:
    layout = LayerLayout(platform, "3.12.1")
    assert layout.python(LayerKind.RUNTIME) == runtime_python
    assert layout.python(LayerKind.FRAMEWORK) == layer_python
    assert layout.python(LayerKind.APPLICATION) == layer_python
    assert layout.site_dir() == site
    assert layout.dynlib_dir() == dynlib
    assert layout.scripts_dir() == ("Scripts" if platform.is_windows else "bin")


def _targets(name: str) -> str:
    """Deployed folder names (install targets) differ from layer names."""
    return f"{name}@1"


def test_layer_config_for_windows_uses_windows_paths_and_no_dynlib_dirs() -> None:
    graph = load_stack(STACKS / "layered" / "venvstacks.toml")
    layout = LayerLayout(Platform.WIN_AMD64, "3.12.1")
    config = layer_config(graph, graph["app-one"], layout, _targets)
    assert config.python == "Scripts/python.exe"
    assert config.base_python == "../cpython-3.12@1/python.exe"
    assert config.site_dir == "Lib/site-packages"
    assert config.pylib_dirs == [
        "../framework-upper@1/Lib/site-packages",
        "../framework-base@1/Lib/site-packages",
        "../cpython-3.12@1/Lib/site-packages",
    ]
    assert config.dynlib_dirs == []
    assert config.launch_module == "one"
    runtime = layer_config(graph, graph["cpython-3.12"], layout, _targets)
    assert runtime.python == runtime.base_python == "python.exe"
    assert runtime.pylib_dirs == [] and runtime.launch_module is None


def test_layer_config_for_macos_lists_present_dynlib_dirs_only() -> None:
    graph = load_stack(STACKS / "layered" / "venvstacks.toml")
    layout = LayerLayout(Platform.MACOSX_X86_64, "3.12.1")
    config = layer_config(
        graph, graph["app-one"], layout, _targets, present_dynlibs={"framework-upper"}
    )
    assert config.python == "bin/python"
    assert config.base_python == "../cpython-3.12@1/bin/python3.12"
    assert config.dynlib_dirs == ["../framework-upper@1/share/venv/dynlib"]
    every = layer_config(graph, graph["app-one"], layout, _targets)
    assert every.dynlib_dirs == [
        "../framework-upper@1/share/venv/dynlib",
        "../framework-base@1/share/venv/dynlib",
        "../cpython-3.12@1/share/venv/dynlib",
    ]


def test_python_wrapper_appends_dynlib_dirs_and_keeps_callers_setting(tmp_path: Path) -> None:
    """The macOS flavour of the wrapper, run by sh with a stand-in for the real python."""
    layer = tmp_path / "app" / "bin"
    layer.mkdir(parents=True)
    fake = layer / "python3.12"
    fake.write_text('#!/bin/sh\nprintf "%s|%s" "$DYLD_LIBRARY_PATH" "$*"\n')
    fake.chmod(0o755)
    wrapper = layer / "python"
    wrapper.write_text(python_wrapper("DYLD_LIBRARY_PATH", ["fw/share/venv/dynlib"], "python3.12"))
    wrapper.chmod(0o755)
    here = str(layer.resolve())

    def call(env: dict[str, str]) -> str:
        return subprocess.run(
            [str(wrapper), "-m", "x"], env=env, capture_output=True, text=True, check=True
        ).stdout

    path = {"PATH": os.environ["PATH"]}
    assert call(path) == f"{here}/../../fw/share/venv/dynlib|-m x"
    assert call({**path, "DYLD_LIBRARY_PATH": "/mine"}) == (
        f"/mine:{here}/../../fw/share/venv/dynlib|-m x"
    )
    # Already present: not added twice
    twice = f"{here}/../../fw/share/venv/dynlib"
    assert call({**path, "DYLD_LIBRARY_PATH": twice}) == f"{twice}|-m x"


# -- incremental builds (changes the module's build: keep last) ----------------------------


@pytest.mark.slow
def test_incremental_builds_clean_and_locked(
    built: Path, build_env: None, cli: Callable[..., Run]
) -> None:
    build = built.parent / "_build"

    def mtimes() -> dict[str, int]:
        return {layer: (build / layer).stat().st_mtime_ns for layer in LAYERS}

    before = mtimes()
    run = cli("build", "--lock-if-needed", built)
    assert run.code == 0, run.err
    assert summary(run) == (set(), set(LAYERS))
    assert mtimes() == before

    # A changed launch module rebuilds that app only (its lock is refreshed first)
    launch = built.parent / "launch" / "two.py"
    launch.write_text(launch.read_text() + "\nFLAG = 'changed'\n")
    run = cli("build", "--lock-if-needed", built)
    assert run.code == 0, run.err
    assert summary(run) == ({"app-two"}, set(LAYERS) - {"app-two"})
    after = mtimes()
    assert {k for k in LAYERS if after[k] != before[k]} == {"app-two"}
    assert "FLAG = 'changed'" in (build / "app-two" / SITE / "two.py").read_text()

    # --locked refuses a stale lock and names the layer: a versioned app's lock covers its
    # launch module (an unversioned one's does not: app-two just rebuilt, as venvstacks does)
    one = built.parent / "launch" / "one.py"
    one.write_text(one.read_text() + "\nFLAG = 'again'\n")
    run = cli("build", "--locked", built)
    assert run.code == 1
    assert "app-one" in run.err and "stale" in run.err
    assert "app-two" not in run.err

    # --clean rebuilds everything (after relocking app-one)
    run = cli("build", "--lock-if-needed", "--clean", built)
    assert run.code == 0, run.err
    assert summary(run) == (set(LAYERS), set())
    assert run_app(build, "app-one", "one")["answer"] == 42


@pytest.mark.slow
def test_shared_library_found_after_publish_and_deploy(built: Path, tmp_path: Path) -> None:
    """The deployed wrapper names deployed folders (app-one is versioned: app-one@N)."""
    out, target = tmp_path / "out", tmp_path / "deployed"
    assert main(["-q", "publish", "--output-dir", str(out), str(built)]) == 0
    assert (
        main(
            [
                "-q",
                "deploy",
                "--from",
                str(out),
                "--target",
                str(target),
            ]
        )
        == 0
    )
    (app,) = target.glob("app-one@*")
    result = run_app(target, app.name, "one")
    assert result["answer"] == 42
    assert all(str(target) in str(path) for path in result["files"].values())  # type: ignore[union-attr]


def test_launch_dependencies_are_read_not_run(tmp_path: Path) -> None:
    """The build checks what an app imports without importing (and so running) the app."""
    from venvlayers.build.check import launch_dependencies

    app = tmp_path / "app.py"
    app.write_text(
        "from __future__ import annotations\n"
        "import os.path, alpha\n"
        "from beta.sub import thing\n"
        "from . import sibling\n"
        "try:\n    import optional_speedup\nexcept ImportError:\n    pass\n"
        "def later():\n    import only_when_called\n"
        "if __name__ == '__main__':\n    import gamma\n"
        "if sys.platform == 'win32':\n    import winreg\n"
        "if TYPE_CHECKING:\n    import typing_only\n"
        "raise SystemExit('importing this module would end the check')\n"
    )
    package = tmp_path / "support"
    package.mkdir()
    (package / "__init__.py").write_text("import delta\n")
    # a submodule the package may never import is not required (an optional extra)
    (package / "extra.py").write_text("import optional_extra\n")
    assert launch_dependencies([app, package]) == {"os", "alpha", "beta", "gamma", "delta"}


def _native_stack(stack: Path, url: str, extra: str = "") -> Path:
    """A runtime and a framework shipping extuser (and libshared, its library)."""
    stack.mkdir()
    spec = stack / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "cpython-3.12"\npython_implementation = "cpython@3.12.1"\n'
        'requirements = []\nplatforms = ["linux_x86_64"]\n\n'
        '[[frameworks]]\nname = "native"\nruntime = "cpython-3.12"\nrequirements = ["extuser"]\n'
        + extra
        + index_table(url)
    )
    return spec


@pytest.mark.slow
def test_extension_and_its_library_in_one_layer(
    tmp_path: Path, local_index: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    """extuser links libvlshared.so (from libshared) without an rpath; in the same layer the
    layer's own dynlib folder makes it loadable (and the build's import check passes)."""
    stack = tmp_path / "stack"
    spec = _native_stack(stack, local_index.url)
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 0, run.err
    python = stack / "_build" / "framework-native" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import extuser; print(extuser.answer())"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    )
    assert result.stdout.strip() == "42"
    assert "warning" not in run.err  # the check loaded extuser with its library


@pytest.mark.slow
def test_extension_whose_library_is_not_linked_is_a_warning(
    tmp_path: Path, local_index: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    """The default check loads every extension module's shared libraries (no module code
    runs): with libvlshared.so left out of the dynlib folder, extuser cannot load."""
    spec = _native_stack(
        tmp_path / "stack", local_index.url, 'dynlib_exclude = ["libshared/lib/libvlshared.so"]\n'
    )
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 0, run.err
    assert (
        "warning: framework-native: built; these packages are not found or do not load" in run.err
    )
    assert "extuser.cpython-312-x86_64-linux-gnu.so (cannot load: libvlshared.so" in run.err
    run = cli("build", "--lock-if-needed", "--clean", "--no-check", spec)
    assert run.code == 0, run.err
    assert "warning" not in run.err


@pytest.mark.slow
def test_check_of_a_layer_with_thousands_of_extension_modules(
    tmp_path: Path,
    runtime_mirror: RuntimeMirror,
    cli: Callable[..., Run],
    simple_index_factory: Callable[..., SimpleIndex],
) -> None:
    """Their paths (over 128 KiB, one argument's limit on Linux) reach the check whole, and
    the warning names the first problems and counts the rest."""
    name = "x" * 60
    modules: dict[str, str | bytes] = {"manyext/__init__.py": ""}
    modules.update(
        {f"manyext/{name}{i:04}.cpython-312-x86_64-linux-gnu.so": b"not ELF" for i in range(1200)}
    )
    build_wheel(
        tmp_path / "wheels", "manyext", "1.0.0", modules=modules, tag="cp312-cp312-linux_x86_64"
    )
    index = simple_index_factory(tmp_path / "wheels")
    stack = tmp_path / "stack"
    stack.mkdir()
    spec = stack / "venvstacks.toml"
    spec.write_text(
        '[[runtimes]]\nname = "cpython-3.12"\npython_implementation = "cpython@3.12.1"\n'
        'requirements = []\nplatforms = ["linux_x86_64"]\n\n'
        '[[frameworks]]\nname = "many"\nruntime = "cpython-3.12"\nrequirements = ["manyext"]\n'
        'platforms = ["linux_x86_64"]\n' + index_table(index.url)
    )
    run = cli("build", "--lock-if-needed", spec)
    assert run.code == 0, run.err
    assert f"{name}0000.cpython-312-x86_64-linux-gnu.so (cannot load:" in run.err
    assert "; and 1190 more" in run.err


@pytest.mark.slow
def test_include_builds_only_the_selected_layers_and_what_they_need(
    tmp_path: Path, local_index: SimpleIndex, runtime_mirror: RuntimeMirror, cli: Callable[..., Run]
) -> None:
    dest = tmp_path / "stack"
    spec = make_stack(dest, local_index.url)
    run = cli("build", "--lock-if-needed", "--include", "app-two", spec)
    assert run.code == 0, run.err
    built = sorted(p.name for p in (dest / "_build").iterdir() if not p.name.startswith(("_", ".")))
    assert built == ["app-two", "cpython-3.12", "framework-side"]
    assert "built: cpython-3.12, framework-side, app-two;" in run.err
