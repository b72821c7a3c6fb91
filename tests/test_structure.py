"""The layout rules reviewers check: small modules, no private names across modules, one
process runner, and a deploy that does not need the packing or locking code."""

from __future__ import annotations

import ast
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
    assert spawning == {"core/uv.py", "core/process.py"}


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
