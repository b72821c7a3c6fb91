"""The check after building a layer: it runs, and what its app imports is installed.

venvstacks builds without any check, so this one never fails a layer venvstacks builds:
only a missing import of the launch/support modules (one that surely runs) is an error.
Everything else is a warning. By default (``CheckLevel.LOAD``) every shipped top-level
package must be findable and every extension module in the layer must load its shared
libraries (``dlopen``, no module code runs: milliseconds per module); ``CheckLevel.IMPORT``
imports every shipped package instead, which also finds a missing Python dependency but
runs the packages' import-time code (seconds for SciPy or scikit-learn).
"""

from __future__ import annotations

import ast
import enum
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from venvlayers.core.errors import BuildError
from venvlayers.core.process import run_process
from venvlayers.core.report import Reporter
from venvlayers.layer_scripts import check_imports
from venvlayers.stack.graph import Layer, StackGraph
from venvlayers.stack.spec import module_name

EXTENSION_RE = re.compile(r"\.(cpython-\d+[^.]*|abi3|pypy[^.]*)\.(so|dylib)$")
_SHOWN = 10  # problems named in the warning line; the rest are counted


class CheckLevel(enum.Enum):
    """How hard the check after building looks at a layer."""

    NONE = "none"  # no check (venvstacks has none)
    LOAD = "load"  # packages found, extension modules' shared libraries load
    IMPORT = "import"  # every shipped package imported


def check_layer(
    graph: StackGraph,
    layer: Layer,
    *,
    python: Path,
    site: Path,
    reporter: Reporter,
    level: CheckLevel = CheckLevel.LOAD,
) -> None:
    """The layer's python starts; what its launch/support modules import resolves
    (else an error); every top-level package it ships is found and its extension modules
    load, or (``CheckLevel.IMPORT``) imports (else a warning: an optional dependency may be
    missing on purpose, and venvstacks builds such layers).
    """
    if level is CheckLevel.NONE:
        return
    required: list[str] = []
    if layer.spec.launch_module:
        # what the app imports, not the app itself: importing a launch module may run it
        own = [layer.spec.launch_module, *layer.spec.support_modules]
        spec_dir = graph.spec.spec_dir
        required = sorted(
            launch_dependencies([spec_dir / m for m in own]) - {module_name(m) for m in own}
        )
    optional = sorted(set(top_level_modules(site)))
    # dlopen is POSIX; Windows loads DLLs by other rules (the import check covers it)
    extensions = (
        sorted(str(p) for p in site.rglob("*") if EXTENSION_RE.search(p.name) and p.is_file())
        if level is CheckLevel.LOAD and os.name == "posix"
        else []
    )
    mode = "import" if level is CheckLevel.IMPORT else "find"
    completed = run_process(
        # isolated (-I): the script's folder and the builder's PYTHON* settings stay out
        [python, "-I", check_imports.__file__],
        # on standard input: a big layer's extension paths exceed one argument's 128 KiB
        stdin=json.dumps([required, optional, mode, extensions]),
        what=f"{graph.path}: layer {layer.name}: import check of its python",
        timeout=600,
        error=BuildError,
        check=False,
    )
    verdicts: dict[str, list[str]] = {}
    for line in completed.stdout.splitlines():
        if line.startswith(check_imports.MARKER):
            kind, _, found = line[len(check_imports.MARKER) :].partition(" ")
            verdicts[kind] = json.loads(found)
    if "required" not in verdicts:
        raise BuildError(
            f"{graph.path}: layer {layer.name}: its python does not start: {completed.summary()}"
        )
    if verdicts["required"]:
        raise BuildError(
            f"{graph.path}: layer {layer.name}: built, but what its launch or support modules import"
            f" is not there: {'; '.join(verdicts['required'])}; add it to the layer's requirements"
            " (or build with --no-check)",
            path=graph.path,
            line=layer.spec.line,
        )
    failed = verdicts.get("optional", ["(the import check stopped before finishing)"])
    if failed:
        what = "do not import" if level is CheckLevel.IMPORT else "are not found or do not load"
        shown = "; ".join(failed[:_SHOWN])
        if len(failed) > _SHOWN:
            shown += f"; and {len(failed) - _SHOWN} more"
        reporter.warning(
            f"{layer.name}: built; these packages {what} (an optional dependency may be missing): {shown}"
        )


def launch_dependencies(paths: Sequence[Path]) -> set[str]:
    """Top-level names that launch/support modules import unconditionally at module level.

    Only what surely runs counts: a module file, or a package's ``__init__.py`` and
    ``__main__.py``; imports inside ``if`` (platform or TYPE_CHECKING branches; not
    ``if __name__ == "__main__"``, which runs under ``python -m``), ``try``
    (optional dependencies) and functions are not required; relative imports are the
    app's own. So the check never fails an app that venvstacks builds and runs.
    """
    names: set[str] = set()
    files = [
        p
        for path in paths
        for p in ([path] if path.is_file() else [path / "__init__.py", path / "__main__.py"])
        if p.is_file()
    ]
    for file in files:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except (SyntaxError, UnicodeDecodeError, OSError) as exc:
            raise BuildError(f"{file}: cannot be parsed as Python: {exc}") from None
        pending: list[ast.stmt] = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.With) or (isinstance(node, ast.If) and _is_main_guard(node)):
                pending += node.body
    return {n for n in names if n != "__future__"}


def _is_main_guard(node: ast.If) -> bool:
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    sides = [test.left, test.comparators[0]]
    return (
        isinstance(test.ops[0], ast.Eq)
        and any(isinstance(a, ast.Name) and a.id == "__name__" for a in sides)
        and any(isinstance(a, ast.Constant) and a.value == "__main__" for a in sides)
    )


def top_level_modules(site: Path) -> list[str]:
    """Importable top-level names of the distributions installed in ``site``."""
    names: set[str] = set()
    for record in site.glob("*.dist-info/RECORD"):
        for line in record.read_text(encoding="utf-8").splitlines():
            path = PurePosixPath(line.split(",", 1)[0])
            if (
                not path.parts
                or path.parts[0].startswith("..")
                or path.parts[0].endswith((".dist-info", ".data"))
            ):
                continue
            head = path.parts[0]
            if len(path.parts) > 1 and path.name == "__init__.py":
                names.add(head)
            elif len(path.parts) == 1 and path.suffix == ".py":
                names.add(path.stem)
            elif len(path.parts) == 1 and EXTENSION_RE.search(head):
                names.add(head.split(".", 1)[0])
    return sorted(
        n
        for n in names
        if n.isidentifier() and not n.startswith("_") and n not in {"sitecustomize", "site"}
    )
