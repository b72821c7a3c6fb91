"""The layout rules reviewers check (docs/architecture.md, "Rules the tests enforce"):
packages depend on each other one way only, small modules, no private names across
modules, one process runner, and a deploy that does not need the packing or locking code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "venvlayers"
MODULES = sorted(SRC.rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def test_no_module_over_600_lines() -> None:
    # ~600 leaves a little slack
    sizes = {p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in MODULES}
    assert {name: n for name, n in sizes.items() if n > 620} == {}


def test_no_private_name_imported_across_modules() -> None:
    private = [
        f"{path.relative_to(SRC)}: from {module} import {name}"
        for path in MODULES
        for module, name in _imports(path)
        if module.startswith("venvlayers") and name.startswith("_") and name != "__version__"
    ]
    assert private == []


def test_only_uv_and_the_runner_start_processes() -> None:
    spawning = {
        path.relative_to(SRC).as_posix()
        for path in MODULES
        for module, _ in _imports(path)
        if module == "subprocess"
    }
    # compile_bytecode runs under a layer's own Python (started by core/process), where
    # venvlayers is not installed: it starts its fresh interpreters per chunk itself
    assert spawning == {"core/uv.py", "core/process.py", "layer_scripts/compile_bytecode.py"}


def test_entrypoint_runs_the_package_in_process() -> None:
    entrypoint = SRC.parent.parent / "entrypoint" / "main.py"
    assert not any(module == "subprocess" for module, _ in _imports(entrypoint))


def test_export_and_deploy_share_one_postinstall() -> None:
    from venvlayers.core import process
    from venvlayers.deploy import stage
    from venvlayers.layer_scripts import postinstall
    from venvlayers.publish import export

    # export runs each layer's postinstall through the one runner; deploy links staged
    # layers in process with the same code (bytecode is bytecode.compile_layers' job)
    assert export.run_postinstall is process.run_postinstall
    assert stage.postinstall is postinstall


# What each package may import from venvlayers (besides itself and ``__version__``): data
# flows spec -> lock -> build -> publish -> release / deploy, and core is below everything.
ALLOWED: dict[str, set[str]] = {
    "layer_scripts": set(),
    "core": {"layer_scripts"},
    "archive": {"core"},
    "stack": {"core"},
    "formats": {"core"},
    "net": {"core", "formats"},
    "lock": {"core", "stack", "formats"},
    "build": {"core", "stack", "formats", "lock", "layer_scripts"},
    "publish": {"core", "stack", "formats", "lock", "build", "archive", "layer_scripts"},
    "release": {"core", "formats", "lock", "net"},
    "deploy": {"core", "formats", "net", "archive", "layer_scripts"},
    "cli": {
        "core", "stack", "formats", "net", "lock", "build", "publish", "release", "deploy",
        "archive", "layer_scripts",
    },
}  # fmt: skip


def _package(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else ""


def test_every_module_is_in_a_package_with_rules() -> None:
    top_level = {p.name for p in MODULES if _package(p) == ""}
    assert top_level == {"__init__.py", "__main__.py"}
    assert {_package(p) for p in MODULES} - {""} == set(ALLOWED)


def test_packages_import_only_what_their_rules_allow() -> None:
    broken = []
    for path in MODULES:
        package = _package(path)
        if not package:
            continue
        for module, name in _imports(path):
            if module == "venvlayers":
                used = name if name != "__version__" else package
            elif module.startswith("venvlayers."):
                used = module.split(".")[1]
            else:
                continue
            if used != package and used not in ALLOWED[package]:
                broken.append(f"{path.relative_to(SRC)}: {module} {name}".strip())
    assert broken == []


def test_layer_scripts_need_only_the_standard_library() -> None:
    # they run under a layer's own interpreter, where venvlayers is not installed
    for path in (SRC / "layer_scripts").glob("*.py"):
        roots = {module.split(".")[0] for module, _ in _imports(path)}
        assert roots <= set(sys.stdlib_module_names) | {"__future__"}, path.name


def test_deploy_loads_no_archive_writer_and_no_build_code() -> None:
    code = (
        "import sys, venvlayers.deploy.deployment, venvlayers.deploy.sources\n"
        "print(sorted(m for m in sys.modules if m.startswith('venvlayers.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(done.stdout))
    packages = {m.split(".")[1] for m in loaded}
    assert packages <= {"core", "formats", "net", "archive", "deploy", "layer_scripts"}
    assert {
        "venvlayers.archive.write",
        "venvlayers.archive.tar",
        "venvlayers.archive.zip",
    }.isdisjoint(loaded)


def test_trees_are_removed_without_recursion() -> None:
    # shutil.rmtree recurses per folder level: a layer 1,200 deep breaks it (issue 25)
    users = [
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "rmtree(" in path.read_text(encoding="utf-8").replace("remove_tree(", "")
        and path.name != "rmtree.py"
    ]
    assert users == []


def test_the_noop_replay_loads_no_stage() -> None:
    # `python -m venvlayers` starts in cli/replay: a replayed no-op loads nothing else of
    # venvlayers and no third-party package (cli.commands only when it runs in full)
    code = "import sys, venvlayers.cli.replay\nprint(sorted(sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(done.stdout))
    ours = {m for m in loaded if m.startswith("venvlayers")}
    assert ours == {"venvlayers", "venvlayers.cli", "venvlayers.cli.replay"}
    roots = {m.split(".")[0] for m in loaded}
    assert roots <= set(sys.stdlib_module_names) | {"venvlayers", "__main__", "_distutils_hack"}
